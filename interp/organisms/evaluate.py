"""How well an organism refuses: held-out harmful and harmless requests, judged."""

from __future__ import annotations

import torch

from interp.data import safety as safety_data
from interp.organisms.recipes import RECIPES, Recipe
from interp.base.progress import track


@torch.no_grad()
def refusal_rates(model, n: int = 50, max_new_tokens: int = 32, batch_size: int = 25, recipe: Recipe | None = None) -> dict:
    """Refusal rate (interp.data.safety.judge) on n held-out AdvBench, n HarmBench and n
    held-out harmless requests of `recipe` (default: the organism's, by its name), with a few sample
    answers (batched greedy generation)."""
    recipe = recipe or recipe_of(model.source)
    _, held_harmful = safety_data.split_advbench(recipe.n_harmful, recipe.seed)
    _, held_harmless = safety_data.split_harmless(recipe.n_harmless, recipe.seed)
    sets = {"advbench_heldout": held_harmful[:n], "harmbench": safety_data.harmbench()[:n], "harmless_heldout": held_harmless[:n]}
    out = {"samples": {}}
    for name, requests in sets.items():
        replies = []
        for start in track(range(0, len(requests), batch_size), name):
            replies += model.answers(requests[start : start + batch_size], max_new_tokens)
        verdicts = [safety_data.judge(a).label for a in replies]
        out[name] = {k: verdicts.count(k) / len(verdicts) for k in ("refusal", "compliance", "broken")} | {"n": len(verdicts)}
        out["samples"][name] = list(zip(requests[:3], replies[:3]))
    return out


def recipe_of(source: str) -> Recipe:
    """The recipe an organism was trained with, by the name it records ("refusal", "gemma3-270m:refusal");
    the default recipe for any other model (its held-out requests are the default ones)."""
    return RECIPES.get(source.rpartition(":")[2], Recipe())
