# Sourced by the benchmarks that compare facerec with a reference in the same invocation
# (scripts/bench_train.sh: PyTorch-in-Python; scripts/bench_onnx.sh: onnxruntime). The two sides
# alternate, ROUNDS times (default 3), and each side's median round counts: neither a burst of
# load from the VM's neighbours nor one lucky process decides the ratio.

# The figure of a line that ends in `= N images/s`, as both sides print one.
speed() { sed -E 's/.* = ([0-9.]+) images\/s.*/\1/'; }

# The median of the numbers on stdin (space- or line-separated).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# alternate LABEL REFERENCE ARGS... : runs `ours ARGS...` and `theirs ARGS...` (functions the
# caller defines, each printing a `= N images/s` line) ROUNDS times, alternating, and prints
# each side's median round, the ratio (above 1: facerec faster) and every round.
alternate() {
    local label=$1 reference=$2 r
    shift 2
    local ours_rounds="" theirs_rounds=""
    for r in $(seq "${ROUNDS:-3}"); do
        ours_rounds+=" $(ours "$@" | speed)"
        theirs_rounds+=" $(theirs "$@" | speed)"
    done
    local a b
    a=$(echo "$ours_rounds" | median) b=$(echo "$theirs_rounds" | median)
    printf '%-34s facerec %8.1f img/s   %s %8.1f img/s   ratio %sx   (rounds: facerec%s; %s%s)\n' "$label" "$a" "$reference" "$b" \
        "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')" "$ours_rounds" "$reference" "$theirs_rounds"
}
