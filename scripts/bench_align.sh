#!/usr/bin/env bash
# Aligned crops per second: facerec's `align --cache` path (decode, landmarks, similarity, warp,
# into the cache) versus a Python OpenCV pipeline (cv2.imread + numpy Umeyama + cv2.warpAffine,
# scripts/reference/align_opencv.py) over the same LFW images, with the same number of threads
# (OpenCV: a multiprocessing pool, cv2.setNumThreads(1) per worker). Prints the ratios.
#
#   scripts/bench_align.sh [N_IMAGES=2000] [REPEATS=3]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-2000}
repeats=${2:-3}
scripts/setup.sh >/dev/null
cargo build --release --locked -p facerec 2>/dev/null
py=.deps/venv/bin/python
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The same N images for both: the first N rows of the landmarks file, sorted.
grep -v '^#' data/lfw/landmarks_5pt.tsv | cut -f1 | sort | awk -F/ -v n="$n" 'NR <= n {print $0" "$1}' >"$tmp/list.txt"
cut -d' ' -f1 "$tmp/list.txt" >"$tmp/paths.txt"
# Warm the page cache so that both read from memory.
xargs -a "$tmp/paths.txt" -I{} cat data/lfw/images/{} >/dev/null

best() { sort -g | tail -n 1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for threads in 1 $(nproc); do
    ours=$(for _ in $(seq "$repeats"); do
        target/release/facerec -q align --images data/lfw/images --list "$tmp/list.txt" \
            --landmarks data/lfw/landmarks_5pt.tsv --out "$tmp/cache" --cache --threads "$threads" |
            sed -E 's/.*\(([0-9.]+) crops\/s.*/\1/'
    done | best)
    theirs=$(for _ in $(seq "$repeats"); do
        "$py" scripts/reference/align_opencv.py --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv \
            --list "$tmp/paths.txt" --bench --threads "$threads" | sed -E 's/.*= ([0-9.]+) crops\/s.*/\1/'
    done | best)
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
    printf '%d image(s), %d thread(s): facerec %8.1f crops/s   opencv %8.1f crops/s   ratio %sx\n' \
        "$n" "$threads" "$ours" "$theirs" "$ratio"
done
