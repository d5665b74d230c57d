"""Progress bars for long loops (rich), shared by every analysis and the CLI.

`track(items, "probes")` shows a bar with ETA on a terminal; in tests, notebooks and CI
(no terminal) it stays quiet unless INTERP_PROGRESS=1.

A loop policy may run track's loops instead: interp.run.distributed installs one while a
scan is split between ranks, so that each rank runs its share of a loop. This module knows
nothing of ranks; it only lets the policy decide what a loop yields.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

# policy(items, description, total) -> what the loop yields
LoopPolicy = Callable[[Iterable, str, "int | None"], Iterable]
_policy: LoopPolicy | None = None


def enabled() -> bool:
    flag = os.environ.get("INTERP_PROGRESS")
    return flag == "1" if flag is not None else sys.stderr.isatty()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    """Yield items with a progress bar, or what the installed loop policy yields for them.
    The policy is looked up when the loop starts, not when track is called."""
    yield from (_policy or bar)(items, description, total)


@contextmanager
def loops_run_by(policy: LoopPolicy) -> Iterator[None]:
    """Within this block every track loop yields what policy(items, description, total) yields."""
    global _policy
    previous, _policy = _policy, policy
    try:
        yield
    finally:
        _policy = previous


def bar(items: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    """Yield items, with a bar on stderr when progress is shown (enabled())."""
    if not enabled():
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:  # stdout stays the summary
        yield from progress.track(items, total=total, description=description)
