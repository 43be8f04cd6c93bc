#!/usr/bin/env python3
"""IJB-B / IJB-C 1:1 verification by insightface's own code: arcface_torch's `eval_ijbc.py`
(from ../shared/reference/arcface_torch or $FACEREC_ARCFACE_TORCH), whose functions and
test-mode statements are taken out of the script with `ast` and run here, on image features
computed elsewhere.

  ijb_verification.py features --dir IJB --target IJBC --features f.npy --out DIR
      For each of the 8 test modes (F1/F0, N1/N0, D1/D0) runs the script's own step 3 (its
      `if use_flip_test / use_norm_score / use_detector_score` statements, then
      `image2template_feature`), step 4 (`verification`) and step 5 (its `for method in
      methods` loop: sklearn's roc_curve, auc, and the TAR selection, with the plot and the
      PrettyTable stood in for so that the table's row is kept). Writes DIR/<mode>_templates.npy,
      _unique.npy, _scores.npy, _fpr.npy, _tpr.npy, _thr.npy; prints one JSON object:
      {mode: {"row": [the table's cells], "auc": ..., "indices": [the ROC point of each FAR]}}.
  ijb_verification.py scores --scores s.npy --labels l.npy --out DIR
      The same step 5 on given scores: DIR/scores_fpr.npy, _tpr.npy, _thr.npy and the row.

What is stood in for, and only that: the script runs its whole evaluation at import time and
imports mxnet-era packages (menpo, prettytable, cv2, backbones) at the top, so only its
function definitions and the three mode statements are executed; `np.int` (gone since NumPy
1.24) is aliased to `int`; pandas is not installed here, so `pd.read_csv(path, sep=' ',
header=None).values` is given by `np.loadtxt(path, dtype=str)` (the line the script itself has
commented out above each call); `plt` and the colours do nothing; PrettyTable keeps the row.
"""
import argparse
import ast
import json
import os
import sys
import types

import numpy as np


def reference_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "..", "..", "shared", "reference", "arcface_torch")
    path = os.path.abspath(os.environ.get("FACEREC_ARCFACE_TORCH", default))
    if not os.path.isfile(os.path.join(path, "eval_ijbc.py")):
        sys.exit(f"arcface_torch not found at {path} (set FACEREC_ARCFACE_TORCH to its folder)")
    return path


def load_reference():
    """eval_ijbc.py's functions, mode statements and TAR loop, as code objects and a namespace."""
    path = os.path.join(reference_dir(), "eval_ijbc.py")
    tree = ast.parse(open(path).read(), path)
    wanted = {"read_template_media_list", "read_template_pair_list", "image2template_feature", "verification"}
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {f.name for f in funcs} == wanted, "eval_ijbc.py changed: functions missing"
    modes = [
        n for n in tree.body
        if isinstance(n, ast.If) and isinstance(n.test, ast.Name)
        and n.test.id in ("use_flip_test", "use_norm_score", "use_detector_score")
    ]
    assert [m.test.id for m in modes] == ["use_flip_test", "use_norm_score", "use_detector_score"]
    loops = [n for n in tree.body if isinstance(n, ast.For) and isinstance(n.target, ast.Name) and n.target.id == "method"]
    assert len(loops) == 1, "eval_ijbc.py changed: the ROC loop"
    x_labels = [n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "x_labels"]
    compile_ = lambda nodes: compile(ast.fix_missing_locations(ast.Module(body=nodes, type_ignores=[])), path, "exec")

    import sklearn
    import sklearn.preprocessing
    from sklearn.metrics import auc, roc_curve

    np.int = int  # removed in NumPy 1.24; the script's astype(np.int)
    pd = types.SimpleNamespace(read_csv=lambda p, sep=" ", header=None: types.SimpleNamespace(values=np.loadtxt(p, dtype=str, ndmin=2)))
    ns = {"np": np, "sklearn": sklearn, "pd": pd, "roc_curve": roc_curve, "auc": auc, "print": lambda *a, **k: None}
    exec(compile_(funcs + x_labels), ns)
    return ns, compile_(modes), compile_(loops)


class Table:
    def __init__(self):
        self.rows = []

    def add_row(self, row):
        self.rows.append(row)


def step5(ns, loop, label, score, target, out, stem):
    """The script's ROC loop on one method's scores; saves sklearn's curve for comparison."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(label, score)
    np.save(os.path.join(out, f"{stem}_fpr.npy"), fpr)
    np.save(os.path.join(out, f"{stem}_tpr.npy"), tpr)
    np.save(os.path.join(out, f"{stem}_thr.npy"), thr)
    table = Table()
    plt = types.SimpleNamespace(plot=lambda *a, **k: None)
    g = dict(ns, methods=np.array([stem]), scores={stem: score}, label=label, target=target,
             colours={stem: None}, plt=plt, tpr_fpr_table=table)
    exec(loop, g)
    # the point taken for each FAR: the loop again with x_labels one target long, its
    # min_index (into the flipped curve) turned into an index of sklearn's curve
    indices = []
    for x in ns["x_labels"]:
        g1 = dict(g, x_labels=[x], tpr_fpr_table=Table())
        exec(loop, g1)
        indices.append(len(fpr) - 1 - int(g1["min_index"]))
    return {"row": table.rows[0][1:], "auc": float(g["roc_auc"]), "indices": indices}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["features", "scores"])
    ap.add_argument("--dir")
    ap.add_argument("--target", default="IJBC")
    ap.add_argument("--features")
    ap.add_argument("--scores")
    ap.add_argument("--labels")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    ns, modes, loop = load_reference()
    result = {}
    if a.what == "scores":
        score = np.load(a.scores)
        label = np.load(a.labels).astype(int)
        result["scores"] = step5(ns, loop, label, score, a.target, a.out, "scores")
        print(json.dumps(result))
        return
    meta = os.path.join(a.dir, "meta")
    t = a.target.lower()
    templates, medias = ns["read_template_media_list"](os.path.join(meta, f"{t}_face_tid_mid.txt"))
    p1, p2, label = ns["read_template_pair_list"](os.path.join(meta, f"{t}_template_pair_label.txt"))
    # get_image_feature's faceness scores: the last field of each line, as float32
    lines = open(os.path.join(meta, f"{t}_name_5pts_score.txt")).readlines()
    faceness_scores = np.array([line.strip().split(" ")[-1] for line in lines]).astype(np.float32)
    img_feats = np.load(a.features)
    for flip in (1, 0):
        for norm in (1, 0):
            for det in (1, 0):
                mode = f"F{flip}N{norm}D{det}"
                g = dict(ns, img_feats=img_feats, faceness_scores=faceness_scores,
                         use_flip_test=bool(flip), use_norm_score=bool(norm), use_detector_score=bool(det))
                exec(modes, g)
                feats, unique = ns["image2template_feature"](g["img_input_feats"], templates, medias)
                score = ns["verification"](feats, unique, p1, p2)
                np.save(os.path.join(a.out, f"{mode}_templates.npy"), feats)
                np.save(os.path.join(a.out, f"{mode}_unique.npy"), unique)
                np.save(os.path.join(a.out, f"{mode}_scores.npy"), score)
                result[mode] = step5(ns, loop, label, score, a.target, a.out, mode)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
