#!/usr/bin/env bash
# The test command of the README and of CI: set up (idempotent), then run every test of the
# workspace. Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p facerec-losses`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cargo test --release --workspace --locked "$@"
