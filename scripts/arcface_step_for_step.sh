#!/usr/bin/env bash
# facerec against arcface_torch, step for step (issue: "does it train exactly like
# arcface_torch?"): arcface_torch's loop run by PyTorch on 2 Gloo processes on the CPU
# (scripts/reference/arcface_torch_steps.py: its IResNet-18, PartialFC_V2, CombinedMarginLoss
# with ArcFace's margin, SGD with PolynomialLRWarmup, the backbone's gradients clipped to 5) and
# facerec on 2 ranks (`facerec launch`) with the same recipe, the same initial weights (made by
# arcface_torch, imported through [model] init) and the same batches in the same order (a
# lossless .rec of the identity-disjoint LFW training split, read in file order, no flip).
# The reference runs twice, with 1 and 2 threads a process, to show how far it is from itself
# when only its float reduction order changes.
#
#   scripts/arcface_step_for_step.sh [STEPS] [LR]   default 50 steps at lr 0.02 (arcface_torch's
#                                                   0.1 is for a global batch of 1024; this one is 16);
#                                                   the work goes to runs/step_for_step/
#
# Prints the three curves, the largest relative difference over the first 10 steps and over
# all, and writes runs/step_for_step/curves.png. Needs scripts/setup.sh (and builds facerec).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
steps=${1:-50}
lr=${2:-0.02}
work=${FACEREC_STEP_DIR:-runs/step_for_step}
py=.deps/venv/bin/python
f=target/release/facerec
[[ -x $f ]] || cargo build --release --locked -p facerec
mkdir -p "$work"

if [[ ! -f $work/lfw_train.rec ]]; then
    echo "[step-for-step] the identity-disjoint LFW training split as a lossless 112x112 .rec" >&2
    $f convert --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv --to-rec "$work/lfw_train.rec" \
        --exclude-pairs data/lfw/pairs.txt --exclude-folds 1,2,3,4,5 --min-images 2 --encoding png -q
fi
echo "[step-for-step] arcface_torch's initial weights (r18 and the classifier)" >&2
$py scripts/reference/arcface_torch_steps.py init --network r18 --rec "$work/lfw_train.rec" --out "$work/init.safetensors" >&2

cat >"$work/facerec.toml" <<TOML
description = "facerec against arcface_torch, step for step (scripts/arcface_step_for_step.sh)"
seed = 2048
threads = 1
[data]
kind = "record_io"
rec = "$work/lfw_train.rec"
flip = false
shuffle = false
[model]
init = "$work/init.safetensors"
[model.backbone]
name = "iresnet"
depth = 18
[loss]
name = "combined_margin"
scale = 64.0
m1 = 1.0
m2 = 0.5
m3 = 0.0
margin_gradient = "straight_through"
[optim]
lr = $lr
momentum = 0.9
weight_decay = 5e-4
decay = "all"
batch_size = 16
clip_grad_norm = 5.0
clip = "backbone"
[schedule]
kind = "polynomial"
steps = $steps
[parallel]
shard_head = true
[eval]
disabled = true
[log]
every_steps = 1
TOML
echo "[step-for-step] facerec, 2 ranks" >&2
$f launch --nproc 2 -- train "$work/facerec.toml" --run-dir "$work/facerec" --overwrite -q >&2
for t in 1 2; do
    echo "[step-for-step] arcface_torch, 2 ranks, $t thread(s) each" >&2
    $py scripts/reference/arcface_torch_steps.py train --network r18 --rec "$work/lfw_train.rec" \
        --init "$work/init.safetensors" --world 2 --batch 8 --steps "$steps" --lr "$lr" --threads "$t" --out "$work/arcface_torch_t$t.jsonl"
done

$f plot "facerec=$work/facerec/steps.jsonl" "arcface_torch (1 thread)=$work/arcface_torch_t1.jsonl" \
    "arcface_torch (2 threads)=$work/arcface_torch_t2.jsonl" --out "$work/curves.png" \
    --title "IResNet-18, ArcFace, Partial FC on 2 ranks: facerec and arcface_torch, step for step" >&2
cp "$work/curves.png" docs/img/arcface_step_for_step.png
$py - "$work" <<'PY'
import json, sys
work = sys.argv[1]
def curve(path):
    return [json.loads(l)["loss"] for l in open(path) if l.strip()]
ours, t1, t2 = curve(f"{work}/facerec/steps.jsonl"), curve(f"{work}/arcface_torch_t1.jsonl"), curve(f"{work}/arcface_torch_t2.jsonl")
rel = lambda a, b: [abs(x - y) / abs(y) for x, y in zip(a, b)]
print(f"{'step':>4}  {'facerec':>12}  {'arcface_torch':>14}  {'(2 threads)':>12}  {'facerec/ref':>11}  {'ref/ref':>9}")
for i, (a, b, c) in enumerate(zip(ours, t1, t2), 1):
    print(f"{i:>4}  {a:>12.6f}  {b:>14.6f}  {c:>12.6f}  {abs(a - b) / abs(b):>11.1e}  {abs(c - b) / abs(b):>9.1e}")
first = max(rel(ours[:10], t1[:10]))
print(f"steps 1-10: largest relative difference facerec vs arcface_torch {first:.1e} (target <= 1e-4)")
import statistics
for name, (x, y) in {"facerec vs arcface_torch (1 thread)": (ours, t1), "facerec vs arcface_torch (2 threads)": (ours, t2),
                     "arcface_torch, 2 threads vs 1": (t2, t1)}.items():
    r = rel(x, y)
    print(f"steps 1-{len(r)}: {name}: largest {max(r):.1e}, median {statistics.median(r):.1e}")
PY
