"""Fidelity of the prototype's frozen fp32 encoder to the product's int8 ONNX model.

Embeds each dataset's train and test side with models/all-minilm-l6-v2-int8/model.onnx (ONNX Runtime,
the same tokenizer truncated at 256 tokens, mean pooling, L2 normalisation, as src/embed/onnx.rs via
fastembed), then prints the per-text cosine between the two encoders and both heads' accuracy on the
same samples (5 / 10 / 20 per label and full, seeds 0-2) with fp32 and with int8 vectors.

  python onnx_check.py --onnx /work/main/models/all-minilm-l6-v2-int8/model.onnx > results/onnx_check.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from setfit_proto import CACHE, MODEL_DIR, frozen_cache, heads, read_split, sample_per_label  # noqa: E402


def onnx_embed(session, tok, texts: list[str], batch: int = 64) -> np.ndarray:
    from minilm import encode

    lengths = [len(e.ids) for e in tok.encode_batch(texts)]
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for s in range(0, len(texts), batch):
        idx = order[s : s + batch]
        ids, mask = encode(tok, [texts[i] for i in idx])
        ids, mask = ids.numpy(), mask.numpy()
        h = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[..., None].astype(np.float32)
        p = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        out[idx] = p / np.linalg.norm(p, axis=1, keepdims=True)
    return out


def main():
    import onnxruntime as ort
    import torch

    from minilm import load

    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--datasets", default="banking77,clinc150")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    session = ort.InferenceSession(a.onnx, so)
    _, tok = load(MODEL_DIR)
    report = {"onnx": a.onnx, "datasets": {}}
    for d in a.datasets.split(","):
        fz = frozen_cache(d)
        q = {}
        for split in ("train", "test"):
            path = CACHE / f"int8-{d}-{split}.npy"
            if not path.exists():
                texts, _ = read_split(d, split)
                t = time.time()
                np.save(path, onnx_embed(session, tok, texts))
                print(f"{d} {split} int8: {len(texts)} in {time.time() - t:.1f}s", file=sys.stderr)
            q[split] = np.load(path)
        cos = np.concatenate([(fz[s] * q[s]).sum(1) for s in ("train", "test")])
        _, tr_lab = read_split(d, "train")
        _, te_lab = read_split(d, "test")
        te_y = np.array(te_lab)
        runs = []
        for per in (5, 10, 20, None):
            for seed in (0, 1, 2) if per else (0,):
                idx = sample_per_label(tr_lab, per, seed)
                y = np.array([tr_lab[i] for i in idx])
                r = {"per_label": per or "full", "seed": seed,
                     "fp32": heads(fz["train"][idx], y, fz["test"], te_y),
                     "int8": heads(q["train"][idx], y, q["test"], te_y)}
                print(d, r["per_label"], seed, {k: (r[k]["logistic"]["accuracy"], r[k]["knn"]["accuracy"])
                                                for k in ("fp32", "int8")}, file=sys.stderr, flush=True)
                runs.append(r)
        report["datasets"][d] = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                                 "cosine_p01": float(np.quantile(cos, 0.01)), "texts": int(cos.size), "runs": runs}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
