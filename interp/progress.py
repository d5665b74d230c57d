"""Progress bars for long loops (rich), shared by every analysis and the CLI.

`track(items, "probes")` shows a bar with ETA on a terminal; in tests, notebooks and CI
(no terminal) it stays quiet unless INTERP_PROGRESS=1.
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
    if not enabled():
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:  # stdout stays the summary
        yield from progress.track(items, total=total, description=description)
