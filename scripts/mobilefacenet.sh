#!/usr/bin/env bash
# The MobileFaceNet results of docs/results.md ("A published model"): the shared CASIA-WebFace
# checkpoint imported (facerec import), MTCNN landmarks of all 13,233 LFW images (facerec
# detect, once: about 25 minutes on one core), the 10-fold LFW table with the shared landmarks
# and with MTCNN's, each with and without the training folds' mean subtracted, the
# un-fine-tuned model on folds 1-5; then, with --finetune, models A and C fine-tuned from it
# (configs/lfw_mobilefacenet_finetune_{softmax,center}.toml, 3 seeds, one run at a time: about
# 12 minutes each on 2 cores) and their table.
#
#   scripts/mobilefacenet.sh [--finetune] [--out DIR]      (default DIR: runs/mobilefacenet)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=runs/mobilefacenet
finetune=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --finetune) finetune=1; shift ;;
        --out) out=$2; shift 2 ;;
        -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
say() { printf '[mobilefacenet] %s\n' "$*" >&2; }

scripts/setup.sh >/dev/null
cargo build --release --locked -p facerec
facerec=target/release/facerec
ckpt=data/pretrained/mobilefacenet_casia/mobilefacenet_casia_068.ckpt
[[ -f $ckpt ]] || { say "error: $ckpt not found (FACEREC_DATA must hold pretrained/, see ../shared/README.md)"; exit 1; }
mkdir -p "$out"

model=$out/mobilefacenet_casia.safetensors
"$facerec" import "$ckpt" --backbone mobilefacenet --out "$model"

mtcnn=$out/lfw_mtcnn_5pt.tsv
if [[ ! -f $mtcnn ]]; then
    say "MTCNN landmarks of every LFW image (once)"
    "$facerec" -q detect --images data/lfw/images --out "$mtcnn.raw" --weights data/mtcnn --skip-bad --threads 1
    # Images without a detected face get the others' mean landmarks (score 0).
    python=${FACEREC_PYTHON:-.deps/venv/bin/python}
    "$python" scripts/fetch_data.py complete-landmarks "$mtcnn.raw" --images data/lfw/images --out "$mtcnn"
fi

all=1,2,3,4,5,6,7,8,9,10
for landmarks in shared mtcnn; do
    lm=data/lfw/landmarks_5pt.tsv
    [[ $landmarks == mtcnn ]] && lm=$mtcnn
    for mean in plain meansub; do
        flag=()
        [[ $mean == meansub ]] && flag=(--subtract-mean)
        say "10 folds, $landmarks landmarks, $mean"
        "$facerec" -q eval --model "$model" --folds $all --landmarks "$lm" "${flag[@]}" --identification \
            --out "$out/lfw10_${landmarks}_$mean" | grep -E '^accuracy'
    done
done
say "folds 1-5 (the fine-tuning protocol's test folds), shared landmarks"
"$facerec" -q eval --model "$model" --folds 1,2,3,4,5 --identification --out "$out/folds1-5" | grep -E '^accuracy'

if (( finetune )); then
    scripts/face_experiments.sh --configs mobilefacenet_finetune --no-sweep --jobs 1 --runs "$out/finetune"
fi
