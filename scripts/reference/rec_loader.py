#!/usr/bin/env python3
"""The reference for facerec's .rec loader: a PyTorch DataLoader over an insightface RecordIO
set as arcface_torch's MXFaceDataset reads it (decode, random horizontal flip, ToTensor,
Normalize(0.5, 0.5)), with an independent RecordIO reader (no mxnet: it does not install on this
Python) and OpenCV's imdecode, shuffled batches of --batch from --workers worker processes.

  rec_loader.py --rec lfw.rec --workers 2 --batch 128 --batches 40

Prints one JSON object: images per second over the timed batches (after 2 warm-up batches).
"""
import argparse
import json
import mmap
import os
import struct
import time

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

MAGIC = 0xCED7230A


class RecDataset(Dataset):
    def __init__(self, path):
        self.path = path
        self.offsets = {}
        with open(os.path.splitext(path)[0] + ".idx") as f:
            for line in f:
                k, o = line.split("\t")
                self.offsets[int(k)] = int(o)
        self.data = None
        header, _ = self.unpack(self.record(0))
        self.keys = list(range(1, int(header[0])))

    def record(self, key):
        if self.data is None:  # mapped in each worker process
            f = open(self.path, "rb")
            self.data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        pos, out = self.offsets[key], b""
        while True:
            magic, lrec = struct.unpack_from("<II", self.data, pos)
            assert magic == MAGIC
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            out += self.data[pos + 8:pos + 8 + length]
            pos += 8 + length + (-length % 4)
            if cflag in (0, 3):
                return out
            out += struct.pack("<I", MAGIC)

    @staticmethod
    def unpack(rec):
        flag, label, _, _ = struct.unpack_from("<IfQQ", rec, 0)
        labels = struct.unpack_from(f"<{flag}f", rec, 24) if flag > 0 else (label,)
        return labels, rec[24 + 4 * flag:]

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, i):
        labels, payload = self.unpack(self.record(self.keys[i]))
        img = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        if np.random.rand() < 0.5:  # RandomHorizontalFlip
            img = img[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
        return ((x / 255) - 0.5) / 0.5, int(labels[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rec", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--batches", type=int, default=40)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ds = RecDataset(a.rec)
    loader = DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=a.workers, drop_last=True, persistent_workers=False)
    n, t0 = 0, None
    for i, (x, y) in enumerate(loader):
        if i == 2:
            t0 = time.perf_counter()
        elif i > 2:
            n += x.shape[0]
        if i == a.batches + 2:
            break
    dt = time.perf_counter() - t0
    print(json.dumps({"images_per_s": n / dt, "workers": a.workers, "batch": a.batch, "images": n}))


if __name__ == "__main__":
    main()
