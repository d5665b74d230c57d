"""Suite-wide settings, and the fixtures that several test modules share (plain helpers: tests/tiny.py).

Torch threads are sized so that the suite does not oversubscribe the machine's cores.

The suite runs at most two busy processes at once: this one, and a child it waits on or talks to (the
Streamlit server of the app tests, a CLI subprocess, the Triton-interpreter pytest). Each gets half the
cores; children inherit the count through OMP_NUM_THREADS. Tiny models gain nothing from more threads,
and on a shared machine every extra thread of a small op waits for a busy core.
"""

import os

THREADS = max(1, (os.cpu_count() or 2) // 2)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))  # before torch starts its thread pool; children too

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

import pytest  # noqa: E402


# ---- fixtures that several test modules share (plain helpers live in tests/tiny.py) ------------------


@pytest.fixture(scope="session")
def tiny_long_dir(tmp_path_factory):
    """A tiny random llama with 1024 positions saved to disk (room for retrieval's haystacks)."""
    from tests.tiny import save_tiny_long_model

    return save_tiny_long_model(tmp_path_factory.mktemp("tiny-llama-1k"))
