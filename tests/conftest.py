"""Suite-wide settings: torch threads sized so that the suite does not oversubscribe the machine's cores.

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
