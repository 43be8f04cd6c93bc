#!/usr/bin/env python3
"""Independent numpy implementation of facerec's open-set protocols on LFW, to check
crates/eval/src/open_set.rs.

The images are those of facerec's LFW identification (every image of the identities of the
chosen folds' pairs; checked against --index first). Then:

- all-pairs verification: the full similarity matrix in float64, its upper triangle split by
  identity into genuine and impostor pairs; for each FAR f, with n impostors, k = floor(f * n)
  may be accepted: the threshold is the (k+1)-th largest impostor score (a full sort here) and
  TAR is the fraction of genuine scores strictly above it;
- open-set identification: each identity with two or more images has its lowest-numbered image
  in the gallery and the others as genuine probes; the images of one-image identities are
  impostor probes. Rank-1: no gallery entry strictly more similar than the own one. DIR at FAR
  f: the threshold from the impostor probes' best scores as above; the fraction of genuine
  probes identified at rank 1 with their own score above it.

Prints JSON with the same field names as facerec's OpenSetReport (no timing).

  lfw_open_set.py --features f.npy [--mirror m.npy] --index paths.txt \
      --pairs data/lfw/pairs.txt --images data/lfw/images --folds 1,2
"""
import json
import sys

import numpy as np

from lfw_identification import load_protocol_features, protocol_arguments

VERIFICATION_FARS = [1e-3, 1e-4, 1e-5]
IDENTIFICATION_FARS = [1e-2, 1e-1]


def rate_at_far(far, impostors, genuine, counts):
    allowed = int(np.floor(far * len(impostors) + 1e-9))
    if allowed == 0 or allowed >= len(impostors) or len(genuine) == 0:
        return {"far": far, "rate": None, "threshold": None, "false_accepts": 0}
    threshold = np.sort(impostors)[::-1][allowed]
    return {
        "far": far,
        "rate": float(np.mean(counts & (genuine > threshold))),
        "threshold": float(threshold),
        "false_accepts": int(np.sum(impostors > threshold)),
    }


def main():
    feats, paths = load_protocol_features(protocol_arguments(__doc__).parse_args())

    identity = np.array([p.split("/")[0] for p in paths])
    x = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    iu = np.triu_indices(len(paths), k=1)
    scores = sim[iu]
    same = identity[iu[0]] == identity[iu[1]]
    genuine, impostor = scores[same], scores[~same]
    del scores, same
    verification = {
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        "tar_at_far": [rate_at_far(f, impostor, genuine, np.ones(len(genuine), bool)) for f in VERIFICATION_FARS],
    }
    del genuine, impostor

    rows_of = {}
    for i, name in enumerate(identity):
        rows_of.setdefault(name, []).append(i)
    named = sorted(n for n, rows in rows_of.items() if len(rows) > 1)
    gallery = np.array([min(rows_of[n], key=lambda r: paths[r]) for n in named])
    column = {n: j for j, n in enumerate(named)}
    in_gallery = set(gallery.tolist())
    genuine_probes = np.array([i for i in range(len(paths)) if identity[i] in column and i not in in_gallery])
    impostor_probes = np.array([i for i in range(len(paths)) if identity[i] not in column])
    g_sim = sim[np.ix_(genuine_probes, gallery)]
    own = g_sim[np.arange(len(genuine_probes)), [column[identity[i]] for i in genuine_probes]]
    rank1 = ~np.any(g_sim > own[:, None], axis=1)
    impostor_best = sim[np.ix_(impostor_probes, gallery)].max(axis=1)
    identification = {
        "gallery": int(len(gallery)),
        "genuine_probes": int(len(genuine_probes)),
        "impostor_probes": int(len(impostor_probes)),
        "rank1": float(np.mean(rank1)),
        "dir_at_far": [rate_at_far(f, impostor_best, own, rank1) for f in IDENTIFICATION_FARS],
    }
    json.dump(
        {"images": len(paths), "identities": len(rows_of), "verification": verification, "identification": identification},
        sys.stdout,
    )


if __name__ == "__main__":
    main()
