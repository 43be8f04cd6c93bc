#!/usr/bin/env bash
# Training-step speed: facerec versus the same step written in PyTorch-in-Python
# (scripts/reference/bench_train.py) on the same libtorch, batch, threads and input size, run
# back to back in this invocation; then the step's GFLOP/s against the machine's sgemm peak
# measured in the same run, and the center-loss overhead at 10,000 and 100,000 classes.
#
#   [ROUNDS=3] scripts/bench_train.sh [STEPS=10] [THREADS=$(nproc)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
steps=${1:-10}
threads=${2:-$(nproc)}
scripts/setup.sh >/dev/null
cargo build --release --locked -p facerec 2>/dev/null
py=.deps/venv/bin/python
f=target/release/facerec
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $threads threads"

source scripts/lib/rounds.sh
rounds=${ROUNDS:-3}
# PY_ENV: variables for the PyTorch side only (e.g. facerec's allocator settings, below).
# (PyTorch's own LeNets++ step ranges from 184 to 245 images/s between processes here, which is
# why the sides alternate: scripts/lib/rounds.sh.)
ours() { # config batch steps [arguments both sides take: --classes, --extract, --set ...]
    local config=$1 batch=$2 n=$3
    shift 3
    "$f" -q bench "$config" --batch "$batch" --steps "$n" --threads "$threads" "$@"
}
theirs() {
    local config=$1 batch=$2 n=$3
    shift 3
    env ${PY_ENV:-} "$py" scripts/reference/bench_train.py --config "$config" --batch "$batch" --steps "$n" --threads "$threads" "$@"
}
compare() { # label config batch steps [arguments both sides take]
    local label=$1
    shift
    alternate "$label" pytorch "$@"
}

paper=(--set 'model.backbone.widths=[32,64,128,256,512]' --set 'model.backbone.blocks=[1,2,5,3]' --set model.backbone.feature_dim=512)

echo "== training step, facerec / PyTorch-in-Python (median of $rounds alternating rounds each)"
compare "LeNets++ (MNIST), batch 64" configs/mnist_lenetpp_center.toml 64 "$steps" --classes 10
compare "Face-ResNet small, batch 64" configs/lfw_faceresnet_small_center.toml 64 "$steps" --classes 1000
compare "Face-ResNet (paper), batch 32" configs/lfw_faceresnet_small_center.toml 32 "$steps" --classes 1000 "${paper[@]}"
compare "MobileFaceNet, batch 64" configs/lfw_mobilefacenet_scratch_center.toml 64 "$steps" --classes 906
# Like for like: PyTorch with the allocator settings facerec makes itself (keep_freed_memory,
# docs/design.md), so that the ratio shows what is left once both keep their memory mapped.
PY_ENV="MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647" \
    compare "  same, PyTorch with facerec malloc" configs/lfw_faceresnet_small_center.toml 32 "$steps" --classes 1000 "${paper[@]}"

echo "== Face-ResNet (paper) step against the machine's sgemm peak"
"$f" -q bench configs/lfw_faceresnet_small_center.toml --batch 32 --classes 1000 --steps "$steps" --threads "$threads" --peak \
    "${paper[@]}" | tail -n 1

echo "== feature extraction (image + mirror, inference mode), facerec / PyTorch-in-Python"
compare "Face-ResNet small, batch 64" configs/lfw_faceresnet_small_center.toml 64 "$steps" --extract
compare "Face-ResNet paper, batch 32" configs/lfw_faceresnet_small_center.toml 32 3 --extract "${paper[@]}"

echo "== center-loss overhead: its own work (loss, gradient, Eq. 4 update) as a share of a step"
for classes in 10000 100000; do
    "$f" -q bench configs/lfw_faceresnet_small_center.toml --classes "$classes" --steps "$steps" --threads "$threads" \
        --center-overhead | tail -n 1
done

echo "== loader alone (crop cache, flips, prefetch thread) against the step's consumption"
"$f" -q bench configs/lfw_faceresnet_small_center.toml --steps "$steps" --threads "$threads" --loader | tail -n 1
