#!/usr/bin/env bash
# Data-parallel scaling on the CPU: LeNets++ on MNIST (configs/mnist_lenetpp_center.toml) as
# 1 process with 1 thread, 1 process with 2 threads, and 2 processes (facerec launch) with 1
# thread each, the gradients averaged after the backward pass ([parallel] overlap = false) and
# during it (overlap = true, the default), at a few global batch sizes; prints images/s over
# steps 21-120 (after warm-up) and the parallel efficiency of 2 processes against 1 process with
# 1 thread. Then the same comparison for the small Face-ResNet's step (facerec bench, synthetic
# batches of 64, 10,575 classes: 8.7 MB of gradients per step).
#   scripts/bench_dist.sh [global batch sizes...]      (default: 64 256)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p facerec
bin=$PWD/target/release/facerec
cfg=$PWD/configs/mnist_lenetpp_center.toml
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
batches=("$@")
[[ ${#batches[@]} -gt 0 ]] || batches=(64 256)

# images/s from a run's steps.jsonl: global batch x 100 steps / elapsed time of steps 21-120.
rate() {
    python3 - "$1/steps.jsonl" "$2" <<'PY'
import json, sys
rows = {r["step"]: r["elapsed_s"] for r in map(json.loads, open(sys.argv[1]))}
print(f"{int(sys.argv[2]) * 100 / (rows[120] - rows[20]):.0f}")
PY
}

printf '| global batch | 1 proc x 1 thread | 1 proc x 2 threads | 2 procs, averaging after backward | 2 procs, overlapped | efficiency (after / overlapped) |\n'
printf '| --- | --- | --- | --- | --- | --- |\n'
for b in "${batches[@]}"; do
    sets=(--set "data.dir=$PWD/data/mnist" --set "optim.batch_size=$b" --set "data.train_limit=$((b * 120))" --set schedule.epochs=
          --set schedule.steps=120 --set schedule.milestones=[] --set eval.disabled=true --set log.every_steps=1)
    (cd "$work" && OMP_NUM_THREADS=1 "$bin" train "$cfg" --name "one$b" -q --set threads=1 "${sets[@]}" >/dev/null)
    (cd "$work" && "$bin" train "$cfg" --name "two_threads$b" -q --set threads=2 "${sets[@]}" >/dev/null)
    (cd "$work" && "$bin" launch --nproc 2 --master-port 0 -- train "$cfg" --name "dp$b" -q --set threads=1 --set parallel.overlap=false "${sets[@]}" >/dev/null 2>&1)
    (cd "$work" && "$bin" launch --nproc 2 --master-port 0 -- train "$cfg" --name "ov$b" -q --set threads=1 "${sets[@]}" >/dev/null 2>&1)
    one=$(rate "$work/runs/one$b" "$b")
    t2=$(rate "$work/runs/two_threads$b" "$b")
    dp=$(rate "$work/runs/dp$b" "$b")
    ov=$(rate "$work/runs/ov$b" "$b")
    eff=$(python3 -c "print(f'{$dp / (2 * $one):.0%} / {$ov / (2 * $one):.0%}')")
    printf '| %s | %s img/s | %s img/s | %s img/s | %s img/s | %s |\n' "$b" "$one" "$t2" "$dp" "$ov" "$eff"
done

# The small Face-ResNet's step on synthetic batches: median of 10 steps (facerec bench).
face=$PWD/configs/lfw_faceresnet_small_center.toml
step() { grep -m1 -o 'median step [0-9.]* s' | awk '{ print $3 }'; }
fone=$(OMP_NUM_THREADS=1 "$bin" -q bench "$face" --batch 64 --steps 10 --threads 1 --classes 10575 | step)
fafter=$("$bin" launch --nproc 2 --master-port 0 -- -q bench "$face" --batch 64 --steps 10 --threads 1 --classes 10575 --set parallel.overlap=false 2>/dev/null | step)
fover=$("$bin" launch --nproc 2 --master-port 0 -- -q bench "$face" --batch 64 --steps 10 --threads 1 --classes 10575 2>/dev/null | step)
echo
printf '| Face-ResNet (small), batch 64 | 1 proc x 1 thread | 2 procs, averaging after backward | 2 procs, overlapped | efficiency (after / overlapped) |\n'
printf '| --- | --- | --- | --- | --- |\n'
printf '| step | %s s | %s s | %s s | %s |\n' "$fone" "$fafter" "$fover" "$(python3 -c "print(f'{$fone / (2 * $fafter):.0%} / {$fone / (2 * $fover):.0%}')")"

