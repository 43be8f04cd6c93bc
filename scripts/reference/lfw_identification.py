#!/usr/bin/env python3
"""Independent numpy implementation of closed-set identification on LFW, to check facerec's.

The protocol (facerec's `lfw.identification`): the identities are those of the pairs of the
chosen folds; every image on disk of those with at least two images takes part, and the pairs'
own images (so identities with one image are there too). Each identity's lowest-numbered image
is its gallery entry, the others are probes; identities with one image are gallery distractors.
A probe's rank is the position of its identity's gallery entry when the gallery is sorted by
cosine similarity to the probe (most similar first); CMC(k) is the fraction of probes of rank
<= k, rank-1 is CMC(1).

The script first checks that the rows given (--index) are exactly that set of images, then
prints JSON: identities, gallery, probes, rank1, cmc (ranks 1..--max-rank).

  lfw_identification.py --features f.npy [--mirror m.npy] --index paths.txt \
      --pairs data/lfw/pairs.txt --images data/lfw/images --folds 1,2 [--max-rank 10]
"""
import argparse
import json
import os
import sys

import numpy as np

from lfw_protocol import read_pairs

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm")


def expected_images(pairs, images_root):
    ids = {p[i].split("/")[0] for p in pairs for i in (0, 1)}
    wanted = {p[i] for p in pairs for i in (0, 1)}
    for name in ids:
        files = [f for f in os.listdir(os.path.join(images_root, name)) if f.lower().endswith(IMAGE_EXTENSIONS)]
        if len(files) >= 2:
            wanted.update(f"{name}/{f}" for f in files)
    return wanted


def protocol_arguments(description):
    """The arguments both LFW identification references take (--max-rank is this one's)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--features", required=True)
    ap.add_argument("--mirror", help="features of the mirrored images, same rows")
    ap.add_argument("--index", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--images", required=True, help="the LFW images folder")
    ap.add_argument("--folds", required=True, help="1-based, comma-separated")
    return ap


def load_protocol_features(a):
    """The features (float64, image and mirror concatenated when given) and their image paths,
    checked to be exactly the protocol's images of the chosen folds' identities."""
    feats = np.load(a.features).astype(np.float64)
    if a.mirror:
        feats = np.concatenate([feats, np.load(a.mirror).astype(np.float64)], axis=1)
    with open(a.index) as f:
        paths = [l.strip() for l in f if l.strip()]
    assert len(paths) == feats.shape[0], (len(paths), feats.shape)
    folds = {int(x) - 1 for x in a.folds.split(",")}
    pairs = [p for p in read_pairs(a.pairs) if p[3] in folds]
    want = expected_images(pairs, a.images)
    if set(paths) != want:
        extra, missing = sorted(set(paths) - want), sorted(want - set(paths))
        sys.exit(f"rows differ from the protocol's images: {len(extra)} extra {extra[:5]}, {len(missing)} missing {missing[:5]}")
    return feats, paths


def main():
    ap = protocol_arguments(__doc__)
    ap.add_argument("--max-rank", type=int, default=10)
    a = ap.parse_args()
    feats, paths = load_protocol_features(a)

    identity = [p.split("/")[0] for p in paths]
    by_identity = {}
    for i, p in enumerate(paths):
        by_identity.setdefault(identity[i], []).append(i)
    gallery_of = {name: min(rows, key=lambda r: paths[r]) for name, rows in by_identity.items()}
    names = sorted(gallery_of)
    gallery = np.array([gallery_of[n] for n in names])
    column = {n: j for j, n in enumerate(names)}
    probes = np.array([i for i in range(len(paths)) if gallery_of[identity[i]] != i])
    truth = np.array([column[identity[i]] for i in probes])

    x = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    sim = x[probes] @ x[gallery].T  # [probes, gallery]
    order = np.argsort(-sim, axis=1, kind="stable")
    ranks = np.argmax(order == truth[:, None], axis=1) + 1
    cmc = [float(np.mean(ranks <= k)) for k in range(1, a.max_rank + 1)]
    json.dump({"identities": len(names), "gallery": len(gallery), "probes": len(probes), "rank1": cmc[0], "cmc": cmc}, sys.stdout)


if __name__ == "__main__":
    main()
