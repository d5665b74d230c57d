"""Triton attention statistics (CUDA; also runs under TRITON_INTERPRET=1 on CPU tensors).

Same idea as the fused-attention tutorial, but instead of p @ V we keep statistics:
  pass 1 (_stats_fwd): one program per (query block, batch*head) streams over key tiles with an online
      softmax: running max m, running sum l = sum exp(s - m), running argmax, and t = sum exp(s - m) * (s - m)
      for the entropy. Out: lse = m + log l, entropy = log l - t / l, argmax_prob = exp(m - lse) = 1 / l.
  pass 2 (_stats_mass, for spans / pooled / key_mass / key_match): recompute the same tiles,
      p = exp(s - lse), and reduce p into span masses (p @ span-indicator), pooled bins, key column sums (atomic adds) and the
      mass on keys whose label matches the query's (key_match).
With the lse given (the fused attention kernels return it), pass 1 is skipped and pass 2 also keeps the
running argmax and sum p * s (entropy = lse - sum p s): one pass over the logits in all.
Masks (causal, sliding window, key padding, q_offset) come from index arithmetic; tiles that the causal /
window bounds hide completely are never visited. Call through kernels.stats.attention_stats.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .request import StatsRequest, key_bin_edges


@triton.jit
def _key_range(start_m, q_offset, Nq, Nk, window,
               CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """[lo, hi) of key positions that any query of this block can see; tiles outside are skipped."""
    lo = 0
    hi = Nk
    if CAUSAL:  # the block's last query sits at q_offset + min(block end, Nq) - 1
        hi = tl.minimum(hi, q_offset + tl.minimum(start_m * BLOCK_M + BLOCK_M, Nq))
    if HAS_WINDOW:  # the block's first query sees keys from pos - window + 1 on; start on a tile boundary
        lo = tl.maximum(q_offset + start_m * BLOCK_M - window + 1, 0) // BLOCK_N * BLOCK_N
    return lo, hi


@triton.jit
def _tile_logits(q, k_base, stride_kn, stride_kd, kp_base, offs_m, start_n, Nq, Nk, D,
                 q_offset, scale, softcap, window,
                 CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_KP: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """fp32 logits of a [BLOCK_M, BLOCK_N] tile with hidden keys set to -inf, and the visibility mask."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                mask=(offs_n[:, None] < Nk) & (offs_d[None, :] < D), other=0.0)
    # "ieee" keeps fp32 inputs exact (the default would be tf32 on tensor cores); fp16/bf16 accumulate in fp32.
    s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
    if HAS_SOFTCAP:  # softcap * tanh(s / softcap), with tanh from exp(-2|x|) so it never overflows
        e = tl.exp(-2.0 * tl.abs(s) / softcap)
        th = (1.0 - e) / (1.0 + e)
        s = softcap * tl.where(s < 0, -th, th)
    pos = q_offset + offs_m  # absolute position of each query
    visible = (offs_m[:, None] < Nq) & (offs_n[None, :] < Nk)
    if CAUSAL:
        visible = visible & (offs_n[None, :] <= pos[:, None])
    if HAS_WINDOW:
        visible = visible & (pos[:, None] - offs_n[None, :] < window)
    if HAS_KP:
        real = tl.load(kp_base + offs_n, mask=offs_n < Nk, other=0)
        visible = visible & (real[None, :] != 0)
    return tl.where(visible, s, float("-inf")), visible, offs_n


@triton.jit
def _query_tile(Q, K, KP, sqb, sqh, sqm, sqd, skb, skh, Hq, G, Nq, Nk, D, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's query block (grid axis 0) of batch x head bh (axis 1): its queries and where its keys start."""
    start_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)  # int64 so that offsets into big tensors cannot overflow
    b = bh // Hq
    h = bh % Hq
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
                mask=(offs_m[:, None] < Nq) & (offs_d[None, :] < D), other=0.0)
    k_base = K + b * skb + (h // G) * skh  # GQA: query head h reads KV head h // G
    return start_m, bh, b, offs_m, q, k_base, KP + b * Nk


@triton.jit
def _stats_fwd(Q, K, KP, LSE, ARG, ARGP, ENT,
               sqb, sqh, sqm, sqd, skb, skh, skn, skd,
               Hq, G, Nq, Nk, D, q_offset, scale, softcap, window,
               CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_KP: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    start_m, bh, b, offs_m, q, k_base, kp_base = _query_tile(Q, K, KP, sqb, sqh, sqm, sqd, skb, skh, Hq, G, Nq, Nk, D,
                                                             BLOCK_M, BLOCK_D)

    # m starts finite (not -inf) so that exp(m_old - m_new) and (m_old - m_new) * l never see inf - inf,
    # even on rows whose keys are all hidden so far.
    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)  # sum exp(s - m)
    t_i = tl.zeros([BLOCK_M], tl.float32)  # sum exp(s - m) * (s - m): relative to m, so no cancellation
    arg = tl.full([BLOCK_M], -1, tl.int32)
    lo, hi = _key_range(start_m, q_offset, Nq, Nk, window, CAUSAL, HAS_WINDOW, BLOCK_M, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        s, visible, offs_n = _tile_logits(q, k_base, skn, skd, kp_base, offs_m, start_n, Nq, Nk, D,
                                          q_offset, scale, softcap, window,
                                          CAUSAL, HAS_WINDOW, HAS_KP, HAS_SOFTCAP, BLOCK_N, BLOCK_D)
        tile_max = tl.max(s, 1)
        # smallest index reaching the tile max; a strictly larger max is needed to replace an earlier tile
        tile_arg = tl.min(tl.where(s == tile_max[:, None], offs_n[None, :], 2147483647), 1)
        arg = tl.where(tile_max > m_i, tile_arg, arg)
        m_new = tl.maximum(m_i, tile_max)
        alpha = tl.exp(m_i - m_new)
        d = s - m_new[:, None]
        p = tl.exp(d)
        # sum p (s - m_new) over the old keys = alpha * (t_old + (m_old - m_new) * l_old)
        # (hidden keys have p = 0 and d = -inf: zero d first so 0 * -inf never makes a NaN)
        t_i = alpha * (t_i + (m_i - m_new) * l_i) + tl.sum(p * tl.where(visible, d, 0.0), 1)
        l_i = alpha * l_i + tl.sum(p, 1)
        m_i = m_new

    seen = l_i > 0  # False: the query sees no key at all
    l_safe = tl.where(seen, l_i, 1.0)
    out = bh * Nq + offs_m
    ok = offs_m < Nq
    tl.store(LSE + out, tl.where(seen, m_i + tl.log(l_safe), float("-inf")), mask=ok)
    tl.store(ENT + out, tl.where(seen, tl.maximum(tl.log(l_safe) - t_i / l_safe, 0.0), 0.0), mask=ok)
    tl.store(ARGP + out, tl.where(seen, 1.0 / l_safe, 0.0), mask=ok)
    tl.store(ARG + out, arg.to(tl.int64), mask=ok)


@triton.jit
def _stats_mass(Q, K, KP, LSE, SPANS, SPAN_OUT, POOL_OUT, KEYM_OUT, QLAB, KLAB, MATCH_OUT, ARG, ARGP, ENT,
                sqb, sqh, sqm, sqd, skb, skh, skn, skd, sspb, sqlb, sklb,
                Hq, G, Nq, Nk, D, q_offset, scale, softcap, window,
                n_spans, n_cols, q_bins, k_bins, n_match,
                CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_KP: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
                HAS_COLS: tl.constexpr, KEY_MASS: tl.constexpr, HAS_MATCH: tl.constexpr, ROW_STATS: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr,
                BLOCK_MM: tl.constexpr):
    """Columns = user spans [0, n_spans) followed by the key bins of `pooled` [n_spans, n_cols).
    Grid axis 2 walks column blocks of BLOCK_S; the column block 0 programs also do the key mass and the
    key_match pairs (labels [B or 1, n_match, Nq] and [B or 1, n_match, Nk], batch strides sqlb and sklb).
    ROW_STATS (the lse was given, so pass 1 did not run): also the argmax and the entropy, lse - sum p s."""
    start_m, bh, b, offs_m, q, k_base, kp_base = _query_tile(Q, K, KP, sqb, sqh, sqm, sqd, skb, skh, Hq, G, Nq, Nk, D,
                                                             BLOCK_M, BLOCK_D)
    col_block = tl.program_id(2)
    lse = tl.load(LSE + bh * Nq + offs_m, mask=offs_m < Nq, other=0.0)
    seen = lse != float("-inf")
    lse = tl.where(seen, lse, 0.0)  # such rows have only -inf logits: p = 0, not NaN
    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)  # ROW_STATS: running max and its first key
    arg = tl.full([BLOCK_M], -1, tl.int32)
    ps_i = tl.zeros([BLOCK_M], tl.float32)  # ROW_STATS: sum p * s over visible keys

    cols = col_block * BLOCK_S + tl.arange(0, BLOCK_S)
    col_lo = tl.load(SPANS + b * sspb + cols * 2, mask=cols < n_cols, other=0)
    col_hi = tl.load(SPANS + b * sspb + cols * 2 + 1, mask=cols < n_cols, other=0)
    acc = tl.zeros([BLOCK_M, BLOCK_S], tl.float32)
    km_end = tl.where(col_block == 0, Nk, 0)  # only one column block adds the key mass
    match_acc = tl.zeros([BLOCK_M, BLOCK_MM], tl.float32)
    match_cols = tl.arange(0, BLOCK_MM)
    n_pairs = tl.where(col_block == 0, n_match, 0)  # and the key_match pairs

    lo, hi = _key_range(start_m, q_offset, Nq, Nk, window, CAUSAL, HAS_WINDOW, BLOCK_M, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        s, visible, offs_n = _tile_logits(q, k_base, skn, skd, kp_base, offs_m, start_n, Nq, Nk, D,
                                          q_offset, scale, softcap, window,
                                          CAUSAL, HAS_WINDOW, HAS_KP, HAS_SOFTCAP, BLOCK_N, BLOCK_D)
        p = tl.exp(s - lse[:, None])  # hidden keys: exp(-inf) = 0
        if ROW_STATS:
            tile_max = tl.max(s, 1)
            tile_arg = tl.min(tl.where(s == tile_max[:, None], offs_n[None, :], 2147483647), 1)
            arg = tl.where(tile_max > m_i, tile_arg, arg)  # a tie keeps the earlier key
            m_i = tl.maximum(m_i, tile_max)
            ps_i += tl.sum(p * tl.where(visible, s, 0.0), 1)
        if KEY_MASS:
            tl.atomic_add(KEYM_OUT + bh * Nk + offs_n, tl.sum(p, 0), mask=offs_n < km_end)
        if HAS_COLS:
            # span masses as a small matmul: p [M, N] @ (key j in column span c) [N, S]
            inside = (offs_n[:, None] >= col_lo[None, :]) & (offs_n[:, None] < col_hi[None, :])
            acc += tl.dot(p, inside.to(tl.float32), input_precision="ieee")
        if HAS_MATCH:
            for m in range(0, n_pairs):
                ql = tl.load(QLAB + b * sqlb + m * Nq + offs_m, mask=offs_m < Nq, other=-1)
                kl = tl.load(KLAB + b * sklb + m * Nk + offs_n, mask=offs_n < Nk, other=-2)
                same = (kl[None, :] == ql[:, None]) & (ql[:, None] >= 0)
                mass = tl.sum(tl.where(same, p, 0.0), 1)
                match_acc += tl.where(match_cols[None, :] == m, mass[:, None], 0.0)

    if ROW_STATS:
        out = bh * Nq + offs_m
        first = offs_m < tl.where(col_block == 0, Nq, 0)  # one column block stores them
        tl.store(ENT + out, tl.where(seen, tl.maximum(lse - ps_i, 0.0), 0.0), mask=first)
        tl.store(ARGP + out, tl.where(seen, tl.exp(m_i - lse), 0.0), mask=first)
        tl.store(ARG + out, arg.to(tl.int64), mask=first)
    if HAS_MATCH:
        tl.store(MATCH_OUT + (bh * Nq + offs_m[:, None]) * n_match + match_cols[None, :], match_acc,
                 mask=(offs_m[:, None] < Nq) & (match_cols[None, :] < n_pairs))
    if HAS_COLS:
        row_ok = offs_m[:, None] < Nq
        is_span = cols[None, :] < n_spans
        tl.store(SPAN_OUT + (bh * Nq + offs_m[:, None]) * n_spans + cols[None, :], acc, mask=row_ok & is_span)
        is_bin = (cols[None, :] >= n_spans) & (cols[None, :] < n_cols)
        qbin = offs_m * q_bins // Nq
        tl.atomic_add(POOL_OUT + (bh * q_bins + qbin[:, None]) * k_bins + (cols[None, :] - n_spans), acc,
                      mask=row_ok & is_bin)


def _blocks(D: int):
    """(BLOCK_M, BLOCK_N, BLOCK_D): small tiles under the interpreter (speed), tutorial-sized on GPU."""
    block_d = max(16, triton.next_power_of_2(D))
    if os.environ.get("TRITON_INTERPRET") == "1":
        return 16, 16, block_d
    return (64, 64, block_d) if block_d <= 128 else (32, 32, block_d)


def triton_stats(q, k, req: StatsRequest, *, scale, causal, q_offset, key_padding, sliding_window,
                 softcap, spans, pooled, key_match=None, lse=None) -> dict[str, torch.Tensor]:
    B, Hq, Nq, D = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    dev = q.device
    f32 = dict(device=dev, dtype=torch.float32)
    BLOCK_M, BLOCK_N, BLOCK_D = _blocks(D)
    given = lse is not None
    lse = lse.float().contiguous() if given else torch.empty(B, Hq, Nq, **f32)
    arg = torch.empty(B, Hq, Nq, device=dev, dtype=torch.long)
    argp = torch.empty(B, Hq, Nq, **f32)
    ent = torch.empty(B, Hq, Nq, **f32)
    kp = lse if key_padding is None else key_padding.to(torch.int8).contiguous()  # lse: unused placeholder
    args = (*q.stride(), *k.stride())
    sizes = (Hq, Hq // Hkv, Nq, Nk, D, q_offset, scale, softcap or 1.0, sliding_window or 0)
    flags = dict(CAUSAL=causal, HAS_WINDOW=sliding_window is not None, HAS_KP=key_padding is not None,
                 HAS_SOFTCAP=softcap is not None, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D)
    grid = (triton.cdiv(Nq, BLOCK_M), B * Hq)
    row_stats = req.argmax or req.entropy
    if not given:  # pass 1; with the lse given, pass 2 takes the argmax and entropy on its way
        _stats_fwd[grid](q, k, kp, lse, arg, argp, ent, *args, *sizes, **flags)

    out = {}
    if req.lse:
        out["lse"] = lse.clone() if given else lse
    if req.argmax:
        out["argmax"], out["argmax_prob"] = arg, argp
    if req.entropy:
        out["entropy"] = ent
    if spans is None and pooled is None and not req.key_mass and key_match is None and not (given and row_stats):
        return out

    # Pass 2. One column list: the user spans, then the key bins of `pooled` (a key bin is a span).
    cols = spans if spans is not None else torch.empty(1, 0, 2, device=dev, dtype=torch.long)
    n_spans = cols.shape[1]
    q_bins, k_bins = pooled if pooled is not None else (0, 0)
    if pooled is not None:
        bins = key_bin_edges(Nk, k_bins, dev).unsqueeze(0).expand(cols.shape[0], -1, -1)
        cols = torch.cat([cols, bins], dim=1)
    cols = cols.to(torch.int32).contiguous()
    n_cols = cols.shape[1]
    sspb = 0 if cols.shape[0] == 1 else n_cols * 2  # spans shared by the batch, or one list per batch row
    span_out = torch.empty(B, Hq, Nq, n_spans, **f32)
    pool_out = torch.zeros(B, Hq, q_bins, k_bins, **f32)
    keym_out = torch.zeros(B, Hq, Nk, **f32)
    qlab, klab = key_match if key_match is not None else (cols.new_full((1, 0, Nq), -1), cols.new_full((1, 0, Nk), -1))
    qlab, klab = qlab.to(torch.int32).contiguous(), klab.to(torch.int32).contiguous()
    n_match = qlab.shape[1]
    sqlb = 0 if qlab.shape[0] == 1 else n_match * Nq  # labels shared by the batch, or one set per batch row
    sklb = 0 if klab.shape[0] == 1 else n_match * Nk
    match_out = torch.empty(B, Hq, Nq, n_match, **f32)
    BLOCK_S = min(64, max(16, triton.next_power_of_2(n_cols)))
    grid = (triton.cdiv(Nq, BLOCK_M), B * Hq, max(1, triton.cdiv(n_cols, BLOCK_S)))
    _stats_mass[grid](q, k, kp, lse, cols, span_out, pool_out, keym_out, qlab, klab, match_out, arg, argp, ent,
                      *args, sspb, sqlb, sklb, *sizes, n_spans, n_cols, q_bins, k_bins, n_match,
                      HAS_COLS=n_cols > 0, KEY_MASS=req.key_mass, HAS_MATCH=n_match > 0, ROW_STATS=given and row_stats,
                      BLOCK_S=BLOCK_S, BLOCK_MM=max(2, triton.next_power_of_2(max(n_match, 1))), **flags)
    if spans is not None:
        out["span_mass"] = span_out
    if pooled is not None:
        out["pooled"] = pool_out
    if req.key_mass:
        out["key_mass"] = keym_out
    if key_match is not None:
        out["match_mass"] = match_out
    return out
