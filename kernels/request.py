"""What to compute (StatsRequest) and the checks that turn its loose fields into tensors.

Its own module so that the contract (kernels/stats.py) and both implementations (chunked.py,
triton_stats.py) import it without importing each other.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StatsRequest:
    """Which statistics to compute. A = softmax of the scaled, capped, masked logits; shapes use B, Hq, Nq, Nk."""

    lse: bool = False  # "lse" [B,Hq,Nq] log-sum-exp of the logits (-inf where a query sees no key)
    argmax: bool = False  # "argmax" [B,Hq,Nq] int64 key index (ties -> smallest), "argmax_prob" [B,Hq,Nq]
    entropy: bool = False  # "entropy" [B,Hq,Nq], nats
    spans: tuple = ()  # half-open key spans [(start, end), ...] or LongTensor [S,2] / [B,S,2]
    #                    -> "span_mass" [B,Hq,Nq,S]
    pooled: tuple | None = None  # (q_bins, k_bins) -> "pooled" [B,Hq,q_bins,k_bins], summed probability;
    #                              query i -> bin i*q_bins//Nq, key j -> bin j*k_bins//Nk
    key_mass: bool = False  # "key_mass" [B,Hq,Nk] = sum over queries of A[i, j]
    key_match: tuple = ()  # ((query_labels, key_labels), ...): integer tensors, query labels [Nq] or [B, Nq],
    #                        key labels [Nk] or [B, Nk]; a label < 0 never matches
    #                        -> "match_mass" [B,Hq,Nq,M] = sum_j A[i, j] * (key_labels[j] == query_labels[i] >= 0)

    @property
    def wants_spans(self) -> bool:
        # () is "not asked"; an explicit tensor is always asked, even with zero rows
        return isinstance(self.spans, torch.Tensor) or len(self.spans) > 0

    @property
    def is_empty(self) -> bool:
        return not (self.lse or self.argmax or self.entropy or self.wants_spans or self.pooled or self.key_mass
                    or len(self.key_match))


def _bad(msg: str):
    raise ValueError(msg)


def normalize_spans(spans, B: int, Nk: int, device) -> torch.Tensor:
    """Spans as a LongTensor [1 or B, S, 2] on `device`; checks 0 <= start <= end <= Nk."""
    if isinstance(spans, torch.Tensor):
        t = spans.to(device=device, dtype=torch.long)
    else:
        try:
            pairs = [(operator.index(a), operator.index(b)) for a, b in spans]
        except (TypeError, ValueError):
            _bad("spans must be a list of (start, end) pairs or a LongTensor [S, 2] / [B, S, 2]")
        t = torch.tensor(pairs, dtype=torch.long, device=device).reshape(-1, 2)
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[-1] != 2 or t.shape[0] not in (1, B):
        _bad(f"spans must have shape [S, 2] or [B={B}, S, 2], got {tuple(t.shape)}; pass (start, end) pairs")
    if t.numel() and ((t[..., 0] < 0) | (t[..., 1] > Nk) | (t[..., 0] > t[..., 1])).any():
        _bad(f"every span needs 0 <= start <= end <= Nk={Nk} (half-open key range); fix the offending spans")
    return t


def _labels(t, B: int, N: int, what: str, device) -> torch.Tensor:
    """One label tensor [N] or [B, N] as a LongTensor [1 or B, N]."""
    integer = isinstance(t, torch.Tensor) and not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool
    if not integer or t.dim() not in (1, 2) or t.shape[-1] != N or (t.dim() == 2 and t.shape[0] != B):
        got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
        _bad(f"key_match {what} labels must be an integer tensor [{N}] or [B={B}, {N}], got {got}")
    return t.to(device=device, dtype=torch.long).reshape(-1, N)


def normalize_key_match(pairs, B: int, Nq: int, Nk: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """key_match pairs as (query labels [1 or B, M, Nq], key labels [1 or B, M, Nk]) LongTensors on `device`."""
    if isinstance(pairs, torch.Tensor) or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        _bad("key_match must be a tuple of (query_labels, key_labels) pairs of integer tensors")
    queries = [_labels(qlab, B, Nq, "query", device) for qlab, _ in pairs]
    keys = [_labels(klab, B, Nk, "key", device) for _, klab in pairs]
    bq, bk = max(t.shape[0] for t in queries), max(t.shape[0] for t in keys)
    return (torch.stack([t.expand(bq, Nq) for t in queries], dim=1),
            torch.stack([t.expand(bk, Nk) for t in keys], dim=1))


def key_bin_edges(Nk: int, k_bins: int, device) -> torch.Tensor:
    """Key bins as half-open spans [k_bins, 2]: key j is in bin j*k_bins//Nk, i.e. bin b starts at ceil(b*Nk/k_bins).

    Treating bins as spans lets the Triton kernel reuse its span code for `pooled`."""
    b = torch.arange(k_bins + 1, device=device, dtype=torch.long)
    edges = (b * Nk + k_bins - 1) // k_bins
    return torch.stack([edges[:-1], edges[1:]], dim=1)
