#!/usr/bin/env bash
# The one-shot GPU check: everything of facerec that only a GPU exercises, run in one go on a
# machine with CUDA and a Python torch but no Rust, from a bundle made elsewhere by
# scripts/build_for_torch.sh (binaries built against that machine's torch):
#
#   1. facerec info (the CUDA device and cuDNN seen);
#   2. the device tests (crates/experiment/tests/gpu.rs) on CUDA: PReLU against libtorch's and
#      the CPU's, bf16 autocast, a one-process NCCL group, the center-loss update against the
#      CPU, the caching allocator's figures;
#   3. the training step at batch 256, fp32 and bf16, facerec against PyTorch-in-Python on the
#      same GPU (scripts/reference/bench_train.py): the paper's Face-ResNet and MobileFaceNet;
#   4. peak GPU memory at batch 256 and the largest batch (doubling) whose step fits;
#   5. a short real training run (300 steps of configs/lfw_faceresnet_small_center.toml on the
#      LFW slice of the bundle), fp32 and bf16, whose loss curve is compared with the CPU run of
#      the same config that the rehearsal (--cpu) left in the bundle.
#
#   scripts/gpu_check.sh [--cpu] [--bundle DIR] [--out DIR] [--python PY] [--budget SECONDS]
#   scripts/gpu_check.sh --slice DIR        # writes the bundle's LFW slice (build_for_torch.sh)
#
# --cpu is the rehearsal on a machine without a GPU: the same parts on the CPU with fewer steps
# and sizes, against the same bundle, so that every path but the CUDA kernels has run before
# the GPU machine's minutes are spent; it also leaves its CPU training curve in the bundle for
# part 5. Defaults: --bundle target/torch-2.11.0/bundle, --out $OUT when set (the device tool's
# folder) else runs/gpu_check, --python /opt/torch/.venv/bin/python when it exists (the GPU
# machine's) else the bundle's torch environment (.deps/torch-VERSION/venv/bin/python).
# Each part runs under its own time limit and a failing part does not stop the others; the
# summary (summary.md in the output folder) lists every part with PASS/FAIL and its figures;
# the exit code is the number of failed parts.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# --- the LFW slice ------------------------------------------------------------------------------
# Identities that appear in none of the test pairs of folds 1-5 (the shipped configs' training
# side), with at least 4 images, in name order, up to about 1,600 images (about 20 MB): images,
# their lines of landmarks_5pt.tsv, and pairs.txt (the config excludes by it).
if [[ ${1:-} == --slice ]]; then
    dest=${2:?--slice DIR}
    python3 - "$repo/data/lfw" "$dest" <<'PY' || exit 1
import os, shutil, sys
src, dest = sys.argv[1:3]
lines = open(os.path.join(src, "pairs.txt")).read().split("\n")
folds, per = map(int, lines[0].split())
tested = set()
for line in lines[1 : 1 + 5 * 2 * per]:  # folds 1-5: 300 matched and 300 mismatched lines each
    f = line.split("\t")
    tested.update([f[0]] if len(f) == 3 else [f[0], f[2]])
header, *rows = open(os.path.join(src, "landmarks_5pt.tsv")).read().splitlines()
by_id = {}
for row in rows:
    by_id.setdefault(row.split("/", 1)[0], []).append(row)
kept = []
for name in sorted(by_id):
    if name not in tested and len(by_id[name]) >= 4 and len(kept) < 1600:
        kept += by_id[name]
os.makedirs(os.path.join(dest, "images"), exist_ok=True)
for row in kept:
    rel = row.split("\t", 1)[0]
    os.makedirs(os.path.join(dest, "images", os.path.dirname(rel)), exist_ok=True)
    shutil.copyfile(os.path.join(src, "images", rel), os.path.join(dest, "images", rel))
open(os.path.join(dest, "landmarks_5pt.tsv"), "w").write("\n".join([header] + kept) + "\n")
shutil.copyfile(os.path.join(src, "pairs.txt"), os.path.join(dest, "pairs.txt"))
print(f"LFW slice: {len(kept)} images of {len({r.split('/', 1)[0] for r in kept})} identities in {dest}", file=sys.stderr)
PY
    exit 0
fi

# --- arguments and environment ------------------------------------------------------------------
mode=cuda
bundle=target/torch-2.11.0/bundle
out=${OUT:-runs/gpu_check}
python=
budget=
while [[ $# -gt 0 ]]; do
    case $1 in
        --cpu) mode=cpu; shift ;;
        --bundle) bundle=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --budget) budget=$2; shift 2 ;;
        -h | --help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
# The whole check's time limit: 8 minutes on the GPU; the rehearsal's CPU training takes longer.
[[ -n $budget ]] || { [[ $mode == cuda ]] && budget=480 || budget=2400; }
[[ -x $bundle/bin/facerec && -x $bundle/bin/gpu_tests ]] \
    || { echo "no bundle at $bundle (make it with scripts/build_for_torch.sh 2.11.0)" >&2; exit 2; }
bundle=$(cd "$bundle" && pwd)
torch_version=$(sed -n 's/^torch \([0-9.]*\),.*/\1/p' "$bundle/MANIFEST")
if [[ -z $python ]]; then
    python=/opt/torch/.venv/bin/python
    [[ -x $python ]] || python=$repo/.deps/torch-$torch_version/venv/bin/python
fi
site=$("$python" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))') \
    || { echo "$python has no torch" >&2; exit 2; }
# The binaries find libtorch and CUDA's libraries of this machine's Python torch.
LD_LIBRARY_PATH=$site/torch/lib$(printf ':%s' "$site"/nvidia/*/lib)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:$bundle/lib
export LD_LIBRARY_PATH PYTHONUNBUFFERED=1 FACEREC_REPO=$repo FACEREC_PYTHON=$python
mkdir -p "$out"
out=$(cd "$out" && pwd)
f=$bundle/bin/facerec
log=$out/check.log
summary=$out/summary.md
: >"$log"
start=$SECONDS
failed=0
threads=$(nproc)
if [[ $mode == cuda ]]; then
    steps=20 batch=256 batches="256 512 1024 2048 4096 8192 16384 32768"
else # the same paths, at sizes two CPU cores get through
    steps=2 batch=8 batches="8 16"
fi
{
    echo "# facerec GPU check ($mode)"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n); bundle: $(tr '\n' ';' <"$bundle/MANIFEST")"
    echo "python: $python (torch $("$python" -c 'import torch; print(torch.__version__)' 2>&1))"
    command -v nvidia-smi >/dev/null && echo "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
    echo
} >"$summary"

note() { printf '%s\n' "$*" | tee -a "$summary"; }
# part NAME LIMIT_S COMMAND...: runs COMMAND with its output in the log, under a time limit
# that also respects the whole check's budget; records PASS/FAIL and the time taken.
part() {
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    local left=$((budget - (SECONDS - start)))
    ((limit > left)) && limit=$left
    if ((limit < 5)); then
        note "- **$name**: SKIPPED (the check's ${budget} s budget is spent)"
        failed=$((failed + 1))
        return 1
    fi
    printf '\n===== %s (limit %d s)\n' "$name" "$limit" >>"$log"
    # bash -c runs this script's functions too (exported below) under the limit.
    timeout --kill-after=10 "$limit" bash -c '"$@"' part "$@" >>"$log" 2>&1
    rc=$?
    if ((rc == 0)); then
        note "- **$name**: PASS ($((SECONDS - t0)) s)"
    else
        note "- **$name**: FAIL (exit $rc$( ((rc == 124)) && echo ", over its ${limit} s limit"), $((SECONDS - t0)) s; see check.log)"
        failed=$((failed + 1))
    fi
    return $rc
}
last() { awk -v s="===== $1 " 'index($0, s) == 1 { on = 1; next } /^===== / { on = 0 } on' "$log"; }

# --- 1. what the binary sees -----------------------------------------------------------------------
info() {
    "$f" info
    [[ $mode == cpu ]] || "$f" info | grep -q '^cuda available: true' || { echo "facerec sees no CUDA device"; return 1; }
}
export -f info
export f mode
part "facerec info" 60 info
last "facerec info" | grep -E '^(device|cuda|cudnn|libtorch)' | sed 's/^/    /' | tee -a "$summary"

# --- 2. the device tests ---------------------------------------------------------------------------
part "device tests ($mode)" 120 env FACEREC_TEST_DEVICE=$mode "$bundle/bin/gpu_tests" --test-threads 1
last "device tests ($mode)" | grep -E '^test |^test result' | sed 's/^/    /' | tee -a "$summary"

# --- 3. the training step against PyTorch ----------------------------------------------------------
speed() { sed -nE 's/.* = ([0-9.]+) images\/s.*/\1/p' | tail -n 1; }
paper=(--set 'model.backbone.widths=[32,64,128,256,512]' --set 'model.backbone.blocks=[1,2,5,3]'
    --set model.backbone.feature_dim=512)
net="Face-ResNet (paper)"
# bf16 convolutions are slow on CPUs without bf16 instructions: the rehearsal times the
# shipped small Face-ResNet instead (the same code paths).
[[ $mode == cpu ]] && paper=() net="Face-ResNet (small)"
bench_pair() { # label config precision [--set ...]: facerec then PyTorch, the same step
    local label=$1 config=$2 precision=$3
    shift 3
    local args=(--batch "$batch" --classes 10575 --steps "$steps" --set device="$mode" --set precision="$precision" "$@")
    part "step $label $precision: facerec" 150 "$f" -q bench "$config" "${args[@]}" --threads "$threads" --memory
    local ours theirs
    ours=$(last "step $label $precision: facerec" | speed)
    part "step $label $precision: pytorch" 150 "$python" scripts/reference/bench_train.py --config "$config" \
        --threads "$threads" "${args[@]}"
    theirs=$(last "step $label $precision: pytorch" | speed)
    if [[ -n $ours && -n $theirs ]]; then
        note "    $label, batch $batch, $precision: facerec $ours img/s, pytorch $theirs img/s, ratio $(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')x"
        printf '%s\t%s\t%s\t%s\n' "$label" "$precision" "$ours" "$theirs" >>"$out/bench.tsv"
    fi
}
: >"$out/bench.tsv"
face=configs/lfw_faceresnet_small_center.toml
mobile=configs/lfw_mobilefacenet_scratch_center.toml
bench_pair "$net" "$face" fp32 ${paper[@]+"${paper[@]}"}
bench_pair "$net" "$face" bf16 ${paper[@]+"${paper[@]}"}
last "step $net fp32: facerec" | grep 'memory at' | sed 's/^facerec: /    /' | tee -a "$summary"
if [[ $mode == cuda ]]; then
    bench_pair "MobileFaceNet" "$mobile" fp32
    bench_pair "MobileFaceNet" "$mobile" bf16
fi
awk -F'\t' '$2 == "fp32" { f[$1] = $3 } $2 == "bf16" { b[$1] = $3 }
    END { for (k in f) if (k in b) printf "    %s: bf16 / fp32 = %.2fx (facerec)\n", k, b[k] / f[k] }' "$out/bench.tsv" | tee -a "$summary"

# --- 4. memory: the largest batch whose step fits ---------------------------------------------------
fits=
for b in $batches; do
    part "step fits at batch $b" 90 "$f" -q bench "$face" --batch "$b" --classes 10575 --steps 1 \
        --set device="$mode" --threads "$threads" --memory ${paper[@]+"${paper[@]}"} || { failed=$((failed - 1)); break; }
    fits=$b
    last "step fits at batch $b" | grep 'memory at' | sed 's/^facerec: /    /' | tee -a "$summary"
done
note "    $net (fp32, 10,575 classes): the largest batch tried that fits is ${fits:-none} (of: $batches; the first failure ends the search and is not counted as a failed part)"

# --- 5. a short real training run, compared with the CPU's ------------------------------------------
slice=$bundle/lfw
train() { # name precision device [--set ...]
    local name=$1 precision=$2 device=$3
    shift 3
    "$f" -q train "$face" --run-dir "$out/$name" --overwrite \
        --set data.images="$slice/images" --set data.landmarks="$slice/landmarks_5pt.tsv" \
        --set data.exclude_pairs.pairs="$slice/pairs.txt" --set eval.lfw= \
        --set schedule.epochs= --set schedule.steps=300 --set 'schedule.milestones=[200,250]' \
        --set log.every_steps=10 --set checkpoint.every_steps=0 \
        --set device="$device" --set precision="$precision" --set threads="$threads" "$@"
}
curve() { "$python" - "$@" <<'PY'
import json, sys
def losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, open(path)) if "loss" in r}
(name_a, a), (name_b, b) = [(p.split(":", 1)[0], losses(p.split(":", 1)[1])) for p in sys.argv[1:3]]
tol_first, tol_tail = float(sys.argv[3]), float(sys.argv[4])
steps = sorted(set(a) & set(b))
assert steps, "no common logged steps"
print(f"step\t{name_a}\t{name_b}")
for s in steps:
    print(f"{s}\t{a[s]:.4f}\t{b[s]:.4f}")
first = abs(a[steps[0]] - b[steps[0]]) / b[steps[0]]
tail = steps[len(steps) * 2 // 3 :]
mean_a, mean_b = sum(a[s] for s in tail) / len(tail), sum(b[s] for s in tail) / len(tail)
last = abs(mean_a - mean_b) / mean_b
print(f"first logged step {steps[0]}: {name_a} {a[steps[0]]:.4f}, {name_b} {b[steps[0]]:.4f}, {100 * first:.2f} % apart (at most {100 * tol_first:g} %)")
print(f"mean loss of the last third (steps {tail[0]}-{tail[-1]}): {name_a} {mean_a:.4f}, {name_b} {mean_b:.4f}, {100 * last:.2f} % apart (at most {100 * tol_tail:g} %)")
sys.exit(0 if first <= tol_first and last <= tol_tail else 1)
PY
}
export -f train curve
export out slice face threads python
cpu_reference=$bundle/cpu_steps.jsonl
if [[ $mode == cpu ]]; then
    if part "train 300 steps fp32 (cpu)" 900 train train_cpu fp32 cpu; then
        cp "$out/train_cpu/steps.jsonl" "$cpu_reference"
        note "    the CPU curve is now the bundle's reference: $cpu_reference"
    fi
    part "train 20 steps bf16 (cpu)" 300 train train_cpu_bf16 bf16 cpu --set schedule.steps=20 --set 'schedule.milestones=[]'
    # The comparison the GPU run makes, on what the CPU has: its bf16 steps against fp32.
    part "loss curve: cpu bf16 against fp32" 30 curve "bf16:$out/train_cpu_bf16/steps.jsonl" "fp32:$cpu_reference" 0.05 0.15
    last "loss curve: cpu bf16 against fp32" | tail -n 2 | sed 's/^/    /' | tee -a "$summary"
else
    part "train 300 steps fp32 (cuda)" 120 train train_cuda fp32 cuda
    part "train 300 steps bf16 (cuda)" 120 train train_cuda_bf16 bf16 cuda
    if [[ ! -f $cpu_reference ]]; then
        note "    no CPU reference curve in the bundle (the rehearsal makes it): training on this machine's CPU"
        part "train 300 steps fp32 (cpu)" 240 train train_cpu fp32 cpu && cp "$out/train_cpu/steps.jsonl" "$cpu_reference"
    fi
    # The first logged loss (steps 1-10, before the runs drift apart) within 2 %, the last
    # third's mean within 10 % (float sums in another order make two runs drift apart).
    part "loss curve: cuda fp32 against cpu" 30 curve "cuda:$out/train_cuda/steps.jsonl" "cpu:$cpu_reference" 0.02 0.10
    last "loss curve: cuda fp32 against cpu" | tail -n 2 | sed 's/^/    /' | tee -a "$summary"
    part "loss curve: cuda bf16 against fp32" 30 curve "bf16:$out/train_cuda_bf16/steps.jsonl" "fp32:$out/train_cuda/steps.jsonl" 0.05 0.15
    last "loss curve: cuda bf16 against fp32" | tail -n 2 | sed 's/^/    /' | tee -a "$summary"
    # The device tool brings back at most 8 plain files: the curves, not the run folders.
    for r in train_cuda train_cuda_bf16 train_cpu; do
        [[ -f $out/$r/steps.jsonl ]] && cp "$out/$r/steps.jsonl" "$out/${r}_steps.jsonl"
        rm -rf "${out:?}/$r"
    done
fi

note ""
note "$failed part(s) failed; $((SECONDS - start)) s in all"
exit $failed
