"""Progress of long loops, shared by every analysis, the organisms' training and the CLI.

`track(items, "probes")` shows, on stderr (stdout stays the results):

- a bar with time left (rich) when stderr is a terminal;
- otherwise (a log file, nohup, CI, a notebook or its subprocess) a line at most every
  INTERP_PROGRESS_EVERY seconds (default 30), "probes: 12/45, 0:03:10 elapsed, 0:08:43 left",
  and a last line when the loop ends, "probes: 45/45 done in 0:11:02";
- nothing with INTERP_PROGRESS=0. INTERP_PROGRESS=1 gives the lines even on a terminal.

`note("loss 0.412")` adds its text to the innermost loop shown: "training (loss 0.412): 12/30, ...".

A loop policy may run track's loops instead: interp.run.distributed installs one while a
scan is split between ranks, so that each rank runs its share of a loop (and shows it with
`bar`). This module knows nothing of ranks; the policy decides what a loop yields, `bar`
how it is shown.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable, Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

# policy(items, description, total) -> what the loop yields
LoopPolicy = Callable[[Iterable, str, "int | None"], Iterable]
_policy: LoopPolicy | None = None
_shown: list[_Shown] = []  # the loops being shown, innermost last (note() writes to it)


def mode() -> str:
    """How loops are shown: "bars", "lines" or "off" (INTERP_PROGRESS, else whether stderr is a terminal)."""
    flag = os.environ.get("INTERP_PROGRESS")
    if flag == "0":
        return "off"
    if flag == "1":
        return "lines"
    return "bars" if sys.stderr.isatty() else "lines"


def line_every() -> float:
    """Seconds between two progress lines (INTERP_PROGRESS_EVERY, default 30; tests set it low)."""
    return float(os.environ.get("INTERP_PROGRESS_EVERY", 30))


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    """Yield items with their progress shown, or what the installed loop policy yields for them.
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


def note(text: str) -> None:
    """Show text after the description of the innermost loop being shown (no-op when none is)."""
    if _shown:
        _shown[-1].note = text


def bar(items: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    """Yield items, showing their progress as mode() says: a bar, periodic lines, or nothing."""
    how = mode()
    if how == "off":
        yield from items
        return
    shown = _Shown(description, total if total is not None else _length(items))
    _shown.append(shown)
    try:
        yield from (_bar if how == "bars" else _lines)(items, shown)
    finally:
        _shown.remove(shown)


class _Shown:
    """One loop as it is shown: what it is, how far it got, and since when."""

    def __init__(self, description: str, total: int | None):
        self.description, self.total = description, total
        self.done, self.note, self.started = 0, "", time.monotonic()

    @property
    def label(self) -> str:
        return f"{self.description} ({self.note})" if self.note else self.description

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        text = f"{self.label}: {count}, {_clock(elapsed)} elapsed"
        if self.total and self.done:
            text += f", {_clock(elapsed / self.done * (self.total - self.done))} left"
        return text

    def last_line(self) -> str:
        return f"{self.label}: {self.done}/{self.done} done in {_clock(time.monotonic() - self.started)}"


def _lines(items: Iterable[T], shown: _Shown) -> Iterator[T]:
    """A line at most every line_every() seconds (checked as items finish), and one at the end."""
    every, last = line_every(), time.monotonic()
    for item in items:
        yield item
        shown.done += 1
        if time.monotonic() - last >= every:
            last = time.monotonic()
            print(shown.line(), file=sys.stderr, flush=True)
    print(shown.last_line(), file=sys.stderr, flush=True)


def _bar(items: Iterable[T], shown: _Shown) -> Iterator[T]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(shown.description, total=shown.total)
        for item in items:
            yield item
            shown.done += 1
            progress.update(task, advance=1, description=shown.label)


def _length(items) -> int | None:
    try:
        return len(items)
    except TypeError:  # a generator: the count alone is shown
        return None


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))
