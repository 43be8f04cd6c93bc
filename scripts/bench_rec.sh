#!/usr/bin/env bash
# The .rec at GPU rate: facerec's loader against a PyTorch DataLoader on the same file, in one
# run. An insightface-style .rec of all of LFW (13,233 JPEG-encoded 112x112 crops, quality 95,
# as insightface ships its sets) is decoded, flipped at random, normalised and batched (128) by
#   - facerec's loader (RecordIoSource: a memory-mapped .rec, the `image` crate's JPEG decoder,
#     rayon threads within each batch; `facerec bench --loader`), with RAYON_NUM_THREADS=W;
#   - a torch DataLoader with W worker processes over arcface_torch's MXFaceDataset pipeline
#     (scripts/reference/rec_loader.py: an independent RecordIO reader, cv2.imdecode, flip,
#     ToTensor, Normalize);
# for W = 1 and 2, printing images per second, per core, and facerec's ratio.
#
#   scripts/bench_rec.sh            (after scripts/setup.sh; builds facerec)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work=${FACEREC_BENCH_DIR:-runs/bench_rec}
py=.deps/venv/bin/python
f=target/release/facerec
[[ -x $f ]] || cargo build --release --locked -p facerec
mkdir -p "$work"
if [[ ! -f $work/lfw.rec ]]; then
    $f convert --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv --to-rec "$work/lfw.rec" --skip-bad -q >&2
fi
cat >"$work/bench.toml" <<TOML
description = "the .rec loader benchmark (a tiny model: only the loader is timed)"
[data]
kind = "record_io"
rec = "$work/lfw.rec"
flip = true
[model.backbone]
name = "iresnet"
layers = [1, 1, 1, 1]
base_width = 8
feature_dim = 8
[loss]
name = "softmax"
[optim]
lr = 0.1
batch_size = 128
[schedule]
steps = 1
TOML
printf '%-8s  %-16s  %-16s  %-16s  %-16s  %s\n' workers "facerec img/s" "per core" "PyTorch img/s" "per core" "facerec / PyTorch"
for w in 1 2; do
    rate=$(RAYON_NUM_THREADS=$w $f bench "$work/bench.toml" --loader --steps 1 --threads 1 -q 2>&1 | sed -n 's/.*loader \([0-9.]*\) batches\/s of 128.*/\1/p')
    ours=$($py -c "print(f'{$rate * 128:.0f}')")
    theirs=$($py scripts/reference/rec_loader.py --rec "$work/lfw.rec" --workers $w --batch 128 --batches 60 | $py -c "import json,sys; print(f\"{json.load(sys.stdin)['images_per_s']:.0f}\")")
    $py -c "o,t,w=$ours,$theirs,$w; print(f'{w:<8}  {o:<16.0f}  {o/w:<16.0f}  {t:<16.0f}  {t/w:<16.0f}  {o/t:.2f}x')"
done
