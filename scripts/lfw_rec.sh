#!/usr/bin/env bash
# LFW in insightface's formats, for the arcface_torch-style runs (configs/lfw_iresnet18_arcface.toml):
#   data/cache/lfw_insightface/train.rec (+ .idx): the identity-disjoint training split (the
#       identities of no pair of folds 1-5, with at least 2 images: 906 identities, 5,103
#       images), 112x112 JPEG crops as insightface ships its sets;
#   data/cache/lfw_insightface/lfw_folds1-5.bin: the 3,000 pairs of folds 1-5 as a .bin val
#       target. insightface's .bin protocol splits a set into 10 folds of consecutive pairs, and
#       each LFW fold is 300 same-person pairs then 300 different-person ones: in that order,
#       every tenth of 3,000 pairs would hold one kind only (no threshold to learn, no FAR to
#       measure), so `convert --folds` alternates the kinds within each fold (every tenth is
#       half of one LFW fold, balanced as the tenths of insightface's lfw.bin are).
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
# Rebuilt when older than this script (older versions wrote the folds unbalanced).
bin=$out/lfw_folds1-5.bin
if [[ ! -f $bin || $bin -ot "${BASH_SOURCE[0]}" ]]; then
    rm -f "$bin" "$out/pairs_folds1-5.txt"
    $f convert --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv --pairs data/lfw/pairs.txt \
        --folds 1,2,3,4,5 --to-bin "$bin" -q
fi
echo "$out/train.rec $out/lfw_folds1-5.bin"
