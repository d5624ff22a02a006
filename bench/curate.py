#!/usr/bin/env python3
"""Import + curate benchmark: prints rows/s per stage and peak RSS per command."""
import json
import os
import resource
import subprocess
import sys
import time

distill, config, work = sys.argv[1], sys.argv[2], sys.argv[3]
inputs = sys.argv[4:]


def run(args):
    """Run a command in a fresh process; return (seconds, peak RSS MiB, stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, _, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read()
    if proc.returncode not in (None, 0) and usage is None:
        sys.exit(err)
    return seconds, usage.ru_maxrss / 1024, err


rows = []
for name, path in (i.split("=", 1) for i in inputs):
    raw, cur = f"{work}/{name}-raw", f"{work}/{name}-curated"
    secs, rss, err = run([distill, "data", "import", path, "--text", "Document", "--label", "Topic_group", "--out", raw])
    manifest = json.load(open(f"{raw}/dataset.json"))
    n = manifest["rows"]
    rows.append((name, "import (csv -> parquet)", n, secs, n / secs, rss))
    secs, rss, err = run([distill, "data", "curate", raw, "--config", config, "--out", cur])
    cur_manifest = json.load(open(f"{cur}/dataset.json"))
    for step in cur_manifest["curation"]["steps"]:
        rows.append((name, step["step"], step["rows_in"], step["seconds"], step["rows_per_second"], None))
    rows.append((name, "curate total (load + steps + write)", n, secs, n / secs, rss))
    rows.append((name, f"kept {cur_manifest['rows']} of {n}", None, None, None, None))

print(f"| data | stage | rows in | seconds | rows/s | peak RSS (MiB) |")
print(f"|---|---|---:|---:|---:|---:|")
for name, stage, n, secs, rate, rss in rows:
    cell = lambda v, f: "" if v is None else f.format(v)
    print(f"| {name} | {stage} | {cell(n, '{:,}')} | {cell(secs, '{:.2f}')} | {cell(rate, '{:,.0f}')} | {cell(rss, '{:.0f}')} |")
