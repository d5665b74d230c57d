"""torch's intra-op thread count, chosen for the work.

A decoding step (one query token against a KV cache) is hundreds of tiny ops. With several threads every
op is a parallel region that waits for all of them, so on a shared machine one thread that another
process keeps off its core stalls every op: measured on 2 busy cores, 2 threads decoded 5.6x slower than
1 (notes/retrieval.md). Tiny ops gain nothing from more threads on a quiet machine either.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int):
    """torch.set_num_threads(n) for the block, the previous count afterwards (also on error)."""
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def small_ops():
    """One thread: for work made of many small ops (decoding steps, short prompts)."""
    return torch_threads(1)
