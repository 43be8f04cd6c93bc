#!/usr/bin/env bash
# On a machine with a CUDA GPU and a Rust toolchain: the GPU check of scripts/gpu_check.sh
# (info, device tests, the training step against PyTorch in fp32 and bf16, peak memory and the
# largest batch, a short CUDA training run against the CPU's curve) on this checkout's own
# torch (the main build's, 2.13.0), through the same bundle a machine without Rust gets.
#
#   scripts/bench_gpu.sh [gpu_check.sh arguments, e.g. --out DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version=$(sed -n 's/^torch_version=//p' scripts/setup.sh)
scripts/build_for_torch.sh "$version"
exec scripts/gpu_check.sh --bundle "target/torch-$version/bundle" "$@"
