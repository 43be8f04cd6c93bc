#!/usr/bin/env python3
"""PyTorch's optimisers and learning-rate schedules, and arcface_torch's, as references for
facerec's (crates/train/src/optim.rs and schedule.rs).

  polynomial --base 0.1 --warmup 5 --total 40 --steps 45
      The rate of each optimiser step of arcface_torch's loop with its own PolynomialLRWarmup
      (lr_scheduler.py, imported from ../shared/reference/arcface_torch or
      $FACEREC_ARCFACE_TORCH): the group's lr when opt.step() runs, then scheduler.step().
  cosine --base 0.1 --total 40 --steps 45
      The same with torch.optim.lr_scheduler.CosineAnnealingLR(T_max=total).
  adamw --out DIR --steps 50 --lr 1e-3 --weight-decay 0.1
      torch.optim.AdamW over two parameters (an 8x5 weight and a bias of 5, float32, from
      numpy's seed 0) with given gradients, one per step: writes DIR/{w0,b0,gw,gb,w,b}.npy
      (initial values, the gradients of every step, the final values).

Prints the rates as one JSON list (schedules) or {"steps": n} (adamw).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch


def arcface_torch():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "..", "..", "shared", "reference", "arcface_torch")
    path = os.path.abspath(os.environ.get("FACEREC_ARCFACE_TORCH", default))
    if not os.path.isfile(os.path.join(path, "lr_scheduler.py")):
        sys.exit(f"arcface_torch not found at {path} (set FACEREC_ARCFACE_TORCH to its folder)")
    sys.path.insert(0, path)
    # arcface_torch's PolynomialLRWarmup passes `verbose=` to LRScheduler.__init__, which
    # PyTorch 2.13 no longer takes (it only printed): drop it, nothing else changes.
    base_init = torch.optim.lr_scheduler.LRScheduler.__init__

    def init(self, optimizer, last_epoch=-1, verbose=None):
        base_init(self, optimizer, last_epoch=last_epoch)

    torch.optim.lr_scheduler.LRScheduler.__init__ = init


def rates(opt, scheduler, steps):
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["polynomial", "cosine", "adamw"])
    ap.add_argument("--base", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--total", type=int, default=40)
    ap.add_argument("--power", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=45)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--out")
    a = ap.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    param = torch.nn.Parameter(torch.zeros(1))
    if a.mode == "polynomial":
        arcface_torch()
        from lr_scheduler import PolynomialLRWarmup

        opt = torch.optim.SGD([param], lr=a.base, momentum=0.9)
        print(json.dumps(rates(opt, PolynomialLRWarmup(opt, a.warmup, a.total, power=a.power), a.steps)))
    elif a.mode == "cosine":
        opt = torch.optim.SGD([param], lr=a.base, momentum=0.9)
        print(json.dumps(rates(opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.total), a.steps)))
    else:
        rng = np.random.RandomState(0)
        w0 = rng.randn(8, 5).astype(np.float32)
        b0 = rng.randn(5).astype(np.float32)
        gw = rng.randn(a.steps, 8, 5).astype(np.float32)
        gb = rng.randn(a.steps, 5).astype(np.float32)
        w, b = torch.nn.Parameter(torch.from_numpy(w0.copy())), torch.nn.Parameter(torch.from_numpy(b0.copy()))
        opt = torch.optim.AdamW([w, b], lr=a.lr, weight_decay=a.weight_decay)
        for t in range(a.steps):
            w.grad, b.grad = torch.from_numpy(gw[t]), torch.from_numpy(gb[t])
            opt.step()
        os.makedirs(a.out, exist_ok=True)
        for name, arr in [("w0", w0), ("b0", b0), ("gw", gw), ("gb", gb), ("w", w.detach().numpy()), ("b", b.detach().numpy())]:
            np.save(os.path.join(a.out, f"{name}.npy"), arr)
        print(json.dumps({"steps": a.steps}))


if __name__ == "__main__":
    main()
