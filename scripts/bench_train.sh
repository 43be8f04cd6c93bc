#!/usr/bin/env bash
# Training-step speed: facerec versus the same step written in PyTorch-in-Python
# (scripts/reference/bench_train.py) on the same libtorch, batch, threads and input size, run
# back to back in this invocation; then the step's GFLOP/s against the machine's sgemm peak
# measured in the same run, and the center-loss overhead at 10,000 and 100,000 classes.
#
#   scripts/bench_train.sh [STEPS=10] [THREADS=$(nproc)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
steps=${1:-10}
threads=${2:-$(nproc)}
scripts/setup.sh >/dev/null
cargo build --release --locked -p facerec 2>/dev/null
py=.deps/venv/bin/python
f=target/release/facerec
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $threads threads"

speed() { sed -E 's/.* = ([0-9.]+) images\/s.*/\1/'; }
compare() { # label config batch classes [extra --set]
    local label=$1 config=$2 batch=$3 classes=$4; shift 4
    local ours theirs
    ours=$("$f" -q bench "$config" --batch "$batch" --classes "$classes" --steps "$steps" --threads "$threads" "$@" | speed)
    local sets=()
    while [[ $# -gt 0 ]]; do sets+=("$1" "$2"); shift 2; done
    theirs=$("$py" scripts/reference/bench_train.py --config "$config" --batch "$batch" --classes "$classes" \
        --steps "$steps" --threads "$threads" "${sets[@]}" | speed)
    printf '%-34s facerec %8.1f img/s   pytorch %8.1f img/s   ratio %sx\n' "$label" "$ours" "$theirs" \
        "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')"
}

echo "== training step, facerec / PyTorch-in-Python"
compare "LeNets++ (MNIST), batch 64" configs/mnist_lenetpp_center.toml 64 10
compare "Face-ResNet small, batch 64" configs/lfw_faceresnet_small_center.toml 64 1000
compare "Face-ResNet (paper), batch 32" configs/lfw_faceresnet_small_center.toml 32 1000 \
    --set 'model.backbone.widths=[32,64,128,256,512]' --set 'model.backbone.blocks=[1,2,5,3]' \
    --set model.backbone.feature_dim=512

echo "== Face-ResNet (paper) step against the machine's sgemm peak"
"$f" -q bench configs/lfw_faceresnet_small_center.toml --batch 32 --classes 1000 --steps "$steps" --threads "$threads" --peak \
    --set 'model.backbone.widths=[32,64,128,256,512]' --set 'model.backbone.blocks=[1,2,5,3]' --set model.backbone.feature_dim=512 |
    tail -n 1

echo "== feature extraction (image + mirror, inference mode), facerec / PyTorch-in-Python"
for spec in "Face-ResNet small|configs/lfw_faceresnet_small_center.toml|" \
    "Face-ResNet (paper)|configs/lfw_faceresnet_small_center.toml|paper"; do
    IFS='|' read -r label config paper <<<"$spec"
    sets=()
    [[ -n $paper ]] && sets=(--set 'model.backbone.widths=[32,64,128,256,512]' --set 'model.backbone.blocks=[1,2,5,3]' \
        --set model.backbone.feature_dim=512)
    ours=$("$f" -q bench "$config" --batch 64 --steps "$steps" --threads "$threads" --extract "${sets[@]}" | tail -n 1 | speed)
    theirs=$("$py" scripts/reference/bench_train.py --config "$config" --batch 64 --steps "$steps" --threads "$threads" \
        --extract "${sets[@]}" | speed)
    printf '%-34s facerec %8.1f img/s   pytorch %8.1f img/s   ratio %sx\n' "$label, batch 64" "$ours" "$theirs" \
        "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')"
done

echo "== center-loss overhead: its own work (loss, gradient, Eq. 4 update) as a share of a step"
for classes in 10000 100000; do
    "$f" -q bench configs/lfw_faceresnet_small_center.toml --classes "$classes" --steps "$steps" --threads "$threads" \
        --center-overhead | tail -n 1
done

echo "== loader alone (crop cache, flips, prefetch thread) against the step's consumption"
"$f" -q bench configs/lfw_faceresnet_small_center.toml --steps "$steps" --threads "$threads" --loader | tail -n 1
