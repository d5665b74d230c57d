"""Every `python -m interp...` entry point answers --help with its usage and exit code 0."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"interp": "interp", "analyses": "interp.analyses", "kernels": "interp.kernels"}  # folder -> package


def entry_points() -> list[str]:
    """Modules of the three folders with a __main__.py or an `if __name__ == "__main__":` block."""
    found = []
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if path.name == "__main__.py":
                found.append(".".join((package, *parts[:-1])))
            elif re.search(r"^if __name__ == .__main__.:", path.read_text(encoding="utf-8"), flags=re.M):
                found.append(".".join((package, *parts)))
    return found


def test_the_entry_points_are_found():
    assert {"interp", "interp.cli", "interp.organisms"} <= set(entry_points())


@pytest.mark.parametrize("module", entry_points())
def test_help(module):
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout.lower(), done.stdout
