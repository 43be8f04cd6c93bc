"""Runs a command and reports its wall time and peak resident memory (the largest of the
command and its descendants, from getrusage), on stderr:

  peak_rss.py -- target/release/facerec align ...
"""
import resource
import subprocess
import sys
import time

args = sys.argv[1:]
if args[:1] == ["--"]:
    args = args[1:]
t0 = time.perf_counter()
rc = subprocess.call(args)
wall = time.perf_counter() - t0
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"[peak_rss] exit {rc}, wall {wall:.1f} s, peak RSS {peak_kib / 1024:.0f} MiB", file=sys.stderr)
sys.exit(rc)
