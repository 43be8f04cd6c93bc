#!/usr/bin/env python3
"""The PyTorch-in-Python reference for `facerec bench`: the same training step (backbone from
the experiment TOML, linear classifier + cross-entropy, center loss with the paper's feature
gradient and Eq. 4 center update, SGD with momentum and weight decay on weights) on the same
synthetic batch, timed the same way (median of N steps after 3 warm-up steps).

  bench_train.py --config configs/lfw_faceresnet_small_center.toml --batch 64 --classes 1000 \
      --steps 20 --threads 2 [--set loss.lambda=0]
"""
import argparse
import os
import sys
import time
import tomllib

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import build  # noqa: E402


def override(cfg, assignment):
    key, value = assignment.split("=", 1)
    parts = key.split(".")
    d = cfg
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    try:
        d[parts[-1]] = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        d[parts[-1]] = value


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--extract", action="store_true", help="time feature extraction (image + mirror) instead")
    a = ap.parse_args()
    with open(a.config, "rb") as f:
        cfg = tomllib.load(f)
    for s in a.set:
        override(cfg, s)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    backbone_cfg = dict(cfg["model"]["backbone"])
    # The config's device ("auto": a GPU when there is one) and precision ("bf16": the backbone
    # under torch.autocast, as facerec's `precision = "bf16"`).
    want = str(cfg.get("device", "auto"))
    dev = torch.device("cuda" if want == "auto" and torch.cuda.is_available() else ("cpu" if want == "auto" else want))
    bf16 = cfg.get("precision", "fp32") == "bf16"
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    def backbone(inp):
        if bf16:
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                return model(inp).float()
        return model(inp)

    model = build(backbone_cfg).to(dev)
    feat_dim = backbone_cfg.get("feature_dim", 2 if backbone_cfg["name"] == "lenet_pp" else 512)
    fc = torch.nn.Linear(feat_dim, a.classes).to(dev)
    lam, alpha = cfg["loss"]["lambda"], cfg["loss"]["alpha"]
    centers = torch.zeros(a.classes, feat_dim, device=dev)
    params = list(model.parameters()) + list(fc.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    o = cfg["optim"]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": o.get("weight_decay", 5e-4)}, {"params": no_decay, "weight_decay": 0.0}],
        lr=min(o["lr"], 1e-3),
        momentum=o.get("momentum", 0.9),
    )
    batch = a.batch or o["batch_size"]
    if backbone_cfg["name"] == "lenet_pp":
        shape = (backbone_cfg.get("in_channels", 1), backbone_cfg.get("input_size", 28), backbone_cfg.get("input_size", 28))
    else:
        shape = tuple(backbone_cfg.get("input_shape", (3, 112, 96)))
    x = torch.randn(batch, *shape).to(dev)
    y = torch.randint(0, a.classes, (batch,)).to(dev)
    if a.extract:
        model.eval()
        times = []
        with torch.inference_mode():
            for i in range(a.steps + 3):
                t0 = time.perf_counter()
                f = torch.cat([backbone(x), backbone(torch.flip(x, [3]))], 1)
                sync()
                del f
                if i >= 3:
                    times.append(time.perf_counter() - t0)
        times.sort()
        median = times[len(times) // 2]
        print(f"pytorch: feature extraction (image + mirror) batch {batch}: median {median:.4f} s = {batch / median:.1f} images/s")
        return
    times = []
    for i in range(a.steps + 3):
        t0 = time.perf_counter()
        feats = backbone(x)
        logits = fc(feats)
        loss = F.cross_entropy(logits, y)
        if lam > 0:
            diff = feats.detach() - centers.index_select(0, y)
            grad = diff / batch
            center_value = diff.pow(2).sum() / (2 * batch)
            loss = loss + lam * (center_value + ((feats - feats.detach()) * grad).sum())
        _ = (logits.argmax(-1) == y).sum().item()
        opt.zero_grad()
        loss.backward()
        if lam > 0:
            with torch.no_grad():
                uniq, inv, counts = torch.unique(y, sorted=True, return_inverse=True, return_counts=True)
                sums = torch.zeros(len(uniq), feat_dim, device=dev).index_add_(0, inv, diff)
                centers.index_add_(0, uniq, alpha * sums / (1 + counts.float()).unsqueeze(1))
        opt.step()
        sync()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    print(f"pytorch: {backbone_cfg['name']} batch {batch}, {dev} {'bf16' if bf16 else 'fp32'}, {torch.get_num_threads()} threads: median step {median:.4f} s = {batch / median:.1f} images/s (lambda {lam})")


if __name__ == "__main__":
    main()
