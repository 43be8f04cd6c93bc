#!/usr/bin/env python3
"""Reads insightface data files with the reference readers' logic, using only the standard
library and numpy, and checks them against the images they were made from.

- RecordIO (`train.rec` + `train.idx`): dmlc-core's record framing (magic 0xced7230a, cflag
  and length in one uint32, 4-byte padding, split records rejoined with the magic word), mxnet's
  `recordio.unpack` (IRHeader 'IfQQ' + `flag` float labels), and insightface's MXFaceDataset
  (record 0's label = [end of images, end of identity records]; images are records
  1..label[0]-1; each identity record's label is its [start, end) image range).
- Evaluation `.bin`: `pickle.load(f, encoding="bytes")` giving (bins, issame_list), as
  insightface's `verification.load_bin` does.

  check_insightface.py --rec train.rec --expect list.txt   # list: "path label" per image, in order
  check_insightface.py --bin lfw.bin --expect-bin list.txt # list: "path_a path_b same" per pair

Prints "ok: ..." and exits 0 when every payload's bytes equal the listed file's and every label
matches; exits 1 with the first difference otherwise.
"""
import argparse
import hashlib
import pickle
import struct
import sys

import numpy as np

MAGIC = 0xCED7230A


def read_idx(path):
    keys = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                k, off = line.split("\t")
                keys[int(k)] = int(off)
    return keys


def read_record(f, offset):
    f.seek(offset)
    out = b""
    first = True
    while True:
        magic, lrec = struct.unpack("<II", f.read(8))
        assert magic == MAGIC, f"bad magic at {f.tell() - 8}"
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        data = f.read(length)
        f.read((4 - length % 4) % 4)
        if not first:
            out += struct.pack("<I", MAGIC)
        out += data
        if cflag in (0, 3):
            return out
        first = False


def unpack(s):
    flag, label, id1, id2 = struct.unpack("IfQQ", s[:24])
    s = s[24:]
    if flag > 0:
        label = np.frombuffer(s, np.float32, flag)
        s = s[flag * 4:]
    return (flag, label, id1, id2), s


def md5(b):
    return hashlib.md5(b).hexdigest()


def fail(msg):
    print(f"mismatch: {msg}")
    sys.exit(1)


def check_rec(rec_path, expect_path):
    keys = read_idx(rec_path.rsplit(".", 1)[0] + ".idx")
    expected = [l.split() for l in open(expect_path) if l.strip()]
    with open(rec_path, "rb") as f:
        header, _ = unpack(read_record(f, keys[0]))
        assert header[0] > 0, "record 0 is not insightface's header record"
        img_end, id_end = int(header[1][0]), int(header[1][1])
        imgidx = list(range(1, img_end))
        if len(imgidx) != len(expected):
            fail(f"{len(imgidx)} images, expected {len(expected)}")
        for i, key in enumerate(imgidx):
            h, payload = unpack(read_record(f, keys[key]))
            label = h[1] if h[0] == 0 else h[1][0]
            path, want = expected[i]
            if int(label) != int(want):
                fail(f"image {i}: label {label}, expected {want}")
            if md5(payload) != md5(open(path, "rb").read()):
                fail(f"image {i}: payload differs from {path}")
        ranges = []
        for key in range(img_end, id_end):
            h, _ = unpack(read_record(f, keys[key]))
            ranges.append((int(h[1][0]), int(h[1][1])))
        for ident, (a, b) in enumerate(ranges):
            labels = {int(expected[k - 1][1]) for k in range(a, b)}
            if labels != {ident}:
                fail(f"identity record {ident}: range [{a}, {b}) holds labels {labels}")
    print(f"ok: {len(imgidx)} images of {len(ranges)} identities")


def check_bin(bin_path, expect_path):
    with open(bin_path, "rb") as f:
        bins, issame = pickle.load(f, encoding="bytes")
    expected = [l.split() for l in open(expect_path) if l.strip()]
    if len(issame) != len(expected) or len(bins) != 2 * len(expected):
        fail(f"{len(bins)} images / {len(issame)} pairs, expected {len(expected)} pairs")
    for i, (a, b, same) in enumerate(expected):
        if bool(issame[i]) != (same == "1"):
            fail(f"pair {i}: issame {issame[i]}, expected {same}")
        for j, path in ((2 * i, a), (2 * i + 1, b)):
            if md5(bytes(bins[j])) != md5(open(path, "rb").read()):
                fail(f"image {j} differs from {path}")
    print(f"ok: {len(issame)} pairs")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rec")
    ap.add_argument("--expect")
    ap.add_argument("--bin")
    ap.add_argument("--expect-bin")
    a = ap.parse_args()
    if a.rec:
        check_rec(a.rec, a.expect)
    if a.bin:
        check_bin(a.bin, a.expect_bin)


if __name__ == "__main__":
    main()
