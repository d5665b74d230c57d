"""Python started in the checkout's root has the root first on sys.path (python -c, python -m, torchrun,
pytest, a notebook). The root's folders must not hide installed packages of the same name there: transformers
imports the PyPI package `kernels`, and kernels/ is ours. Every case runs in a subprocess whose working
directory is the root, as a user's would be."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import save_tiny_llama

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "INTERP_PROGRESS": "0"}


def in_root(*args, timeout=300):
    done = subprocess.run([str(a) for a in args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed in the checkout's root:\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama-root"), max_position_embeddings=1024)


def test_the_pypi_kernels_package_is_installed():
    # transformers requires it; without it this module would test nothing
    importlib.metadata.version("kernels")  # raises PackageNotFoundError if it is not


def test_import_kernels_in_the_root_is_the_installed_package(tiny_dir):
    out = in_root(sys.executable, "-c", f"""
import interp, kernels, transformers.integrations.hub_kernels
import interp.kernels
from transformers import AttentionInterface
model = interp.load_model({str(tiny_dir)!r})
print(kernels.__file__, hasattr(kernels, "CUDAProperties"))
print(interp.kernels.__file__)
print(model.layout.n_layers)
""")
    installed, pypi_api, ours, layers = out.split()
    assert not Path(installed).is_relative_to(ROOT) and pypi_api == "True"
    assert Path(ours) == ROOT / "kernels" / "__init__.py" and layers == "2"


def test_without_an_installed_kernels_the_root_folder_is_not_imported_under_that_name():
    # -S: no site-packages, so nothing else is called `kernels`; the root's folder must not stand in for it
    done = subprocess.run([sys.executable, "-S", "-c", "import sys; sys.path.insert(0, ''); import kernels"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "ModuleNotFoundError: No module named 'kernels'" in done.stderr


def test_module_entry_points_start_in_the_root():
    assert "Usage: interp scan" in in_root(sys.executable, "-m", "interp", "scan", "--help")
    assert "usage: python -m interp.organisms" in in_root(sys.executable, "-m", "interp.organisms", "--help")


def test_two_rank_torchrun_scan_in_the_root(tiny_dir, tmp_path):
    out = tmp_path / "out"
    in_root(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "interp",
            "scan", "--model", tiny_dir, "--analyses", "sinks", "--samples", "4", "--max-length", "200", "--out", out)
    assert (out / "sinks.parquet").exists() and (out / "manifest.json").exists()


def test_no_other_root_package_shares_a_name_with_an_installed_one():
    # a root folder with an __init__.py is a regular package there, and outranks an installed package of its name
    installed = importlib.metadata.packages_distributions()
    for folder in sorted(p.parent.name for p in ROOT.glob("*/__init__.py")):
        owners = set(installed.get(folder, [])) - {"interp"}
        assert folder == "kernels" or not owners, (
            f"{folder}/ in the checkout's root hides the installed {sorted(owners)} there: rename it, or guard it as kernels/__init__.py does")
