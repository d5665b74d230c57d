"""Progress bars for long loops (rich), shared by every analysis and the CLI.

`track(items, "probes")` shows a bar with ETA on a terminal; in tests, notebooks and CI
(no terminal) it stays quiet unless INTERP_PROGRESS=1.

In a scan over several ranks (interp.run.distributed), track also splits the work: in the
loop being sharded it yields only this rank's share and then hands the saved records to
every rank; rank 0 alone shows a bar.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


def enabled() -> bool:
    flag = os.environ.get("INTERP_PROGRESS")
    return flag == "1" if flag is not None else sys.stderr.isatty()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    from interp.run import distributed

    plan = distributed.shard(items)
    if plan is not None:
        mine, sharded = plan
        if not sharded:  # an earlier loop, replayed from records every rank has
            yield from mine
            return
        shown = f"{description} (rank 0 of {distributed.world_size()}: {len(mine)} items)"
        yield from _bar(mine, shown, len(mine)) if distributed.is_main() and enabled() else mine
        distributed.end_sharded_loop()  # shares the records and ends this attempt of scan()
    yield from _bar(items, description, total) if enabled() else items


def _bar(items: Iterable[T], description: str, total: int | None) -> Iterable[T]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:  # stdout stays the summary
        yield from progress.track(items, total=total, description=description)
