"""Plain reference for scripts/bench.sh: what a notebook user writes to get the same
k-NN classification out of the same ONNX model, with onnxruntime + tokenizers + numpy.

  python scripts/bench_reference.py MODEL_DIR TRAIN.jsonl TEST.jsonl [K] [BATCH]

Loads model.onnx and tokenizer.json from MODEL_DIR, embeds the train texts in batches of
BATCH (default 32) in file order (not sorted by length; each batch padded to its longest
text), mean pooling over the attention mask and L2 normalisation in numpy, embeds the test
texts the same way, brute-force cosine similarity (one matrix product), and the same
similarity-weighted vote over the K (default 8) nearest as src/knn.rs (softmax weights
exp((s - s_max) / 0.1), ties broken by the nearest). Default ONNX Runtime session
options. Prints one JSON object (accuracy and seconds per step, model load included).
"""

import json
import sys
import time

t_start = time.perf_counter()

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

t_imported = time.perf_counter()

model_dir, train_path, test_path = sys.argv[1:4]
k = int(sys.argv[4]) if len(sys.argv) > 4 else 8
batch = int(sys.argv[5]) if len(sys.argv) > 5 else 32
TEMPERATURE = 0.1


def read(path):
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    return [r["text"] for r in rows], [r["label"] for r in rows]


session = ort.InferenceSession(f"{model_dir}/model.onnx", providers=["CPUExecutionProvider"])
tokenizer = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
tokenizer.enable_truncation(max_length=256)
tokenizer.enable_padding()  # pad to the longest text of each batch
input_names = {i.name for i in session.get_inputs()}
t_loaded = time.perf_counter()

tokens = {"real": 0, "padded": 0}


def embed(texts):
    out = []
    for i in range(0, len(texts), batch):
        enc = tokenizer.encode_batch(texts[i : i + batch])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in input_names:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feed)[0]  # [batch, seq, dim]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        out.append(pooled)
        tokens["real"] += int(mask.sum())
        tokens["padded"] += int(mask.size)
    return np.concatenate(out)


train_texts, train_labels = read(train_path)
test_texts, test_labels = read(test_path)
t_read = time.perf_counter()
train_vecs = embed(train_texts)
t_train = time.perf_counter()
test_vecs = embed(test_texts)
t_test = time.perf_counter()

sims = test_vecs @ train_vecs.T  # cosine: both sides are normalised
nearest = np.argsort(-sims, axis=1)[:, :k]
correct = 0
for row, idx in enumerate(nearest):
    s = sims[row, idx]
    w = np.exp((s - s.max()) / TEMPERATURE)
    votes = {}
    for j, wj in zip(idx, w):  # nearest first: dict order breaks ties
        votes[train_labels[j]] = votes.get(train_labels[j], 0.0) + wj
    best = max(votes.items(), key=lambda kv: kv[1])[0]
    correct += best == test_labels[row]
t_done = time.perf_counter()

print(
    json.dumps(
        {
            "train_examples": len(train_texts),
            "test_tickets": len(test_texts),
            "k": k,
            "batch_size": batch,
            "accuracy": round(correct / len(test_texts), 4),
            "onnxruntime": ort.__version__,
            "intra_op_threads": "onnxruntime default",
            "tokens_real": tokens["real"],
            "tokens_padded": tokens["padded"],
            "import_seconds": round(t_imported - t_start, 3),
            "load_seconds": round(t_loaded - t_imported, 3),
            "embed_train_seconds": round(t_train - t_read, 3),
            "embed_test_seconds": round(t_test - t_train, 3),
            "search_vote_seconds": round(t_done - t_test, 3),
            "in_script_seconds": round(t_done - t_start, 3),
        }
    )
)
