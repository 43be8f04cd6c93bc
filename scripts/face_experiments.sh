#!/usr/bin/env bash
# The face results of docs/results.md: model A (softmax) and model C (softmax + center loss)
# from configs/lfw_faceresnet_small_{softmax,center}.toml with several seeds, then a lambda and
# an alpha sweep around C (seed 1, the paper's Fig. 5 at small scale: lambda at alpha 0.5, alpha
# at lambda 0.003; model A is lambda 0 and C is the default point), then the tables.
#
#   scripts/face_experiments.sh [--jobs J] [--seeds "1 2 3"] [--lambdas "0.03"]
#                               [--alphas "0.1"] [--no-sweep] [--runs DIR] [--configs NAME]
#                               [--losses "L1 L2 ..." | --losses all] [--only-losses]
#
# NAME picks the pair configs/lfw_NAME_{softmax,center}.toml (default faceresnet_small;
# mobilefacenet_finetune fine-tunes the shared MobileFaceNet checkpoint, see
# scripts/mobilefacenet.sh).
# --losses adds the comparison losses of docs/results.md, each from configs/lfw_NAME_L.toml with
# the same seeds (all: contrastive center_caffe center_sgd cosface arcface arcface_center), and
# prints a paired comparison of each against model A (scripts/paired.py); --only-losses trains
# those alone (A and C still appear in the tables where their runs exist).
# Runs go to DIR (default runs/faces), one directory each; a run that has finished (its
# lfw_report.json exists) is not trained again, an unfinished one resumes from its checkpoint.
# J runs train side by side with nproc/J libtorch threads each (default J = 2: on 2 cores two
# single-threaded runs get more done than one run on both cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs=2
seeds="1 2 3"
lambdas="0.03"
alphas="0.1"
sweep=1
out=runs/faces
configs=faceresnet_small
losses=""
only_losses=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --jobs) jobs=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --lambdas) lambdas=$2; shift 2 ;;
        --alphas) alphas=$2; shift 2 ;;
        --no-sweep) sweep=0; shift ;;
        --runs) out=$2; shift 2 ;;
        --configs) configs=$2; shift 2 ;;
        --losses) losses=$2; shift 2 ;;
        --only-losses) only_losses=1; sweep=0; shift ;;
        -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $losses == all ]] && losses="contrastive center_caffe center_sgd cosface arcface arcface_center"
for l in $losses; do
    [[ -f configs/lfw_${configs}_$l.toml ]] || { echo "--losses: no configs/lfw_${configs}_$l.toml" >&2; exit 2; }
done
threads=$(( $(nproc) / jobs ))
(( threads >= 1 )) || threads=1

scripts/setup.sh >/dev/null
cargo build --release --locked -p facerec
facerec=target/release/facerec
mkdir -p "$out"

# One line per run: name, config, extra --set arguments.
plan=()
models=()
(( only_losses )) || models=(softmax center)
models+=($losses)
for s in $seeds; do
    for m in "${models[@]}"; do
        plan+=("${m}_seed$s configs/lfw_${configs}_$m.toml --set seed=$s")
    done
done
if (( sweep )); then
    for l in $lambdas; do
        plan+=("center_lambda$l configs/lfw_${configs}_center.toml --set loss.lambda=$l")
    done
    for a in $alphas; do
        plan+=("center_alpha$a configs/lfw_${configs}_center.toml --set loss.alpha=$a")
    done
fi

finished() { # run name: it has trained and been evaluated
    [[ -f $out/$1/lfw_report.json ]]
}

train_one() { # name config [--set k=v ...]
    local name=$1 config=$2; shift 2
    local dir=$out/$name
    if finished "$name"; then
        echo "[faces] $name: done already"
        return 0
    fi
    local resume=()
    [[ -d $dir/checkpoints ]] && resume=(--resume)
    echo "[faces] $name: training ($threads threads)"
    if "$facerec" -q train "$config" --run-dir "$dir" "${resume[@]}" --set "threads=$threads" "$@" >"$out/$name.log" 2>&1; then
        echo "[faces] $name: $(grep -m1 'LFW verification' "$out/$name.log")"
    else
        echo "[faces] $name: FAILED, see $out/$name.log" >&2
        return 1
    fi
}
export -f finished train_one
export out threads facerec

start=$SECONDS
failed=0
printf '%s\n' "${plan[@]}" | xargs -P "$jobs" -L 1 bash -c 'train_one "$@"' _ || failed=1
echo "[faces] all runs finished in $(( (SECONDS - start) / 60 )) min"

runs_of() { # model: its finished runs over the seeds, in seed order
    local s
    for s in $seeds; do finished "${1}_seed$s" && echo "$out/${1}_seed$s"; done
    return 0
}
if (( ! only_losses )); then
    echo
    echo "== model A (softmax) vs model C (softmax + center loss), seeds: $seeds"
    "$facerec" summary $(runs_of softmax) $(runs_of center)
fi
if [[ -n $losses ]]; then
    echo
    echo "== the comparison losses, seeds: $seeds"
    "$facerec" summary $(for m in softmax center $losses; do runs_of "$m"; done)
    for m in center $losses; do
        a=() b=()
        for s in $seeds; do # the seeds both have finished
            if finished "softmax_seed$s" && finished "${m}_seed$s"; then
                a+=("$out/softmax_seed$s") b+=("$out/${m}_seed$s")
            fi
        done
        if (( ${#a[@]} >= 2 )); then
            echo
            echo "== paired: $m against softmax (model A)"
            .deps/venv/bin/python scripts/paired.py --a "${a[@]}" --b "${b[@]}"
        fi
    done
fi
if (( sweep )); then
    echo
    echo "== sweep (seed 1): lambda at alpha 0.5, then alpha at lambda 0.003"
    "$facerec" summary "$out/softmax_seed1" "$out/center_seed1" $(for l in $lambdas; do echo "$out/center_lambda$l"; done) \
        $(for a in $alphas; do echo "$out/center_alpha$a"; done)
fi
if (( failed )); then
    echo "[faces] some runs failed (see their logs in $out); the tables above leave them out" >&2
    exit 1
fi
