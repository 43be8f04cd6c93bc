#!/usr/bin/env bash
# Every benchmark, one command, each against its reference in the same run:
#   - training step and feature extraction, facerec vs PyTorch-in-Python; GFLOP/s vs the
#     machine's sgemm peak; center-loss overhead; loader vs the step (scripts/bench_train.sh)
#   - inference, facerec's embedding path vs onnxruntime on the model facerec exported, batch 1
#     and 64 (scripts/bench_onnx.sh)
#   - PReLU's fused backward vs libtorch's (cargo bench -p facerec-ops --bench prelu)
#   - aligned crops per second vs Python OpenCV (scripts/bench_align.sh)
#   - an insightface .rec decoded, flipped and batched vs a PyTorch DataLoader (scripts/bench_rec.sh)
#   - LFW 6,000-pair scoring time (scripts/bench_eval.sh)
#   - data-parallel scaling, 1 vs 2 processes, gradients averaged after or during the backward
#     pass, Gloo all-reduce vs torch.distributed (scripts/bench_dist.sh, and the facerec-dist
#     allreduce example)
#   - the class-sharded classifier at a million classes, 2 ranks against 1 process and against
#     2 replicas (scripts/bench_sharded.sh)
#   - peak memory of `align --cache` over all of LFW
#   - with --e2e: the shipped face config end to end (wall time, time waiting for data, peak RSS)
#
#   scripts/bench.sh [--e2e]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
e2e=0
[[ ${1:-} == --e2e ]] && e2e=1
scripts/setup.sh >/dev/null
cargo build --release --locked -p facerec 2>/dev/null
py=.deps/venv/bin/python
f=target/release/facerec
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F)"

echo; echo "### training step, extraction, peak, center loss, loader"; scripts/bench_train.sh
echo; echo "### inference, facerec vs onnxruntime on the exported model"; scripts/bench_onnx.sh
echo; echo "### PReLU forward + backward, facerec-ops vs libtorch"; cargo bench --locked -q -p facerec-ops --bench prelu
echo; echo "### alignment"; scripts/bench_align.sh
echo; echo "### .rec loader, facerec vs a PyTorch DataLoader"; scripts/bench_rec.sh
echo; echo "### LFW scoring"; scripts/bench_eval.sh
echo; echo "### data parallel"; scripts/bench_dist.sh
cargo run --release --locked -q -p facerec-dist --example allreduce
echo; echo "### a million classes, sharded"; scripts/bench_sharded.sh

echo; echo "### memory: align --cache over all of LFW"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" scripts/reference/peak_rss.py -- "$f" -q align --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv \
    --cache --out "$tmp/cache"

if (( e2e )); then
    echo; echo "### end to end: configs/lfw_faceresnet_small_center.toml"
    "$py" scripts/reference/peak_rss.py -- "$f" -q train configs/lfw_faceresnet_small_center.toml --run-dir "$tmp/run" \
        --set "data.cache_dir=$tmp/train_cache" --set "eval.lfw.cache_dir=$tmp/eval_cache"
fi
