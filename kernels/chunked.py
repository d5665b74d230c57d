"""Chunked PyTorch attention statistics: the exact fp32 reference, and the path for CPU / any device.

Loop over query chunks; for each chunk compute the fp32 logits of every query head against the keys the
chunk can see ([B, Hkv, G*n, w], n chunk rows, w <= Nk keys) and reduce them to statistics right away.
Memory is two such blocks, never B*Hq*Nq*Nk. Call through kernels.stats.attention_stats, which validates
and fills in defaults.

On CPU the logits matmul is the floor, so everything else touches each logit as few times as possible,
in a block that stays in cache:
  * a chunk holds about CHUNK_BYTES of logits (fewer rows as causal rows grow longer), so the passes
    re-read it from cache, not from RAM;
  * logits are kept in base 2 (q is pre-multiplied by log2 e): exp2 is several times faster than exp;
  * masks touch only the columns where some row of the chunk is hidden (the causal diagonal, the window
    edge); a hidden logit is a large finite negative, so exp2 gives 0 and 0 * logit gives 0, not NaN;
  * the argmax reads the block once as per-64-key maxima, then searches one 64-key block per row;
  * spans are sums over column slices; key_match gathers the few matching keys by index; per-key mass
    and the pooled map are one batched matmul of per-row weights against exp2(logits - max), so the
    probabilities are never normalised in place.
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from interp.kernels.threads import torch_threads

from .request import StatsRequest

CHUNK_BYTES = 8 << 20  # logits per chunk: the block and its exp2 twin fit in L3
MIN_ROWS = 16  # never fewer query rows per chunk: below this, per-chunk Python overhead dominates
KEY_TILE = 2048  # keys per logits matmul
ARGMAX_BLOCK = 64
SMALL_ARGMAX = 1 << 16  # up to this many logits, the argmax is one torch.max
LOG2E, LN2 = math.log2(math.e), math.log(2.0)
HIDDEN = -1e30  # base-2 logit of a hidden key; anything at or below HIDDEN / 2 counts as hidden
POOL_CELLS = 1 << 22  # from this many logits on, chunks go to a pool of single-threaded workers (CPU)
SLICED_SPANS = 16  # up to this many (batch row, span) pairs are summed by slicing, more by a matmul


def _chunks(Nq, Nk, q_offset, causal, sliding_window, cells, chunk_size):
    """Yield (i0, i1, lo, hi): query rows [i0, i1) and the only keys [lo, hi) they can see.

    Causal: no key after the last query, so causal prefill costs about half of all-pairs. Window: no key
    before the first query's window. Without chunk_size, a chunk gets the rows whose logits fill about
    `cells` per head; causal rows each see one key more than the last, so n rows hold n * (width + n)."""
    i0 = 0
    while i0 < Nq:
        lo = max(0, q_offset + i0 - sliding_window + 1) if sliding_window is not None else 0
        width = max(1, (min(Nk, q_offset + i0 + 1) if causal else Nk) - lo)  # keys the first row sees
        if chunk_size:
            n = chunk_size
        elif causal:
            n = int((math.sqrt(width * width + 4 * cells) - width) / 2)
        else:
            n = cells // width
        i1 = min(Nq, i0 + max(n, 1 if chunk_size else MIN_ROWS))
        hi = min(Nk, q_offset + i1) if causal else Nk
        if hi <= lo:  # the chunk sees no key at all: keep one key, the masks hide it
            lo, hi = 0, 1
        yield i0, i1, lo, hi
        i0 = i1


def _logits(q, kT, lo: int, hi: int, out) -> None:
    """out [B, Hkv, R, hi - lo] = q [B, Hkv, R, D] @ kT[..., lo:hi], one KV head and KEY_TILE keys at a time.

    Small products keep their output in cache; on CPU they run about 25% faster than one batched matmul."""
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            for c in range(lo, hi, KEY_TILE):
                torch.mm(q[b, h], kT[b, h, :, c : min(c + KEY_TILE, hi)], out=out[b, h, :, c - lo : c - lo + KEY_TILE])


def _hide(s, query_pos, key_pos, q_offset: int, i0: int, i1: int, lo: int, causal: bool, sliding_window,
          key_padding, mask) -> None:
    """Set the logits of hidden keys to HIDDEN in place. s [B, Hkv, G, n, w] holds queries [i0, i1) against
    keys [lo, lo + w); query_pos (q_offset + query index) and key_pos are the positions of all of them."""
    w = s.shape[-1]
    qpos, kpos = query_pos[i0:i1, None], key_pos[lo : lo + w]
    if causal:  # only keys after the chunk's first query can be hidden
        a = max(0, q_offset + i0 + 1 - lo)
        if a < w:
            s[..., a:].masked_fill_(kpos[a:] > qpos, HIDDEN)
    if sliding_window is not None:  # only keys up to the last query's window edge can be hidden
        b = min(w, q_offset + i1 - 1 - sliding_window - lo + 1)
        if b > 0:
            s[..., :b].masked_fill_(qpos - kpos[:b] >= sliding_window, HIDDEN)
    if key_padding is not None:
        s.masked_fill_(~key_padding[:, None, None, None, lo : lo + w], HIDDEN)
    if mask is not None:
        m = mask[:, :, :, i0:i1, lo : lo + w]
        if m.dtype == torch.bool:
            s.masked_fill_(~m, HIDDEN)
        else:  # additive, in base-2 units; -inf and finfo.min become HIDDEN
            s.add_(m * LOG2E).clamp_min_(HIDDEN)


def _row_max_and_argmax(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row max and the first index reaching it, for s [R, w], reading s once.

    torch's argmax is several times slower than amax on CPU, so take the max of every 64-key block, find
    the first block holding the row max, and look for the first maximal key inside that block only
    (torch.max over a dim returns the first maximal index). The last, shorter block is searched whole."""
    R, w = s.shape
    if R * w <= SMALL_ARGMAX:  # a decoding step's few rows: one plain max costs less than the block steps
        return s.max(-1)
    nb = w // ARGMAX_BLOCK
    if nb:
        blocks = s[:, : nb * ARGMAX_BLOCK].view(R, nb, ARGMAX_BLOCK)
        mx, block = blocks.amax(-1).max(-1, keepdim=True)
        inside = blocks.gather(1, block[:, :, None].expand(R, 1, ARGMAX_BLOCK)).squeeze(1).max(-1)[1]
        mx, arg = mx.squeeze(1), block.squeeze(1) * ARGMAX_BLOCK + inside
    if w == nb * ARGMAX_BLOCK:
        return mx, arg
    tail_mx, tail_arg = s[:, nb * ARGMAX_BLOCK :].max(-1)
    if not nb:
        return tail_mx, tail_arg
    later = tail_mx > mx  # a tie keeps the earlier key
    return torch.where(later, tail_mx, mx), torch.where(later, tail_arg + nb * ARGMAX_BLOCK, arg)


def _span_mass(p, spans_list, spans, lo: int) -> torch.Tensor:
    """Mass of each key span per row: p [B, Hq, n, w] covers keys [lo, lo + w) -> [B, Hq, n, S]."""
    B, Hq, n, w = p.shape
    S = spans.shape[1]
    if spans.shape[0] * S > SLICED_SPANS:  # many spans: one matmul against a [w, S] indicator of the spans
        kpos = torch.arange(lo, lo + w, device=p.device)[None, :, None]
        inside = (kpos >= spans[:, None, :, 0]) & (kpos < spans[:, None, :, 1])  # [1|B, w, S]
        return p @ inside[:, None].float()
    out = p.new_zeros(B, Hq, n, S)  # a few spans: sum column slices, cost = span length
    for b, row in enumerate(spans_list):
        rows = slice(None) if len(spans_list) == 1 else slice(b, b + 1)
        for j, (start, end) in enumerate(row):
            a, z = max(start - lo, 0), min(end - lo, w)
            if z > a:
                out[rows, :, :, j] = p[rows, :, :, a:z].sum(-1)
    return out


def _match_mass(p, query_labels, key_labels, i0: int, i1: int, lo: int) -> torch.Tensor:
    """Mass on keys whose label equals the query's, per pair: p [B, Hq, n, w] covers queries [i0, i1) and keys
    [lo, lo + w); labels [1|B, M, Nq] and [1|B, M, Nk] -> [B, Hq, n, M].

    Matches are few (one key per query for positional pairs, a handful for token pairs), so gather the
    matching probabilities through the indices of the (b, m, i, j) matches instead of a dense pass per pair."""
    B, Hq, n, w = p.shape
    M = query_labels.shape[1]
    ql = query_labels[:, :, i0:i1, None]
    same = (key_labels[:, :, None, lo : lo + w] == ql) & (ql >= 0)  # [1|B, M, n, w]
    b, m, i, j = same.expand(B, M, n, w).nonzero(as_tuple=True)
    out = p.new_zeros(B, n, M, Hq)
    out.index_put_((b, i, m), p.permute(0, 2, 3, 1)[b, i, j], accumulate=True)
    return out.permute(0, 3, 1, 2)


def _normalised(mass: torch.Tensor, inv_l) -> torch.Tensor:
    """mass [B, Hq, n, X] of e, as probability mass: times 1 / l per row, unless e is normalised already."""
    return mass if inv_l is None else mass.mul_(inv_l.view(*mass.shape[:3], 1))


def chunked_stats(q, k, req: StatsRequest, *, scale, causal, q_offset, key_padding, mask, sliding_window,
                  softcap, spans, pooled, key_match=None, lse=None, chunk_size=None) -> dict[str, torch.Tensor]:
    """lse [B, Hq, Nq] (natural log, -inf where a query sees no key), when given, replaces the row-sum pass
    and, unless the argmax is asked, the max pass: the statistics come from p = exp(s - lse) directly."""
    sweep = _Sweep(q, k, req, scale=scale, causal=causal, q_offset=q_offset, key_padding=key_padding, mask=mask,
                   sliding_window=sliding_window, softcap=softcap, spans=spans, pooled=pooled, key_match=key_match,
                   lse=lse, chunk_size=chunk_size)
    chunks = list(_chunks(sweep.Nq, sweep.Nk, q_offset, causal, sliding_window, sweep.cells, chunk_size))
    big = q.shape[0] * q.shape[1] * sweep.Nq * sweep.Nk >= POOL_CELLS
    return sweep.finish(_run_chunks(sweep, chunks, _workers(q.device, len(chunks)) if big else 1))


def _workers(device, n_chunks: int) -> int:
    """Threads for the chunk loop: on CPU, torch's thread count (one chunk each at a time), else one.

    Each chunk is a few dozen small ops. Run with torch's own threads, every op is a parallel region that
    waits for all threads, so one thread that another process keeps off its core stalls every op: on 2
    busy cores that cost 10x. Single-threaded ops on chunks taken from a shared queue let a thread on a
    free core take more chunks instead."""
    return min(torch.get_num_threads(), n_chunks) if device.type == "cpu" else 1


def _run_chunks(sweep, chunks, workers: int) -> list:
    """[(chunk index, per-query parts, summed parts)] over every chunk, by `workers` threads."""
    if workers <= 1:
        return [(0, *sweep.run_all(chunks))]
    todo = iter(enumerate(chunks))
    lock = threading.Lock()

    def next_chunk():
        with lock:
            return next(todo, None)

    # one torch thread, process-wide: the workers' ops each run on their own thread
    with torch_threads(1), ThreadPoolExecutor(workers) as pool:
        return [part for parts in pool.map(lambda _: sweep.run_queue(next_chunk), range(workers)) for part in parts]


class _Sweep:
    """What every chunk shares (scaled q, K^T, masks, labels, the given lse) and the work on one chunk."""

    def __init__(self, q, k, req: StatsRequest, *, scale, causal, q_offset, key_padding, mask, sliding_window,
                 softcap, spans, pooled, key_match, lse, chunk_size):
        B, Hq, Nq, D = q.shape
        Hkv, Nk = k.shape[1], k.shape[2]
        G = Hq // Hkv
        dev = q.device
        self.B, self.Hq, self.Hkv, self.G, self.Nq, self.Nk, self.D = B, Hq, Hkv, G, Nq, Nk, D
        self.req, self.dev = req, dev
        self.causal, self.q_offset, self.sliding_window, self.softcap = causal, q_offset, sliding_window, softcap
        self.key_padding, self.spans, self.pooled, self.key_match = key_padding, spans, pooled, key_match

        # GQA without copying K per query head: view q as [B, Hkv, G*Nq, D] and let the G heads of a group share
        # one K. One fp32 copy of q (pre-scaled into base-2 logits) and of K keep the logits exact in fp32.
        self.qg = (q.float() * (scale * LOG2E if softcap is None else scale)).view(B, Hkv, G, Nq, D)
        self.kT = k.float().transpose(-1, -2)  # [B, Hkv, D, Nk]
        if mask is not None:  # [B|1, Hq|1, Nq, Nk] -> [B|1, Hkv|1, G|1, Nq, Nk] to line up with the grouped logits
            mask = mask.view(mask.shape[0], Hkv, G, Nq, Nk) if mask.shape[1] == Hq else mask.unsqueeze(2)
        self.mask = mask
        self.spans_list = spans.tolist() if spans is not None else None
        self.lse, self.given = lse, None
        if lse is not None:  # (base-2 lse with 0 on dead rows, so that their hidden logits give p = 0; dead rows)
            dead = lse == float("-inf")
            self.given = ((lse.float() * LOG2E).masked_fill_(dead, 0.0), dead)
        self.query_pos, self.key_pos = q_offset + torch.arange(Nq, device=dev), torch.arange(Nk, device=dev)
        if pooled is not None:
            self.query_bin = torch.arange(Nq, device=dev) * pooled[0] // Nq
            self.bin_ids = torch.arange(pooled[0], device=dev)[:, None]
            self.key_bin = self.key_pos * pooled[1] // Nk
        # Per-query results: one part per chunk, joined at the end; "dead" marks queries that see no key.
        self.per_query_names = [name for name, wanted in (
            ("lse", req.lse and lse is None), ("argmax", req.argmax), ("argmax_prob", req.argmax),
            ("entropy", req.entropy), ("span_mass", spans is not None), ("match_mass", key_match is not None),
            ("dead", True)) if wanted]
        # Logits per chunk: about CHUNK_BYTES, and two blocks of the largest chunk per thread, allocated once:
        # on CPU a fresh block costs more in page faults than the arithmetic on it.
        self.cells = max(1, CHUNK_BYTES // (4 * B * Hq))
        self.block = B * Hq * min(max(Nq, 1) * Nk, chunk_size * Nk if chunk_size else max(self.cells, MIN_ROWS * Nk))

    def new_sums(self) -> dict:
        f32 = dict(device=self.dev, dtype=torch.float32)
        sums = {}
        if self.pooled is not None:
            sums["pooled"] = torch.zeros(self.B, self.Hq, *self.pooled, **f32)
        if self.req.key_mass:
            sums["key_mass"] = torch.zeros(self.B, self.Hq, self.Nk, **f32)
        return sums

    def run_all(self, chunks) -> tuple[list, dict]:
        """One thread, every chunk in order: (per-query parts per chunk, summed parts)."""
        buffers, sums = self._buffers(), self.new_sums()
        return [self.run(chunk, buffers, sums) for chunk in chunks], sums

    def run_queue(self, next_chunk) -> list:
        """One worker thread: chunks from the shared queue until it is empty -> [(index, [parts]), sums]."""
        buffers, sums, done = self._buffers(), self.new_sums(), []
        while (item := next_chunk()) is not None:
            done.append((item[0], [self.run(item[1], buffers, sums)], {}))
        if done:
            index, parts, _ = done[-1]
            done[-1] = (index, parts, sums)  # each worker's sums travel once
        return done

    def _buffers(self):
        f32 = dict(device=self.dev, dtype=torch.float32)
        return torch.empty(self.block, **f32), torch.empty(self.block, **f32)

    def run(self, chunk, buffers, sums) -> dict:
        """The statistics of queries [i0, i1) against keys [lo, hi): per-query parts returned, sums added."""
        i0, i1, lo, hi = chunk
        B, Hq, Hkv, G, D, req = self.B, self.Hq, self.Hkv, self.G, self.D, self.req
        n, w = i1 - i0, hi - lo
        sbuf, pbuf = buffers
        s = sbuf[: B * Hq * n * w].view(B, Hkv, G, n, w)
        _logits(self.qg[:, :, :, i0:i1].reshape(B, Hkv, G * n, D), self.kT, lo, hi, s.view(B, Hkv, G * n, w))
        if self.softcap is not None:
            s.div_(self.softcap).tanh_().mul_(self.softcap * LOG2E)
        _hide(s, self.query_pos, self.key_pos, self.q_offset, i0, i1, lo, self.causal, self.sliding_window,
              self.key_padding, self.mask)

        rows = s.view(B * Hq * n, w)
        parts = {}
        if self.given is None:  # two passes: the row max (and argmax), then the row sum l of p * l
            mx, best = _row_max_and_argmax(rows)
            dead = mx <= HIDDEN / 2  # the query sees no key
            mx = mx.masked_fill_(dead, 0.0)  # so its logits stay ~HIDDEN and exp2 gives 0: l = 0, lse = -inf
            d = rows.sub_(mx[:, None])  # base-2 logits minus the row max, <= 0
            e = torch.exp2(d, out=pbuf[: rows.numel()].view_as(rows))
            l = e.sum(-1)
            inv_l = l.reciprocal().masked_fill_(dead, 0.0)
        else:  # one sweep: with the lse known, e = exp2(s - lse) is the probability itself (inv_l = None)
            row_lse, dead = self.given[0][:, :, i0:i1].reshape(-1), self.given[1][:, :, i0:i1].reshape(-1)
            if req.argmax:
                mx, best = _row_max_and_argmax(rows)
                mx = mx.sub_(row_lse)  # base-2 log of the winner's probability
            d = rows.sub_(row_lse[:, None])  # base-2 log-probabilities
            e = torch.exp2(d, out=pbuf[: rows.numel()].view_as(rows))
            inv_l = None
        parts["dead"] = dead

        if "lse" in self.per_query_names:
            parts["lse"] = l.log2().add_(mx)  # base 2 until the end
        if req.argmax:
            parts["argmax"] = best.add_(lo)
            parts["argmax_prob"] = inv_l if inv_l is not None else mx.exp2_()  # exp2(max - max) / l, exp2(max - lse)
        if req.entropy:  # H = -sum p ln p = ln l - ln2 * sum(e * d) / l; hidden keys add 0 * HIDDEN = 0
            t = d.mul_(e).sum(-1)
            parts["entropy"] = t.mul_(-LN2) if inv_l is None else torch.addcmul(l.log(), t, inv_l, value=-LN2)
        if self.spans is not None:
            parts["span_mass"] = _normalised(_span_mass(e.view(B, Hq, n, w), self.spans_list, self.spans, lo), inv_l)
        if self.key_match is not None:
            parts["match_mass"] = _normalised(_match_mass(e.view(B, Hq, n, w), *self.key_match, i0, i1, lo), inv_l)
        if sums:
            self._sums(e, inv_l, i0, i1, lo, hi, sums)
        return {name: t.reshape(B, Hq, n, *t.shape[3:]) if t.dim() > 1 else t.view(B, Hq, n) for name, t in parts.items()}

    def _sums(self, e, inv_l, i0, i1, lo, hi, sums) -> None:
        """Key mass and pooled map: sums over the chunk's rows of p = e / l, one row group per query bin of the
        pooled map (one group without a map), as one batched matmul [B*Hq, groups, n] @ [B*Hq, n, w]: it
        reads e once."""
        B, Hq, Nq = self.B, self.Hq, self.Nq
        n, w = i1 - i0, hi - lo
        weights = (inv_l if inv_l is not None else e.new_ones(B * Hq * n)).view(B * Hq, 1, n)
        if self.pooled is not None:
            q_bins = self.pooled[0]
            first, last = i0 * q_bins // Nq, (i1 - 1) * q_bins // Nq
            weights = (self.query_bin[i0:i1] == self.bin_ids[first : last + 1]) * weights
        total = torch.bmm(weights, e.view(B * Hq, n, w)).view(B, Hq, -1, w)
        if "key_mass" in sums:
            sums["key_mass"][..., lo:hi] += total.sum(2)
        if "pooled" in sums:
            sums["pooled"][:, :, first : last + 1].index_add_(3, self.key_bin[lo:hi], total)

    def finish(self, results) -> dict[str, torch.Tensor]:
        """Join the per-query parts in chunk order, add up the sums, fix the queries that see no key."""
        B, Hq, req = self.B, self.Hq, self.req
        width = {"span_mass": self.spans.shape[1:2] if self.spans is not None else (),
                 "match_mass": self.key_match[0].shape[1:2] if self.key_match is not None else ()}
        # each list starts with an empty (B, Hq, 0, ...) part, so that no query at all needs no special case
        joined = {name: [torch.empty(B, Hq, 0, *width.get(name, ()), device=self.dev,
                                     dtype={"argmax": torch.long, "dead": torch.bool}.get(name, torch.float32))]
                  for name in self.per_query_names}
        out = self.new_sums()
        for _, chunk_parts, sums in sorted(results, key=lambda r: r[0]):
            for parts in chunk_parts:
                for name, t in parts.items():
                    joined[name].append(t)
            for name, t in sums.items():
                out[name] += t
        out.update({name: torch.cat(parts, dim=2) for name, parts in joined.items()})
        dead = out.pop("dead")
        if req.lse:
            out["lse"] = out["lse"].mul_(LN2) if self.lse is None else self.lse.float().clone()
        if req.argmax:
            out["argmax"].masked_fill_(dead, -1)
        if req.entropy:
            out["entropy"].masked_fill_(dead, 0.0)  # ln 0 - 0 = -inf there
        return out
