"""DIR/manifest.json: which model a results directory holds, and each analysis's status, params and timing.

    {"format": "interp-results", "format_version": 1,
     "model": {"source", "revision_or_hash", "layout"},
     "analyses": {name: {"status": "running" | "done" | "failed", "params", "started", "finished",
                         "rows", "error", "seconds"}},
     "versions": {package: version}, "created", "updated"}

Every change reads the whole file, changes it and replaces it atomically; one process at a time writes it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from interp.base.errors import InterpError
from interp.base.files import atomic_write
from interp.run.tables import check_name
from interp.runtime.bundled import BUNDLED_NAME

FORMAT = "interp-results"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

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


def normalize_params(params: dict | None) -> dict:
    # A JSON round trip makes tuples lists and Paths strings, so params read back from the
    # manifest compare equal to the params a resumed run passes in.
    return json.loads(json.dumps(params or {}, sort_keys=True, default=str))


# ---- the model's identity ------------------------------------------------------------------------


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


# ---- the file ------------------------------------------------------------------------------------


class Manifest:
    """The manifest file at `path`. Only its owner writes it; another process that shares the
    directory (owner=False) reads it and makes every change's checks, and writes nothing."""

    def __init__(self, path: Path, owner: bool = True):
        self.path = path
        self.owner = owner
        if path.exists():
            self.read()  # refuse early to write into a foreign or newer-format directory

    def read(self) -> dict:
        """A fresh copy (a new manifest when there is no file yet); change it through the methods below."""
        if not self.path.exists():
            now = _now()
            return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": None, "analyses": {},
                    "versions": package_versions(), "created": now, "updated": now}
        try:
            manifest = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InterpError(f"{self.path} is unreadable ({e}); delete the directory and re-run the scan") from e
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise InterpError(f"{self.path} is not an interp results manifest; choose another --out directory")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise InterpError(
                f"{self.path.parent} uses results format_version {version!r} but this interp reads up to "
                f"{FORMAT_VERSION}; upgrade interp"
            )
        return manifest

    def _update(self, change: Callable[[dict], None]) -> None:
        manifest = self.read()
        change(manifest)
        if not self.owner:
            return
        manifest["updated"] = _now()
        text = json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n"
        atomic_write(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def set_model(self, source: str, revision_or_hash: str | None, layout: dict) -> None:
        """Record the model; refuse to mix results of a different model into this directory."""
        model = {"source": str(source), "revision_or_hash": revision_or_hash, "layout": normalize_params(layout)}
        existing = self.read().get("model")
        if existing and (existing.get("source"), existing.get("revision_or_hash")) != (
            model["source"], model["revision_or_hash"],
        ):
            raise InterpError(
                f"{self.path.parent} holds results for {existing.get('source')} @ {existing.get('revision_or_hash')}, "
                f"not {model['source']} @ {model['revision_or_hash']}; use a new --out directory"
            )
        self._update(lambda m: m.__setitem__("model", model))

    def ran_with_other_params(self, name: str, params: dict | None) -> bool:
        """Whether an earlier run of the analysis had other params (its saved progress is stale)."""
        previous = self.read()["analyses"].get(name)
        return previous is not None and previous.get("params") != normalize_params(params)

    def start(self, name: str, params: dict | None) -> None:
        check_name("analysis", name)

        def change(manifest: dict) -> None:
            manifest["analyses"][name] = {
                "status": "running", "params": normalize_params(params), "started": _now(),
                "finished": None, "rows": None, "error": None,
            }
            manifest["versions"] = package_versions()  # a resumed run may use newer packages

        self._update(change)

    def finish(self, name: str, rows: int | None, seconds: float | None) -> None:
        timing = {} if seconds is None else {"seconds": round(float(seconds), 1)}
        self._set_status(name, status="done", rows=None if rows is None else int(rows), error=None, **timing)

    def fail(self, name: str, error: str | BaseException) -> None:
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        self._set_status(name, status="failed", error=str(error))

    def _set_status(self, name: str, **fields: Any) -> None:
        check_name("analysis", name)

        def change(manifest: dict) -> None:
            entry = manifest["analyses"].setdefault(
                name, {"status": None, "params": {}, "started": None, "finished": None, "rows": None, "error": None}
            )
            entry.update(fields, finished=_now())

        self._update(change)

    def is_done(self, name: str, params: dict | None) -> bool:
        """Whether the analysis finished with these same params."""
        entry = self.read()["analyses"].get(name)
        return entry is not None and entry.get("status") == "done" and entry.get("params") == normalize_params(params)
