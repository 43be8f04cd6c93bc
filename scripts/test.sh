#!/usr/bin/env bash
# The test command of the README and of CI: set up (idempotent), clippy with warnings as errors,
# then every test of the workspace. Extra arguments go to `cargo test` and skip clippy (e.g.
# `scripts/test.sh -p facerec-losses`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
if [[ $# -eq 0 ]]; then
    cargo clippy --release --workspace --all-targets --locked -- -D warnings
fi
cargo test --release --workspace --locked "$@"
