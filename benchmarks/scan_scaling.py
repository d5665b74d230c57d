"""Wall time of the same `interp scan` with 1 process and with N processes under torchrun
(gloo on CPU), on the bundled model by default; checks that both write equal tables.
Prints a markdown table (notes/scaling.md).

    python benchmarks/scan_scaling.py                       # sinks, 1 vs 2 processes
    python benchmarks/scan_scaling.py --nproc 2 4 --analyses sinks --threads 1
    python benchmarks/scan_scaling.py --model DIR --samples 8

Each side is a fresh command (model load included, as a user runs it), in one script so
both run under the same load. --threads sets OMP_NUM_THREADS for every process (torchrun
sets 1 per process when there are several; the 1-process run gets the same by default).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from interp.run.results import open_results

from _markdown import markdown  # benchmarks/ is on sys.path when a script here runs


def scan(nproc: int, args, out: Path, env: dict) -> float:
    launcher = [sys.executable, "-m", "interp"] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m", "interp"]
    command = launcher + ["scan", "--analyses", args.analyses, "--out", str(out)]
    command += (["--model", args.model] if args.model else []) + (["--samples", str(args.samples)] if args.samples else [])
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def same_tables(a: Path, b: Path) -> bool:
    one, other = open_results(a), open_results(b)
    if one.tables() != other.tables():
        return False
    for analysis, table in one.tables():
        try:
            pd.testing.assert_frame_equal(one.read_table(analysis, table), other.read_table(analysis, table), check_exact=True)
        except AssertionError:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model for interp scan [default: bundled]")
    parser.add_argument("--analyses", default="sinks")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--nproc", type=int, nargs="+", default=[2])
    parser.add_argument("--threads", default="1", help="OMP_NUM_THREADS of every process")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": args.threads, "INTERP_PROGRESS": "0"}

    with tempfile.TemporaryDirectory() as tmp:
        rows, reference = [], Path(tmp) / "nproc-1"
        base = scan(1, args, reference, env)
        rows.append({"processes": 1, "wall_s": base, "speedup": 1.0, "tables_equal": True})
        for nproc in args.nproc:
            out = Path(tmp) / f"nproc-{nproc}"
            seconds = scan(nproc, args, out, env)
            rows.append({"processes": nproc, "wall_s": seconds, "speedup": base / seconds, "tables_equal": same_tables(reference, out)})
    print(f"\n### interp scan --analyses {args.analyses} ({args.model or 'bundled model'}), OMP_NUM_THREADS={args.threads}, "
          f"{os.cpu_count()} CPUs\n\n" + markdown(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
