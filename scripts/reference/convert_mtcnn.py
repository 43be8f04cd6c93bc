#!/usr/bin/env python3
"""Converts facenet-pytorch's MTCNN state dicts (`facenet_pytorch/data/{pnet,rnet,onet}.pt`,
PyPI facenet-pytorch==2.6.0) to safetensors with the same parameter names, which
`facerec_detect::mtcnn` loads strictly.

  convert_mtcnn.py --src <folder with pnet.pt rnet.pt onet.pt> --out <folder>

Writes `<out>/{pnet,rnet,onet}.safetensors` (float32, contiguous). Each output is written to a
temporary name and renamed, so an interrupted run leaves no half-written file behind.

Used by scripts/setup.sh.
"""
import argparse
import os
import sys

import torch
from safetensors.torch import save_file

NETS = ("pnet", "rnet", "onet")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", required=True, help="folder holding pnet.pt, rnet.pt, onet.pt")
    ap.add_argument("--out", required=True, help="folder for the .safetensors files")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for net in NETS:
        src = os.path.join(args.src, f"{net}.pt")
        if not os.path.isfile(src):
            sys.exit(f"{src}: not found")
        state = torch.load(src, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not state:
            sys.exit(f"{src}: expected a non-empty state dict, got {type(state).__name__}")
        tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in state.items()}
        dst = os.path.join(args.out, f"{net}.safetensors")
        tmp = dst + ".tmp"
        save_file(tensors, tmp, metadata={"source": "facenet-pytorch==2.6.0 facenet_pytorch/data/" + net + ".pt"})
        os.replace(tmp, dst)
        n = sum(t.numel() for t in tensors.values())
        print(f"{dst}: {len(tensors)} tensors, {n} parameters", file=sys.stderr)


if __name__ == "__main__":
    main()
