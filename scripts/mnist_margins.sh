#!/usr/bin/env bash
# The MNIST figures of docs/configuration.md for the margin losses: LeNets++ with 16-D features,
# batch 128, 150 steps at lr 0.01, CosFace (scale 16, margin 0.2) with and without gradient
# clipping (clip_grad_norm 1) and ArcFace (scale 16, margin 0.3) with it; prints each run's test
# accuracy on the 10,000 MNIST test images.
#   scripts/mnist_margins.sh        (after scripts/setup.sh; builds facerec)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
f=target/release/facerec
[[ -x $f ]] || cargo build --release --locked -p facerec
work=${FACEREC_MARGINS_DIR:-runs/mnist_margins}
mkdir -p "$work"
run() { # name, [loss] table, the clipping line of [optim]
    cat >"$work/$1.toml" <<TOML
description = "LeNets++ 16-D on MNIST: $1"
seed = 1
[data]
kind = "mnist"
dir = "data/mnist"
[model.backbone]
name = "lenet_pp"
feature_dim = 16
[loss]
$2
[optim]
lr = 0.01
momentum = 0.9
weight_decay = 5e-4
batch_size = 128
$3
[schedule]
steps = 150
TOML
    $f train "$work/$1.toml" --run-dir "$work/$1" --overwrite -q >/dev/null
    python3 -c "import json,sys; r=json.load(open('$work/$1/report.json')); print(f\"$1: test accuracy {100*r['test_accuracy']:.1f} %\")"
}
run cosface_clip1 $'name = "cosface"\nscale = 16.0\nmargin = 0.2' "clip_grad_norm = 1.0"
run cosface_noclip $'name = "cosface"\nscale = 16.0\nmargin = 0.2' ""
run arcface_clip1 $'name = "arcface"\nscale = 16.0\nmargin = 0.3' "clip_grad_norm = 1.0"
