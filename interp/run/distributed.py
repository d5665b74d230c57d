"""Data-parallel scans on torch.distributed: one mechanism for every analysis.

    torchrun --nproc-per-node 4 -m interp scan --analyses retrieval,sinks --out results/x

(or any launcher that sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT). Every rank loads
the model and runs the same analysis code; the per-sample loops are split between them by
`interp.base.progress.track`, and the per-sample records travel through
`results.save_progress/load_progress`, which analyses already use for resume. So an analysis
written in that pattern (analyses/__init__.py) takes part without knowing about ranks.

How one scan() call runs on W ranks (run_scan):
- Attempt 1: the first `track` loop of scan() yields only this rank's shard of its items
  (items rank, rank + W, rank + 2W, ...: disjoint and the same on every run). The analysis
  computes them and saves each record; the records go to this rank's progress file
  (.progress/<analysis>.rank<R>.jsonl, so a killed rank resumes its own shard) and, when
  the shard is done, to every rank (all_gather). Then the attempt stops.
- Attempt 2 runs scan() again: load_progress now returns every record of the first loop, so
  that loop (all of it, in order) only reads records; the second `track` loop is sharded
  in the same way; and so on until scan() returns. The last attempt builds the tables from
  all records in the one-process order, so they equal a one-process scan's; rank 0 writes them.
Only rank 0 writes the manifest and the tables; the results directory must be on a file
system every rank sees (for several machines: a shared one). gloo on CPU, nccl on GPUs.
An error in any rank ends that rank's process, and the launcher stops the others; finished
samples are saved, so the same command resumes.
"""

from __future__ import annotations

import os
import sys

_active: "_Scan | None" = None  # the sharded scan() call in progress on this rank


class _Scan:
    def __init__(self):
        self.sharded = 0  # index of the track loop that is sharded in this attempt
        self.stage = 0  # track loops entered so far in this attempt
        self.pending: list[tuple[str, str | int, dict]] = []  # records saved in the sharded loop
        self.gathered: dict[str, dict] = {}  # analysis -> key -> record, from every rank


class _StageGathered(BaseException):
    """Ends an attempt after its sharded loop (a BaseException: analyses' `except Exception` let it pass)."""


def _dist():
    if "torch.distributed" not in sys.modules:  # never import torch just to learn that we are alone
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank() -> int:
    dist = _dist()
    return dist.get_rank() if dist else 0


def world_size() -> int:
    dist = _dist()
    return dist.get_world_size() if dist else 1


def is_main() -> bool:
    return rank() == 0


def init(device: str | None = None) -> str | None:
    """Join the process group when a launcher started several ranks (WORLD_SIZE > 1); returns
    the device this rank should use (cuda -> cuda:LOCAL_RANK). One rank: nothing changes."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or _dist() is not None:
        return device
    import torch
    import torch.distributed as dist

    on_gpu = device is not None and torch.device(device).type == "cuda"
    if on_gpu:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if on_gpu else "gloo")
    return device


def barrier() -> None:
    dist = _dist()
    if dist:
        dist.barrier()


def from_main(value):
    """Rank 0's value on every rank (so that all ranks take the same branch)."""
    dist = _dist()
    if not dist:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_scan(scan, *args, **kwargs):
    """Call an analysis's scan(*args, **kwargs); on several ranks, loop by loop as the module doc says."""
    global _active
    if world_size() == 1:
        return scan(*args, **kwargs)
    _active = _Scan()
    try:
        while True:
            _active.stage = 0
            try:
                return scan(*args, **kwargs)
            except _StageGathered:
                _active.sharded += 1
    except Exception as e:
        # The other ranks wait for this one in a collective, so it cannot go on to the next
        # analysis: end the process; the launcher (torchrun) then stops the other ranks.
        print(f"interp: rank {rank()} failed: {type(e).__name__}: {e}; re-run the same command to resume",
              file=sys.stderr, flush=True)
        raise SystemExit(1) from e
    finally:
        _active = None


# ---- hooks for interp.base.progress.track and interp.run.results ----------------------------------------


def shard(items) -> tuple[list, bool] | None:
    """For track: None outside a sharded scan, else (the items to yield, whether this loop is
    the sharded one). Loops before it yield everything: their records are all saved."""
    if _active is None:
        return None
    items = list(items)
    index = _active.stage
    _active.stage += 1
    if index < _active.sharded:
        return items, False
    return items[rank() :: world_size()], True


def end_sharded_loop() -> None:
    """For track, after this rank's shard: share the records it saved, then end the attempt."""
    parts = [None] * world_size()
    _dist().all_gather_object(parts, _active.pending)
    for part in parts:
        for analysis, key, record in part:
            _active.gathered.setdefault(analysis, {})[key] = record
    _active.pending = []
    raise _StageGathered


def saved(analysis: str, key, record: dict) -> None:
    """For results.save_progress: a record to share at the end of the sharded loop."""
    if _active is not None:
        _active.pending.append((analysis, key, record))


def gathered(analysis: str) -> dict:
    """For results.load_progress: the records of this scan that every rank has shared."""
    return dict(_active.gathered.get(analysis, {})) if _active is not None else {}
