#!/usr/bin/env bash
# The class-sharded classifier at scale ([parallel] shard_head; docs/distributed.md): training
# steps of MobileFaceNet with softmax + center loss over CLASSES identities (default 1,000,000)
# and DIM-d features (default 512), global batch 64, on synthetic batches (facerec bench):
#   1. one process, the classifier, its momentum and the center table whole;
#   2. 2 ranks (facerec launch, Gloo), each holding half of the classes;
#   3. 2 ranks, each holding every class (plain data parallelism).
# For each: the median step time and every process's peak resident memory. A run is stopped
# when the machine runs short of memory (under 1 GiB available), and reported as such.
#
#   scripts/bench_sharded.sh [CLASSES=1000000] [DIM=512] [STEPS=3]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
classes=${1:-1000000}
dim=${2:-512}
steps=${3:-3}
scripts/setup.sh >/dev/null
cargo build --release --locked -p facerec 2>/dev/null
f=target/release/facerec
config=configs/lfw_mobilefacenet_scratch_center.toml
bench=(bench "$config" --classes "$classes" --set "model.backbone.feature_dim=$dim" --memory --steps "$steps" --batch 64)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo) GiB"
echo "MobileFaceNet, softmax + center loss, $classes classes x $dim-d, global batch 64, median of $steps steps after 3 warm-up steps"

# label command...: runs the command, watching the machine's available memory.
measure() {
    local label=$1
    shift
    local log
    log=$(mktemp)
    "$@" >"$log" 2>&1 &
    local pid=$! short=0
    while kill -0 "$pid" 2>/dev/null; do
        if (($(awk '/MemAvailable/ { print $2 }' /proc/meminfo) < 1048576)); then
            short=1
            pkill -KILL -f -- "--classes $classes --set model.backbone.feature_dim=$dim" || true
            break
        fi
        sleep 0.5
    done
    wait "$pid" 2>/dev/null || true
    if ((short)); then
        printf '%-44s stopped: the machine ran out of memory (under 1 GiB available); peak so far %s\n' "$label" \
            "$(grep -o 'peak resident size [0-9.]* GiB' "$log" | head -1 || echo 'not reported')"
    elif ! grep -q 'median step' "$log"; then
        printf '%-44s failed:\n' "$label"
        tail -5 "$log"
    else
        # One line per process: its step time and peak resident size.
        grep -E 'median step|peak resident' "$log" | sed -E 's/^\[rank ([0-9])\] /\1 /; s/^facerec:/0 facerec:/' |
            awk -v label="$label" '
                /median step/ { match($0, /median step [0-9.]+ s/); step[$1] = substr($0, RSTART + 12, RLENGTH - 14) }
                /peak resident/ { match($0, /peak resident size [0-9.]+ GiB/); mem[$1] = substr($0, RSTART + 19, RLENGTH - 23) }
                END { for (r in step) printf "%-44s rank %s: step %7.2f s   peak resident %6.2f GiB\n", label, r, step[r], mem[r] }' | sort
    fi
    rm -f "$log"
}

measure "1 process, classifier whole" "$f" -q "${bench[@]}" --set parallel.shard_head=false
measure "2 ranks, classifier sharded" "$f" launch --nproc 2 -- -q "${bench[@]}" --set parallel.shard_head=true
measure "2 ranks, classifier whole on each" "$f" launch --nproc 2 -- -q "${bench[@]}" --set parallel.shard_head=false
