#!/usr/bin/env bash
# On a machine with a CUDA GPU: the paper's Face-ResNet training step at batch 256, fp32 and
# bf16 autocast, facerec against PyTorch-in-Python on the same card and libtorch, ratios
# printed; then one short CUDA training run of the shipped face config (bf16) as a check that
# training really runs on the GPU end to end.
#
#   scripts/bench_gpu.sh [STEPS=20]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
steps=${1:-20}
scripts/setup.sh >/dev/null
cargo build --release --locked -p facerec 2>/dev/null
py=.deps/venv/bin/python
f=target/release/facerec
"$f" info
paper=(--set 'model.backbone.widths=[32,64,128,256,512]' --set 'model.backbone.blocks=[1,2,5,3]'
    --set model.backbone.feature_dim=512 --set device=cuda)
speed() { sed -E 's/.* = ([0-9.]+) images\/s.*/\1/'; }
for precision in fp32 bf16; do
    ours=$("$f" -q bench configs/lfw_faceresnet_small_center.toml --batch 256 --classes 10575 --steps "$steps" \
        "${paper[@]}" --set precision=$precision | tail -n 1 | speed)
    theirs=$("$py" scripts/reference/bench_train.py --config configs/lfw_faceresnet_small_center.toml --batch 256 \
        --classes 10575 --steps "$steps" "${paper[@]}" --set precision=$precision | speed)
    printf 'Face-ResNet (paper), batch 256, %s: facerec %8.1f img/s   pytorch %8.1f img/s   ratio %sx\n' "$precision" \
        "$ours" "$theirs" "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')"
done
"$f" -q bench configs/lfw_faceresnet_small_center.toml --batch 256 --classes 10575 --steps "$steps" "${paper[@]}" --peak |
    tail -n 1
"$f" train configs/lfw_faceresnet_small_center.toml --run-dir /tmp/facerec_gpu_check --overwrite \
    --set device=cuda --set precision=bf16 --set schedule.epochs=1 --set 'schedule.milestones=[]'
