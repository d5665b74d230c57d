"""The progress journal of a results directory: DIR/.progress/<analysis>.jsonl holds one line per
finished unit of work of a running scan (a probe, a prompt), so that a killed scan resumes.

Several processes may append to one analysis's journal at once, each to a part of its own
(<analysis>.<part>.jsonl); reading gathers every part. Appends reach the disk (fsync) before
they return, and a line torn by a kill is skipped on reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from interp.run.tables import check_name

PROGRESS_DIR = ".progress"


class Journal:
    """The journal in `folder`; this process appends to its `part` (None: <analysis>.jsonl).
    Only the journal's owner clears it (every part); another process (owner=False) leaves it."""

    def __init__(self, folder: Path, part: str | None = None, owner: bool = True):
        self.folder = folder
        self.part = part
        self.owner = owner

    def _own_file(self, analysis: str) -> Path:
        check_name("analysis", analysis)
        return self.folder / (f"{analysis}.jsonl" if self.part is None else f"{analysis}.{self.part}.jsonl")

    def files(self, analysis: str) -> list[Path]:
        """The analysis's journal files of every part, existing or not (<analysis>.jsonl first)."""
        check_name("analysis", analysis)
        return sorted([self.folder / f"{analysis}.jsonl", *self.folder.glob(f"{analysis}.*.jsonl")])

    def save(self, analysis: str, key: str | int, record: dict) -> None:
        """Append one finished unit of work; it is on disk (fsync) when this returns."""
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise TypeError(f"progress key must be str or int, got {type(key).__name__}")
        line = json.dumps({"key": key, "record": record}, default=str) + "\n"
        path = self._own_file(analysis)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab+") as f:
            # A kill mid-append leaves a torn last line; start on a fresh line so this record survives.
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def load(self, analysis: str) -> dict[str | int, dict]:
        """Records saved so far by key, from every part (a later save of a key wins); torn lines are skipped."""
        progress: dict[str | int, dict] = {}
        for path in self.files(analysis):
            if not path.exists():
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        progress[entry["key"]] = entry["record"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue  # only a write cut short by a kill produces such a line
        return progress

    def clear(self, analysis: str) -> None:
        """Remove the analysis's journal, every part of it."""
        for path in self.files(analysis) if self.owner else ():
            path.unlink(missing_ok=True)
