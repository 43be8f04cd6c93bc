"""The contrastive loss of facerec's model B by plain loops over the pairs, for
crates/losses/tests/contrastive.rs: reads one case as JSON on stdin,

    {"features": [[...]], "labels": [...], "margin": m}

and prints the loss and its gradient with respect to the features (PyTorch autograd, float64):

    L = mean over same-identity pairs i < j of ||x_i - x_j||^2 / 2
      + mean over different-identity pairs i < j of max(0, m - ||x_i - x_j||)^2 / 2
"""

import json
import sys

import torch


def main():
    case = json.load(sys.stdin)
    x = torch.tensor(case["features"], dtype=torch.float64, requires_grad=True)
    y = case["labels"]
    m = case["margin"]
    positive, negative = [], []
    for i in range(len(y)):
        for j in range(i + 1, len(y)):
            diff = x[i] - x[j]
            if y[i] == y[j]:
                positive.append(0.5 * diff.dot(diff))
            else:
                negative.append(0.5 * torch.clamp(m - diff.norm(), min=0.0) ** 2)
    loss = sum(torch.stack(t).mean() for t in (positive, negative) if t)
    loss.backward()
    json.dump({"loss": loss.item(), "grad": x.grad.tolist()}, sys.stdout)


if __name__ == "__main__":
    main()
