#!/usr/bin/env python3
"""Weights interoperate between facerec and PyTorch.

  check_interop.py load --weights model.safetensors --inputs x.npy --features f.npy
      Builds the PyTorch twin of the backbone described in the file's metadata
      (scripts/reference/models.py), loads facerec's weights with load_state_dict(strict=True),
      runs it on the inputs and prints the max abs difference to facerec's features.
  check_interop.py export --config '{"name": "face_resnet", ...}' --out w.safetensors --inputs x.npy --features f.npy
      Initialises the twin in PyTorch (seed 0), saves its state dict as safetensors (no facerec
      metadata), and writes its features on the inputs, for facerec to load and compare. With
      --torch-save it writes torch.save({"epoch": 1, "model": state_dict}) in the zip format
      instead, the names prefixed `module.` as DataParallel does.
  check_interop.py checkpoint --checkpoint ck.pt --config '{"name": "mobilefacenet", ...}' --inputs x.npy --features f.npy
      Loads a PyTorch checkpoint with torch.load (the state dict at the top level or under
      state_dict / net_state_dict / model), builds the twin, load_state_dict(strict=True), and
      prints the max abs difference of its features to facerec's (of the imported model).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import build  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["load", "export", "checkpoint"])
    ap.add_argument("--weights")
    ap.add_argument("--checkpoint")
    ap.add_argument("--torch-save", action="store_true")
    ap.add_argument("--config")
    ap.add_argument("--out")
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--features", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.from_numpy(np.load(a.inputs))
    if a.mode == "checkpoint":
        ck = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
        for key in ("state_dict", "net_state_dict", "model"):
            if isinstance(ck, dict) and key in ck and isinstance(ck[key], dict):
                ck = ck[key]
                break
        model = build(json.loads(a.config))
        model.load_state_dict(ck, strict=True)
        model.eval()
        with torch.no_grad():
            ours = model(x).numpy()
        theirs = np.load(a.features)
        print(json.dumps({"max_abs_diff": float(np.abs(ours - theirs).max()), "max_abs": float(np.abs(ours).max()), "shape": list(ours.shape)}))
    elif a.mode == "load":
        with safe_open(a.weights, "pt") as f:
            config = json.loads(f.metadata()["backbone"])
        model = build(config)
        model.load_state_dict(load_file(a.weights), strict=True)
        model.eval()
        with torch.no_grad():
            ours = model(x).numpy()
        theirs = np.load(a.features)
        print(json.dumps({"max_abs_diff": float(np.abs(ours - theirs).max()), "shape": list(ours.shape)}))
    else:
        torch.manual_seed(0)
        model = build(json.loads(a.config))
        model.eval()
        if a.torch_save:
            wrapped = torch.nn.DataParallel(model)
            torch.save({"epoch": 1, "model": wrapped.state_dict()}, a.out)
        else:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, a.out)
        with torch.no_grad():
            np.save(a.features, model(x).numpy())
        print(json.dumps({"saved": a.out}))


if __name__ == "__main__":
    main()
