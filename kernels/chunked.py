"""Chunked PyTorch attention statistics: the exact fp32 reference, and the path for CPU / any device.

Loop over query chunks; for each chunk compute the fp32 logits of every query head against the keys the
chunk can see ([B, Hkv, G, C, W], C = chunk, W <= Nk), mask them, and reduce them to statistics right away.
Peak memory is about 2 * B*Hq*C*Nk*4 bytes, never B*Hq*Nq*Nk. Everything inside a chunk is vectorised over
batch, heads and keys. Call through kernels.stats.attention_stats, which validates and fills in defaults.
"""
from __future__ import annotations

import torch

from .stats import StatsRequest, key_bin_edges

CHUNK_BYTES = 128 << 20  # target size of one [B, Hq, C, Nk] fp32 logits block
NEG_INF = float("-inf")


def default_chunk(B: int, Hq: int, Nq: int, Nk: int) -> int:
    return max(1, min(Nq, CHUNK_BYTES // (B * Hq * Nk * 4)))


def _prefix(cs: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Sum of p over keys < pos, from inclusive prefix sums cs [B, Hkv, G, C, W]; pos [1|B, S] -> [B, Hkv, G, C, S]."""
    B, Hkv, G, C, _ = cs.shape
    pos = pos.view(pos.shape[0], 1, 1, 1, -1)
    return cs.gather(-1, (pos - 1).clamp_min(0).expand(B, Hkv, G, C, -1)).masked_fill_(pos == 0, 0.0)


def _span_sums(cs: torch.Tensor, spans: torch.Tensor, lo: int) -> torch.Tensor:
    """Mass of each half-open key span [start, end) as prefix(end) - prefix(start): O(S) per query, any S.

    cs covers keys [lo, lo + W); keys outside have p = 0, so span ends are clamped into that window."""
    local = (spans - lo).clamp_(0, cs.shape[-1])
    return (_prefix(cs, local[..., 1]) - _prefix(cs, local[..., 0])).clamp_min_(0)  # rounding can dip below 0


def chunked_stats(q, k, req: StatsRequest, *, scale, causal, q_offset, key_padding, mask, sliding_window,
                  softcap, spans, pooled, chunk_size=None) -> dict[str, torch.Tensor]:
    B, Hq, Nq, D = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    G = Hq // Hkv
    dev = q.device
    f32 = dict(device=dev, dtype=torch.float32)
    C = min(chunk_size or default_chunk(B, Hq, Nq, Nk), max(Nq, 1))

    # GQA without copying K per query head: view q as [B, Hkv, G, Nq, D] and let the G heads of a
    # group share one K. The single fp32 copy of K is Hkv-sized and makes the logits exact in fp32.
    qg = q.view(B, Hkv, G, Nq, D)
    kT = k.float().transpose(-1, -2)  # [B, Hkv, D, Nk]
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
    # views with the head axis split as [Hkv, G], so chunk results are written in place
    grouped = {name: t.view(B, Hkv, G, *t.shape[2:]) for name, t in out.items()}

    # Two [B, Hq, C, Nk] buffers reused by every chunk. On CPU a fresh tensor this size costs more in page
    # faults than the arithmetic on it, so every step below works in place.
    sbuf = torch.empty(B * Hq * C * Nk, **f32)
    pbuf = torch.empty_like(sbuf) if need_p else None

    for i0 in range(0, Nq, C):
        i1 = min(i0 + C, Nq)
        n = i1 - i0
        # Keys [lo, hi) are the only ones this chunk can see (causal: none after the last query; window:
        # none before the first query's window), so causal prefill costs about half of all-pairs.
        hi = min(Nk, q_offset + i1) if causal else Nk
        lo = max(0, q_offset + i0 - sliding_window + 1) if sliding_window is not None else 0
        if hi <= lo:  # the chunk sees no key at all: keep one key, the position masks below hide it
            lo, hi = 0, 1
        w = hi - lo

        s = sbuf[: B * Hq * n * w].view(B, Hkv, G, n, w)
        qc = qg[:, :, :, i0:i1].float().reshape(B, Hkv, G * n, D)
        torch.matmul(qc, kT[..., lo:hi], out=s.view(B, Hkv, G * n, w))
        s.mul_(scale)
        if softcap is not None:
            s.div_(softcap).tanh_().mul_(softcap)

        # Masks are built for this chunk only, from positions; a -inf logit is a hidden key.
        qpos = (q_offset + torch.arange(i0, i1, device=dev)).unsqueeze(1)
        kpos = torch.arange(lo, hi, device=dev)
        hidden = None
        if causal:
            hidden = kpos > qpos
        if sliding_window is not None:
            too_far = qpos - kpos >= sliding_window
            hidden = too_far if hidden is None else hidden | too_far
        if hidden is not None:
            s.masked_fill_(hidden, NEG_INF)
        if pad is not None:
            s.masked_fill_(pad[..., lo:hi], NEG_INF)
        if mask is not None:
            m = mask[:, :, :, i0:i1, lo:hi]
            if m.dtype == torch.bool:
                s.masked_fill_(~m, NEG_INF)
            else:
                s.add_(m)

        if req.argmax:
            best = s.argmax(dim=-1) + lo  # torch returns the first maximal index: ties -> smallest key
        # Softmax relative to the row max. A query that sees no key has max -inf; using 0 instead makes
        # its exp(s - max) = 0 rather than NaN, so l = 0 and lse = log 0 = -inf fall out naturally.
        mx = s.amax(dim=-1, keepdim=True)
        mx.masked_fill_(mx == NEG_INF, 0.0)
        d = s.sub_(mx)  # s - max <= 0
        e = torch.exp(d, out=pbuf[: s.numel()].view_as(s)) if need_p else d.exp_()
        l = e.sum(dim=-1)
        dead = l == 0
        l_safe = l.masked_fill(dead, 1.0)
        if req.lse:
            grouped["lse"][..., i0:i1] = mx.squeeze(-1) + l.log()
        if req.argmax:
            grouped["argmax"][..., i0:i1] = best.masked_fill_(dead, -1)
            grouped["argmax_prob"][..., i0:i1] = l_safe.reciprocal().masked_fill_(dead, 0.0)  # exp(max - lse)
        if not need_p:
            continue

        if req.entropy:
            # H = -sum p log p = log l - sum(e * d) / l. Hidden keys have e = 0 and d = -inf; clamping d
            # makes their term 0 instead of NaN. Dead rows give log 1 - 0 = 0.
            t = d.clamp_min_(torch.finfo(torch.float32).min).mul_(e).sum(dim=-1)
            grouped["entropy"][..., i0:i1] = l_safe.log() - t / l_safe
        p = e.div_(l_safe.unsqueeze(-1))  # the attention probabilities of this chunk
        if req.key_mass:
            grouped["key_mass"][..., lo:hi] += p.sum(dim=-2)
        if spans is not None or pooled is not None:
            cs = torch.cumsum(p, dim=-1, out=s)  # the logits buffer is free now
            if spans is not None:
                grouped["span_mass"][..., i0:i1, :] = _span_sums(cs, spans, lo)
            if pooled is not None:
                qbin = torch.arange(i0, i1, device=dev) * q_bins // Nq
                out["pooled"].index_add_(2, qbin, _span_sums(cs, bins, lo).reshape(B, Hq, n, k_bins))
    return out
