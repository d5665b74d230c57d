"""Head ablation by name: the one place that turns "zero", "mean", "uniform", "scale" or "patch"
into an intervention (every analysis, the organisms' head dropout, `interp ablate` and the head
explorer call head_ablation), and the effect of an ablation on generation and on the
next-token distribution of one prompt.

    effect = ablation_effect(model, make_intervention(model, "12.3", Mode.parse("zero")), "Hello")
    effect.kl, effect.clean_text, effect.ablated_text, effect.top_tokens

Light to import (no torch at import time), so the CLI can parse --mode before loading a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from interp.base.errors import InterpError

if TYPE_CHECKING:  # annotations only: the CLI imports this module before torch
    import torch

MODES_HELP = "zero | mean | uniform | scale=FACTOR (e.g. scale=2)"


@dataclass
class Mode:
    """A parsed --mode: 'zero', 'mean', 'uniform' or 'scale' with its factor."""

    kind: str
    factor: float = 1.0

    @classmethod
    def parse(cls, text: str) -> "Mode":
        text = text.strip().lower()
        if text in ("zero", "mean", "uniform"):
            return cls(text)
        match = re.fullmatch(r"scale[=:]([-+0-9.eE]+)", text)
        if match:
            try:
                return cls("scale", float(match.group(1)))
            except ValueError:
                pass
        raise InterpError(f"unknown mode '{text}': use {MODES_HELP}")

    def __str__(self) -> str:
        return f"scale={self.factor:g}" if self.kind == "scale" else self.kind


def head_ablation(kind: str, heads, *, rows=None, positions=None, eps: float = 1e-5, factor: float = 1.0,
                  means: torch.Tensor | None = None, values: torch.Tensor | None = None,
                  source: torch.Tensor | None = None, mask: torch.Tensor | None = None):
    """The intervention that ablates `heads` (in batch `rows` and at `positions`, all if None):
    - "zero": the heads write nothing;
    - "mean": their output replaced by `means` ([layers, heads, head_dim], model.head_means(texts));
    - "uniform": their query scaled by `eps`, so they attend ~uniformly;
    - "scale": their output multiplied by `factor`;
    - "patch": their output replaced by `values` from another run, per row (`source`) and head
      (`mask`), as PatchHead takes them."""
    from interp.runtime.interventions import MeanAblation, PatchHead, ScaleHead, UniformAttention, ZeroAblation

    where = dict(rows=rows, positions=positions)
    if kind == "zero":
        return ZeroAblation(heads, **where)
    if kind == "uniform":
        return UniformAttention(heads, **where, eps=eps)
    if kind == "scale":
        return ScaleHead(heads, **where, factor=factor)
    if kind == "patch":
        return PatchHead(heads, **where, values=values, source=source, mask=mask)
    if kind != "mean":
        raise InterpError(f"unknown ablation '{kind}': use zero, mean, uniform, scale or patch")
    if means is None:
        raise InterpError("mean ablation needs the mean head outputs: pass means=model.head_means(texts)")
    return MeanAblation(heads, **where, means=means)


def make_intervention(model, heads, mode: Mode, means: torch.Tensor | None = None):
    """The intervention for --mode on `heads`, range-checked against the model. Mean ablation
    needs the mean head outputs, `means` (model.head_means(texts)): the caller chooses the texts."""
    return head_ablation(mode.kind, model.heads(heads), factor=mode.factor, means=means)


@dataclass
class AblationEffect:
    clean_text: str
    ablated_text: str
    kl: float  # KL(clean || ablated) of the next-token distribution at the last prompt position, nats
    top_tokens: pd.DataFrame  # token, p_clean, p_ablated: the top tokens of either distribution


def ablation_effect(model, intervention, prompt: str, max_new_tokens: int = 32, chat: bool | None = None, top: int = 5) -> AblationEffect:
    if chat is None:  # instruct models answer better in their chat format; base models have none
        chat = getattr(model.tokenizer, "chat_template", None) is not None
    inputs = model.tokenize(prompt, chat=chat)
    clean = model.generate(inputs, max_new_tokens=max_new_tokens, output_logits=True)  # one prompt pass each side
    with model.intervene(intervention):
        ablated = model.generate(inputs, max_new_tokens=max_new_tokens, output_logits=True)
    log_p, log_q = clean.first_logits[0].float().log_softmax(-1), ablated.first_logits[0].float().log_softmax(-1)
    kl = float((log_p.exp() * (log_p - log_q)).sum())
    ids = list(dict.fromkeys(log_p.topk(top).indices.tolist() + log_q.topk(top).indices.tolist()))
    table = pd.DataFrame({
        "token": [repr(model.tokenizer.decode([i])) for i in ids],
        "p_clean": [float(log_p[i].exp()) for i in ids],
        "p_ablated": [float(log_q[i].exp()) for i in ids],
    }).sort_values("p_clean", ascending=False, ignore_index=True)
    return AblationEffect(clean.text, ablated.text, kl, table)
