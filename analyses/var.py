"""VAR: visual attention redistribution (Kang et al. 2025; METHODS.md section 2), as a rule
for interp's Redistribute intervention.

In a head whose query is image-centric (visual-sink share sum_{S_v} a / sum_I a <= rho and
image mass sum_I a >= min_image_mass), every sink token keeps p of its attention and the
freed mass (1 - p) * (their total) goes to the image tokens that are not sinks, in
proportion to the attention they already have; the row still sums to 1. Other rows and
the last layer are left alone.

    from interp.analyses import sinks, var
    inputs = sinks.image_inputs(model, image, "Describe the image.")
    layer_sinks = sinks.sink_tokens(model, inputs, sinks.massive_dims(model))
    with model.intervene(*var.var_interventions(model, sinks.image_positions(model, inputs), layer_sinks)):
        model.hf.generate(**inputs)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from interp.base.errors import InterpError
from interp.runtime.interventions import AttentionContext, Redistribute, move_attention

P, RHO, MIN_IMAGE_MASS = 0.6, 0.5, 0.2


def var_rule(image_positions: Sequence[int], sink_positions: Sequence[int], p: float = P, rho: float = RHO,
             min_image_mass: float = MIN_IMAGE_MASS):
    """A Redistribute rule for one layer: sink_positions are that layer's sink tokens (visual
    sinks and text sinks such as BOS); the ones among image_positions are the visual sinks."""
    image, sinks = sorted(set(image_positions)), sorted(set(sink_positions))
    visual_sinks = sorted(set(sinks) & set(image))
    targets = sorted(set(image) - set(sinks))
    # The generic "move a fraction of the mass from these keys to those" rule does the moving;
    # VAR only decides which rows it applies to.
    move = move_attention(from_keys=sinks, to_keys=targets, fraction=1 - p)

    def rule(probs: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        _, centric = image_centric(_mass(probs, image), _mass(probs, visual_sinks), rho, min_image_mass)
        return torch.where(centric[..., None], move(probs, ctx), probs)

    return rule


def image_centric(image_mass: torch.Tensor, visual_sink_mass: torch.Tensor, rho: float = RHO,
                  min_image_mass: float = MIN_IMAGE_MASS) -> tuple[torch.Tensor, torch.Tensor]:
    """(visual-sink share of the image mass, image-centric mask) per attention row: a row is
    image-centric when it puts at least min_image_mass on the image, at most rho of it on visual sinks."""
    share = visual_sink_mass / image_mass.clamp_min(1e-30)
    return share, (image_mass >= min_image_mass) & (share <= rho)


def _mass(probs: torch.Tensor, keys: list[int]) -> torch.Tensor:
    """Attention on `keys` (those the rows have), [B, h, q]."""
    keys = [k for k in keys if k < probs.shape[-1]]
    return probs[..., keys].sum(-1)


def var_interventions(model, image_positions: Sequence[int], sink_positions: Sequence[int] | Mapping[int, Sequence[int]],
                      *, p: float = P, rho: float = RHO, min_image_mass: float = MIN_IMAGE_MASS,
                      positions=None, rows=None) -> list[Redistribute]:
    """VAR in all heads of every layer but the last. sink_positions: one list for every layer,
    or {layer: positions} as analyses.sinks.sink_tokens returns (phi depends on the layer).
    positions / rows restrict the queries / batch rows, as for any intervention."""
    if not 0 <= p <= 1:
        raise InterpError(f"p is the share of attention a sink keeps, between 0 and 1 (VAR uses 0.6), got {p}")
    if not 0 <= rho <= 1 or not 0 <= min_image_mass <= 1:
        raise InterpError(f"rho and min_image_mass are attention shares between 0 and 1, got {rho} and {min_image_mass}")
    if not len(image_positions):
        raise InterpError("VAR needs the image token positions: find them with analyses.sinks.image_positions")
    n_layers, n_heads = model.layout.n_layers, model.layout.n_heads
    interventions = []
    for layer in range(n_layers - 1):  # the last layer is left alone, as in the paper
        sinks = sink_positions.get(layer, []) if isinstance(sink_positions, Mapping) else sink_positions
        rule = var_rule(image_positions, sinks, p, rho, min_image_mass)
        interventions.append(Redistribute([(layer, h) for h in range(n_heads)], rows=rows, positions=positions, rule=rule))
    return interventions
