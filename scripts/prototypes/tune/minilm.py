"""all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide) in plain PyTorch, read from model.safetensors.

Mean pooling over the attention mask and L2 normalisation, as sentence-transformers and the
product's fastembed/ONNX embedder do; the tokenizer truncates at 256 tokens like the product.
Kept free of `transformers` so the layer list is what a Rust port (candle/burn) has to write.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer

MAX_TOKENS = 256


class Layer(torch.nn.Module):
    def __init__(self, d: int, heads: int, ff: int, p: float):
        super().__init__()
        self.heads = heads
        self.q = torch.nn.Linear(d, d)
        self.k = torch.nn.Linear(d, d)
        self.v = torch.nn.Linear(d, d)
        self.o = torch.nn.Linear(d, d)
        self.ln1 = torch.nn.LayerNorm(d, eps=1e-12)
        self.up = torch.nn.Linear(d, ff)
        self.down = torch.nn.Linear(ff, d)
        self.ln2 = torch.nn.LayerNorm(d, eps=1e-12)
        self.p = p

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads

        def split(y):
            return y.view(b, t, h, d // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // h) + bias
        att = F.dropout(att.softmax(-1), self.p, self.training)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = self.ln1(x + F.dropout(self.o(y), self.p, self.training))
        y = self.down(F.gelu(self.up(x)))
        return self.ln2(x + F.dropout(y, self.p, self.training))


class MiniLM(torch.nn.Module):
    def __init__(self, vocab=30522, d=384, layers=6, heads=12, ff=1536, positions=512, p=0.1):
        super().__init__()
        self.word = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Embedding(positions, d)
        self.typ = torch.nn.Embedding(2, d)
        self.ln = torch.nn.LayerNorm(d, eps=1e-12)
        self.layers = torch.nn.ModuleList(Layer(d, heads, ff, p) for _ in range(layers))
        self.p = p

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token ids and attention mask (batch x tokens) -> L2-normalised mean-pooled vectors."""
        t = ids.shape[1]
        x = self.word(ids) + self.pos.weight[:t] + self.typ.weight[0]
        x = F.dropout(self.ln(x), self.p, self.training)
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, bias)
        m = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


# safetensors name -> our parameter name
def _rename(name: str) -> str | None:
    fixed = {
        "embeddings.word_embeddings.weight": "word.weight",
        "embeddings.position_embeddings.weight": "pos.weight",
        "embeddings.token_type_embeddings.weight": "typ.weight",
        "embeddings.LayerNorm.weight": "ln.weight",
        "embeddings.LayerNorm.bias": "ln.bias",
    }
    if name in fixed:
        return fixed[name]
    if not name.startswith("encoder.layer."):
        return None  # pooler, position_ids: unused by mean pooling
    rest = name[len("encoder.layer."):]
    i, sub = rest.split(".", 1)
    parts = {
        "attention.self.query.": "q.", "attention.self.key.": "k.", "attention.self.value.": "v.",
        "attention.output.dense.": "o.", "attention.output.LayerNorm.": "ln1.",
        "intermediate.dense.": "up.", "output.dense.": "down.", "output.LayerNorm.": "ln2.",
    }
    for a, b in parts.items():
        if sub.startswith(a):
            return f"layers.{i}.{b}{sub[len(a):]}"
    raise KeyError(name)


def load(model_dir: Path) -> tuple[MiniLM, Tokenizer]:
    model = MiniLM()
    raw = load_file(str(model_dir / "model.safetensors"))
    state = {n: v for k, v in raw.items() if (n := _rename(k)) is not None}
    model.load_state_dict(state, strict=True)
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(MAX_TOKENS)
    tok.no_padding()
    return model, tok


def encode(tok: Tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tok.encode_batch(texts)
    t = max(len(e.ids) for e in enc)
    ids = torch.zeros((len(enc), t), dtype=torch.long)
    mask = torch.zeros((len(enc), t), dtype=torch.long)
    for r, e in enumerate(enc):
        ids[r, : len(e.ids)] = torch.tensor(e.ids)
        mask[r, : len(e.ids)] = 1
    return ids, mask


@torch.inference_mode()
def embed(model: MiniLM, tok: Tokenizer, texts: list[str], batch: int = 64) -> np.ndarray:
    """Vectors in input order; batches are formed in token-length order (less padding)."""
    was = model.training
    model.eval()
    lengths = [len(e.ids) for e in tok.encode_batch(texts)]
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for s in range(0, len(texts), batch):
        idx = order[s : s + batch]
        ids, mask = encode(tok, [texts[i] for i in idx])
        out[idx] = model(ids, mask).numpy()
    model.train(was)
    return out
