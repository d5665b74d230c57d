"""The results format that every analysis, the CLI and the app read and write.

A results directory DIR holds:
  DIR/<analysis>.parquet           head table: one row per (layer, head), columns layer, head, score, ...
  DIR/<analysis>.<table>.parquet   optional per-sample tables, e.g. retrieval.probes.parquet
  DIR/manifest.json                model, per-analysis status and params, package versions
  DIR/.progress/<analysis>.jsonl   partial progress of a running scan, so a killed scan can resume

ResultsDir is the one object that analyses and front doors use; its parts are the tables
(interp.run.tables), the manifest (interp.run.manifest) and the progress journal
(interp.run.journal). Every file is replaced atomically, so a crash never leaves a
half-written table or manifest. A scan over several ranks uses interp.run.distributed's
RankResults, a ResultsDir with the ranks' rules.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from interp.base.errors import InterpError
from interp.run.journal import PROGRESS_DIR, Journal
from interp.run.manifest import MANIFEST_NAME, Manifest
from interp.run.tables import Tables


class ResultsDir:
    """A results directory. Nothing is created on disk until the first write.

    owner=False: one of several processes that share the directory, not the one that writes its
    manifest and tables and clears progress: it makes the same checks, and writes only its own
    part of the progress journal (journal_part)."""

    def __init__(self, path: str | os.PathLike, *, owner: bool = True, journal_part: str | None = None):
        self.path = Path(path)
        self._manifest = Manifest(self.path / MANIFEST_NAME, owner)  # refuses a foreign or newer-format directory
        self._tables = Tables(self.path, owner)
        self._journal = Journal(self.path / PROGRESS_DIR, journal_part, owner)

    def __repr__(self) -> str:
        return f"ResultsDir({str(self.path)!r})"

    # ---- manifest: the model and each analysis's status ------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self._manifest.path

    @property
    def manifest(self) -> dict:
        """A fresh copy of the manifest; edit it through the methods below, not in place."""
        return self._manifest.read()

    def set_model(self, source: str, revision_or_hash: str | None, layout: dict) -> None:
        """Record the model; refuse to mix results of a different model into this directory."""
        self._manifest.set_model(source, revision_or_hash, layout)

    def start_analysis(self, name: str, params: dict | None = None) -> int:
        """Mark an analysis running. Progress saved under different params is stale, so it is dropped.
        Returns the number of samples saved by earlier runs (the scan resumes after them)."""
        if self._manifest.ran_with_other_params(name, params):
            self.clear_progress(name)
        self._manifest.start(name, params)
        return len(self.load_progress(name))

    def finish_analysis(self, name: str, rows: int | None = None, seconds: float | None = None) -> None:
        """Mark an analysis done and drop its partial progress, which the final table supersedes.

        rows defaults to the row count of the analysis's head table, when it has been written;
        seconds is the wall time of the run that finished it (recorded when given).
        """
        self._manifest.finish(name, self._tables.rows(name) if rows is None else rows, seconds)
        self.clear_progress(name)

    def fail_analysis(self, name: str, error: str | BaseException) -> None:
        """Mark an analysis failed; its progress is kept so the next run resumes from it."""
        self._manifest.fail(name, error)

    def is_done(self, name: str, params: dict | None = None) -> bool:
        """True when the analysis finished with these same params and its table exists: resume skips it."""
        return self._manifest.is_done(name, params) and self._tables.path(name).exists()

    # ---- tables ---------------------------------------------------------------------------

    def write_table(self, analysis: str, df: pd.DataFrame, table: str | None = None) -> Path:
        """Write the head table (table=None, validated) or a per-sample table, atomically."""
        return self._tables.write(analysis, df, table)

    def write_tables(self, analysis: str, tables: dict) -> None:
        """Write what an analysis's scan() returned: its "heads" table and per-sample tables.
        Per-sample tables of this analysis that are not among them are removed."""
        self._tables.write_all(analysis, tables)

    def read_table(self, analysis: str, table: str | None = None) -> pd.DataFrame:
        return self._tables.read(analysis, table)

    def tables(self) -> list[tuple[str, str | None]]:
        """Sorted (analysis, table) pairs on disk; table is None for an analysis's head table."""
        return self._tables.list()

    def read_tables(self, analysis: str) -> dict[str, pd.DataFrame]:
        """Every table of an analysis by the key its scan() returned it under ("heads", "causal", ...)."""
        return {table or "heads": self.read_table(analysis, table) for name, table in self.tables() if name == analysis}

    # ---- partial progress -----------------------------------------------------------------

    def save_progress(self, analysis: str, key: str | int, record: dict) -> None:
        """Append one finished unit of work; it is on disk (fsync) when this returns."""
        self._journal.save(analysis, key, record)

    def load_progress(self, analysis: str) -> dict[str | int, dict]:
        """Records saved so far by key (a later save of a key wins); torn lines are skipped."""
        return self._journal.load(analysis)

    def clear_progress(self, analysis: str) -> None:
        self._journal.clear(analysis)


def open_results(path: str | os.PathLike) -> ResultsDir:
    """Open an existing results directory for reading, with a clear error when it is not one."""
    path = Path(path)
    hint = f"run `interp scan --out {path}` first"
    if not path.exists():
        raise InterpError(f"{path} does not exist; {hint}")
    if not path.is_dir():
        raise InterpError(f"{path} is a file, not a results directory; {hint}")
    if not (path / MANIFEST_NAME).exists():
        raise InterpError(f"{path} is not an interp results directory (no {MANIFEST_NAME}); {hint}")
    return ResultsDir(path)
