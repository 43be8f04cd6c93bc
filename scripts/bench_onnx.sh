#!/usr/bin/env bash
# Inference speed: facerec's embedding path (`facerec bench MODEL --extract --no-mirror`: the
# backbone in inference mode through facerec_eval::features::embed_batch, what `facerec embed`
# runs) against onnxruntime running the same model exported by `facerec export --onnx`
# (scripts/reference/bench_onnx.py), on the same aligned LFW crops, with the same number of
# threads, at batch 1 and 64, alternating rounds in this invocation; prints each side's median
# round and the ratio (> 1: facerec faster).
#
#   [ROUNDS=3] scripts/bench_onnx.sh [THREADS=$(nproc)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
threads=${1:-$(nproc)}
rounds=${ROUNDS:-3}
scripts/setup.sh >/dev/null
cargo build --release --locked -p facerec 2>/dev/null
py=.deps/venv/bin/python
f=target/release/facerec
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $threads threads;" \
    "onnxruntime $("$py" -c 'import onnxruntime; print(onnxruntime.__version__)'); $(date -u +%F)"

# 64 aligned LFW crops (caffe-face's 112x96 template).
"$f" -q align --images data/lfw/images --landmarks data/lfw/landmarks_5pt.tsv --out "$tmp/crops" --limit 64 >/dev/null

# The models: the published MobileFaceNet, and Face-ResNets (the shipped small one and the
# paper's) with random weights from the PyTorch twin (scripts/reference/models.py), imported.
"$f" -q import data/pretrained/mobilefacenet_casia/mobilefacenet_casia_068.ckpt --backbone mobilefacenet \
    --out "$tmp/mobilefacenet.safetensors" >/dev/null
face_resnet() { # name widths blocks feature_dim
    "$py" - "$tmp/$1.pt.safetensors" "{\"name\": \"face_resnet\", \"widths\": $2, \"blocks\": $3, \"feature_dim\": $4}" <<'PY'
import json, sys
sys.path.insert(0, "scripts/reference")
import torch
from models import build
from safetensors.torch import save_file
torch.manual_seed(0)
save_file(build(json.loads(sys.argv[2])).state_dict(), sys.argv[1])
PY
    "$f" -q import "$tmp/$1.pt.safetensors" --backbone face_resnet --set "widths=$2" --set "blocks=$3" --set "feature_dim=$4" \
        --out "$tmp/$1.safetensors" >/dev/null
}
face_resnet faceresnet_small "[8,16,32,64,128]" "[1,1,1,1]" 128
face_resnet faceresnet_paper "[32,64,128,256,512]" "[1,2,5,3]" 512
for m in mobilefacenet faceresnet_small faceresnet_paper; do
    "$f" -q export "$tmp/$m.safetensors" --onnx "$tmp/$m.onnx" >/dev/null
done

source scripts/lib/rounds.sh
ours() { # model batch steps
    "$f" -q bench "$tmp/$1.safetensors" --extract --no-mirror --images "$tmp/crops" --batch "$2" --steps "$3" --threads "$threads"
}
theirs() {
    "$py" scripts/reference/bench_onnx.py --model "$tmp/$1.onnx" --images "$tmp/crops" --batch "$2" --steps "$3" --threads "$threads"
}
compare() { # label model batch steps
    local label=$1
    shift
    alternate "$label" onnxruntime "$@"
}

echo "== facerec embedding path / onnxruntime on the exported model (median of $rounds alternating rounds each)"
compare "MobileFaceNet, batch 1" mobilefacenet 1 40
compare "MobileFaceNet, batch 64" mobilefacenet 64 8
compare "Face-ResNet small, batch 1" faceresnet_small 1 40
compare "Face-ResNet small, batch 64" faceresnet_small 64 8
compare "Face-ResNet (paper), batch 1" faceresnet_paper 1 20
compare "Face-ResNet (paper), batch 64" faceresnet_paper 64 3
