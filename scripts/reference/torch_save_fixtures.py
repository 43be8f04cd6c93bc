"""Checkpoints written by torch.save, for crates/torchfile/tests/read.rs, with the values the
Rust reader must find in them written beside as safetensors (what torch.load gives, made
contiguous).

    python torch_save_fixtures.py OUT_DIR [--checkpoint CKPT]

Writes into OUT_DIR:
  zip_nested.pt, legacy_nested.pt   {"epoch": 3, "lr": 0.1, "tag": "fixture", "state_dict": sd}
                                    in the zip format (torch >= 1.6) and the legacy one
  zip_proto4.pt, legacy_proto4.pt   the same with pickle_protocol=4 (FRAME, MEMOIZE, ...)
  dataparallel.pt                   sd with every name prefixed "module." (nn.DataParallel)
  module.pt, module_legacy.pt       a whole nn.Module (torch.save(model)), not a state dict
  no_state_dict.pt                  {"epoch": 5, "best": 0.9, "optimizer": {"lr": 0.1}}
  other_key.pt                      {"step": 10, "ema_weights": {"w": ..., "b": ...}}
  torchscript.pt                    torch.jit.save of a scripted nn.Linear
  legacy_view.pt                    a legacy file whose tensor lies in a storage view (torch < 0.4),
                                    and legacy_view.safetensors: what torch.load reads from it
  expected.safetensors              sd as torch.load returns it, each tensor contiguous
With --checkpoint, also checkpoint_expected.safetensors: torch.load(CKPT)'s state dict
(found as the Rust reader finds it) and checkpoint_extra.json: its other top-level entries.

    python torch_save_fixtures.py --corpus fuzz/corpus/torchfile

writes instead the small seeds of the fuzz corpus (committed): valid_zip.pt, valid_legacy.pt,
their first halves (truncated_*.pt) and a pickled nn.Linear (module_linear.pt).
"""

import argparse
import json
import os
from collections import OrderedDict

import torch
from safetensors.torch import save_file
from torch import nn


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 2, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)


def state_dict():
    """Several dtypes, a 0-d tensor, views (transposed, broadcast, sharing one storage at an
    offset), an empty tensor and an nn.Parameter, on top of a real module's state_dict()
    (an OrderedDict with _metadata)."""
    torch.manual_seed(0)
    model = TinyNet()
    model.bn.num_batches_tracked.fill_(7)
    model.bn.running_mean.normal_()
    sd = model.state_dict()
    base = torch.arange(12, dtype=torch.float32) * 0.5
    sd["extra.f64"] = torch.randn(3, dtype=torch.float64)
    sd["extra.f16"] = torch.randn(2, 3).half()
    sd["extra.bf16"] = torch.randn(5).bfloat16()
    sd["extra.i32"] = torch.tensor([-2, 0, 2**31 - 1], dtype=torch.int32)
    sd["extra.i16"] = torch.tensor([-300, 7], dtype=torch.int16)
    sd["extra.i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["extra.u8"] = torch.arange(250, 256).to(torch.uint8)
    sd["extra.u16"] = torch.tensor([1, 65535], dtype=torch.uint16)  # _rebuild_tensor_v3
    sd["extra.bool"] = torch.tensor([[True, False, True], [False, False, True]])
    sd["extra.scalar_f32"] = torch.tensor(2.5)
    sd["extra.transposed"] = torch.randn(3, 5).t()  # [5, 3], strides (1, 5)
    sd["extra.column"] = torch.randn(4, 6)[1:, 2]  # offset 8, stride 6
    sd["extra.broadcast"] = torch.tensor([1.0, 2.0]).view(2, 1).expand(2, 3)  # stride (1, 0)
    sd["shared.a"] = base[2:6]  # one storage, offset 2
    sd["shared.b"] = base[6:].view(2, 3)  # the same storage, offset 6
    sd["extra.empty"] = torch.zeros(0, 3)
    sd["extra.parameter"] = nn.Parameter(torch.randn(2))  # _rebuild_parameter
    return model, sd


class _View:
    """Stands for a storage view in legacy_view's pickle."""


class _ViewTensor:
    """Pickles as a 2 x 2 float tensor at offset 1 of a storage view."""

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (_View(), 1, (2, 2), (2, 1), False, OrderedDict())


def legacy_view(path):
    """The legacy format as torch < 0.4 wrote a tensor of a storage view: the persistent id's
    view_metadata (view_key, offset, size) says the view is elements 4..10 of storage 'root'."""
    import pickle
    import struct
    import sys

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _View):
                return ("storage", torch.FloatStorage, "root", "cpu", 10, ("view", 4, 6))
            return None

    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    with open(path, "wb") as f:
        for header in [0x1950A86A20F9469CFC6C, 1001, sys_info]:
            pickle.dump(header, f, protocol=2)
        Pickler(f, protocol=2).dump({"w": _ViewTensor()})
        pickle.dump(["root"], f, protocol=2)
        f.write(struct.pack("<q", 10))
        f.write(torch.arange(10, dtype=torch.float32).numpy().tobytes())


def contiguous(sd):
    return {k: v.detach().contiguous().clone() for k, v in sd.items() if isinstance(v, torch.Tensor)}


def find_state_dict(obj):
    """Where crates/torchfile looks: a dict of tensors itself, or under one of these keys."""
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return None, obj
    for key in ["state_dict", "net_state_dict", "model_state_dict", "model", "net", "module", "state", "params"]:
        if isinstance(obj.get(key), dict):
            return key, obj[key]
    raise SystemExit("no state dict in the checkpoint")


def corpus(out):
    os.makedirs(out, exist_ok=True)
    sd = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]).t(), "n": torch.tensor(3)}
    for name, zipped in [("zip", True), ("legacy", False)]:
        path = os.path.join(out, f"valid_{name}.pt")
        torch.save({"epoch": 1, "state_dict": sd}, path, _use_new_zipfile_serialization=zipped)
        with open(path, "rb") as f:
            data = f.read()
        with open(os.path.join(out, f"truncated_{name}.pt"), "wb") as f:
            f.write(data[: len(data) // 2])
    torch.manual_seed(0)
    torch.save(nn.Linear(1, 1), os.path.join(out, "module_linear.pt"), _use_new_zipfile_serialization=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", nargs="?")
    parser.add_argument("--checkpoint")
    parser.add_argument("--corpus")
    args = parser.parse_args()
    if args.corpus:
        return corpus(args.corpus)
    if not args.out:
        parser.error("OUT_DIR is needed without --corpus")
    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)  # noqa: E731

    model, sd = state_dict()
    nested = {"epoch": 3, "lr": 0.1, "tag": "fixture", "state_dict": sd}
    torch.save(nested, out("zip_nested.pt"))
    torch.save(nested, out("legacy_nested.pt"), _use_new_zipfile_serialization=False)
    torch.save(nested, out("zip_proto4.pt"), pickle_protocol=4)
    torch.save(nested, out("legacy_proto4.pt"), _use_new_zipfile_serialization=False, pickle_protocol=4)
    torch.save(OrderedDict(("module." + k, v) for k, v in sd.items()), out("dataparallel.pt"))
    torch.save(model, out("module.pt"))
    torch.save(model, out("module_legacy.pt"), _use_new_zipfile_serialization=False)
    save_file(contiguous(torch.load(out("zip_nested.pt"))["state_dict"]), out("expected.safetensors"))
    torch.save({"epoch": 5, "best": 0.9, "optimizer": {"lr": 0.1}}, out("no_state_dict.pt"))
    torch.save({"step": 10, "ema_weights": {"w": torch.ones(2, 2), "b": torch.zeros(2)}}, out("other_key.pt"))
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), out("torchscript.pt"))
    legacy_view(out("legacy_view.pt"))
    save_file(contiguous(torch.load(out("legacy_view.pt"))), out("legacy_view.safetensors"))

    if args.checkpoint:
        ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        key, found = find_state_dict(ckpt)
        save_file(contiguous(found), out("checkpoint_expected.safetensors"))
        extra = {k: v for k, v in ckpt.items() if k != key and isinstance(v, (int, float, str, bool))}
        with open(out("checkpoint_extra.json"), "w") as f:
            json.dump({"key": key, "extra": extra}, f)


if __name__ == "__main__":
    main()
