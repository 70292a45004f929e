"""Prototype (not part of the product): which ranking finds flipped labels best, on the
product's own vectors. Input: a `triage export` file. 5 % of labels are flipped to a random
other label (numpy default_rng(seed)); every rule is scored by precision at N (N = flipped).

usage: python doctor_rules.py EXPORT NAME SEEDS     (one JSON line per seed)
needs: numpy, scipy, scikit-learn (1.9.1), cleanlab (2.9.0); OMP_NUM_THREADS=1 is enough.
Results: docs/accuracy.md, "The corpus doctor".
"""
import json, sys
import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from cleanlab.filter import find_label_issues


def load_export(path):
    X, y, ids, texts = [], [], [], []
    with open(path) as f:
        header = json.loads(f.readline())
        for line in f:
            r = json.loads(line)
            X.append(r["vector"]); p = r["payload"]
            y.append(p["label"]); ids.append(p["id"]); texts.append(p["text"])
    return np.array(X, dtype=np.float32), y, ids, texts

def flip(y, rate, seed):
    rng = np.random.default_rng(seed)
    n = len(y); k = int(round(n * rate))
    idx = rng.choice(n, size=k, replace=False)
    labels = sorted(set(y))
    y2 = list(y)
    for i in idx:
        others = [l for l in labels if l != y[i]]
        y2[i] = others[rng.integers(len(others))]
    mask = np.zeros(n, bool); mask[idx] = True
    return y2, mask

def oof_lr(X, yi, L, C, seed=0, folds=5):
    P = np.zeros((len(yi), L))
    kf = KFold(folds, shuffle=True, random_state=seed)
    for tr, te in kf.split(X, yi):
        m = LogisticRegression(C=C, max_iter=1000, tol=1e-4)
        m.fit(X[tr], yi[tr])
        pr = np.zeros((len(te), L)); pr[:, m.classes_] = m.predict_proba(X[te])
        P[te] = pr
    return P

def knn_loo(X, yi, L, k, temp=None):
    """Leave-one-out kNN vote: similarity-weighted label shares among the k nearest others."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    n = len(yi)
    V = np.zeros((n, L)); NB = np.zeros((n, k), int); SIM = np.zeros((n, k))
    for s in range(0, n, 2048):
        S = Xn[s:s+2048] @ Xn.T
        for j in range(S.shape[0]): S[j, s + j] = -np.inf
        nb = np.argpartition(-S, k, axis=1)[:, :k]
        sims = np.take_along_axis(S, nb, 1)
        order = np.argsort(-sims, 1); nb = np.take_along_axis(nb, order, 1); sims = np.take_along_axis(sims, order, 1)
        NB[s:s+len(nb)] = nb; SIM[s:s+len(nb)] = sims
    W = np.maximum(SIM, 0) if temp is None else np.exp(SIM / temp)
    for j in range(k):
        np.add.at(V, (np.arange(n), yi[NB[:, j]]), W[:, j])
    V /= V.sum(1, keepdims=True) + 1e-12
    return V, NB, SIM

def prec_at_n(score, mask):
    N = mask.sum()
    top = np.argsort(-score, kind="stable")[:N]
    return mask[top].mean()


X, y, ids, texts = load_export(sys.argv[1]); name = sys.argv[2]
labels = sorted(set(y)); L = len(labels); li = {l: i for i, l in enumerate(labels)}
Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
S = Xn @ Xn.T; np.fill_diagonal(S, -np.inf)
for seed in [int(s) for s in sys.argv[3].split(",")]:
    y2, mask = flip(y, 0.05, seed); yi = np.array([li[l] for l in y2]); r = np.arange(len(yi)); N = int(mask.sum())
    pn = lambda s: round(float(prec_at_n(s, mask)), 4)
    res = {"dataset": name, "seed": seed, "n": len(yi), "flipped": N}
    P1 = oof_lr(X, yi, L, 1.0, seed=seed); P = oof_lr(X, yi, L, 10.0, seed=seed)
    pg = P[r, yi]
    res["baseline_lr_C1_1-p"] = pn(1 - P1[r, yi]); res["baseline_lr_C10_1-p"] = pn(1 - pg)
    t = np.array([P[yi == c, c].mean() for c in range(L)])
    res["cl_self_confidence_over_class_threshold"] = pn(1 - pg / t[yi])
    Pm = P.copy(); Pm[r, yi] = -1
    res["cl_normalized_margin"] = pn(Pm.max(1) - pg)
    for rb in ["self_confidence", "normalized_margin"]:
        idx = find_label_issues(yi, P, filter_by="prune_by_noise_rate", return_indices_ranked_by=rb)
        s = np.full(len(yi), -1.0); s[idx] = np.arange(len(idx), 0, -1)
        res[f"cleanlab_lib_prune_by_noise_rate_{rb}"] = pn(s)
    V, _, _ = knn_loo(X, yi, L, 8, temp=0.05)
    res["knn_vote_1-v"] = pn(1 - V[r, yi])
    res["mix_0.5head_0.5vote_1-p"] = pn(1 - (P[r, yi] + V[r, yi]) / 2)
    Pe = np.mean([P] + [oof_lr(X, yi, L, 10.0, seed=seed + 100 + s) for s in range(2)], axis=0)
    res["ensemble_3_fold_seeds_1-p"] = pn(1 - Pe[r, yi])
    kk = np.zeros((len(yi), L), np.float32)
    for c in range(L):
        kk[:, c] = -np.partition(-S[:, yi == c], 2, axis=1)[:, :3].mean(1)
    o = kk.copy(); o[r, yi] = -9; gap = o.max(1) - kk[r, yi]
    res["knn_label_gap_top3"] = pn(gap)
    res["CHOSEN_rank(head 1-p)+rank(knn_label_gap_top3)"] = pn(rankdata(1 - pg) + rankdata(gap))
    print(json.dumps(res), flush=True)
