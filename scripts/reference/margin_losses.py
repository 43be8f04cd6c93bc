"""Margin losses in plain PyTorch, as insightface's arcface_torch writes them (SphereFace as
sphereface_pytorch does), for crates/losses/tests/margins.rs and sphereface.rs: reads one case
as JSON on stdin, prints the loss and the logits (scale x cosine; ||x|| x cosine for
SphereFace) as JSON.

    {"loss": "cosface" | "arcface" | "combined_margin" | "sphereface", "features": [[...]],
     "weights": [[...]], "labels": [...], "scale": s, "margin": m, "easy_margin": bool,
     "m1": ..., "m2": ..., "m3": ..., "lambda": (sphereface)}
"""

import json
import math
import sys

import torch
import torch.nn.functional as F


def target_logits(case, cos):
    """The target class's cosine with its margin, for each row of `cos` [N] (float64)."""
    name = case["loss"]
    if name == "cosface":
        return cos - case["margin"]
    if name == "arcface":
        m = case["margin"]
        cos = cos.clamp(-1 + 1e-7, 1 - 1e-7)
        sine = torch.sqrt(1.0 - cos * cos)
        phi = cos * math.cos(m) - sine * math.sin(m)
        if case.get("easy_margin", False):
            return torch.where(cos > 0, phi, cos)
        return torch.where(cos > math.cos(math.pi - m), phi, cos - math.sin(math.pi - m) * m)
    if name == "combined_margin":
        theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
        return torch.cos(case["m1"] * theta + case["m2"]) - case["m3"]
    raise SystemExit(f"unknown loss {name}")


def sphereface(case, x, w, y):
    """A-Softmax as clcarwin/sphereface_pytorch's AngleLinear + AngleLoss compute it (Chebyshev
    cos(m theta), k from acos, the target blended with lambda), for a given lambda."""
    m, lamb = case["margin"], case["lambda"]
    cos_m = [
        lambda c: c ** 0, lambda c: c, lambda c: 2 * c ** 2 - 1, lambda c: 4 * c ** 3 - 3 * c,
        lambda c: 8 * c ** 4 - 8 * c ** 2 + 1, lambda c: 16 * c ** 5 - 20 * c ** 3 + 5 * c,
    ][m]
    xlen = x.pow(2).sum(1).pow(0.5).view(-1, 1)
    cos_theta = (x.mm(F.normalize(w, dim=1).t()) / xlen).clamp(-1 + 1e-7, 1 - 1e-7)
    k = (m * cos_theta.acos() / math.pi).floor().clamp(max=m - 1)
    phi_theta = (-1.0) ** k * cos_m(cos_theta) - 2 * k
    cos_theta, phi_theta = cos_theta * xlen, phi_theta * xlen
    index = F.one_hot(y, w.shape[0]).bool()
    output = cos_theta.clone()
    output[index] -= cos_theta[index] / (1 + lamb)
    output[index] += phi_theta[index] / (1 + lamb)
    loss = F.cross_entropy(output, y)
    return {"loss": loss.item(), "logits": cos_theta.tolist()}


def main():
    case = json.load(sys.stdin)
    x = torch.tensor(case["features"], dtype=torch.float64)
    w = torch.tensor(case["weights"], dtype=torch.float64)
    y = torch.tensor(case["labels"], dtype=torch.int64)
    if case["loss"] == "sphereface":
        print(json.dumps(sphereface(case, x, w, y)))
        return
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()
    logits = cos.clone()
    rows = torch.arange(len(y))
    logits[rows, y] = target_logits(case, cos[rows, y])
    loss = F.cross_entropy(case["scale"] * logits, y)
    print(json.dumps({"loss": loss.item(), "logits": (case["scale"] * cos).tolist()}))


if __name__ == "__main__":
    main()
