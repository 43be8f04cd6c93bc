#!/usr/bin/env python3
"""Independent numpy implementation of the LFW verification protocol, to check facerec's.

Given features (.npy, [N, D] float32), the LFW-relative image path of each row, pairs.txt and
the folds to use, for each fold k of those:
  - with --mirror, the representation of an image is its features concatenated with those of its
    mirror image (row i of the --mirror file), as in Wen et al. 2016, sec. 4.1;
  - with --pca P, a PCA to P dimensions is fitted on the images of the pairs of the *other*
    chosen folds (each image once; mean removed; axes from an SVD of the centred data, not from a
    covariance eigendecomposition as facerec does) and every image is projected on it;
  - with --subtract-mean (SphereFace's and MobileFaceNet's lfw_eval.py), the mean of the
    representations of both images of every pair of the *other* chosen folds (an image counted
    once per pair it is in) is subtracted from every representation;
  - the score of a pair is the cosine similarity of its two representations;
  - the threshold is the accuracy-maximising one on the other folds (exhaustive over midpoints of
    the sorted training scores), and the fold's accuracy is measured with it.
Prints JSON: per-fold accuracy and threshold, mean and (population) std, and the AUC of the
held-out scores (each pair scored as its own fold is: after the PCA fitted without that fold),
as the Mann-Whitney statistic P(same > different) + P(equal) / 2.

  lfw_protocol.py --features f.npy [--mirror m.npy] [--pca P] --index paths.txt \
                  --pairs data/lfw/pairs.txt --folds 1,2,3
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


def cosine(x, a, b):
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.einsum("ij,ij->i", x[a], x[b])


def pca_fit_project(x, fit_rows, dims):
    """Projection of every row of x on the `dims` principal axes of x[fit_rows]."""
    fit = x[fit_rows]
    mean = fit.mean(axis=0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    return (x - mean) @ vt[:dims].T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", required=True)
    ap.add_argument("--mirror", help="features of the mirrored images, same rows")
    ap.add_argument("--pca", type=int, default=0, help="PCA dimensions fitted on the training folds")
    ap.add_argument("--subtract-mean", action="store_true", help="subtract the training folds' mean feature")
    ap.add_argument("--index", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--folds", required=True, help="1-based, comma-separated")
    a = ap.parse_args()
    feats = np.load(a.features).astype(np.float64)
    if a.mirror:
        mirror = np.load(a.mirror).astype(np.float64)
        assert mirror.shape == feats.shape, (mirror.shape, feats.shape)
        feats = np.concatenate([feats, mirror], axis=1)
    with open(a.index) as f:
        row = {l.strip(): i for i, l in enumerate(f) if l.strip()}
    folds = [int(x) - 1 for x in a.folds.split(",")]
    pairs = [p for p in read_pairs(a.pairs) if p[3] in folds]
    ia = np.array([row[p[0]] for p in pairs])
    ib = np.array([row[p[1]] for p in pairs])
    same = np.array([p[2] for p in pairs])
    fold = np.array([p[3] for p in pairs])
    plain = cosine(feats, ia, ib)
    accs, ths = [], []
    held_out = np.zeros(len(pairs))
    for k in folds:
        train, test = fold != k, fold == k
        if a.pca > 0:
            fit_rows = np.unique(np.concatenate([ia[train], ib[train]]))
            scores = cosine(pca_fit_project(feats, fit_rows, a.pca), ia, ib)
        elif a.subtract_mean:
            mu = np.concatenate([feats[ia[train]], feats[ib[train]]]).mean(axis=0)
            scores = cosine(feats - mu, ia, ib)
        else:
            scores = plain
        t = best_threshold(scores[train], same[train])
        accs.append(float(np.mean((scores[test] >= t) == same[test])))
        held_out[test] = scores[test]
        ths.append(float(t))
    pos, neg = held_out[same], held_out[~same]
    greater = (pos[:, None] > neg[None, :]).mean()
    equal = (pos[:, None] == neg[None, :]).mean()
    json.dump({"auc": float(greater + equal / 2), "fold_accuracy": accs, "fold_threshold": ths, "mean": float(np.mean(accs)), "std": float(np.std(accs)),
               "pairs": len(pairs), "dims": int(feats.shape[1])}, sys.stdout)


if __name__ == "__main__":
    main()
