"""Where the heads of a transformers model live, and how they are laid out.

Everything head-level in interp goes through two places of each attention layer
(see DESIGN.md): the attention function (which transformers calls with per-head
query/key/value) and the input of the output projection (the concatenated per-head
outputs z). This module finds both for a loaded model, and reads its head layout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from interp.base.errors import InterpError

# Names of the output projection inside an attention module, by architecture family:
# llama/mistral/qwen2/gemma: o_proj; gpt2: c_proj; gpt_neox: dense; clip-style: out_proj.
OUTPUT_PROJECTION_NAMES = ("o_proj", "c_proj", "dense", "out_proj")
# Attributes that mark a module that computes q/k/v and calls the attention interface.
QKV_NAMES = ("q_proj", "c_attn", "query_key_value", "query", "qkv_proj")


@dataclass(frozen=True)
class HeadLayout:
    n_layers: int
    n_heads: int  # query heads per layer; heads are always counted per query head
    n_kv_heads: int  # key/value heads per layer (< n_heads under grouped-query attention)
    head_dim: int
    d_model: int
    max_positions: int | None

    @property
    def n_total_heads(self) -> int:
        return self.n_layers * self.n_heads

    def all_heads(self) -> list[tuple[int, int]]:
        """Every (layer, head), layer by layer."""
        return [(l, h) for l in range(self.n_layers) for h in range(self.n_heads)]

    def as_dict(self) -> dict:
        return asdict(self)

    def check_head(self, layer: int, head: int) -> None:
        if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            raise InterpError(
                f"head {layer}.{head} is out of range: the model has {self.n_layers} layers "
                f"(0-{self.n_layers - 1}) x {self.n_heads} heads (0-{self.n_heads - 1})"
            )


@dataclass
class AttentionSite:
    """One attention layer: the module transformers calls the attention function with, the
    output projection whose input is the concatenated head outputs z, and the block (decoder
    or encoder layer: the attention's ancestor that sits in a ModuleList) whose input is the
    layer's input hidden state; None if there is no such ancestor."""

    layer: int
    attention: nn.Module
    output_projection: nn.Module
    block: nn.Module | None = None

    def output_weight(self, n_heads: int) -> torch.Tensor:
        """W_O per head as [n_heads, head_dim, d_model], so z_h @ W_O[h] is head h's write."""
        proj = self.output_projection
        weight = proj.weight
        if weight.device.type == "meta":  # offloaded by accelerate (CPU/disk): load a copy for this read
            from accelerate.utils import align_module_device

            with align_module_device(proj):
                weight = proj.weight.detach().clone()
        if isinstance(proj, nn.Linear):
            weight = weight.T  # Linear stores [out, in]
        # transformers' Conv1D (gpt2) stores [in, out]
        d_in, d_model = weight.shape
        return weight.reshape(n_heads, d_in // n_heads, d_model)

    def output_bias(self) -> torch.Tensor | None:
        return getattr(self.output_projection, "bias", None)


def text_config(config):
    """The config of the language model (vision-language models nest it)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def language_model(model: nn.Module) -> nn.Module:
    """The part of the model whose heads interp studies: the language model of a
    vision-language model, else the model itself (its vision tower is left alone)."""
    inner = getattr(model, "model", model)
    return getattr(inner, "language_model", None) or getattr(model, "language_model", None) or model


def find_attention_sites(model: nn.Module) -> list[AttentionSite]:
    text_model = language_model(model)
    sites = []
    parents = {}
    for name, module in text_model.named_modules():
        for child_name, child in module.named_children():
            parents[id(child)] = module
        if not any(isinstance(getattr(module, n, None), nn.Module) for n in QKV_NAMES):
            continue
        if not type(module).__module__.startswith("transformers"):
            continue  # wrappers around the real module (TransformerLens bridge components)
        if getattr(module, "is_cross_attention", False):
            continue
        projection = _output_projection(module, parents.get(id(module)))
        if projection is None:
            continue
        sites.append(AttentionSite(len(sites), module, projection, _block(module, parents)))
    if not sites:
        raise InterpError(
            f"interp cannot find the attention layers of {type(model).__name__}: supported are "
            "models whose attention modules have q_proj/c_attn/query_key_value/query and an "
            "o_proj/c_proj/dense output projection (llama, mistral, qwen2, gemma, gpt2, gpt_neox, bert, llava)"
        )
    return sites


def _block(module: nn.Module, parents: dict) -> nn.Module | None:
    while id(module) in parents and not isinstance(parents[id(module)], nn.ModuleList):
        module = parents[id(module)]
    return module if id(module) in parents else None


def _output_projection(module: nn.Module, parent: nn.Module | None) -> nn.Module | None:
    for name in OUTPUT_PROJECTION_NAMES:
        proj = getattr(module, name, None)
        if isinstance(proj, nn.Module) and hasattr(proj, "weight"):
            return proj
    # BERT-style: the self-attention module computes z; its parent's output.dense projects it.
    output = getattr(parent, "output", None) if parent is not None else None
    dense = getattr(output, "dense", None)
    return dense if isinstance(dense, nn.Module) else None


def read_layout(model: nn.Module, sites: list[AttentionSite]) -> HeadLayout:
    config = text_config(model.config)
    n_heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head")
    n_kv_heads = getattr(config, "num_key_value_heads", None) or n_heads
    d_model = getattr(config, "hidden_size", None) or getattr(config, "n_embd")
    head_dim = getattr(config, "head_dim", None) or d_model // n_heads
    max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return HeadLayout(len(sites), n_heads, n_kv_heads, head_dim, d_model, max_positions)
