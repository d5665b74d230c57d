"""Chunked PyTorch attention statistics: the exact fp32 reference, and the path for CPU / any device.

Loop over query chunks; for each chunk compute the fp32 logits of every query head against all keys
([B, Hkv, G, C, Nk], C = chunk), mask them, and reduce them to statistics right away. Peak memory is a
few times B*Hq*C*Nk*4 bytes, never B*Hq*Nq*Nk. Everything inside a chunk is vectorised over batch,
heads and keys. Call through kernels.stats.attention_stats, which validates and fills in defaults.
"""
from __future__ import annotations

import torch

from .stats import StatsRequest, key_bin_edges

CHUNK_BYTES = 128 << 20  # target size of one [B, Hq, C, Nk] fp32 logits block
NEG_INF = float("-inf")


def default_chunk(B: int, Hq: int, Nq: int, Nk: int) -> int:
    return max(1, min(Nq, CHUNK_BYTES // (B * Hq * Nk * 4)))


def _span_sums(cs: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """cs [B, Hkv, G, C, Nk+1] prefix sums of p over keys (cs[..., j] = sum_{j' < j} p); spans [1|B, S, 2].

    Returns the mass of each half-open span, cs[end] - cs[start], as [B, Hkv, G, C, S]."""
    B, Hkv, G, C, _ = cs.shape
    idx = spans.view(spans.shape[0], 1, 1, 1, -1, 2).expand(B, Hkv, G, C, -1, 2)
    mass = cs.gather(-1, idx[..., 1]) - cs.gather(-1, idx[..., 0])
    return mass.clamp_min_(0)  # prefix-sum differences can round a few ulp below zero


def chunked_stats(q, k, req: StatsRequest, *, scale, causal, q_offset, key_padding, mask, sliding_window,
                  softcap, spans, pooled, chunk_size=None) -> dict[str, torch.Tensor]:
    B, Hq, Nq, D = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    G = Hq // Hkv
    dev = q.device
    f32 = dict(device=dev, dtype=torch.float32)
    C = chunk_size or default_chunk(B, Hq, Nq, Nk)

    # GQA without copying K per query head: view q as [B, Hkv, G, Nq, D] and let the G heads of a
    # group share one K. The single fp32 copy of K is Hkv-sized and makes the logits exact in fp32.
    qg = q.view(B, Hkv, G, Nq, D)
    kT = k.float().transpose(-1, -2)  # [B, Hkv, D, Nk]
    kpos = torch.arange(Nk, device=dev)
    pad = None if key_padding is None else ~key_padding.view(B, 1, 1, 1, Nk)
    if mask is not None:  # [B|1, Hq|1, Nq, Nk] -> [B|1, Hkv|1, G|1, Nq, Nk] to line up with the grouped logits
        mask = mask.view(mask.shape[0], Hkv, G, Nq, Nk) if mask.shape[1] == Hq else mask.unsqueeze(2)
        mask = mask if mask.dtype == torch.bool else mask.float()

    need_p = req.entropy or req.wants_spans or pooled is not None or req.key_mass
    out = {}
    if req.lse:
        out["lse"] = torch.empty(B, Hq, Nq, **f32)
    if req.argmax:
        out["argmax"] = torch.empty(B, Hq, Nq, device=dev, dtype=torch.long)
        out["argmax_prob"] = torch.empty(B, Hq, Nq, **f32)
    if req.entropy:
        out["entropy"] = torch.empty(B, Hq, Nq, **f32)
    if spans is not None:
        out["span_mass"] = torch.empty(B, Hq, Nq, spans.shape[1], **f32)
    if pooled is not None:
        q_bins, k_bins = pooled
        out["pooled"] = torch.zeros(B, Hq, q_bins, k_bins, **f32)
        bins = key_bin_edges(Nk, k_bins, dev).unsqueeze(0)  # key bins are just spans
    if req.key_mass:
        out["key_mass"] = torch.zeros(B, Hq, Nk, **f32)
    # views with the head axis split as [Hkv, G], so chunk results can be written in place
    grouped = {name: t.view(B, Hkv, G, *t.shape[2:]) for name, t in out.items() if name not in ("pooled", "key_mass")}

    for i0 in range(0, Nq, C):
        i1 = min(i0 + C, Nq)
        n = i1 - i0
        qc = qg[:, :, :, i0:i1].float().reshape(B, Hkv, G * n, D)
        s = torch.matmul(qc, kT).view(B, Hkv, G, n, Nk).mul_(scale)
        if softcap is not None:
            s.div_(softcap).tanh_().mul_(softcap)

        # Masks are built for this chunk only, from positions; -inf logits are "not visible".
        qpos = (q_offset + torch.arange(i0, i1, device=dev)).unsqueeze(1)
        hidden = None
        if causal:
            hidden = kpos > qpos
        if sliding_window is not None:
            too_far = qpos - kpos >= sliding_window
            hidden = too_far if hidden is None else hidden | too_far
        if hidden is not None:
            s.masked_fill_(hidden, NEG_INF)
        if pad is not None:
            s.masked_fill_(pad, NEG_INF)
        if mask is not None:
            m = mask[:, :, :, i0:i1]
            s = s.masked_fill_(~m, NEG_INF) if m.dtype == torch.bool else s.add_(m)

        lse = torch.logsumexp(s, dim=-1)  # -inf for a query that sees no key
        # lse_safe = 0 for those queries so that exp(s - lse_safe) = exp(-inf) = 0 instead of NaN
        lse_safe = lse.masked_fill(lse == NEG_INF, 0.0)
        dead = lse == NEG_INF
        if req.lse:
            grouped["lse"][..., i0:i1] = lse
        if req.argmax:
            best = s.argmax(dim=-1, keepdim=True)  # torch returns the first maximal index: ties -> smallest key
            grouped["argmax_prob"][..., i0:i1] = (s.gather(-1, best).squeeze(-1) - lse_safe).exp_()
            grouped["argmax"][..., i0:i1] = best.squeeze(-1).masked_fill_(dead, -1)
        if not need_p:
            continue

        logp = s.sub_(lse_safe.unsqueeze(-1))  # reuse the logits buffer: log A
        p = logp.exp()
        if req.entropy:
            # Masked keys have p = 0 and log p = -inf; clamping makes 0 * log 0 = 0 instead of NaN.
            grouped["entropy"][..., i0:i1] = -(p * logp.clamp_min_(torch.finfo(torch.float32).min)).sum(-1)
        if req.key_mass:
            out["key_mass"].view(B, Hkv, G, Nk).add_(p.sum(dim=-2))
        if spans is not None or pooled is not None:
            # Prefix sums over keys turn any key span into one subtraction: O(Nk + S) per query.
            cs = torch.nn.functional.pad(p.cumsum(dim=-1), (1, 0))
            if spans is not None:
                grouped["span_mass"][..., i0:i1, :] = _span_sums(cs, spans)
            if pooled is not None:
                per_kbin = _span_sums(cs, bins).reshape(B, Hq, n, k_bins)
                qbin = torch.arange(i0, i1, device=dev) * q_bins // Nq
                out["pooled"].index_add_(2, qbin, per_kbin)
    return out
