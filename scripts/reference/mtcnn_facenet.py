#!/usr/bin/env python3
"""Reference MTCNN detections from facenet-pytorch 2.6.0 itself, for crates/detect/tests/mtcnn.rs.

Runs the package's own `PNet`, `RNet`, `ONet` (with its own `.pt` weights) and `detect_face`
on images given as `.npy` arrays (H, W, 3, uint8, RGB; the test writes the pixels it decoded,
so both sides see the same input) and prints one JSON object per image:
`{"boxes": [[x1, y1, x2, y2], ...], "probs": [...], "points": [[[x, y] * 5], ...]}`.

  mtcnn_facenet.py --package .deps/facenet-pytorch-2.6.0 a.npy b.npy ...

The set-up venv has neither torchvision nor Pillow, which detect_face.py imports. Pillow is
not used on numpy input and is stubbed; torchvision's `batched_nms` is replaced by the greedy
IoU NMS below, torchvision's algorithm (sort by score, suppress IoU > threshold, continuous
coordinates), written here in plain torch. Everything else is facenet-pytorch's code.
"""
import argparse
import json
import os
import sys
import types

import numpy as np
import torch


def nms(boxes, scores, threshold):
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    suppressed = [False] * len(order)
    keep = []
    for a, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[a + 1:]:
            if suppressed[j]:
                continue
            w = (torch.minimum(x2[i], x2[j]) - torch.maximum(x1[i], x1[j])).clamp(min=0)
            h = (torch.minimum(y2[i], y2[j]) - torch.maximum(y1[i], y1[j])).clamp(min=0)
            inter = w * h
            if inter / (area[i] + area[j] - inter) > threshold:
                suppressed[j] = True
    return torch.as_tensor(keep, dtype=torch.long)


def batched_nms(boxes, scores, idxs, threshold):
    keep = []
    for c in torch.unique(idxs).tolist():
        where = torch.nonzero(idxs == c)[:, 0]
        keep.append(where[nms(boxes[where], scores[where], threshold)])
    if not keep:
        return torch.empty((0,), dtype=torch.long)
    keep = torch.cat(keep)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]


def install_stubs(package_root):
    tv = types.ModuleType("torchvision")
    tv_ops = types.ModuleType("torchvision.ops")
    tv_boxes = types.ModuleType("torchvision.ops.boxes")
    tv_boxes.batched_nms = batched_nms
    tv_tr = types.ModuleType("torchvision.transforms")
    tv_f = types.ModuleType("torchvision.transforms.functional")
    tv.ops, tv_ops.boxes, tv.transforms, tv_tr.functional = tv_ops, tv_boxes, tv_tr, tv_f
    pil = types.ModuleType("PIL")
    pil.Image = types.ModuleType("PIL.Image")
    # The package's __init__ imports the training utilities and InceptionResnetV1; load only
    # the MTCNN modules.
    pkg = types.ModuleType("facenet_pytorch")
    pkg.__path__ = [os.path.join(package_root, "facenet_pytorch")]
    sys.modules.update({
        "torchvision": tv, "torchvision.ops": tv_ops, "torchvision.ops.boxes": tv_boxes,
        "torchvision.transforms": tv_tr, "torchvision.transforms.functional": tv_f,
        "PIL": pil, "PIL.Image": pil.Image, "facenet_pytorch": pkg,
    })


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", required=True, help="folder holding the extracted facenet_pytorch package")
    ap.add_argument("images", nargs="+", help=".npy files, (H, W, 3) uint8 RGB")
    args = ap.parse_args()
    install_stubs(args.package)
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
    from facenet_pytorch.models.utils.detect_face import detect_face

    torch.set_grad_enabled(False)
    pnet, rnet, onet = PNet().eval(), RNet().eval(), ONet().eval()
    for path in args.images:
        img = np.load(path)
        boxes, points = detect_face(img, 20, pnet, rnet, onet, [0.6, 0.7, 0.7], 0.709, "cpu")
        boxes, points = np.asarray(boxes[0], dtype=np.float64), np.asarray(points[0], dtype=np.float64)
        print(json.dumps({
            "boxes": boxes[:, :4].tolist() if len(boxes) else [],
            "probs": boxes[:, 4].tolist() if len(boxes) else [],
            "points": points.tolist() if len(points) else [],
        }))


if __name__ == "__main__":
    main()
