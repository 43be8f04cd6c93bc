#!/usr/bin/env bash
# Prints facerec's crate graph from Cargo's own metadata (not drawn by hand): each workspace
# crate with the workspace crates it depends on, lowest first, and fails if any crate depends
# on one above it in that order. docs/design.md shows its output.
#   scripts/crate-graph.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo metadata --no-deps --format-version 1 --offline 2>/dev/null | python3 -c '
import json, sys
meta = json.load(sys.stdin)
# The order a sample travels, with the base crates first and the applications last.
order = ["facerec-build", "facerec-core", "facerec-ops", "facerec-torchfile", "facerec-dist", "facerec-data", "facerec-model",
         "facerec-detect", "facerec-losses", "facerec-train", "facerec-eval", "facerec-onnx", "facerec-experiment", "facerec",
         "facerec-example-custom-backbone"]
names = {p["name"] for p in meta["packages"]}
deps = {p["name"]: sorted({d["name"] for d in p["dependencies"] if d["name"] in names and d["kind"] in (None, "build")})
        for p in meta["packages"]}
unknown = sorted(names - set(order))
if unknown:
    sys.exit(f"crate-graph: place {unknown} in the order of scripts/crate-graph.sh")
bad = []
for n in order:
    if n not in deps:
        continue
    below = [d for d in deps[n] if d != "facerec-build"]
    shown = ", ".join(below) if below else "(no facerec crate)"
    print(f"{n:32} <- {shown}")
    bad += [f"{n} -> {d}" for d in below if order.index(d) > order.index(n)]
if bad:
    sys.exit("crate-graph: back-edges: " + "; ".join(bad))
print("no crate depends on a crate above it")
'
