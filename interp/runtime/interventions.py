"""Interventions on attention heads, as plain data.

An intervention says which heads, which batch rows and which positions, and what to
do. It does nothing by itself: `InterpModel.intervene(...)` applies a list of them for
the duration of a `with` block. Three places of an attention layer are touched:

- "z": the head's output, at the input of the output projection (zero / mean
  ablation, scaling = reinforcement);
- "query": the head's query before the scores (uniform attention: q * eps makes all
  logits ~0, so the head attends uniformly over the keys it can see; RoPE is linear,
  so scaling after RoPE equals scaling before it, as in the original method);
- "probs": the head's attention probabilities (scaling logits/probabilities on key
  spans, and any redistribution rule, e.g. VAR).

Positions are indices into the whole sequence (a KV cache included), so
`positions=slice(prompt_len, None)` acts during decoding only. Keys are addressed by
position too (key spans, redistribution rules), also on sliding-window layers whose
cache dropped early keys. Rows select batch rows, so one batched forward can ablate a
different head in every row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import torch

from interp.base.errors import InterpError

Head = tuple[int, int]
HeadsLike = Union[str, Head, Sequence[Head], Sequence[str]]
PositionsLike = Union[None, int, slice, Sequence[int], str]


def parse_heads(heads: HeadsLike) -> tuple[Head, ...]:
    """Accept "12.3,14.0", (12, 3), [(12, 3), (14, 0)] or ["12.3", "14.0"]."""
    if isinstance(heads, str):
        heads = [h for h in re.split(r"[,\s]+", heads.strip()) if h]
    elif isinstance(heads, tuple) and len(heads) == 2 and all(isinstance(x, int) for x in heads):
        heads = [heads]
    parsed = []
    for h in heads:
        if isinstance(h, str):
            m = re.fullmatch(r"(\d+)[.:](\d+)", h.strip())
            if not m:
                raise InterpError(f"cannot read head '{h}': write heads as LAYER.HEAD, e.g. 12.3,14.0")
            h = (int(m.group(1)), int(m.group(2)))
        layer, head = h
        parsed.append((int(layer), int(head)))
    if not parsed:
        raise InterpError("no heads given: write heads as LAYER.HEAD, e.g. 12.3,14.0")
    return tuple(parsed)


def query_mask(rows, positions, batch: int, n_query: int, q_offset: int, device) -> torch.Tensor | None:
    """Boolean [batch, n_query] of the (row, query) pairs an intervention touches; None = all."""
    if rows is None and positions is None:
        return None
    row_ok = torch.ones(batch, dtype=torch.bool, device=device)
    if rows is not None:
        row_ok = torch.zeros(batch, dtype=torch.bool, device=device)
        row_ok[list(rows)] = True
    absolute = torch.arange(q_offset, q_offset + n_query, device=device)
    pos_ok = position_mask(positions, absolute)
    return row_ok[:, None] & pos_ok[None, :]


def position_mask(positions: PositionsLike, absolute: torch.Tensor) -> torch.Tensor:
    """Which of the absolute positions `absolute` (this call's queries) are selected."""
    if positions is None or positions == "all":
        return torch.ones_like(absolute, dtype=torch.bool)
    if positions == "last":
        mask = torch.zeros_like(absolute, dtype=torch.bool)
        mask[-1] = True
        return mask
    if isinstance(positions, int):
        positions = [positions]
    if isinstance(positions, slice):
        start = positions.start or 0
        stop = positions.stop if positions.stop is not None else torch.iinfo(torch.int64).max
        step = positions.step or 1
        return (absolute >= start) & (absolute < stop) & ((absolute - start) % step == 0)
    wanted = torch.as_tensor(list(positions), device=absolute.device)
    return torch.isin(absolute, wanted)


@dataclass(eq=False)
class Intervention:
    heads: HeadsLike
    rows: Sequence[int] | None = None
    positions: PositionsLike = None
    site = "z"

    def __post_init__(self):
        self.heads = parse_heads(self.heads)

    def heads_in(self, layer: int) -> list[int]:
        return [h for l, h in self.heads if l == layer]


# ---- head output (z) -------------------------------------------------------------


@dataclass(eq=False)
class ZeroAblation(Intervention):
    """The head writes nothing: z = 0."""

    def new_z(self, z: torch.Tensor, layer: int, head: int) -> torch.Tensor:
        return torch.zeros_like(z)


@dataclass(eq=False)
class MeanAblation(Intervention):
    """z is replaced by a mean output, e.g. `model.head_means(texts)` ([layers, heads, head_dim])."""

    means: torch.Tensor | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.means is None:
            raise InterpError("MeanAblation needs means: compute them with model.head_means(texts)")

    def new_z(self, z: torch.Tensor, layer: int, head: int) -> torch.Tensor:
        return self.means[layer, head].to(z).expand_as(z)


@dataclass(eq=False)
class ScaleHead(Intervention):
    """z = factor * z: reinforcement (factor > 1, VHR uses 2) or suppression (factor < 1)."""

    factor: float = 2.0

    def new_z(self, z: torch.Tensor, layer: int, head: int) -> torch.Tensor:
        return z * self.factor


@dataclass(eq=False)
class LayerEdit(Intervention):
    """Edit all head outputs of whole layers at once, by a rule that reads them first:
    edit(layer, z [batch, n_query, heads, d_head], q_offset) -> new z. For methods that
    decide during the forward pass which heads to change (VHR picks a layer's heads from
    that layer's own z, scales them, and only then does the next layer run), so a single
    forward both selects and applies. `heads` is ignored; `layers` says where it acts."""

    heads: HeadsLike = ()
    layers: Sequence[int] = ()
    edit: Callable[[int, torch.Tensor, int], torch.Tensor] | None = None

    def __post_init__(self):
        if self.edit is None or not list(self.layers):
            raise InterpError("LayerEdit needs layers=[...] and edit=function(layer, z, q_offset)")
        self.heads = tuple((int(layer), 0) for layer in self.layers)  # head 0 only marks the layer as touched

    def edit_layer(self, z: torch.Tensor, layer: int, q_offset: int) -> torch.Tensor:
        return self.edit(layer, z, q_offset)


@dataclass(eq=False)
class PatchHead(Intervention):
    """z is replaced by values from another run (activation patching), per row and position.

    values: [n_sources, layers, heads, n_query, d_head], e.g. `cap.z` of
        `model.capture(z=True)` on the corrupted prompts; n_query is the number of query
        positions of the forward it is used in (1 broadcasts over them). Means over a
        task's prompts ([1, ...]) give mean ablation per position.
    source: [batch] the values row each batch row reads (default: row i reads row i, or
        row 0 when there is one source).
    mask: [batch, layers, heads] bool, the heads each row patches (default: every listed
        head in every row). With one head per row, one forward patches a different head
        in every row; `heads` must then list every head the mask names.
    """

    values: torch.Tensor | None = None
    source: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.values is None or self.values.dim() != 5:
            raise InterpError("PatchHead needs values [sources, layers, heads, positions, head_dim], e.g. cap.z of another run")
        if self.mask is not None:
            named = {tuple(h) for h in self.mask.any(0).nonzero().tolist()}
            if not named <= set(self.heads):
                raise InterpError("PatchHead: the mask patches heads that `heads` does not list")

    def new_z(self, z: torch.Tensor, layer: int, head: int) -> torch.Tensor:
        values = self.values[:, layer, head]  # [sources, positions, d_head]
        if values.shape[1] not in (1, z.shape[1]):
            raise InterpError(f"PatchHead values cover {values.shape[1]} positions but this forward has {z.shape[1]} queries")
        if self.source is not None:
            values = values[self.source.to(values.device)]
        elif values.shape[0] not in (1, z.shape[0]):
            raise InterpError(f"PatchHead values have {values.shape[0]} rows for a batch of {z.shape[0]}: pass source=")
        new = values.to(z).expand_as(z)
        if self.mask is None:
            return new
        return torch.where(self.mask[:, layer, head].to(z.device)[:, None, None], new, z)


# ---- query -------------------------------------------------------------------------


@dataclass(eq=False)
class UniformAttention(Intervention):
    """"Undifferentiated attention": q = eps * q, so the head attends ~uniformly to the
    keys it can see (eps = 0 makes it exactly uniform). The retrieval-head masking and
    the Ships ablation use this."""

    eps: float = 1e-5
    site = "query"

    def new_query(self, q: torch.Tensor) -> torch.Tensor:
        return q * self.eps


# ---- attention probabilities ----------------------------------------------------------


@dataclass(eq=False)
class ScaleAttention(Intervention):
    """Scale attention on key spans [(start, end), ...] of positions: target="logits"
    multiplies the logits of those keys; target="probs" multiplies their probabilities and
    renormalises the row."""

    key_spans: Sequence[tuple[int, int]] = ()
    factor: float = 2.0
    target: str = "probs"
    site = "probs"

    def __post_init__(self):
        super().__post_init__()
        if self.target not in ("logits", "probs"):
            raise InterpError(f"ScaleAttention target must be 'logits' or 'probs', not '{self.target}'")

    def key_mask(self, n_keys: int, device) -> torch.Tensor:
        mask = torch.zeros(n_keys, dtype=torch.bool, device=device)
        for start, end in self.key_spans:
            mask[start:end] = True
        return mask

    def edit_logits(self, logits: torch.Tensor, ctx: "AttentionContext") -> torch.Tensor:
        if self.target != "logits":
            return logits
        keys = self.key_mask(logits.shape[-1], logits.device)
        return torch.where(keys, logits * self.factor, logits)

    def edit_probs(self, probs: torch.Tensor, ctx: "AttentionContext") -> torch.Tensor:
        if self.target != "probs":
            return probs
        keys = self.key_mask(probs.shape[-1], probs.device)
        scaled = torch.where(keys, probs * self.factor, probs)
        return scaled / scaled.sum(-1, keepdim=True).clamp_min(1e-30)


@dataclass
class AttentionContext:
    """What a probability rule knows about the rows it edits. Dim 3 of the rows is the key position
    0 .. n_keys - 1, also where a sliding-window layer's KV cache dropped the first keys while decoding:
    those positions (below key_start) hold probability 0 (logit -inf), and what a rule writes there is
    dropped with them."""

    layer: int
    heads: list[int]  # query heads of dim 1 of the probabilities
    query_positions: torch.Tensor  # absolute positions of dim 2
    n_keys: int  # key positions of dim 3
    key_start: int = 0  # the first position whose key the layer still holds


@dataclass(eq=False)
class Redistribute(Intervention):
    """Apply `rule(probs [batch, heads, queries, keys], ctx) -> probs` after the softmax.
    Rules must keep every row a distribution; `move_attention` is the generic one."""

    rule: Callable[[torch.Tensor, AttentionContext], torch.Tensor] | None = None
    site = "probs"

    def edit_logits(self, logits, ctx):
        return logits

    def edit_probs(self, probs, ctx):
        return self.rule(probs, ctx)


def move_attention(from_keys: Sequence[int], to_keys: Sequence[int], fraction: float) -> Callable:
    """A rule that takes `fraction` of the attention on `from_keys` (key positions) and gives it to
    `to_keys` in proportion to the attention they already have. Rows keep summing to 1;
    exactly fraction x (mass on from_keys) moves. A row that gives the receiving keys no
    attention at all (e.g. they lie in its future) is left as it is: the rule never
    creates attention to a key the query cannot see."""

    def rule(probs: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        n = probs.shape[-1]
        src = torch.zeros(n, dtype=torch.bool, device=probs.device)
        dst = torch.zeros(n, dtype=torch.bool, device=probs.device)
        src[[k for k in from_keys if k < n]] = True
        dst[[k for k in to_keys if k < n]] = True
        dst &= ~src
        receiving = probs * dst
        total = receiving.sum(-1, keepdim=True)
        movable = total > 0
        freed = (probs * src).sum(-1, keepdim=True) * fraction
        moved = torch.where(src, probs * (1 - fraction), probs) + freed * receiving / total.clamp_min(1e-30)
        return torch.where(movable, moved, probs)

    return rule


@dataclass
class ActiveInterventions:
    """The interventions in force, grouped by where they act."""

    items: list[Intervention] = field(default_factory=list)

    def at(self, site: str, layer: int) -> list[Intervention]:
        return [iv for iv in self.items if iv.site == site and iv.heads_in(layer)]
