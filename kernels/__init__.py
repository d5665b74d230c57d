"""Attention-statistics kernels: per-query softmax statistics without materialising [heads, Nq, Nk].

    from interp.kernels import attention_stats, StatsRequest
    out = attention_stats(q, k, requests=StatsRequest(lse=True, entropy=True))

Triton is imported lazily (only when impl="triton" runs), so importing this package never imports triton.
"""
from .request import StatsRequest
from .stats import attention_stats

__all__ = ["StatsRequest", "attention_stats"]
