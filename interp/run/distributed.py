"""Data-parallel scans on torch.distributed: one mechanism for every analysis.

    torchrun --nproc-per-node 4 -m interp scan --analyses retrieval,sinks --out results/x

(or any launcher that sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT). Every rank loads
the model and runs the same analysis code; the per-sample loops are split between them by
the loop policy that run_scan installs in `interp.base.progress.track`, and the per-sample
records travel through `results.save_progress/load_progress` (RankResults), which analyses
already use for resume. So an analysis written in that pattern (analyses/__init__.py) takes
part without knowing about ranks. This module is the only one that knows about ranks.

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

from interp.base import progress
from interp.run.results import ResultsDir

_active: "_Scan | None" = None  # the sharded scan() call in progress on this rank


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
    the device this rank should use (cuda -> cuda:LOCAL_RANK). One rank, or joined already:
    nothing changes."""
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


# ---- the results directory as the ranks share it ----------------------------------------------------


def results_dir(path) -> ResultsDir:
    """The results directory at path as this rank uses it: a plain ResultsDir on one rank."""
    return RankResults(path) if world_size() > 1 else ResultsDir(path)


class RankResults(ResultsDir):
    """A results directory shared by the ranks of a scan. Every rank runs the same steps and
    checks, so that they take the same branches and fail alike; rank 0 alone writes the manifest
    and tables and clears progress. Each rank appends its own progress file (rank 0:
    <analysis>.jsonl, rank R: <analysis>.rank<R>.jsonl), and load_progress also returns the
    records the ranks shared during the current run_scan."""

    def __init__(self, path):
        super().__init__(path, owner=is_main(), journal_part=f"rank{rank()}" if rank() > 0 else None)

    def start_analysis(self, name: str, params: dict | None = None) -> int:
        saved = super().start_analysis(name, params)  # counted before another rank can add to it
        barrier()  # no rank reads progress before stale progress is gone
        return saved

    def finish_analysis(self, name: str, rows: int | None = None, seconds: float | None = None) -> None:
        barrier()  # every rank is done with the progress that rank 0 clears
        super().finish_analysis(name, rows, seconds)

    def is_done(self, name: str, params: dict | None = None) -> bool:
        return from_main(super().is_done(name, params))

    def save_progress(self, analysis: str, key: str | int, record: dict) -> None:
        super().save_progress(analysis, key, record)
        if _active is not None:  # shared with the other ranks at the end of the sharded loop
            _active.pending.append((analysis, key, record))

    def load_progress(self, analysis: str) -> dict[str | int, dict]:
        progress = super().load_progress(analysis)
        if _active is not None:
            progress.update(_active.gathered.get(analysis, {}))
        return progress


# ---- one scan() call, loop by loop ------------------------------------------------------------------


class _StageGathered(BaseException):
    """Ends an attempt after its sharded loop (a BaseException: analyses' `except Exception` let it pass)."""


class _Scan:
    """One run_scan call on this rank: which track loop is sharded, and the records the ranks share."""

    def __init__(self):
        self.sharded = 0  # index of the track loop that is sharded in this attempt
        self.stage = 0  # track loops entered so far in this attempt
        self.pending: list[tuple[str, str | int, dict]] = []  # records saved in the sharded loop
        self.gathered: dict[str, dict] = {}  # analysis -> key -> record, from every rank

    def track(self, items, description: str, total: int | None):
        """The loop policy of interp.base.progress while this scan runs. Loops before the sharded
        one yield everything (their records are all saved); rank 0 alone shows a bar."""
        items = list(items)
        index, self.stage = self.stage, self.stage + 1
        if index < self.sharded:  # an earlier loop, replayed from records every rank has
            yield from items
            return
        mine = items[rank() :: world_size()]
        shown = f"{description} (rank 0 of {world_size()}: {len(mine)} items)"
        yield from progress.bar(mine, shown, len(mine)) if is_main() else mine
        self.gather()

    def gather(self) -> None:
        """After this rank's shard: share the records it saved, then end the attempt."""
        parts = [None] * world_size()
        _dist().all_gather_object(parts, self.pending)
        for part in parts:
            for analysis, key, record in part:
                self.gathered.setdefault(analysis, {})[key] = record
        self.pending = []
        raise _StageGathered


def run_scan(scan, *args, **kwargs):
    """Call an analysis's scan(*args, **kwargs); on several ranks, loop by loop as the module doc
    says (its results should then be a RankResults: results_dir)."""
    global _active
    if world_size() == 1:
        return scan(*args, **kwargs)
    _active = _Scan()
    try:
        with progress.loops_run_by(_active.track):
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
