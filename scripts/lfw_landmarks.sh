#!/usr/bin/env bash
# Makes LFW's 5-point landmarks file when a copy of LFW has none:
#   scripts/lfw_landmarks.sh <lfw>      writes <lfw>/landmarks_5pt.tsv from <lfw>/images
# with MTCNN (`facerec detect`, weights in data/mtcnn), building target/release/facerec first
# (the binary scripts/mnist.sh and scripts/test.sh build anyway). Images where MTCNN finds no
# face get the mean landmarks of the others, with score 0 (deep-funneled faces all sit near the
# same place). About 0.1 s an image on one core: some 20-30 minutes for LFW's 13,233, once.
# scripts/setup.sh calls it when LFW was downloaded or FACEREC_DATA's copy lacks the file.
# An interrupted run starts again from the beginning; a finished file is never rewritten.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lfw=${1:?usage: scripts/lfw_landmarks.sh <lfw folder with images/>}
lfw=$(cd "$lfw" && pwd)
out=$lfw/landmarks_5pt.tsv
say() { printf '[landmarks] %s\n' "$*" >&2; }

[[ -f $out ]] && exit 0
[[ -d $lfw/images ]] || { say "error: $lfw/images not found"; exit 1; }
[[ -f $repo/data/mtcnn/onet.safetensors ]] \
    || { say "error: $repo/data/mtcnn has no MTCNN weights (run scripts/setup.sh)"; exit 1; }
python=${FACEREC_PYTHON:-$repo/.deps/venv/bin/python}
[[ -x $python ]] || python=python3

say "no $out: detecting the landmarks of every image with MTCNN (facerec detect, once)"
cd "$repo"
cargo build --release --locked -p facerec
detected=$out.mtcnn.tmp
target/release/facerec detect --images "$lfw/images" --out "$detected" --weights data/mtcnn \
    --device auto --skip-bad
"$python" scripts/fetch_data.py complete-landmarks "$detected" --images "$lfw/images" --out "$out"
rm -f "$detected"
say "wrote $out"
