"""Recording per-head activity: head outputs, residual writes, attention patterns and
attention statistics, for the layers, heads and query positions asked for.

A Capture is filled by the model's attention layers while its `with` block is active
(`model.capture(...)`). Every forward call the block sees is one *step* (a prompt, or
one decoding step of `generate`). Results are tensors shaped
[batch, layer, head, position, ...] over the selected layers and heads; per-query
results of several steps are joined along the position axis.

TransformerLens names work too, in TransformerLens's own axis orders: cap["blocks.3.attn.hook_z"] is [batch, pos, head, d_head],
cap["blocks.3.attn.hook_pattern"] is [batch, head, query_pos, key_pos] and
cap["blocks.3.attn.hook_result"] is [batch, pos, head, d_model].

Keys are read by position everywhere: pattern columns, argmax, key spans, pooled maps and per-key
mass count key positions 0 .. N-1, also while decoding past a sliding window, whose KV cache has
dropped the first keys (the pattern holds zeros there, and they add nothing to spans and maps).

The residual stream entering each layer (resid_pre=True: the block's input hidden state,
hidden_states[l] of output_hidden_states) is read by a forward pre-hook on the block:
cap.resid_pre is [batch, layer, position, d_model] and cap["blocks.3.hook_resid_pre"]
[batch, pos, d_model]. resid_pre=visit hands each layer's [batch, pos, d_model] input to
visit(layer, x) as it is computed and keeps nothing, so only one layer's input is alive at
a time (output_hidden_states keeps all of them: 8.6 GB for a 7B model at 32k tokens in bf16).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Union

import torch

from interp.base.errors import InterpError
from interp.runtime.interventions import PositionsLike, position_mask
from interp.kernels import StatsRequest

# Statistics with one value per query can be joined over steps; the others cannot.
PER_QUERY = {"z", "resid", "lse", "argmax", "argmax_prob", "entropy", "span_mass", "match_mass", "positions", "resid_pre"}
TL_ALIASES = {"hook_z": "z", "hook_pattern": "pattern", "hook_result": "resid"}
PER_LAYER = {"resid_pre"}  # one value per layer, not per head: [batch, pos, ...] per layer and step
# what a StatsRequest can ask for (interp.kernels): each is an attribute of a Capture too
STATISTICS = ("lse", "argmax", "argmax_prob", "entropy", "span_mass", "match_mass", "pooled", "key_mass")
READABLE = ("z", "resid", "pattern", "resid_pre", *STATISTICS)  # cap.<name>


@dataclass
class CaptureSpec:
    z: bool = False  # head outputs z (the o_proj input slice), [..., head_dim]
    resid: bool = False  # the head's write to the residual stream, z_h @ W_O[h], [..., d_model]
    pattern: bool = False  # attention probabilities of the selected queries, [..., key positions]
    stats: StatsRequest | None = None  # statistics from interp.kernels, no [N, N] matrix
    layers: list[int] | None = None
    heads: list[int] | None = None
    positions: PositionsLike = "all"  # "all", "last", an int, a slice, a list (absolute)
    detach: bool = True  # False keeps captures in the autograd graph (attribution patching)
    # the input hidden state of each layer, [..., d_model]; or visit(layer, x) to stream it (module doc)
    resid_pre: Union[bool, Callable[[int, torch.Tensor], None]] = False

    @property
    def wants_attention(self) -> bool:
        return self.pattern or (self.stats is not None and not self.stats.is_empty)

    @property
    def wants_output(self) -> bool:
        return self.z or self.resid


class Capture:
    def __init__(self, spec: CaptureSpec, n_layers: int, n_heads: int):
        self.spec = spec
        self.layers = sorted(spec.layers) if spec.layers is not None else list(range(n_layers))
        self.heads = sorted(spec.heads) if spec.heads is not None else list(range(n_heads))
        for layer in self.layers:
            if not 0 <= layer < n_layers:
                raise InterpError(f"layer {layer} is out of range: the model has {n_layers} layers (0-{n_layers - 1})")
        for head in self.heads:
            if not 0 <= head < n_heads:
                raise InterpError(f"head {head} is out of range: the model has {n_heads} heads per layer (0-{n_heads - 1})")
        # records[name][layer] = one tensor [batch, n_sel_heads, n_sel_pos, ...] per step
        self.records: dict[str, dict[int, list[torch.Tensor]]] = defaultdict(lambda: defaultdict(list))

    # ---- filled by the model -----------------------------------------------------------

    def wants_layer(self, layer: int) -> bool:
        return layer in self.layers

    def select_queries(self, n_query: int, q_offset: int, device) -> torch.Tensor:
        """Local indices of this call's queries that the capture asks for."""
        absolute = torch.arange(q_offset, q_offset + n_query, device=device)
        return position_mask(self.spec.positions, absolute).nonzero().flatten()

    def record(self, layer: int, name: str, value: torch.Tensor) -> None:
        self.records[name][layer].append(value.detach() if self.spec.detach else value)

    # ---- read by the user ----------------------------------------------------------------

    @property
    def n_steps(self) -> int:
        first = next(iter(self.records.values()), {})
        return len(next(iter(first.values()), []))

    def names(self) -> list[str]:
        return sorted(n for n in self.records if n != "z_graph")

    def get(self, name: str, step: int | None = None) -> torch.Tensor:
        """[batch, layer, head, position, ...] over the captured layers and heads."""
        if name not in self.records:
            raise InterpError(f"'{name}' was not captured; captured: {', '.join(self.names()) or 'nothing'}")
        per_layer = [self.records[name][layer] for layer in self.layers]
        home = per_layer[0][0].device  # layers split over devices (device_map): results on the first one's
        per_layer = [[value.to(home) for value in steps] for steps in per_layer]
        if step is not None:
            return torch.stack([steps[step] for steps in per_layer], dim=1)
        if len(per_layer[0]) == 1:
            return torch.stack([steps[0] for steps in per_layer], dim=1)
        if name not in PER_QUERY:
            raise InterpError(f"'{name}' differs in shape from step to step; read one step: cap.get('{name}', step=i)")
        position_axis = 1 if name in PER_LAYER else 2
        return torch.stack([torch.cat(steps, dim=position_axis) for steps in per_layer], dim=1)

    def graph_z(self, layer: int) -> list[torch.Tensor]:
        """With detach=False: per step, the [batch, pos, head, d_head] tensor the model's
        output projection consumed, so torch.autograd.grad(metric, cap.graph_z(l)) gives
        d metric / d z for every head and position (attribution patching)."""
        if self.spec.detach:
            raise InterpError("graph_z needs model.capture(z=True, detach=False)")
        return self.records["z_graph"][layer]

    def __getattr__(self, name: str) -> torch.Tensor:
        """Everything captured reads the same way: cap.z, cap.pattern, cap.resid_pre, cap.argmax,
        cap.entropy, cap.span_mass ... are cap.get(name), [batch, layer, head, position, ...]."""
        if name in READABLE:
            return self.get(name)
        raise AttributeError(f"'Capture' has no attribute '{name}'")

    def __dir__(self) -> list[str]:
        return sorted([*super().__dir__(), *READABLE])

    @property
    def positions(self) -> torch.Tensor:
        """Absolute position of every captured query, [position]."""
        return self.get("positions")[0, 0, 0]

    def __getitem__(self, key: str) -> torch.Tensor:
        block = re.fullmatch(r"blocks\.(\d+)\.hook_resid_pre", key)
        if block:
            if int(block.group(1)) not in self.layers:
                raise KeyError(f"layer {block.group(1)} was not captured")
            return self.get("resid_pre")[:, self.layers.index(int(block.group(1)))]  # [batch, pos, d_model]
        m = re.fullmatch(r"blocks\.(\d+)\.attn\.(hook_\w+)", key)
        if not m or m.group(2) not in TL_ALIASES:
            if key in self.records:
                return self.get(key)
            raise KeyError(f"{key}: use a captured name ({', '.join(self.names())}), blocks.L.attn.hook_z/hook_pattern/hook_result or blocks.L.hook_resid_pre")
        layer, name = int(m.group(1)), TL_ALIASES[m.group(2)]
        if layer not in self.layers:
            raise KeyError(f"layer {layer} was not captured")
        value = self.get(name)[:, self.layers.index(layer)]  # [batch, head, pos, ...]
        return value if name == "pattern" else value.transpose(1, 2)
