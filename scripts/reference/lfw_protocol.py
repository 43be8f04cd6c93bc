#!/usr/bin/env python3
"""Independent numpy implementation of the LFW verification protocol, to check facerec's.

Given features (.npy, [N, D] float32), the LFW-relative image path of each row, pairs.txt and
the folds to use: cosine similarity per pair; for each fold, the accuracy-maximising threshold
on the other folds (exhaustive over midpoints of the sorted training scores), applied to the
fold. Prints JSON: per-fold accuracy and threshold, mean and (population) std.

  lfw_protocol.py --features f.npy --index paths.txt --pairs data/lfw/pairs.txt --folds 1,2,3
"""
import argparse
import json
import sys

import numpy as np


def read_pairs(path):
    with open(path) as f:
        lines = [l.split() for l in f if l.strip()]
    folds, per = int(lines[0][0]), int(lines[0][1])
    out, k = [], 1
    img = lambda name, i: f"{name}/{name}_{int(i):04d}.jpg"
    for fold in range(folds):
        for same in (True, False):
            for _ in range(per):
                r = lines[k]
                k += 1
                if same:
                    out.append((img(r[0], r[1]), img(r[0], r[2]), True, fold))
                else:
                    out.append((img(r[0], r[1]), img(r[2], r[3]), False, fold))
    return out


def best_threshold(scores, same):
    s = np.sort(np.unique(scores))
    candidates = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]])
    accs = [np.mean((scores >= t) == same) for t in candidates]
    return candidates[int(np.argmax(accs))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--folds", required=True, help="1-based, comma-separated")
    a = ap.parse_args()
    feats = np.load(a.features).astype(np.float64)
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    with open(a.index) as f:
        row = {l.strip(): i for i, l in enumerate(f) if l.strip()}
    folds = [int(x) - 1 for x in a.folds.split(",")]
    pairs = [p for p in read_pairs(a.pairs) if p[3] in folds]
    scores = np.array([feats[row[p[0]]] @ feats[row[p[1]]] for p in pairs])
    same = np.array([p[2] for p in pairs])
    fold = np.array([p[3] for p in pairs])
    accs, ths = [], []
    for k in folds:
        t = best_threshold(scores[fold != k], same[fold != k])
        accs.append(float(np.mean((scores[fold == k] >= t) == same[fold == k])))
        ths.append(float(t))
    json.dump({"fold_accuracy": accs, "fold_threshold": ths, "mean": float(np.mean(accs)), "std": float(np.std(accs))}, sys.stdout)


if __name__ == "__main__":
    main()
