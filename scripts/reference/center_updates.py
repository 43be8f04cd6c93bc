"""pytorch-center-loss's training step on the centers, for crates/losses/tests/center_updates.rs.

The `CenterLoss` module below is KaiyangZhou/pytorch-center-loss's `center_loss.py` (MIT
licence) as published, and `step` is the centers' part of that repository's `main.py` training
loop: the loss is scaled by `weight_cent`, backward, the centers' gradient divided by
`weight_cent` ("by doing so, weight_cent would not impact on the learning of centers"), then
`torch.optim.SGD(lr=lr_cent)` steps them. Reads one case as JSON on stdin:

    {"centers": [[...]], "weight_cent": w, "lr_cent": r,
     "steps": [{"features": [[...]], "labels": [...]}, ...]}

and prints, for each step, the loss (before the step), the features' gradient of
`weight_cent * loss`, and the centers after the step, as JSON.
"""

import json
import sys

import torch
import torch.nn as nn


class CenterLoss(nn.Module):
    """Center loss (pytorch-center-loss, as published; float64 here)."""

    def __init__(self, num_classes, feat_dim, centers):
        super().__init__()
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.centers = nn.Parameter(centers.clone())

    def forward(self, x, labels):
        batch_size = x.size(0)
        distmat = torch.pow(x, 2).sum(dim=1, keepdim=True).expand(batch_size, self.num_classes) + \
            torch.pow(self.centers, 2).sum(dim=1, keepdim=True).expand(self.num_classes, batch_size).t()
        distmat.addmm_(x, self.centers.t(), beta=1, alpha=-2)

        classes = torch.arange(self.num_classes).long()
        labels = labels.unsqueeze(1).expand(batch_size, self.num_classes)
        mask = labels.eq(classes.expand(batch_size, self.num_classes))

        dist = distmat * mask.float()
        loss = dist.clamp(min=1e-12, max=1e+12).sum() / batch_size
        return loss


def main():
    case = json.load(sys.stdin)
    centers = torch.tensor(case["centers"], dtype=torch.float64)
    criterion = CenterLoss(centers.shape[0], centers.shape[1], centers)
    optimizer = torch.optim.SGD(criterion.parameters(), lr=case["lr_cent"])
    weight = case["weight_cent"]
    out = []
    for step in case["steps"]:
        x = torch.tensor(step["features"], dtype=torch.float64, requires_grad=True)
        y = torch.tensor(step["labels"], dtype=torch.int64)
        loss = criterion(x, y)
        optimizer.zero_grad()
        (loss * weight).backward()
        for param in criterion.parameters():
            param.grad.data *= 1.0 / weight
        optimizer.step()
        out.append({"loss": loss.item(), "feature_grad": x.grad.tolist(), "centers": criterion.centers.detach().tolist()})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
