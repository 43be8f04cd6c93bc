#!/usr/bin/env python3
"""A model written by `facerec export --onnx`, checked by the ONNX project's tools, run by
onnxruntime and by insightface's model-zoo check. Prints one JSON object.

  check_onnx.py run --model m.onnx --inputs x.npy --features f.npy --batches 1,32
      onnx.checker.check_model(full_check=True) (which runs ONNX's shape inference too), then
      onnxruntime (CPUExecutionProvider) on the first B rows of the inputs for each batch size
      B. Prints the checker's verdict, the opset and IR version, the node types, the input and
      output dimensions (a string for a named, dynamic one), metadata_props, and per batch size
      the max abs difference to facerec's features (the first B rows of f.npy) and the largest
      absolute feature.
  check_onnx.py zoo --model m.onnx --crops a.png b.png ... --features f.npy
      insightface's model-zoo check, arcface_torch/onnx_helper.py's ArcFaceORT imported from
      ../shared/reference (or $FACEREC_REFERENCE): the model in a folder of its own with
      pixel_norm.txt (input_mean, input_std) and, for an input other than 112x112, crop.txt
      (crop_in_112x112 and the input's width and height), both written from the model's
      metadata_props as docs/getting-started.md tells users to. Runs ArcFaceORT.check on the
      first crop (its time limit, 15 ms a face, is about the machine: the measured time is
      reported, not enforced), then ArcFaceORT.forward on all the crops, images as cv2.imread
      reads them (BGR, the model zoo's convention), and prints the max abs difference to
      facerec's features of the same crops. Also says what normalisation the zoo assumes for
      the model without pixel_norm.txt (it looks for Sub and Mul nodes at the front).
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import types

import numpy as np
import onnx
import onnxruntime


def dims(value_info):
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value_info.type.tensor_type.shape.dim]


def session(path):
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 2
    return onnxruntime.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def run(a):
    model = onnx.load(a.model)
    try:
        onnx.checker.check_model(model, full_check=True)
        checker = "ok"
    except Exception as e:  # the message is the result
        checker = f"{type(e).__name__}: {e}"
    out = {
        "checker": checker,
        "ir_version": model.ir_version,
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "op_types": sorted({n.op_type for n in model.graph.node}),
        "nodes": len(model.graph.node),
        "input": {"name": model.graph.input[0].name, "dims": dims(model.graph.input[0])},
        "output": {"name": model.graph.output[0].name, "dims": dims(model.graph.output[0])},
        "metadata": {p.key: p.value for p in model.metadata_props},
        "batches": {},
    }
    x = np.load(a.inputs).astype(np.float32)
    want = np.load(a.features)
    sess = session(a.model)
    name = sess.get_inputs()[0].name
    for b in (int(s) for s in a.batches.split(",")):
        got = sess.run(None, {name: x[:b]})[0]
        out["batches"][str(b)] = {
            "shape": list(got.shape),
            "max_abs_diff": float(np.abs(got - want[:b]).max()),
            "max_abs": float(np.abs(want[:b]).max()),
        }
    print(json.dumps(out))


def zoo(a):
    import cv2

    reference = os.environ.get("FACEREC_REFERENCE") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/reference")
    sys.path.insert(0, os.path.join(reference, "arcface_torch"))
    # onnx_helper imports insightface.data.get_image for a default test image; the crops are
    # given, so the package (not installed here) is never used.
    stub = types.ModuleType("insightface.data")
    stub.get_image = lambda name: (_ for _ in ()).throw(RuntimeError("no insightface package"))
    sys.modules.setdefault("insightface", types.ModuleType("insightface"))
    sys.modules["insightface.data"] = stub
    import onnx_helper

    meta = {p.key: p.value for p in onnx.load(a.model).metadata_props}
    height, width = (int(v) for v in meta["input_size"].split("x"))
    crops = [cv2.imread(p) for p in a.crops]
    want = np.load(a.features)
    out = {}
    measured = {}

    def handler(folder, pixel_norm):
        shutil.copy(a.model, os.path.join(folder, "model.onnx"))
        if pixel_norm:
            with open(os.path.join(folder, "pixel_norm.txt"), "w") as f:
                f.write(f"{meta['input_mean']}\n{meta['input_std']}\n")
        if (height, width) != (112, 112):
            x0, y0, x1, y1 = meta["crop_in_112x112"].split(",")
            with open(os.path.join(folder, "crop.txt"), "w") as f:
                f.write("\n".join([x0, y0, x1, y1, str(width), str(height)]) + "\n")
        h = onnx_helper.ArcFaceORT(folder, cpu=True)
        benchmark = h.benchmark

        def untimed(img):
            feat, cost = benchmark(img)
            measured["ms"] = cost * 1000
            return feat, 0.0

        h.benchmark = untimed
        return h

    # onnx_helper prints as it goes: to stderr, so that stdout is the JSON alone.
    with tempfile.TemporaryDirectory() as bare, tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(sys.stderr):
        # Without pixel_norm.txt: what the zoo assumes from the graph alone.
        plain = handler(bare, pixel_norm=False)
        plain.check("cfat", test_img=crops[0])
        out["assumed_without_pixel_norm"] = [plain.input_mean, plain.input_std]
        h = handler(folder, pixel_norm=True)
        out["error"] = h.check("cfat", test_img=crops[0])
        out["ms_per_face"] = measured.get("ms")
        out["input_mean"], out["input_std"] = h.input_mean, h.input_std
        out["image_size"] = list(h.image_size)
        got = h.forward(crops)
        out["shape"] = list(got.shape)
        out["max_abs_diff"] = float(np.abs(got - want).max())
        out["max_abs"] = float(np.abs(want).max())
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["run", "zoo"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs")
    ap.add_argument("--features", required=True)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--crops", nargs="+")
    a = ap.parse_args()
    run(a) if a.mode == "run" else zoo(a)


if __name__ == "__main__":
    main()
