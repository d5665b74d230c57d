"""`pip install .` gives a working package: the wheel ships the head explorer and the bundled
data, and the installed `interp` (in a fresh virtual environment, away from the checkout)
finds its app and runs it. Offline: the wheel is built without build isolation and installed
with --no-deps into a venv that sees the system's packages."""

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from interp.run.results import ResultsDir

REPO = Path(__file__).resolve().parent.parent
SOURCES = ["pyproject.toml", "README.md", "interp", "analyses", "kernels", "apps"]
EXPECTED = ["interp/cli.py", "interp/runtime/ablation.py", "interp/apps/head_explorer.py", "interp/analyses/sinks.py",
            "interp/analyses/retrieval.py", "interp/kernels/chunked.py", "interp/data/prompts.json",
            "interp/data/needles.json", "interp/data/haystack.txt", "interp/data/counterfactual.jsonl",
            "interp/data/harmless.json", "interp/base/files.py", "interp/run/runner.py", "interp/organisms/train.py"]

# The installed app, run by streamlit's AppTest on a results directory (no model needed to browse).
RUN_INSTALLED_APP = """
import sys
from streamlit.testing.v1 import AppTest
from interp.cli import find_app
app, results = str(find_app()), sys.argv[1]
sys.argv = [app, results]
at = AppTest.from_file(app, default_timeout=120)
at.run()
assert not at.exception, at.exception
print("APP OK", app)
"""


def run(*command, cwd):
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.skipif(importlib.util.find_spec("wheel") is None, reason="building a wheel offline needs `pip install wheel`")
def test_the_wheel_installs_a_working_interp_explore(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves no build/ or egg-info in the checkout
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp_path / "dist", source,
        cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("interp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in EXPECTED if n not in names], names
    assert not [n for n in names if n.startswith(("tests/", "apps/", "analyses/", "kernels/"))]  # all under interp/
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "interp = interp.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "refusal = interp.organisms:refusal_model" in zipfile.ZipFile(wheel).read(entry_points).decode()  # models by name

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=tmp_path)
    python, interp = venv / "bin" / "python", venv / "bin" / "interp"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel, cwd=tmp_path)

    results = ResultsDir(tmp_path / "results")
    results.write_table("toy", pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "score": [0.1, 0.9, 0.4, 0.2]}))
    results.finish_analysis("toy")
    installed = venv / "lib"  # everything the installed interp uses must come from here, not the checkout
    where = run(python, "-c", "import interp, interp.data as d; print(interp.__file__); print(len(d.load_prompts()))", cwd=tmp_path)
    assert Path(where.split()[0]).is_relative_to(installed) and int(where.split()[1]) > 0
    command = run(interp, "explore", tmp_path / "results", "--check", "--headless", cwd=tmp_path)
    app = Path(command.split()[command.split().index("run") + 1])
    assert app.is_relative_to(installed) and app.name == "head_explorer.py" and app.is_file()
    assert "APP OK" in run(python, "-c", RUN_INSTALLED_APP, tmp_path / "results", cwd=tmp_path)
