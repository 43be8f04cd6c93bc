#!/usr/bin/env python3
"""Downloads, checks and unpacks the data facerec's set-up needs (standard library only).

Subcommands (each exits non-zero with a message that says what to do):

  lfw OUT [--url BASE]       LFW, deep-funneled, into OUT: OUT/images/<Name>/<Name>_NNNN.jpg and
                             OUT/pairs.txt. Downloads lfw-deepfunneled.tgz and pairs.txt from
                             BASE (default: the official site) into OUT/downloads/, checks their
                             md5s, unpacks the archive and checks every image against one
                             manifest checksum. A second run finds OUT/.verified and returns.
                             Files put into OUT/downloads/ by hand are checked and used.
  fetch URL DEST --md5 HEX   one file; resumes DEST.part with an HTTP Range request after an
                             interruption (within a run and across runs), then checks the md5.
  extract ARCHIVE OUT --strip DIR [--manifest HEX]
                             unpacks the *.jpg files under DIR/ of a .tar.gz into OUT (made
                             whole or not at all), refusing links and paths that leave OUT.
  manifest IMAGES            prints the manifest checksum of a folder of images.
  complete-landmarks TSV --images DIR --out OUT
                             copies a landmarks file, adding a row (the mean landmarks, score
                             0) for every image under DIR that it lacks.

The manifest of a folder of images is the sha256 of the lines `<sha256 of file>  images/<rel>\n`
over its *.jpg files, sorted by path: `sha256sum` of the SHA256SUMS file of ../shared/data/lfw.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

# LFW, deep-funneled (http://vis-www.cs.umass.edu/lfw/). The md5s are the ones torchvision's
# datasets/lfw.py checks; the manifest was computed from the checked copy in ../shared/data/lfw
# (LFW_IMAGES images, 5,749 identities; crates/data/tests/fetch.rs checks data/lfw against both).
LFW_URL = "http://vis-www.cs.umass.edu/lfw/"
LFW_ARCHIVE = "lfw-deepfunneled.tgz"
LFW_ARCHIVE_MD5 = "68331da3eb755a505a502b5aacb3c201"
LFW_ARCHIVE_ROOT = "lfw-deepfunneled"
LFW_PAIRS = "pairs.txt"
LFW_PAIRS_MD5 = "9f1ba174e4e1c508ff7cdf10ac338a7d"
LFW_MANIFEST = "d1e63789bd877b67d92c5f3d7f256abd96f56a53a1945798358a9ebd9d6809c2"
LFW_IMAGES = 13233

CHUNK = 1 << 16


class Failure(Exception):
    """An error the user can act on; its text is printed as is."""


def say(msg: str) -> None:
    print(f"[fetch] {msg}", file=sys.stderr, flush=True)


class Progress:
    """One progress line on a terminal (rewritten in place), else a line every 10 %."""

    def __init__(self, label: str, total: int | None, unit: str = "MB", scale: float = 1e6):
        self.label, self.total, self.unit, self.scale = label, total, unit, scale
        self.tty = sys.stderr.isatty()
        self.last_decile = -1
        self.last_draw = 0.0

    def update(self, done: int) -> None:
        if self.total:
            decile = min(10, done * 10 // self.total)
            now = time.monotonic()
            if self.tty and (now - self.last_draw > 0.2 or done >= self.total):
                self.last_draw = now
                pct = 100 * done / self.total
                print(f"\r[fetch] {self.label}: {done / self.scale:.1f}/{self.total / self.scale:.1f} "
                      f"{self.unit} ({pct:.0f} %)", end="", file=sys.stderr, flush=True)
            elif not self.tty and decile > self.last_decile:
                self.last_decile = decile
                say(f"{self.label}: {10 * decile} %")

    def finish(self) -> None:
        if self.tty and self.total:
            print(file=sys.stderr, flush=True)


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: Path, md5: str, tries: int = 3, timeout: float = 30.0) -> None:
    """Downloads `url` to `dest` through `dest.part`, resuming after interruptions with
    `Range: bytes=N-` (as long as each try brings more bytes; `tries` in a row that bring none
    end it), and checks the md5. A `dest` already there is only checked."""
    if dest.exists():
        got = file_md5(dest)
        if got != md5:
            raise Failure(f"{dest}: md5 {got}, expected {md5} (a wrong or damaged file: delete it "
                          f"and run again to download it from {url})")
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    def size() -> int:
        return part.stat().st_size if part.exists() else 0

    fruitless = 0
    while True:
        have = size()
        error = "the connection closed early"
        try:
            complete = _fetch_once(url, part, have, timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have > 0:
                complete = True  # the part already holds the whole file; the md5 decides
            elif 400 <= e.code < 500:
                raise Failure(f"{url}: HTTP {e.code} {e.reason}") from None
            else:
                complete, error = False, f"HTTP {e.code} {e.reason}"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            complete, error = False, f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
        if complete:
            break
        fruitless = 0 if size() > have else fruitless + 1
        if fruitless >= tries:
            kept = f"; {part} keeps the {size()} bytes that arrived, a rerun resumes it" if size() else ""
            raise Failure(f"{url}: {error} ({tries} tries in a row brought nothing{kept})")
        if size() > 0:
            say(f"{url}: interrupted at byte {size()} ({error}); resuming")
        else:
            say(f"{url}: {error}; trying again")
        time.sleep(0.5 * fruitless)
    got = file_md5(part)
    if got != md5:
        part.unlink()
        raise Failure(f"{url}: md5 {got}, expected {md5}: the download is not the expected file "
                      f"(removed; a truncated or altered copy, or the server changed it)")
    os.replace(part, dest)


def _fetch_once(url: str, part: Path, have: int, timeout: float) -> bool:
    """One request, appending to `part` from byte `have`. True when the body arrived whole."""
    request = urllib.request.Request(url, headers={"User-Agent": "facerec-setup"})
    if have > 0:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        status = getattr(resp, "status", None) or 200  # file:// has no status
        if status == 206:
            content_range = resp.headers.get("Content-Range", "")
            start = content_range.split(" ")[-1].split("-")[0] if content_range else ""
            if start != str(have):
                raise http.client.HTTPException(f"asked for bytes {have}-, got range {content_range!r}")
            mode, done = "ab", have
        else:
            mode, done = "wb", 0  # no range support: start again
        length = resp.headers.get("Content-Length")
        expected = done + int(length) if length is not None else None
        bar = Progress(url.rsplit("/", 1)[-1], expected)
        with open(part, mode) as f:
            try:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    done += len(block)
                    bar.update(done)
            except http.client.IncompleteRead as e:
                f.write(e.partial)
                return False
            finally:
                bar.finish()
        return expected is None or done >= expected


class _Counting:
    """A read-only file object that counts the bytes read through it."""

    def __init__(self, f):
        self.f, self.count = f, 0

    def read(self, n=-1):
        block = self.f.read(n)
        self.count += len(block)
        return block


def _member_path(name: str, strip: str) -> PurePosixPath | None:
    """The path of a member below `strip/`, or None when it is outside it; raises on paths
    that could leave the output folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise Failure(f"unsafe path in archive: {name!r}")
    parts = [p for p in path.parts if p != "."]
    if len(parts) < 2 or parts[0] != strip:
        return None
    return PurePosixPath(*parts[1:])


def extract(archive: Path, out: Path, strip: str, manifest: str | None) -> str:
    """Unpacks the *.jpg files below `strip/` of `archive` into `out` (through a temporary
    sibling folder, renamed at the end) and returns their manifest checksum, which must equal
    `manifest` when one is given."""
    if not archive.is_file():
        raise Failure(f"{archive}: not found")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lines: list[tuple[str, str]] = []
    other = 0
    total = archive.stat().st_size
    try:
        with open(archive, "rb") as raw:
            counting = _Counting(raw)
            bar = Progress(f"unpacking {archive.name}", total)
            try:
                with tarfile.open(fileobj=counting, mode="r|gz") as tar:
                    for member in tar:
                        rel = _member_path(member.name, strip)
                        if member.isdir():
                            continue
                        if not member.isfile():
                            raise Failure(f"{archive}: {member.name!r} is not a regular file "
                                          f"(links and devices are refused)")
                        if rel is None or rel.suffix.lower() != ".jpg":
                            other += 1
                            continue
                        target = tmp.joinpath(*rel.parts)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        h = hashlib.sha256()
                        src = tar.extractfile(member)
                        with open(target, "wb") as f:
                            for block in iter(lambda: src.read(CHUNK), b""):
                                h.update(block)
                                f.write(block)
                        lines.append((f"images/{rel}", h.hexdigest()))
                        bar.update(counting.count)
            finally:
                bar.finish()
        if not lines:
            raise Failure(f"{archive}: no *.jpg files under {strip}/ (not the expected archive)")
    except (EOFError, tarfile.TarError, zlib.error, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise Failure(f"{archive}: truncated or damaged ({type(e).__name__}: {e}); delete it and "
                      f"run again to download it anew") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    got = manifest_of(lines)
    if manifest is not None and got != manifest:
        shutil.rmtree(tmp, ignore_errors=True)
        raise Failure(f"{archive}: the {len(lines)} images unpacked have manifest sha256 {got}, "
                      f"expected {manifest} (not the expected release of the images)")
    if other:
        say(f"{archive}: left out {other} files that are not images below {strip}/")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return got


def manifest_of(lines: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for path, digest in sorted(lines, key=lambda line: line[0].encode()):
        h.update(f"{digest}  {path}\n".encode())
    return h.hexdigest()


def manifest_of_folder(images: Path) -> tuple[str, int]:
    lines = []
    for path in images.rglob("*"):
        if path.is_file() and path.suffix.lower() == ".jpg":
            h = hashlib.sha256(path.read_bytes()).hexdigest()
            lines.append((f"images/{path.relative_to(images).as_posix()}", h))
    return manifest_of(lines), len(lines)


def lfw(out: Path, base_url: str, archive_md5: str, pairs_md5: str, manifest: str) -> None:
    stamp = out / ".verified"
    want = f"{manifest} {pairs_md5}\n"
    if stamp.is_file() and stamp.read_text() == want and (out / "images").is_dir() \
            and (out / LFW_PAIRS).is_file():
        return
    out = out.resolve()
    downloads = out / "downloads"
    base = base_url if base_url.endswith("/") else base_url + "/"
    stamp.unlink(missing_ok=True)
    try:
        for name, md5 in ((LFW_PAIRS, pairs_md5), (LFW_ARCHIVE, archive_md5)):
            say(f"LFW: {name} from {base}{name} into {downloads}")
            fetch(base + name, downloads / name, md5)
    except Failure as e:
        raise Failure(
            f"could not get LFW: {e}\n"
            f"  Put these two files, from {LFW_URL} (or any copy with the same md5), into "
            f"{downloads}/ and run scripts/setup.sh again:\n"
            f"    {LFW_ARCHIVE}  md5 {archive_md5}  (deep-funneled images, about 110 MB)\n"
            f"    {LFW_PAIRS}             md5 {pairs_md5}\n"
            f"  or set FACEREC_DATA to a folder whose lfw/ holds images/<Name>/<Name>_NNNN.jpg "
            f"and pairs.txt (landmarks_5pt.tsv too, or the set-up makes it),\n"
            f"  or FACEREC_LFW_URL to another server with the same two files."
        ) from None
    extract(downloads / LFW_ARCHIVE, out / "images", LFW_ARCHIVE_ROOT, manifest)
    shutil.copyfile(downloads / LFW_PAIRS, out / LFW_PAIRS)
    (downloads / LFW_ARCHIVE).unlink()  # checked and unpacked; the stamp records it
    stamp.write_text(want)
    say(f"LFW: images and pairs.txt checked, in {out}")


def complete_landmarks(tsv: Path, images: Path, out: Path) -> None:
    header, rows = None, {}
    for line in tsv.read_text().splitlines():
        if line.startswith("#"):
            header = header or line
        elif line.strip():
            rows[line.split("\t", 1)[0]] = line
    if not rows:
        raise Failure(f"{tsv}: no landmarks at all")
    sums = [0.0] * 10
    for line in rows.values():
        for i, v in enumerate(line.split("\t")[1:11]):
            sums[i] += float(v)
    mean = "\t".join(f"{s / len(rows):.1f}" for s in sums)
    missing = sorted(
        p.relative_to(images).as_posix()
        for p in images.glob("*/*")
        if p.is_file() and p.suffix.lower().lstrip(".") in ("jpg", "jpeg", "png", "pgm", "ppm", "bmp")
        and p.relative_to(images).as_posix() not in rows
    )
    for rel in missing:
        rows[rel] = f"{rel}\t{mean}\t0.000"
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        say(f"{out}: no face found in {len(missing)} images ({shown}); they get the mean "
            f"landmarks with score 0")
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w") as f:
        if header:
            f.write(header + "\n")
        for rel in sorted(rows, key=str.encode):
            f.write(rows[rel] + "\n")
    os.replace(tmp, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("lfw")
    p.add_argument("out", type=Path)
    p.add_argument("--url", default=LFW_URL, help="folder URL holding the two files")
    # The checksums are LFW's; tests pass those of their own small files.
    p.add_argument("--archive-md5", default=LFW_ARCHIVE_MD5)
    p.add_argument("--pairs-md5", default=LFW_PAIRS_MD5)
    p.add_argument("--manifest", default=LFW_MANIFEST)
    p = sub.add_parser("fetch")
    p.add_argument("url")
    p.add_argument("dest", type=Path)
    p.add_argument("--md5", required=True)
    p.add_argument("--tries", type=int, default=3, help="tries in a row without progress before giving up")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a connection may stall")
    p = sub.add_parser("extract")
    p.add_argument("archive", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--strip", required=True)
    p.add_argument("--manifest")
    p = sub.add_parser("manifest")
    p.add_argument("images", type=Path)
    p = sub.add_parser("complete-landmarks")
    p.add_argument("tsv", type=Path)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    try:
        if args.cmd == "lfw":
            lfw(args.out, args.url, args.archive_md5, args.pairs_md5, args.manifest)
        elif args.cmd == "fetch":
            fetch(args.url, args.dest, args.md5, args.tries, args.timeout)
        elif args.cmd == "extract":
            print(extract(args.archive, args.out, args.strip, args.manifest))
        elif args.cmd == "manifest":
            digest, n = manifest_of_folder(args.images)
            print(f"{digest}  {n} images")
        elif args.cmd == "complete-landmarks":
            complete_landmarks(args.tsv, args.images, args.out)
    except Failure as e:
        print(f"[fetch] error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
