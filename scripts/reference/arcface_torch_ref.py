#!/usr/bin/env python3
"""arcface_torch (insightface's PyTorch trainer) run as the reference for facerec's tests.

The reference's own code is imported from ../shared/reference/arcface_torch (or
$FACEREC_ARCFACE_TORCH); nothing of it is copied here. Subcommands:

  backbone --network r18 --seed 1 --inputs x.npy --out DIR
      Builds arcface_torch's `backbones.get_model(network)` (dropout 0, fp32, 512-d) after
      torch.manual_seed(seed), gives its BatchNorm layers the statistics of the inputs (one
      train-mode pass with cumulative averaging: a freshly initialised deep network in eval
      mode, with running statistics 0 and 1, overflows to NaN by depth 100), saves its state
      dict with torch.save (zip format) to DIR/ref.pt, and its embeddings of the inputs in eval
      mode (DIR/eval.npy) and then in train mode (batch statistics; DIR/train.npy).
  load --network r18 --weights model.safetensors --inputs x.npy --out f.npy
      Loads facerec's model file into the reference's model with load_state_dict(strict=True)
      and writes its eval-mode embeddings of the inputs.

Prints one JSON object on stdout (parameter count, names) for the caller's checks.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch


def reference_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "..", "..", "shared", "reference", "arcface_torch")
    path = os.path.abspath(os.environ.get("FACEREC_ARCFACE_TORCH", default))
    if not os.path.isfile(os.path.join(path, "backbones", "iresnet.py")):
        sys.exit(f"arcface_torch not found at {path} (set FACEREC_ARCFACE_TORCH to its folder)")
    return path


def get_model(network):
    sys.path.insert(0, reference_dir())
    from backbones import get_model as reference_get_model  # noqa: E402

    return reference_get_model(network, dropout=0.0, fp16=False, num_features=512)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["backbone", "load"])
    ap.add_argument("--network", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--weights")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("FACEREC_REF_THREADS", "2")))
    x = torch.from_numpy(np.load(a.inputs))
    if a.mode == "backbone":
        torch.manual_seed(a.seed)
        model = get_model(a.network)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.momentum = None  # cumulative: one pass sets the running statistics to the batch's
            m.reset_running_stats()
        model.train()
        with torch.no_grad():
            model(x)
        for m in norms:
            m.momentum = 0.1
        os.makedirs(a.out, exist_ok=True)
        state = model.state_dict()
        torch.save(state, os.path.join(a.out, "ref.pt"))
        model.eval()
        with torch.no_grad():
            np.save(os.path.join(a.out, "eval.npy"), model(x).numpy())
        model.train()
        with torch.no_grad():
            np.save(os.path.join(a.out, "train.npy"), model(x).numpy())
        print(json.dumps({"tensors": len(state), "parameters": sum(p.numel() for p in model.parameters())}))
    else:
        from safetensors.torch import load_file

        model = get_model(a.network)
        result = model.load_state_dict(load_file(a.weights), strict=True)
        model.eval()
        with torch.no_grad():
            np.save(a.out, model(x).numpy())
        print(json.dumps({"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}))


if __name__ == "__main__":
    main()
