"""Per-query attention statistics without materialising the [heads, Nq, Nk] attention matrix.

One contract (`attention_stats`), two implementations:
  * kernels/chunked.py      - PyTorch, any device, loops over query chunks (the reference and CPU path)
  * kernels/triton_stats.py - Triton, CUDA, flash-style online softmax over key tiles

This file only validates arguments, fills in defaults and dispatches; what to compute is kernels/request.py.
"""
from __future__ import annotations

import dataclasses
import os

import torch

from .request import StatsRequest, _bad, normalize_key_match, normalize_spans

IMPLS = ("auto", "chunked", "triton")


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@torch.no_grad()
def attention_stats(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    requests: StatsRequest,
    scale: float | None = None,
    causal: bool = True,
    q_offset: int | None = None,
    key_padding: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    sliding_window: int | None = None,
    softcap: float | None = None,
    impl: str = "auto",
    chunk_size: int | None = None,
    lse: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Softmax statistics of attention logits, per query, without building the [B, Hq, Nq, Nk] matrix.

    q [B, Hq, Nq, D], k [B, Hkv, Nk, D] with Hq % Hkv == 0 (GQA: query head h reads KV head h // (Hq // Hkv)).
    Logits s = scale * q.k (scale defaults to D**-0.5), then softcap * tanh(s / softcap) if softcap.
    Query i sits at absolute position q_offset + i (default Nk - Nq: the queries are the last Nq positions).
    Key j is visible iff all of: j <= pos (causal), pos - j < sliding_window, key_padding[b, j] (True = real),
    mask[b, h, i, j] (bool: True = attend; float: added to the logits, -inf or below -1e29 = hidden).
    Everything is accumulated in fp32. A query that sees no key gets lse=-inf, argmax=-1 and zeros elsewhere.
    impl: "auto" (triton for CUDA tensors when triton imports, else chunked; env INTERP_STATS_IMPL overrides),
    "chunked" or "triton". Returns only the requested statistics (see StatsRequest).
    lse: the log-sum-exp of these logits [B, Hq, Nq] (natural log, -inf where a query sees no key), when the
    caller has it already (the fused attention kernels return it): then one sweep over p = exp(s - lse)
    gives every statistic, with no max pass and no sum pass.
    """
    if not isinstance(requests, StatsRequest):
        _bad("requests must be a StatsRequest, e.g. requests=StatsRequest(lse=True)")
    if not (isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor) and q.dim() == 4 and k.dim() == 4):
        _bad("q and k must be 4-D tensors: q [B, Hq, Nq, D], k [B, Hkv, Nk, D]")
    B, Hq, Nq, D = q.shape
    Bk, Hkv, Nk, Dk = k.shape
    if Bk != B or Dk != D:
        _bad(f"q {tuple(q.shape)} and k {tuple(k.shape)} must agree on B and D (q [B,Hq,Nq,D], k [B,Hkv,Nk,D])")
    if Hkv == 0 or Hq % Hkv:
        _bad(f"Hq={Hq} must be a multiple of Hkv={Hkv} (grouped-query attention); check the head axis is dim 1")
    if Nk == 0:
        _bad("k has no keys (Nk=0); attention statistics need at least one key")
    if not (q.is_floating_point() and q.dtype == k.dtype):
        _bad(f"q and k must share one floating dtype, got {q.dtype} and {k.dtype}; cast one of them")
    if q.device != k.device:
        _bad(f"q is on {q.device} and k on {k.device}; move them to one device")
    if impl not in IMPLS:
        _bad(f"impl must be one of {IMPLS}, got {impl!r}")
    if requests.is_empty:
        return {}

    scale = D**-0.5 if scale is None else float(scale)
    q_offset = Nk - Nq if q_offset is None else int(q_offset)
    if sliding_window is not None and (int(sliding_window) != sliding_window or sliding_window < 1):
        _bad(f"sliding_window must be a positive int or None, got {sliding_window!r}")
    if softcap is not None and softcap < 0:
        _bad(f"softcap must be a positive float (or None/0 for no capping), got {softcap!r}")
    softcap = float(softcap) if softcap else None
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        _bad(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    if key_padding is not None:
        if key_padding.shape != (B, Nk) or key_padding.dtype != torch.bool:
            _bad(f"key_padding must be a bool tensor [B={B}, Nk={Nk}] with True = real token")
        key_padding = key_padding.to(q.device)
    if mask is not None:
        ok = mask.dim() == 4 and mask.shape[0] in (1, B) and mask.shape[1] in (1, Hq) and mask.shape[2:] == (Nq, Nk)
        if not ok or not (mask.dtype == torch.bool or mask.is_floating_point()):
            _bad(f"mask must be bool or float with shape [B or 1, Hq or 1, Nq={Nq}, Nk={Nk}], got {tuple(mask.shape)}")
        mask = mask.to(q.device)
    pooled = requests.pooled
    if pooled is not None:
        if len(pooled) != 2 or any(int(x) != x or x < 1 for x in pooled):
            _bad(f"pooled must be (q_bins, k_bins) with positive ints, got {pooled!r}")
        pooled = (int(pooled[0]), int(pooled[1]))
    if lse is not None:
        if not (isinstance(lse, torch.Tensor) and lse.shape == (B, Hq, Nq) and lse.is_floating_point()):
            _bad(f"lse must be a float tensor [B={B}, Hq={Hq}, Nq={Nq}] (the log-sum-exp of these logits)")
        lse = lse.to(q.device)
    spans = normalize_spans(requests.spans, B, Nk, q.device) if requests.wants_spans else None
    key_match = normalize_key_match(requests.key_match, B, Nq, Nk, q.device) if len(requests.key_match) else None

    if impl == "auto":
        impl = os.environ.get("INTERP_STATS_IMPL") or ("triton" if q.is_cuda and _triton_importable() else "chunked")
        if impl not in ("chunked", "triton"):
            _bad(f"INTERP_STATS_IMPL must be 'chunked' or 'triton', got {impl!r}")
    if impl == "triton":
        if not _triton_importable():
            _bad("impl='triton' needs the triton package; install it or use impl='chunked'")
        if not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            _bad("impl='triton' needs CUDA tensors (or TRITON_INTERPRET=1 before importing triton); use impl='chunked'")
        # Cases the kernel does not cover fall back to the exact chunked path, silently by design.
        if mask is not None or q.dtype not in (torch.float16, torch.bfloat16, torch.float32) or Nq == 0:
            impl = "chunked"

    if lse is not None and requests.lse and dataclasses.replace(requests, lse=False).is_empty:  # nothing left to compute
        return {"lse": lse.float().clone()}
    common = dict(
        scale=scale, causal=bool(causal), q_offset=q_offset, key_padding=key_padding,
        sliding_window=None if sliding_window is None else int(sliding_window), softcap=softcap,
        spans=spans, pooled=pooled, key_match=key_match, lse=lse,
    )
    if impl == "triton":
        from .triton_stats import triton_stats

        return triton_stats(q, k, requests, **common)
    from .chunked import chunked_stats

    return chunked_stats(q, k, requests, mask=mask, chunk_size=chunk_size, **common)
