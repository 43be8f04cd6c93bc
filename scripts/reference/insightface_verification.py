#!/usr/bin/env python3
"""insightface's .bin verification (arcface_torch's eval/verification.py, imported from
../shared/reference/arcface_torch or $FACEREC_ARCFACE_TORCH) on embeddings computed elsewhere,
as its `test` scores them: XNorm over the raw embeddings, image and mirror embeddings summed and
normalised (sklearn), then its `evaluate` (calculate_roc on 0..4 step 0.01, calculate_val at FAR
1e-3 on 0..4 step 0.001, sklearn's KFold(10)).

  insightface_verification.py --orig o.npy --flip f.npy --issame s.npy

Two things are stood in for, and only these: `mxnet`, which verification.py imports to decode
images (it does not install on this Python; no image is decoded here), by an empty module; and
SciPy's `interp1d`, which `calculate_val` calls with repeated FAR values that recent SciPy
refuses: it gets the same points with each repeated FAR kept once, at its last (largest)
threshold, which is facerec's rule (crates/eval/src/insightface.rs). Prints one JSON object.
"""
import argparse
import json
import os
import sys
import types

import numpy as np


def reference_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "..", "..", "shared", "reference", "arcface_torch")
    path = os.path.abspath(os.environ.get("FACEREC_ARCFACE_TORCH", default))
    if not os.path.isfile(os.path.join(path, "eval", "verification.py")):
        sys.exit(f"arcface_torch not found at {path} (set FACEREC_ARCFACE_TORCH to its folder)")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orig", required=True)
    ap.add_argument("--flip", required=True)
    ap.add_argument("--issame", required=True)
    a = ap.parse_args()
    mxnet = types.ModuleType("mxnet")
    mxnet.ndarray = types.ModuleType("mxnet.ndarray")
    sys.modules["mxnet"], sys.modules["mxnet.ndarray"] = mxnet, mxnet.ndarray
    sys.path.insert(0, os.path.join(reference_dir(), "eval"))
    import sklearn.preprocessing
    import verification
    from scipy import interpolate

    base_interp1d = interpolate.interp1d

    def interp1d(x, y, kind="linear", **kw):
        x, y = np.asarray(x), np.asarray(y)
        keep = np.append(x[1:] != x[:-1], True)  # the last of each run of equal FAR values
        return base_interp1d(x[keep], y[keep], kind=kind, **kw)

    verification.interpolate.interp1d = interp1d
    orig, flip = np.load(a.orig).astype(np.float64), np.load(a.flip).astype(np.float64)
    issame = np.load(a.issame).astype(bool).tolist()
    # test(): XNorm over both lists' rows, then the sum of the two lists normalised.
    xnorm, count = 0.0, 0
    for embed in (orig, flip):
        for e in embed:
            xnorm += np.linalg.norm(e)
            count += 1
    xnorm /= count
    embeddings = sklearn.preprocessing.normalize(orig + flip)
    _, _, accuracy, val, val_std, far = verification.evaluate(embeddings, issame, nrof_folds=10)
    acc2, std2 = np.mean(accuracy), np.std(accuracy)
    print(json.dumps({
        "accuracy_mean": acc2, "accuracy_std": std2, "fold_accuracy": list(accuracy), "xnorm": xnorm,
        "val": val, "val_std": val_std, "far": far,
        "log": "XNorm: %f, Accuracy-Flip: %1.5f+-%1.5f" % (xnorm, acc2, std2),
    }))


if __name__ == "__main__":
    main()
