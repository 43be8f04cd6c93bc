#!/usr/bin/env bash
# A small IJB-format set built from LFW, for testing `facerec eval --ijb` and comparing it with
# insightface's eval_ijbc.py (crates/eval/tests/ijb.rs, crates/cli/tests/cli.rs):
#
#   scripts/ijb_from_lfw.sh OUT [--lfw data/lfw] [--identities 40] [--seed 0] [--impostors 6]
#
# OUT/loose_crop/<row>.jpg             LFW images (250x250, copied unchanged), one file per row
# OUT/meta/ijbc_face_tid_mid.txt       <row>.jpg template_id media_id
# OUT/meta/ijbc_name_5pts_score.txt    <row>.jpg x1 y1 ... x5 y5 score: the five points of
#                                      data/lfw/landmarks_5pt.tsv (MTCNN's, in the LFW image's
#                                      pixels) and its score column (MTCNN's output-net face
#                                      probability) as the detector score
# OUT/meta/ijbc_template_pair_label.txt template_id template_id label (1 genuine, 0 impostor)
#
# Identities with at least 4 landmarked images are drawn with a seeded random generator; each
# gives 2 or 3 disjoint templates of 1-6 of its images, the images of a template spread over 1-3
# media (media ids are unique over the set, as IJB's). Genuine pairs: every two templates of an
# identity; impostor pairs: each template with --impostors templates of other identities.
# Template ids are not consecutive (100 + 7k), as IJB's are not. Deterministic for a seed.
# Needs scripts/setup.sh (LFW and its landmarks); Python 3 standard library only.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out=${1:?usage: scripts/ijb_from_lfw.sh OUT [--lfw DIR] [--identities N] [--seed S] [--impostors K]}
shift
py=${FACEREC_PYTHON:-$repo/.deps/venv/bin/python}
[[ -x $py ]] || py=python3
exec "$py" - "$out" "$repo/data/lfw" "$@" <<'EOF'
import argparse, os, random, shutil, sys

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("default_lfw")
ap.add_argument("--lfw")
ap.add_argument("--identities", type=int, default=40)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--impostors", type=int, default=6)
a = ap.parse_args()
lfw = a.lfw or a.default_lfw
tsv = os.path.join(lfw, "landmarks_5pt.tsv")
if not os.path.isfile(tsv):
    sys.exit(f"{tsv} not found: run scripts/setup.sh (LFW and its landmarks), or give --lfw")
points = {}
with open(tsv) as f:
    for n, line in enumerate(f, 1):
        if line.startswith("#") or not line.strip():
            continue
        cols = line.rstrip("\n").split("\t")
        if len(cols) != 12:
            sys.exit(f"{tsv}:{n}: expected 12 tab-separated columns (image, 10 numbers, score), got {len(cols)}")
        points[cols[0]] = (cols[1:11], cols[11])
by_id = {}
for name in sorted(points):
    by_id.setdefault(name.split("/")[0], []).append(name)
rng = random.Random(a.seed)
candidates = sorted(i for i, imgs in by_id.items() if len(imgs) >= 4)
if len(candidates) < a.identities:
    sys.exit(f"only {len(candidates)} LFW identities have 4 landmarked images; asked for {a.identities}")
chosen = sorted(rng.sample(candidates, a.identities))
crops = os.path.join(a.out, "loose_crop")
meta = os.path.join(a.out, "meta")
os.makedirs(crops, exist_ok=True)
os.makedirs(meta, exist_ok=True)
rows, templates = [], []  # rows: (file, tid, mid, lfw name); templates: (tid, identity)
media = 0
for ident in chosen:
    imgs = by_id[ident][:]
    rng.shuffle(imgs)
    count = rng.choice([2, 3]) if len(imgs) >= 6 else 2
    for t in range(count):
        left = len(imgs) - (count - t - 1)  # leave one image for each template still to come
        size = rng.randint(1, min(6, left))
        mine, imgs = imgs[:size], imgs[size:]
        tid = 100 + 7 * len(templates)
        templates.append((tid, ident))
        medias = []
        for _ in range(rng.randint(1, min(3, size))):
            media += 1
            medias.append(media)
        for k, name in enumerate(mine):
            # every media gets an image first, then the rest at random
            mid = medias[k] if k < len(medias) else rng.choice(medias)
            rows.append((f"{len(rows) + 1}.jpg", tid, mid, name))
pairs = []
for i, (ti, ii) in enumerate(templates):
    for tj, ij in templates[i + 1:]:
        if ij == ii:
            pairs.append((ti, tj, 1))
    others = [t for t, j in templates if j != ii]
    for tj in rng.sample(others, a.impostors):
        pairs.append((ti, tj, 0))
rng.shuffle(pairs)
with open(os.path.join(meta, "ijbc_face_tid_mid.txt"), "w") as f:
    for file, tid, mid, _ in rows:
        f.write(f"{file} {tid} {mid}\n")
with open(os.path.join(meta, "ijbc_name_5pts_score.txt"), "w") as f:
    for file, _, _, name in rows:
        xy, score = points[name]
        f.write(" ".join([file] + xy + [score]) + "\n")
with open(os.path.join(meta, "ijbc_template_pair_label.txt"), "w") as f:
    for t1, t2, label in pairs:
        f.write(f"{t1} {t2} {label}\n")
for file, _, _, name in rows:
    shutil.copyfile(os.path.join(lfw, "images", name), os.path.join(crops, file))
genuine = sum(p[2] for p in pairs)
print(f"{a.out}: {len(rows)} images, {len(templates)} templates of {len(chosen)} identities, {media} media, "
      f"{len(pairs)} pairs ({genuine} genuine, {len(pairs) - genuine} impostor)")
EOF
