#!/usr/bin/env bash
# Coverage-guided fuzzing of facerec's parsers with cargo-fuzz (libFuzzer), on demand:
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]
#
# Targets: idx npy pairs landmarks list checkpoint image torchfile (default: all). Starts from the
# committed corpus in fuzz/corpus/<target> and adds what it finds there; crashes land in
# fuzz/artifacts/<target>. Needs a nightly toolchain (installed with rustup if missing) and
# cargo-fuzz (installed with cargo if missing). CI runs the bounded property-test version
# instead (crates/data/tests/fuzz_parsers.rs, crates/model/tests/fuzz_checkpoint.rs,
# crates/torchfile/tests/fuzz_torchfile.rs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(idx npy pairs landmarks list checkpoint image torchfile)

scripts/setup.sh >/dev/null
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in "${targets[@]}"; do
    echo "== $t ($seconds s)"
    mkdir -p "fuzz/corpus/$t"
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10
done
