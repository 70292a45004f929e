"""Does a tuned model survive the product's int8 weight quantisation?

The product's model (models/all-minilm-l6-v2-int8/model.onnx) stores the 36 MatMul weights and the
word and position embeddings as int8 with one fp32 scale per output channel (per row for the
embeddings) and computes in fp32. This script applies the same weight-only quantisation (symmetric,
round(w / s), s = max|row| / 127) to a model in PyTorch and embeds with it:

  - with no --tuned: the frozen model; its vectors are compared with the product's own int8 ONNX
    vectors (cached by onnx_check.py) to check that the emulation is the product's quantisation;
  - with --tuned results-cache/tuned-NAME.pt: that run's tuned weights; both heads' accuracy with
    the quantised vectors beside the fp32 tuned ones (same sample, same test side).

  python int8_check.py --dataset banking77 --per-label 10 --seed 0 [--tuned /work/tune-cache/tuned-banking77-10-s0.pt]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from minilm import embed, load  # noqa: E402
from setfit_proto import CACHE, MODEL_DIR, frozen_cache, heads, read_split, sample_per_label  # noqa: E402


@torch.no_grad()
def quantise_weights(model) -> None:
    def q(w: torch.Tensor) -> torch.Tensor:  # rows = output channels (Linear) or tokens (Embedding)
        s = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        return (w / s).round().clamp(-127, 127) * s

    model.word.weight.copy_(q(model.word.weight))
    model.pos.weight.copy_(q(model.pos.weight))
    for layer in model.layers:
        for lin in (layer.q, layer.k, layer.v, layer.o, layer.up, layer.down):
            lin.weight.copy_(q(lin.weight))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--per-label", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--tuned", default=None)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tr_text, tr_lab = read_split(a.dataset, "train")
    te_text, te_lab = read_split(a.dataset, "test")
    idx = sample_per_label(tr_lab, None if a.per_label == "full" else int(a.per_label), a.seed)
    texts, y, te_y = [tr_text[i] for i in idx], np.array([tr_lab[i] for i in idx]), np.array(te_lab)
    model, tok = load(MODEL_DIR)
    if a.tuned:
        model.load_state_dict(torch.load(a.tuned))
        saved = np.load(Path(a.tuned).with_suffix(".npz"))
        ref_train, ref_test = saved["train"].astype(np.float32), saved["test"].astype(np.float32)
        ref_name = "tuned fp32"
    else:
        ref_train, ref_test = np.load(CACHE / f"int8-{a.dataset}-train.npy")[idx], np.load(CACHE / f"int8-{a.dataset}-test.npy")
        ref_name = "product int8 ONNX"
    quantise_weights(model)
    train_x, test_x = embed(model, tok, texts), embed(model, tok, te_text)
    cos = np.concatenate([(train_x * ref_train).sum(1), (test_x * ref_test).sum(1)])
    out = {
        "dataset": a.dataset, "per_label": a.per_label, "seed": a.seed, "tuned": a.tuned,
        "reference": ref_name, "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
        "int8_emulated": heads(train_x, y, test_x, te_y), "reference_heads": heads(ref_train, y, ref_test, te_y),
    }
    if not a.tuned:
        fz = frozen_cache(a.dataset)
        out["fp32"] = heads(fz["train"][idx], y, fz["test"], te_y)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
