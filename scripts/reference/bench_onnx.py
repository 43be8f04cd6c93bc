#!/usr/bin/env python3
"""onnxruntime's side of scripts/bench_onnx.sh: a model written by `facerec export --onnx`
over aligned crops, timed as `facerec bench MODEL --extract --no-mirror` times facerec's path.

  bench_onnx.py --model m.onnx --images crops/ --batch 64 --steps 20 --threads 2

The first BATCH crops of the folder (sorted, repeated when fewer), read with OpenCV, turned RGB
and normalised as the model's metadata says; a CPU session with THREADS intra-op threads (one
inter-op thread, the default sequential execution, every graph optimisation); the median of
STEPS runs of the batch after 3 warm-up runs. Prints one line ending in `= N images/s`, as
`facerec bench` does.
"""
import argparse
import os
import time

import cv2
import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    h, w = (int(v) for v in meta["input_size"].split("x"))
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(a.images) for f in fs if not f.startswith("."))
    crops = []
    for i in range(a.batch):
        img = cv2.imread(files[i % len(files)])[:, :, ::-1]
        if img.shape[:2] != (h, w):  # a 112x112 crop for a 112x96 model: columns 8..104
            x0 = (img.shape[1] - w) // 2
            img = img[:, x0 : x0 + w]
        crops.append(img)
    x = ((np.stack(crops).astype(np.float32) - float(meta["input_mean"])) / float(meta["input_std"])).transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x)
    name = sess.get_inputs()[0].name
    times = []
    for i in range(a.steps + 3):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        if i >= 3:
            times.append(time.perf_counter() - t0)
    secs = sorted(times)[len(times) // 2]
    print(f"onnxruntime {ort.__version__}: {os.path.basename(a.model)} batch {a.batch}, {a.threads} threads: median {secs:.4f} s = {a.batch / secs:.1f} images/s")


if __name__ == "__main__":
    main()
