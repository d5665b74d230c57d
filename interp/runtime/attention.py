"""interp's attention implementation, registered with transformers' AttentionInterface.

Every model interp loads runs its attention through `interp_attention`. With nothing
active it is transformers' SDPA path (same speed, same numbers). While a capture or an
intervention touches a layer it additionally:
- scales the query of heads under uniform attention (before SDPA);
- recomputes, eagerly and in query chunks, only the heads whose probabilities are
  edited or whose pattern is captured (memory O(chunk x N), never [heads, N, N]);
- takes attention statistics from interp.kernels.
Head outputs (z) are read and edited by a forward pre-hook on the output projection,
which the runtime installs only while something is active.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from interp.runtime.capture import Capture
from interp.base.errors import InterpError
from interp.runtime.fast_attention import attention_with_lse
from interp.runtime.interventions import ActiveInterventions, AttentionContext, Intervention, query_mask
from interp.kernels import StatsRequest, attention_stats
from interp.kernels.request import key_bin_edges, normalize_spans
from interp.runtime.layout import AttentionSite, HeadLayout

NAME = "interp"
QUERY_CHUNK = 1024  # queries per eager chunk: chunk x keys x heads floats stay small


def register() -> None:
    """Make attn_implementation="interp" known to transformers (idempotent)."""
    AttentionInterface.register(NAME, interp_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # boolean masks, None when plain causal


class HeadRuntime:
    """The per-model state the attention function and the o_proj hooks read: what is
    captured and what is intervened on right now."""

    def __init__(self, layout: HeadLayout, sites: list[AttentionSite]):
        self.layout = layout
        self.sites = sites
        self.interventions = ActiveInterventions()
        self.captures: list[Capture] = []
        self.q_offset: dict[int, int] = {}  # set by attention, read by the o_proj hook
        self.cache_length: dict[int, int] = {}  # set by the block hook, read by attention (see interp_attention)
        self._hook_handles = []
        for site in sites:
            site.attention._interp_site = (self, site.layer)

    @property
    def idle(self) -> bool:
        return not self.captures and not self.interventions.items

    @contextmanager
    def active(self, interventions: list[Intervention] = (), capture: Capture | None = None):
        """Apply interventions / a capture for the duration of the block; always restore."""
        self.interventions.items.extend(interventions)
        if capture is not None:
            self.captures.append(capture)
        self._install_hooks()
        try:
            yield capture
        finally:
            for iv in interventions:
                self.interventions.items.remove(iv)
            if capture is not None:
                self.captures.remove(capture)
            if self.idle:
                self._remove_hooks()

    def _install_hooks(self) -> None:
        if self._hook_handles:
            return
        for site in self.sites:
            hook = lambda module, args, site=site: self.on_head_outputs(site, args)
            self._hook_handles.append(site.output_projection.register_forward_pre_hook(hook))
            if site.block is not None:
                read = lambda module, args, kwargs, site=site: self.on_layer_input(site, args, kwargs)
                self._hook_handles.append(site.block.register_forward_pre_hook(read, with_kwargs=True))

    def _remove_hooks(self) -> None:
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles = []
        self.q_offset.clear()
        self.cache_length.clear()

    @contextmanager
    def start_at(self, layer: int, hidden: torch.Tensor):
        """Forwards inside the block skip the layers below `layer` and feed `hidden` (the
        residual stream entering `layer`, [batch, positions, d_model]) into it. Rows that
        differ from a clean run only from `layer` on (a head of `layer` ablated) then cost
        only the layers they differ in. Always restores the blocks."""
        if not 0 <= layer < len(self.sites) or any(site.block is None for site in self.sites):
            raise InterpError(f"cannot start at layer {layer}: it must be in range and the layer blocks found")

        def feed(module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            if x.shape != hidden.shape:
                raise InterpError(f"start_at: the forward's hidden states are {tuple(x.shape)} but {tuple(hidden.shape)} were given")
            fed = hidden.to(dtype=x.dtype, device=x.device)
            return ((fed, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": fed})

        skipped = [site.block for site in self.sites[:layer]]
        # an instance attribute shadows the class's forward; accelerate (device_map) keeps its own
        # wrapper there, so whatever was there is put back
        saved = [block.__dict__.get("forward") for block in skipped]
        handle = self.sites[layer].block.register_forward_pre_hook(feed, with_kwargs=True, prepend=True)  # before captures read it
        try:
            for block in skipped:
                block.forward = _pass_hidden_states
            yield
        finally:
            for block, forward in zip(skipped, saved):
                if forward is None:
                    block.__dict__.pop("forward", None)
                else:
                    block.forward = forward
            handle.remove()

    # ---- block input: the residual stream entering the layer ------------------------------

    def on_layer_input(self, site: AttentionSite, args: tuple, kwargs: dict) -> None:
        # the KV cache, not yet updated by this layer: its length (tokens seen, also where a sliding window
        # dropped keys) is the position of this forward's first query. Blocks take it by keyword (cache=)
        # or by position (gpt2): it is the argument with a get_seq_length.
        cache = next((a for a in (*args, *kwargs.values()) if hasattr(a, "get_seq_length")), None)
        offset = cache.get_seq_length(site.layer) if cache is not None else 0
        self.cache_length[site.layer] = offset
        wanting = [cap for cap in self.captures if cap.spec.resid_pre and cap.wants_layer(site.layer)]
        if not wanting:
            return None
        x = args[0] if args else kwargs["hidden_states"]
        for cap in wanting:
            selected = x
            if cap.spec.positions not in (None, "all"):
                selected = x[:, cap.select_queries(x.shape[1], offset, x.device)]
            if callable(cap.spec.resid_pre):
                cap.spec.resid_pre(site.layer, selected)
            else:
                cap.record(site.layer, "resid_pre", selected)
        return None  # the input is only read

    # ---- output projection input: z --------------------------------------------------------

    def on_head_outputs(self, site: AttentionSite, args: tuple):
        layer, layout = site.layer, self.layout
        z = args[0]
        batch, n_query = z.shape[:2]
        q_offset = self.q_offset.get(layer, 0)
        heads_z = z.reshape(batch, n_query, layout.n_heads, -1)
        edits = self.interventions.at("z", layer)
        if edits:
            heads_z = heads_z.clone()
            for iv in edits:
                if hasattr(iv, "edit_layer"):  # a LayerEdit: the whole layer at once
                    heads_z = iv.edit_layer(heads_z, layer, q_offset)
                    continue
                where = query_mask(iv.rows, iv.positions, batch, n_query, q_offset, z.device)
                for head in iv.heads_in(layer):
                    old = heads_z[:, :, head]
                    new = iv.new_z(old, layer, head)
                    heads_z[:, :, head] = new if where is None else torch.where(where[..., None], new, old)
        in_graph = False
        for cap in self.captures:
            if cap.spec.wants_output and cap.wants_layer(layer):
                self._capture_outputs(cap, site, heads_z, q_offset)
                if not cap.spec.detach:  # gradients w.r.t. z: the model must consume this tensor
                    cap.records["z_graph"][layer].append(heads_z)
                    in_graph = True
        if edits or in_graph:
            return (heads_z.reshape(z.shape),) + tuple(args[1:])
        return None

    def _capture_outputs(self, cap: Capture, site: AttentionSite, heads_z: torch.Tensor, q_offset: int):
        queries = cap.select_queries(heads_z.shape[1], q_offset, heads_z.device)
        z = heads_z[:, queries][:, :, cap.heads].transpose(1, 2)  # [batch, head, pos, d_head]
        if cap.spec.z:
            cap.record(site.layer, "z", z)
        if cap.spec.resid:
            w_o = site.output_weight(self.layout.n_heads)[cap.heads].to(z.dtype)  # [head, d_head, d_model]
            cap.record(site.layer, "resid", torch.einsum("bhpd,hdm->bhpm", z, w_o))
        if not cap.spec.wants_attention:  # else the attention side recorded them already
            cap.record(site.layer, "positions", (queries + q_offset)[None, None])


def _pass_hidden_states(hidden_states, *args, **kwargs):
    """A skipped layer (HeadRuntime.start_at): its output is its input."""
    return hidden_states


def interp_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers calls this with query [B, Hq, Nq, D] (after RoPE), key/value
    [B, Hkv, Nk, D] and a boolean mask [B, 1, Nq, Nk] or None (plain causal)."""
    tag = getattr(module, "_interp_site", None)
    softcap = kwargs.pop("softcap", None)
    if tag is None or tag[0].idle:
        return _plain_attention(module, query, key, value, attention_mask, scaling, dropout, softcap, **kwargs)

    runtime, layer = tag
    n_query, n_key = query.shape[2], key.shape[2]
    # The queries' first position is the KV cache's length, which the block hook read. n_key - n_query is
    # that only where the cache kept every key: a sliding-window layer's cache keeps the last window's.
    q_offset = runtime.cache_length.get(layer, n_key - n_query)
    runtime.q_offset[layer] = q_offset
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    causal = kwargs.get("is_causal", getattr(module, "is_causal", True))

    for iv in runtime.interventions.at("query", layer):
        where = query_mask(iv.rows, iv.positions, query.shape[0], n_query, q_offset, query.device)
        query = query.clone()
        for head in iv.heads_in(layer):
            new = iv.new_query(query[:, head])
            query[:, head] = new if where is None else torch.where(where[..., None], new, query[:, head])

    fast = _output_and_lse(runtime, layer, query, key, value, attention_mask, scaling, dropout, softcap, causal, kwargs)
    if fast is None:
        output, _ = _plain_attention(module, query, key, value, attention_mask, scaling, dropout, softcap, **kwargs)
    else:
        output = fast[0]
    attn = EagerHeads(query, key, value, attention_mask, scaling, softcap, causal, q_offset, layer,
                      lse=None if fast is None else fast[1])

    prob_edits = runtime.interventions.at("probs", layer)
    edited_heads = sorted({h for iv in prob_edits for h in iv.heads_in(layer)})
    if edited_heads:
        output = output.clone()
        for start in range(0, n_query, QUERY_CHUNK):
            queries = torch.arange(start, min(start + QUERY_CHUNK, n_query), device=query.device)
            probs = attn.probs(edited_heads, queries, prob_edits)
            output[:, start : start + len(queries), edited_heads] = attn.mix(probs, edited_heads).transpose(1, 2).to(output.dtype)

    for cap in runtime.captures:
        if cap.spec.wants_attention and cap.wants_layer(layer):
            _capture_attention(cap, attn, prob_edits, edited_heads)
    return output, None


def _output_and_lse(runtime, layer, query, key, value, attention_mask, scaling, dropout, softcap, causal, kwargs):
    """(output, lse) from one fused call when a capture takes statistics here, so that the kernels need not
    find the lse again; None where the plain path must run (soft-capped logits, dropout, extra arguments
    such as position biases, or no fused kernel for this input)."""
    wants_stats = any(cap.spec.stats is not None and not cap.spec.stats.is_empty and cap.wants_layer(layer)
                      for cap in runtime.captures)
    known = {"position_ids", "sliding_window", "use_cache", "is_causal", "cache_position", "encoder_hidden_states"}
    extra = {name for name, value in kwargs.items() if value is not None} - known
    if not wants_stats or softcap is not None or dropout or extra:
        return None
    return attention_with_lse(query, key, value, attention_mask, scaling, causal)


def _plain_attention(module, query, key, value, attention_mask, scaling, dropout, softcap, **kwargs):
    """transformers' SDPA path; eager for soft-capped logits (gemma2), which SDPA lacks."""
    if softcap is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    causal = kwargs.get("is_causal", getattr(module, "is_causal", True))
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    attn = EagerHeads(query, key, value, attention_mask, scaling, softcap, causal, key.shape[2] - query.shape[2], None)
    heads = list(range(query.shape[1]))
    chunks = []
    for start in range(0, query.shape[2], QUERY_CHUNK):
        queries = torch.arange(start, min(start + QUERY_CHUNK, query.shape[2]), device=query.device)
        chunks.append(attn.mix(attn.probs(heads, queries, []), heads))
    return torch.cat(chunks, dim=2).transpose(1, 2).to(query.dtype).contiguous(), None


class EagerHeads:
    """Eager attention for a subset of heads and queries, with probability edits. Key indices count the
    keys of this call: key i is at position key_start + i (key_start > 0 only where a sliding-window
    layer's KV cache dropped early keys); query i is at position q_offset + i."""

    def __init__(self, query, key, value, mask, scaling, softcap, causal, q_offset, layer, lse=None):
        self.query, self.key, self.value, self.mask = query, key, value, mask
        self.lse = lse  # [B, Hq, Nq] from the fused call, when it ran
        self.scaling, self.softcap, self.causal, self.q_offset, self.layer = scaling, softcap, causal, q_offset, layer
        self.group = query.shape[1] // key.shape[1]  # query heads per KV head (GQA)
        self.causal_offset = key.shape[2] - query.shape[2]  # the first query's key index
        self.key_start = q_offset - self.causal_offset

    def logits(self, heads: list[int], queries: torch.Tensor) -> torch.Tensor:
        q = self.query[:, heads][:, :, queries].float()  # [B, h, q, D]
        k = self.key[:, [h // self.group for h in heads]].float()  # [B, h, Nk, D]
        logits = q @ k.transpose(-1, -2) * self.scaling
        if self.softcap is not None:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits

    def visible(self, queries: torch.Tensor) -> torch.Tensor | None:
        """Boolean [B or 1, 1, q, Nk] of allowed (query, key) pairs, or an additive float mask."""
        if self.mask is not None:
            return self.mask[:, :, queries]
        if not self.causal:
            return None
        keys = torch.arange(self.key.shape[2], device=queries.device)
        return (keys[None, :] <= (queries + self.causal_offset)[:, None])[None, None]

    def probs(self, heads: list[int], queries: torch.Tensor, edits: list[Intervention]) -> torch.Tensor:
        """[B, h, q, Nk] over this call's keys. Edits address keys by position: they see (and return) the
        rows over positions 0 .. key_start + Nk - 1, with the keys the cache dropped hidden (logit -inf,
        probability 0), so a rule written for positions acts on the right keys and cannot reach dropped ones."""
        ctx = AttentionContext(self.layer, heads, queries + self.q_offset, self.key_start + self.key.shape[2], self.key_start)
        logits = self.logits(heads, queries)
        for iv in edits:
            edit = lambda x: self.at_keys(iv.edit_logits(self.at_positions(x, -math.inf), ctx))  # noqa: E731
            logits = _edit_rows(iv, logits, heads, queries, self.layer, self.q_offset, edit)
        visible = self.visible(queries)
        if visible is not None and visible.dtype == torch.bool:
            logits = logits.masked_fill(~visible, -math.inf)
        elif visible is not None:
            logits = logits + visible
        probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # a row that sees nothing -> 0
        for iv in edits:
            edit = lambda x: self.at_keys(iv.edit_probs(self.at_positions(x), ctx))  # noqa: E731
            probs = _edit_rows(iv, probs, heads, queries, self.layer, self.q_offset, edit)
        return probs

    def at_positions(self, tensor: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """[..., Nk] over this call's keys -> [..., key_start + Nk] over key positions, `fill` at the
        positions whose keys the cache dropped (none: the tensor itself)."""
        return torch.nn.functional.pad(tensor, (self.key_start, 0), value=fill) if self.key_start else tensor

    def at_keys(self, tensor: torch.Tensor) -> torch.Tensor:
        """The inverse of at_positions: [..., key_start + Nk] -> [..., Nk]."""
        return tensor[..., self.key_start :] if self.key_start else tensor

    def mix(self, probs: torch.Tensor, heads: list[int]) -> torch.Tensor:
        v = self.value[:, [h // self.group for h in heads]].float()
        return probs @ v  # [B, h, q, D]


def _edit_rows(iv, tensor, heads, queries, layer, q_offset, edit):
    """Apply `edit` to the rows of `tensor` [B, h, q, K] that `iv` targets."""
    targeted = torch.tensor([h in iv.heads_in(layer) for h in heads], device=tensor.device)
    if not targeted.any():
        return tensor
    where = query_mask(iv.rows, iv.positions, tensor.shape[0], tensor.shape[2], q_offset + int(queries[0]), tensor.device)
    full = targeted[None, :, None] if where is None else targeted[None, :, None] & where[:, None, :]
    return torch.where(full[..., None], edit(tensor), tensor)


def _capture_attention(cap: Capture, attn: EagerHeads, prob_edits, edited_heads):
    queries = cap.select_queries(attn.query.shape[2], attn.q_offset, attn.query.device)
    layer = attn.layer
    cap.record(layer, "positions", (queries + attn.q_offset)[None, None])
    if cap.spec.pattern:  # columns are key positions: zeros where a sliding window's cache dropped keys
        cap.record(layer, "pattern", attn.at_positions(attn.probs(cap.heads, queries, prob_edits)))
    stats = cap.spec.stats
    if stats is None or not len(queries):
        return
    if set(edited_heads) & set(cap.heads):
        raise NotImplementedError(
            "statistics of heads whose probabilities are edited are not supported; capture pattern=True instead"
        )
    runs = _contiguous_runs(queries)  # the kernels take a contiguous block of queries
    if stats.pooled is not None and len(runs) > 1:
        raise InterpError("pooled maps need a contiguous block of query positions: use positions='all', 'last' or a slice")
    results = []
    for run in runs:
        rows = slice(int(run[0]), int(run[-1]) + 1)  # a contiguous run: views, not copies, of q, mask and lse
        mask = attn.mask[:, :, rows] if attn.mask is not None else None
        request = _labels_for_call(stats, run + attn.q_offset, attn.key_start, attn.key.shape[2])
        keys = KeyPositions(request, attn.key_start, attn.key.shape[2], attn.query.shape[0], attn.query.device)
        results.append(keys.to_positions(
            attention_stats(
                attn.query[:, :, rows], attn.key, requests=keys.request,
                scale=attn.scaling, causal=attn.causal and mask is None,
                q_offset=attn.causal_offset + rows.start, mask=mask, softcap=attn.softcap,
                lse=None if attn.lse is None else attn.lse[:, :, rows],
            )
        ))
    every_head = len(cap.heads) == attn.query.shape[1]
    for name in results[0]:
        parts = [r[name] if every_head else r[name][:, cap.heads] for r in results]
        if name == "key_mass":  # summed over the captured queries
            cap.record(layer, name, sum(parts))
        else:
            cap.record(layer, name, torch.cat(parts, dim=2))


class KeyPositions:
    """Statistics addressed by key, read by key position. The kernels count the keys of the call; a
    sliding-window layer whose KV cache dropped its first keys holds key position key_start + j at index j.
    For such a call (key_start > 0) `request` is the user's request over this call's keys: spans given as
    positions are cut to the keys still there (a dropped key contributes nothing), the pooled map's key
    bins (over all key_start + Nk positions) become spans; `to_positions` maps the results back: argmax
    as a position, key_mass over all positions (zero where dropped), the pooled map from its bin spans."""

    def __init__(self, stats: StatsRequest, key_start: int, n_key: int, batch: int, device):
        self.stats, self.key_start, self.request = stats, key_start, stats
        self.n_spans = 0
        if not key_start or (not stats.wants_spans and stats.pooled is None):
            return
        n_positions = key_start + n_key
        spans = [normalize_spans(stats.spans, batch, n_positions, device)] if stats.wants_spans else []
        self.n_spans = spans[0].shape[1] if spans else 0
        if stats.pooled is not None:
            spans.append(key_bin_edges(n_positions, int(stats.pooled[1]), device)[None])
        rows = max(t.shape[0] for t in spans)
        spans = torch.cat([t.expand(rows, -1, -1) for t in spans], dim=1)
        self.request = dataclasses.replace(stats, spans=(spans - key_start).clamp(0, n_key), pooled=None)

    def to_positions(self, result: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.key_start:
            return result
        if "argmax" in result:
            argmax = result["argmax"]
            result["argmax"] = torch.where(argmax >= 0, argmax + self.key_start, argmax)  # -1: sees no key
        if "key_mass" in result:
            result["key_mass"] = torch.nn.functional.pad(result["key_mass"], (self.key_start, 0))
        if self.request is not self.stats:
            mass = result.pop("span_mass")
            if self.stats.wants_spans:
                result["span_mass"] = mass[..., : self.n_spans]
            if self.stats.pooled is not None:  # query i -> bin i * q_bins // Nq, as the kernels pool
                q_bins, n_query = int(self.stats.pooled[0]), mass.shape[2]
                query_bin = torch.arange(n_query, device=mass.device) * q_bins // n_query
                pooled = mass.new_zeros(*mass.shape[:2], q_bins, mass.shape[-1] - self.n_spans)
                result["pooled"] = pooled.index_add_(2, query_bin, mass[..., self.n_spans :])
        return result


def _labels_for_call(stats, positions: torch.Tensor, key_start: int, n_key: int):
    """The request with its key_match labels cut to this call. Labels are given over absolute positions
    ([N] or [B, N], as the prompt's tokens are), so a decoding step's queries read their own positions and
    its keys theirs (from key_start on a sliding-window layer whose cache dropped early keys); the kernels
    want labels per query and per key of the call. (Spans, argmax, pooled and key_mass are mapped to
    positions by KeyPositions.)"""
    if not len(stats.key_match):
        return stats
    need = max(int(positions[-1]) + 1, key_start + n_key)
    pairs = []
    for pair in stats.key_match:
        if len(pair) != 2 or not all(isinstance(t, torch.Tensor) and t.dim() in (1, 2) for t in pair):
            raise InterpError("key_match takes (query_labels, key_labels) pairs of tensors [N] or [batch, N] over positions")
        query_labels, key_labels = pair
        if min(query_labels.shape[-1], key_labels.shape[-1]) < need:
            raise InterpError(f"key_match labels cover {min(query_labels.shape[-1], key_labels.shape[-1])} positions "
                              f"but the model reached position {need - 1}: give a label for every position")
        pairs.append((query_labels[..., positions.to(query_labels.device)], key_labels[..., key_start : key_start + n_key]))
    return dataclasses.replace(stats, key_match=tuple(pairs))


def _contiguous_runs(indices: torch.Tensor) -> list[torch.Tensor]:
    if not len(indices):
        return []
    breaks = (indices[1:] != indices[:-1] + 1).nonzero().flatten() + 1
    return list(torch.tensor_split(indices, breaks.tolist()))
