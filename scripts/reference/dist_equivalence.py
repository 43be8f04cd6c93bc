"""Why crates/train/tests/distributed.rs compares 1 x 64 with 2 x 32 after 6 steps, and with
what tolerance: a PyTorch replica of facerec's step (LeNets++, softmax + center loss with the
Eq. 4 center update, SGD with momentum and weight decay) run from a facerec checkpoint

  (A) as one process with the global batch of 64,
  (B) as two ranks of 32 (gradients averaged, center step on the gathered batch),
  (C) as (A) from weights perturbed by one float32 ulp,
  and three mistakes: a rank's own gradient instead of the average, the sum instead of the
  average, the center step on one rank's half of the batch,

in float32 and float64, printing how far each run drifts from (A).

    .deps/venv/bin/python scripts/reference/dist_equivalence.py runs/<run>/checkpoints/step-*.safetensors [steps]

What it showed (from the step-5 checkpoint of a 640-image MNIST run, 5 steps): (B) agrees with
(A) to 1e-16 in float64, so the data-parallel step is exact in exact arithmetic; in float32 (B)
drifts no more than a one-ulp perturbation does (losses 4e-7 vs 8e-6, momentum 3e-4 vs 6e-4):
what remains is rounding, amplified by the dynamics (10 steps take a one-ulp perturbation to
1e-4 in the loss, in float64 too). The mistakes move the losses by 5e-5 (center step on half
the batch, which also moves the centers by 3e-2) to 1e-1 (a rank's own gradient).
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from models import LenetPP  # noqa: E402

torch.set_num_threads(1)
ck = load_file(sys.argv[1])
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
root = __file__.rsplit("/", 3)[0] + "/data/mnist/"
N = 640
raw = open(root + "train-images-idx3-ubyte", "rb").read()[16:16 + N * 784]
lab = open(root + "train-labels-idx1-ubyte", "rb").read()[8:8 + N]
X = (torch.tensor(np.frombuffer(raw, np.uint8).reshape(N, 1, 28, 28).copy()).float() - 127.5) / 128
Y = torch.tensor(np.frombuffer(lab, np.uint8).astype(np.int64))
perm = torch.randperm(N, generator=torch.Generator().manual_seed(0))


def run(dtype, ranks=1, perturb=False, bug=None, lr=0.01, lam=0.01, alpha=0.5, wd=5e-4):
    net = LenetPP().to(dtype)
    net.load_state_dict({k[len("backbone."):]: v.to(dtype) for k, v in ck.items() if k.startswith("backbone.")})
    W = ck["head.fc.weight"].to(dtype).clone().requires_grad_()
    b = ck["head.fc.bias"].to(dtype).clone().requires_grad_()
    named = [(f"backbone.{k}", p) for k, p in net.named_parameters()] + [("head.fc.weight", W), ("head.fc.bias", b)]
    params = [p for _, p in named]
    mom = [ck[f"momentum.{n}"].to(dtype).clone() for n, _ in named]
    centers = ck["center.centers"].to(dtype).clone()
    if perturb:
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for p in params:
                p.mul_(1 + torch.finfo(torch.float32).eps * torch.sign(torch.randn(p.shape, generator=g, dtype=dtype)))
    losses = []
    for s in range(steps):
        idx = perm[s * 64:(s + 1) * 64]
        xs, ys = X[idx].to(dtype), Y[idx]
        parts = list(zip(xs.chunk(ranks), ys.chunk(ranks)))
        if bug == "own gradient":
            parts = parts[:1]  # rank 0 steps with its half's gradient alone
        for p in params:
            p.grad = None
        feats, total = [], 0.0
        for x, y in parts:
            f = net(x)
            d = f - centers[y]
            loss = F.cross_entropy(f @ W.t() + b, y) + lam * (d ** 2).sum() / (2 * len(y))
            loss.backward()  # accumulates: the sum over ranks
            feats.append(f.detach())
            total += loss.item()
        with torch.no_grad():
            for p in params:
                p.grad /= 1 if bug == "sum" else len(parts)
            f = torch.cat(feats)
            y = ys[:len(f)]
            if bug == "half centers":
                f, y = feats[0], ys[:len(feats[0])]
            cls, inv, cnt = torch.unique(y, return_inverse=True, return_counts=True)
            sums = torch.zeros(len(cls), f.shape[1], dtype=dtype).index_add_(0, inv, f - centers[y])
            centers.index_add_(0, cls, alpha * sums / (1 + cnt.to(dtype)).unsqueeze(1))
            for i, p in enumerate(params):
                g = p.grad + (wd * p if p.dim() >= 2 else 0)
                mom[i].mul_(0.9).add_(g)
                p.sub_(lr * mom[i])
        losses.append(total / len(parts))
    flat = lambda ts: torch.cat([t.detach().flatten() for t in ts])  # noqa: E731
    return np.array(losses), flat(params), flat(mom), centers


for dtype in (torch.float32, torch.float64):
    la, wa, ma, ca = run(dtype)
    print(dtype)
    variants = [("2 x 32", dict(ranks=2)), ("1-ulp", dict(perturb=True))]
    if dtype == torch.float32:
        variants += [(bug, dict(ranks=2, bug=bug)) for bug in ("own gradient", "sum", "half centers")]
    for name, kw in variants:
        lb, wb, mb, cb = run(dtype, **kw)
        print(f"  {name:13} loss diffs {' '.join('%.1e' % v for v in np.abs(la - lb))}"
              f"  weights {(wa - wb).abs().max():.1e} momentum {(ma - mb).abs().max():.1e} centers {(ca - cb).abs().max():.1e}")
