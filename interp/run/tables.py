"""The tables of a results directory DIR, as parquet files:

  DIR/<analysis>.parquet           head table: one row per (layer, head), columns layer, head, score, ...
  DIR/<analysis>.<table>.parquet   optional per-sample tables, e.g. retrieval.probes.parquet

Head tables are validated on write and on read; every file is replaced atomically.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from interp.base.errors import InterpError
from interp.base.files import atomic_write

HEAD_COLUMNS = ("layer", "head", "score")

# Analysis and table names become parts of file names split on '.', so they may not contain one.
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InterpError(f"{kind} name {name!r} is invalid; use only letters, digits, '_' and '-'")


def validate_head_table(df: pd.DataFrame, where: str) -> None:
    """Raise InterpError unless df has integer layer/head, a numeric score and unique (layer, head)."""
    if not isinstance(df, pd.DataFrame):
        raise InterpError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in HEAD_COLUMNS if c not in df.columns]
    if missing:
        raise InterpError(
            f"{where}: head table is missing column(s) {', '.join(missing)}; "
            f"it needs layer, head, score (has: {', '.join(map(str, df.columns))})"
        )
    for column in ("layer", "head"):
        if not pd.api.types.is_integer_dtype(df[column]):
            raise InterpError(
                f"{where}: column {column!r} must be integer, not {df[column].dtype}; "
                f"cast it with df[{column!r}].astype(int)"
            )
    if not pd.api.types.is_numeric_dtype(df["score"]) or pd.api.types.is_bool_dtype(df["score"]):
        raise InterpError(f"{where}: column 'score' must be numeric, not {df['score'].dtype}")
    duplicated = df.duplicated(["layer", "head"])
    if duplicated.any():
        first = df.loc[duplicated, ["layer", "head"]].iloc[0]
        raise InterpError(
            f"{where}: {int(duplicated.sum())} duplicate (layer, head) row(s), first is "
            f"layer {first['layer']} head {first['head']}; a head table has one row per head"
        )


class Tables:
    """The parquet tables in a folder. Only its owner writes them; another process that shares
    the folder (owner=False) checks every table as the owner does, and writes nothing."""

    def __init__(self, folder: Path, owner: bool = True):
        self.folder = folder
        self.owner = owner

    def path(self, analysis: str, table: str | None = None) -> Path:
        check_name("analysis", analysis)
        if table is None:
            return self.folder / f"{analysis}.parquet"
        check_name("table", table)
        return self.folder / f"{analysis}.{table}.parquet"

    def write(self, analysis: str, df: pd.DataFrame, table: str | None = None) -> Path:
        """Write the head table (table=None, validated) or a per-sample table, atomically."""
        path = self.path(analysis, table)
        if table is None:
            validate_head_table(df, f"{analysis} head table")
        elif not isinstance(df, pd.DataFrame):
            raise InterpError(f"{analysis}.{table}: expected a pandas DataFrame, got {type(df).__name__}")
        if self.owner:
            atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))
        return path

    def write_all(self, analysis: str, tables: dict) -> None:
        """Write what an analysis's scan() returned: its "heads" table and per-sample tables.
        Per-sample tables of this analysis that are not among them (left by an earlier run with
        other parameters) are removed: they would no longer match the heads."""
        if not isinstance(tables, dict) or "heads" not in tables:
            raise InterpError(f"analysis '{analysis}' returned no 'heads' table; scan() must return {{'heads': DataFrame, ...}}")
        for key, df in tables.items():
            self.write(analysis, df, table=None if key == "heads" else key)
        for name, table in self.list() if self.owner else ():
            if name == analysis and table is not None and table not in tables:
                self.path(analysis, table).unlink(missing_ok=True)

    def read(self, analysis: str, table: str | None = None) -> pd.DataFrame:
        path = self.path(analysis, table)
        if not path.exists():
            available = ", ".join(a if t is None else f"{a}.{t}" for a, t in self.list()) or "none"
            raise InterpError(f"{path} does not exist (tables in {self.folder}: {available}); run that analysis first")
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several unrelated types for corrupt files
            raise InterpError(f"{path} is not a readable parquet file ({e}); re-run that analysis") from e
        if table is None:
            validate_head_table(df, str(path))
        return df

    def rows(self, analysis: str) -> int | None:
        """The row count of the analysis's head table (None: not written), read from the file's metadata."""
        path = self.path(analysis)
        return pq.ParquetFile(path).metadata.num_rows if path.exists() else None

    def list(self) -> list[tuple[str, str | None]]:
        """Sorted (analysis, table) pairs on disk; table is None for an analysis's head table."""
        if not self.folder.is_dir():
            return []
        found = []
        for file in self.folder.glob("*.parquet"):
            parts = file.name[: -len(".parquet")].split(".")
            if len(parts) == 1 and NAME_RE.match(parts[0]):
                found.append((parts[0], None))
            elif len(parts) == 2 and all(NAME_RE.match(p) for p in parts):
                found.append((parts[0], parts[1]))
        return sorted(found, key=lambda pair: (pair[0], pair[1] or ""))
