"""A two-loop analysis in the documented pattern and a gloo rank that scans it, for
tests/test_distributed.py. A module of its own so that spawned ranks import nothing heavy."""

import json
import os
from pathlib import Path


def two_pass_scan(results, computed, items=7):
    """An analysis in the documented pattern: a second pass over the samples that needs a
    number from all of the first pass."""
    from interp.run.distributed import rank
    from interp.base.progress import track

    done = results.load_progress("two_pass")
    first = []
    for i in track(range(items), "first pass"):
        if f"a{i}" not in done:
            done[f"a{i}"] = {"value": i * i, "rank": rank()}
            results.save_progress("two_pass", f"a{i}", done[f"a{i}"])
            computed.append(f"a{i}")
        first.append(done[f"a{i}"])
    total = sum(r["value"] for r in first)
    second = []
    for i in track(range(items), "second pass"):
        key = f"b{i}-{total}"
        if key not in done:
            done[key] = {"value": total - i, "rank": rank()}
            results.save_progress("two_pass", key, done[key])
            computed.append(key)
        second.append(done[key])
    return {"first": first, "second": second}


def two_pass_rank(rank, world, port, directory, outputs):
    import torch.distributed as dist

    from interp.run.distributed import results_dir, run_scan

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    calls, computed = [], []  # over all attempts of scan() on this rank
    tables = run_scan(lambda results: calls.append(1) or two_pass_scan(results, computed), results_dir(directory))
    Path(outputs, f"rank{rank}.json").write_text(json.dumps({**tables, "attempts": len(calls), "computed": computed}))
    dist.destroy_process_group()


def failing_rank(rank, world, port, directory, outputs):
    """Rank 1 fails on its second sample; every rank notes how it left run_scan."""
    import torch.distributed as dist

    from interp.base.progress import track
    from interp.run.distributed import results_dir, run_scan

    def scan(results):
        for i in track(range(6), "samples"):
            if rank == 1 and i == 3:
                raise RuntimeError("a bad sample")
            results.save_progress("failing", i, {"value": i})
        return {}

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        run_scan(scan, results_dir(directory))
    except BaseException as e:
        Path(outputs, f"rank{rank}.exit").write_text(type(e).__name__)
        raise
