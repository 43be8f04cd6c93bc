# Sourced by scripts/setup.sh and scripts/build_for_torch.sh: one Python environment with a given
# torch release from PyPI, and the CUDA headers facerec-dist's NCCL backend compiles against.
# Expects say() and die() from the caller.

# torch_env VENV PACKAGE... : installs the packages (the first is torch==VERSION) into VENV once
# (a stamp file remembers what was asked for), adds CUDA's crt and CCCL headers, and sets
# torch_dir to the torch package folder (the libtorch that tch builds against).
torch_env() {
    local venv=$1
    shift
    local stamp=$venv/.facerec-installed want="$*"
    if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
        say "installing $* into $venv (about 5 GB, once)"
        [[ -x $venv/bin/python ]] || "${FACEREC_PYTHON:-python3}" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
        printf '%s' "$want" >"$stamp"
    fi
    torch_dir=$("$venv/bin/python" - <<'PY'
import pathlib, importlib.util
spec = importlib.util.find_spec("torch")
print(pathlib.Path(spec.origin).parent)
PY
    )
    [[ -f $torch_dir/lib/libtorch_cpu.so ]] || die "no libtorch_cpu.so under $torch_dir/lib"

    # CUDA headers for the shim's NCCL backend (compiling only: nothing runs without a GPU).
    # ATen's CUDA headers include crt/host_config.h and CCCL's nv/target, which the torch
    # wheel's nvidia packages leave out; the cuda-toolkit release torch pulled in has them as
    # extras.
    local cuda_inc toolkit
    cuda_inc=$(dirname "$torch_dir")/nvidia/cu13/include
    if [[ -d $cuda_inc && ! ( -e $cuda_inc/nv/target && -e $cuda_inc/crt/host_config.h ) ]]; then
        toolkit=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("cuda-toolkit"))' 2>/dev/null || true)
        if [[ -n $toolkit ]]; then
            say "installing CUDA's crt and CCCL headers (cuda-toolkit[crt,cccl]==$toolkit) for the NCCL backend"
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "cuda-toolkit[crt,cccl]==$toolkit" \
                || say "warning: could not install CUDA's headers; facerec-dist builds without NCCL (Gloo only)"
        fi
    fi
}
