"""Margin losses in plain PyTorch, as insightface's arcface_torch writes them, for
crates/losses/tests/margins.rs: reads one case as JSON on stdin, prints the loss and the
logits (scale x cosine) as JSON.

    {"loss": "cosface" | "arcface" | "combined_margin", "features": [[...]], "weights": [[...]],
     "labels": [...], "scale": s, "margin": m, "easy_margin": bool, "m1": ..., "m2": ..., "m3": ...}
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


def main():
    case = json.load(sys.stdin)
    x = torch.tensor(case["features"], dtype=torch.float64)
    w = torch.tensor(case["weights"], dtype=torch.float64)
    y = torch.tensor(case["labels"], dtype=torch.int64)
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()
    logits = cos.clone()
    rows = torch.arange(len(y))
    logits[rows, y] = target_logits(case, cos[rows, y])
    loss = F.cross_entropy(case["scale"] * logits, y)
    print(json.dumps({"loss": loss.item(), "logits": (case["scale"] * cos).tolist()}))


if __name__ == "__main__":
    main()
