"""The results format that every analysis, the CLI and the app read and write.

A results directory DIR holds:
  DIR/<analysis>.parquet           head table: one row per (layer, head), columns layer, head, score, ...
  DIR/<analysis>.<table>.parquet   optional per-sample tables, e.g. retrieval.probes.parquet
  DIR/manifest.json                model, per-analysis status and params, package versions
  DIR/.progress/<analysis>.jsonl   partial progress of a running scan, so a killed scan can resume
                                   (<analysis>.rank<R>.jsonl: rank R's share of a scan over several ranks)

Every file is replaced atomically, so a crash never leaves a half-written table or manifest.
In a scan over several ranks (interp.run.distributed) only rank 0 writes the manifest and the
tables; every rank appends its own progress, and load_progress returns every rank's records.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow.parquet as pq

from interp.run import distributed
from interp.base.errors import InterpError
from interp.base.files import atomic_write
from interp.runtime.bundled import BUNDLED_NAME

FORMAT = "interp-results"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
PROGRESS_DIR = ".progress"
HEAD_COLUMNS = ("layer", "head", "score")

# Analysis and table names become parts of file names split on '.', so they may not contain one.
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")

# Versions recorded in the manifest; read from package metadata so nothing heavy (torch) is imported.
_VERSIONED_PACKAGES = (
    "torch", "transformers", "transformer-lens", "nnsight", "datasets",
    "numpy", "pandas", "pyarrow", "gguf", "interp",
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Python and key package versions (None when a package is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# ---- the model's identity in the manifest ------------------------------------------------------


def model_name(model: str | None) -> str:
    """A short name for default output folders: 'SmolLM2-135M-Instruct', 'gpt2', 'my-model'."""
    if model is None:
        return BUNDLED_NAME
    path = Path(model.rstrip("/\\"))
    name = path.stem if path.suffix == ".gguf" else path.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name) or "model"


def model_identity(model, source: str | None) -> tuple[str, str | None]:
    """(source, revision or file hash) to record in the manifest, so that a later
    `interp explore` can reload the model and a different model cannot mix into DIR."""
    if source is None or source == "bundled":  # load_model's alias: record it as the bundled model itself
        return model.source, model.file_hash
    path = Path(source)
    if path.exists():  # local: absolute, so the explorer finds it from any working directory
        return str(path.resolve()), model.file_hash or weights_hash(path)
    return source, model.file_hash or getattr(model.hf.config, "_commit_hash", None)


def weights_hash(directory: Path, sample: int = 1 << 20) -> str | None:
    """A sha256 fingerprint of a local model directory's weight files: names, sizes and the
    first and last MiB of each. Hashing every byte of a 15 GB model on each (resumed) scan
    would cost a minute; these bytes already differ between any two trainings."""
    files = sorted(p for ext in ("*.safetensors", "*.bin", "*.pt") for p in directory.glob(ext)) if directory.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}\n".encode())
        with open(file, "rb") as f:
            digest.update(f.read(sample))
            f.seek(max(0, size - sample))
            digest.update(f.read(sample))
    return digest.hexdigest()


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InterpError(f"{kind} name {name!r} is invalid; use only letters, digits, '_' and '-'")


def _normalize_params(params: dict | None) -> dict:
    # A JSON round trip makes tuples lists and Paths strings, so params read back from the
    # manifest compare equal to the params a resumed run passes in.
    return json.loads(json.dumps(params or {}, sort_keys=True, default=str))


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


class ResultsDir:
    """A results directory. Nothing is created on disk until the first write."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.manifest_path.exists():
            self._load_manifest()  # refuse early to write into a foreign or newer-format directory

    def __repr__(self) -> str:
        return f"ResultsDir({str(self.path)!r})"

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    # ---- manifest -------------------------------------------------------------------------

    @property
    def manifest(self) -> dict:
        """A fresh copy of the manifest; edit it through the methods below, not in place."""
        if self.manifest_path.exists():
            return self._load_manifest()
        return self._new_manifest()

    def _new_manifest(self) -> dict:
        now = _now()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": None,
            "analyses": {},
            "versions": package_versions(),
            "created": now,
            "updated": now,
        }

    def _load_manifest(self) -> dict:
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InterpError(f"{self.manifest_path} is unreadable ({e}); delete the directory and re-run the scan") from e
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise InterpError(f"{self.manifest_path} is not an interp results manifest; choose another --out directory")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise InterpError(
                f"{self.path} uses results format_version {version!r} but this interp reads up to "
                f"{FORMAT_VERSION}; upgrade interp"
            )
        return manifest

    def _save_manifest(self, manifest: dict) -> None:
        if not distributed.is_main():
            return
        manifest["updated"] = _now()
        text = json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n"
        atomic_write(self.manifest_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def _update(self, change: Callable[[dict], None]) -> None:
        # Read-modify-write of the whole manifest; one process writes a results directory at a time.
        manifest = self.manifest
        change(manifest)
        self._save_manifest(manifest)

    def set_model(self, source: str, revision_or_hash: str | None, layout: dict) -> None:
        """Record the model; refuse to mix results of a different model into this directory."""
        model = {"source": str(source), "revision_or_hash": revision_or_hash, "layout": _normalize_params(layout)}
        existing = self.manifest.get("model")
        if existing and (existing.get("source"), existing.get("revision_or_hash")) != (
            model["source"], model["revision_or_hash"],
        ):
            raise InterpError(
                f"{self.path} holds results for {existing.get('source')} @ {existing.get('revision_or_hash')}, "
                f"not {model['source']} @ {model['revision_or_hash']}; use a new --out directory"
            )
        self._update(lambda m: m.__setitem__("model", model))

    def start_analysis(self, name: str, params: dict | None = None) -> int:
        """Mark an analysis running. Progress saved under different params is stale, so it is dropped.
        Returns the number of samples saved by earlier runs (the scan resumes after them)."""
        _check_name("analysis", name)
        params = _normalize_params(params)
        previous = self.manifest["analyses"].get(name)
        if previous is not None and previous.get("params") != params:
            self.clear_progress(name)

        def change(manifest: dict) -> None:
            manifest["analyses"][name] = {
                "status": "running", "params": params, "started": _now(),
                "finished": None, "rows": None, "error": None,
            }
            manifest["versions"] = package_versions()  # a resumed run may use newer packages

        self._update(change)
        saved = len(self.load_progress(name))  # counted before another rank can add to it
        distributed.barrier()  # no rank reads progress before stale progress is gone
        return saved

    def finish_analysis(self, name: str, rows: int | None = None, seconds: float | None = None) -> None:
        """Mark an analysis done and drop its partial progress, which the final table supersedes.

        rows defaults to the row count of the analysis's head table, when it has been written;
        seconds is the wall time of the run that finished it (recorded when given).
        """
        distributed.barrier()  # every rank is done with the progress that is cleared below
        if rows is None and self._table_path(name).exists():
            rows = pq.ParquetFile(self._table_path(name)).metadata.num_rows
        timing = {} if seconds is None else {"seconds": round(float(seconds), 1)}
        self._set_status(name, status="done", rows=None if rows is None else int(rows), error=None, **timing)
        self.clear_progress(name)

    def fail_analysis(self, name: str, error: str | BaseException) -> None:
        """Mark an analysis failed; its progress is kept so the next run resumes from it."""
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        self._set_status(name, status="failed", error=str(error))

    def _set_status(self, name: str, **fields: Any) -> None:
        _check_name("analysis", name)

        def change(manifest: dict) -> None:
            entry = manifest["analyses"].setdefault(
                name, {"status": None, "params": {}, "started": None, "finished": None, "rows": None, "error": None}
            )
            entry.update(fields, finished=_now())

        self._update(change)

    def is_done(self, name: str, params: dict | None = None) -> bool:
        """True when the analysis finished with these same params and its table exists: resume skips it."""
        entry = self.manifest["analyses"].get(name)
        return distributed.from_main(
            entry is not None
            and entry.get("status") == "done"
            and entry.get("params") == _normalize_params(params)
            and self._table_path(name).exists()
        )

    # ---- tables ---------------------------------------------------------------------------

    def _table_path(self, analysis: str, table: str | None = None) -> Path:
        _check_name("analysis", analysis)
        if table is None:
            return self.path / f"{analysis}.parquet"
        _check_name("table", table)
        return self.path / f"{analysis}.{table}.parquet"

    def write_table(self, analysis: str, df: pd.DataFrame, table: str | None = None) -> Path:
        """Write the head table (table=None, validated) or a per-sample table, atomically."""
        path = self._table_path(analysis, table)
        if table is None:
            validate_head_table(df, f"{analysis} head table")
        elif not isinstance(df, pd.DataFrame):
            raise InterpError(f"{analysis}.{table}: expected a pandas DataFrame, got {type(df).__name__}")
        if not distributed.is_main():  # every rank has the same tables; rank 0 writes them
            return path
        atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))
        return path

    def write_tables(self, analysis: str, tables: dict) -> None:
        """Write what an analysis's scan() returned: its "heads" table and per-sample tables.
        Per-sample tables of this analysis that are not among them (left by an earlier run with
        other parameters) are removed: they would no longer match the heads."""
        if not isinstance(tables, dict) or "heads" not in tables:
            raise InterpError(f"analysis '{analysis}' returned no 'heads' table; scan() must return {{'heads': DataFrame, ...}}")
        for key, df in tables.items():
            self.write_table(analysis, df, table=None if key == "heads" else key)
        for name, table in self.tables() if distributed.is_main() else ():
            if name == analysis and table is not None and table not in tables:
                self._table_path(analysis, table).unlink(missing_ok=True)

    def read_table(self, analysis: str, table: str | None = None) -> pd.DataFrame:
        path = self._table_path(analysis, table)
        if not path.exists():
            available = ", ".join(a if t is None else f"{a}.{t}" for a, t in self.tables()) or "none"
            raise InterpError(f"{path} does not exist (tables in {self.path}: {available}); run that analysis first")
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several unrelated types for corrupt files
            raise InterpError(f"{path} is not a readable parquet file ({e}); re-run that analysis") from e
        if table is None:
            validate_head_table(df, str(path))
        return df

    def tables(self) -> list[tuple[str, str | None]]:
        """Sorted (analysis, table) pairs on disk; table is None for an analysis's head table."""
        if not self.path.is_dir():
            return []
        found = []
        for file in self.path.glob("*.parquet"):
            parts = file.name[: -len(".parquet")].split(".")
            if len(parts) == 1 and _NAME_RE.match(parts[0]):
                found.append((parts[0], None))
            elif len(parts) == 2 and all(_NAME_RE.match(p) for p in parts):
                found.append((parts[0], parts[1]))
        return sorted(found, key=lambda pair: (pair[0], pair[1] or ""))

    # ---- partial progress -----------------------------------------------------------------

    def _progress_path(self, analysis: str) -> Path:
        _check_name("analysis", analysis)
        share = f".rank{distributed.rank()}" if distributed.rank() > 0 else ""
        return self.path / PROGRESS_DIR / f"{analysis}{share}.jsonl"

    def _progress_files(self, analysis: str) -> list[Path]:
        """This analysis's progress of every rank (rank 0 and one-process scans: <analysis>.jsonl)."""
        _check_name("analysis", analysis)
        folder = self.path / PROGRESS_DIR
        return sorted([folder / f"{analysis}.jsonl", *folder.glob(f"{analysis}.rank*.jsonl")])

    def save_progress(self, analysis: str, key: str | int, record: dict) -> None:
        """Append one finished unit of work; it is on disk (fsync) when this returns."""
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise TypeError(f"progress key must be str or int, got {type(key).__name__}")
        line = json.dumps({"key": key, "record": record}, default=str) + "\n"
        path = self._progress_path(analysis)
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
        distributed.saved(analysis, key, record)  # shared with the other ranks, if any

    def load_progress(self, analysis: str) -> dict[str | int, dict]:
        """Records saved so far by key (a later save of a key wins); torn lines are skipped.
        Records of every rank: each rank's file, and what the ranks shared during this scan."""
        progress: dict[str | int, dict] = {}
        for path in self._progress_files(analysis):
            if not path.exists():
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        progress[entry["key"]] = entry["record"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue  # only a write cut short by a kill produces such a line
        progress.update(distributed.gathered(analysis))
        return progress

    def clear_progress(self, analysis: str) -> None:
        if not distributed.is_main():  # rank 0 clears every rank's file
            return
        for path in self._progress_files(analysis):
            path.unlink(missing_ok=True)


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
