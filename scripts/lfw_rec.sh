#!/usr/bin/env bash
# LFW in insightface's formats, for the arcface_torch-style runs (configs/lfw_iresnet18_arcface.toml):
#   data/cache/lfw_insightface/train.rec (+ .idx): the identity-disjoint training split (the
#       identities of no pair of folds 1-5, with at least 2 images: 906 identities, 5,103
#       images), 112x112 JPEG crops as insightface ships its sets;
#   data/cache/lfw_insightface/lfw_folds1-5.bin: the 3,000 pairs of folds 1-5 as a .bin val
#       target (10 folds of 300 consecutive pairs, as insightface's .bin protocol splits them).
# Idempotent; needs scripts/setup.sh (LFW and its landmarks) and builds facerec.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=data/cache/lfw_insightface
f=target/release/facerec
[[ -x $f ]] || cargo build --release --locked -p facerec
mkdir -p "$out"
if [[ ! -f $out/train.rec ]]; then
    $f convert --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv --to-rec "$out/train.rec" \
        --exclude-pairs data/lfw/pairs.txt --exclude-folds 1,2,3,4,5 --min-images 2 -q
fi
if [[ ! -f $out/lfw_folds1-5.bin ]]; then
    # pairs.txt's first line is "10<TAB>300" and each fold 600 lines: keep the first five folds.
    { printf '5\t300\n'; sed -n '2,3001p' data/lfw/pairs.txt; } >"$out/pairs_folds1-5.txt"
    $f convert --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv --pairs "$out/pairs_folds1-5.txt" \
        --to-bin "$out/lfw_folds1-5.bin" -q
fi
echo "$out/train.rec $out/lfw_folds1-5.bin"
