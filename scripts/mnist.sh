#!/usr/bin/env bash
# The paper's MNIST toy experiment end to end (Wen et al., ECCV 2016, Sec. 3.1, Fig. 2/3/5):
# LeNets++ with 2-D features trained with softmax alone and with softmax + center loss for a
# sweep of lambda (alpha 0.5), then a table of test accuracy and intra-class distance, and a
# scatter plot of the test features per run (runs/<name>/features.png).
#
#   scripts/mnist.sh          quick run (default, ~6 minutes of training on 2 cores): each model
#                             sees 12,800 training images once (200 steps of 64) at lr 0.02,
#                             and is tested on the first 5,000 test images.
#   scripts/mnist.sh --full   the configs as written: 10 epochs of all 60,000 images at lr 0.01
#                             (the caffe-face schedule), all 10,000 test images. Hours on 2 cores.
#
# Installs what it needs first (scripts/setup.sh) and builds the release binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

full=0
for arg in "$@"; do
    case $arg in
        --full) full=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

scripts/setup.sh
cargo build --release --locked -p facerec
facerec=target/release/facerec

quick=()
if [[ $full == 0 ]]; then
    quick=(--set data.train_limit=12800 --set data.test_limit=5000 --set schedule.epochs=1
           --set 'schedule.milestones=[]' --set optim.lr=0.02 --set eval.disabled=true)
fi

runs=()
train() { # name config [extra --set ...]
    local name=$1 config=$2; shift 2
    echo "== $name" >&2
    "$facerec" train "$config" --name "$name" --overwrite "${quick[@]}" "$@"
    runs+=("runs/$name")
}

train mnist_lenetpp_softmax configs/mnist_lenetpp_softmax.toml
train mnist_lenetpp_center configs/mnist_lenetpp_center.toml
# The lambda sweep (the center config's own lambda, 0.01, is the run above).
for lambda in 0.001 0.1 1; do
    train "mnist_lenetpp_center_lambda$lambda" configs/mnist_lenetpp_center.toml --set loss.lambda=$lambda
done

echo
"$facerec" summary "${runs[@]}"
