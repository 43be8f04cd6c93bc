#!/usr/bin/env python3
"""Independent reference for facerec's 5-point alignment: numpy Umeyama + OpenCV warpAffine.

For each image: read with cv2.imread (libjpeg-turbo), estimate the similarity from its five
landmarks to the template with Umeyama's SVD method (as skimage.transform.SimilarityTransform
does), warp with cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT 0), convert BGR to RGB.

  align_opencv.py --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv \
      --list paths.txt --out crops.npy            # crops as an (N, H, W, 3) uint8 array
  align_opencv.py ... --bench --threads 2         # crops per second (multiprocessing pool)

Used by crates/data/tests/align_reference.rs and scripts/bench_align.sh.
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np

CAFFE_FACE = np.array(
    [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655], [62.7299, 92.2041]],
    dtype=np.float64,
)


def umeyama(src, dst):
    """Similarity (scale, rotation, translation) mapping src onto dst, least squares."""
    n = src.shape[0]
    ms, md = src.mean(0), dst.mean(0)
    sc, dc = src - ms, dst - md
    cov = dc.T @ sc / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1
    r = u @ np.diag(d) @ vt
    var = (sc ** 2).sum() / n
    scale = (s * d).sum() / var
    t = md - scale * r @ ms
    return np.hstack([scale * r, t[:, None]])


def read_landmarks(path):
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            out[fields[0]] = np.array([float(v) for v in fields[1:11]]).reshape(5, 2)
    return out


def align_one(args):
    path, pts, template, size = args
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"{path}: cannot read")
    m = umeyama(pts, template)
    crop = cv2.warpAffine(img, m, (size[1], size[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)


def init_worker():
    cv2.setNumThreads(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True)
    ap.add_argument("--landmarks", required=True)
    ap.add_argument("--list", help="file of relative image paths (default: every image with landmarks)")
    ap.add_argument("--first", type=int, help="only the first N images")
    ap.add_argument("--template", choices=["caffe_face", "insightface"], default="caffe_face")
    ap.add_argument("--out", help="write the crops as .npy")
    ap.add_argument("--bench", action="store_true", help="print crops per second")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    lms = read_landmarks(a.landmarks)
    if a.list:
        with open(a.list) as f:
            rels = [l.split()[0] for l in f if l.strip()]
    else:
        rels = sorted(lms)
    if a.first:
        rels = rels[: a.first]
    template = CAFFE_FACE + (np.array([8.0, 0.0]) if a.template == "insightface" else 0.0)
    size = (112, 96) if a.template == "caffe_face" else (112, 112)
    jobs = [(os.path.join(a.images, r), lms[r], template, size) for r in rels]

    cv2.setNumThreads(1)
    t0 = time.perf_counter()
    if a.threads > 1:
        from multiprocessing import Pool

        with Pool(a.threads, initializer=init_worker) as pool:
            crops = pool.map(align_one, jobs, chunksize=64)
    else:
        crops = [align_one(j) for j in jobs]
    dt = time.perf_counter() - t0
    if a.bench:
        print(f"opencv: {len(crops)} crops in {dt:.3f} s = {len(crops) / dt:.1f} crops/s with {a.threads} thread(s)")
    if a.out:
        np.save(a.out, np.stack(crops).astype(np.uint8))
    return 0


if __name__ == "__main__":
    sys.exit(main())
