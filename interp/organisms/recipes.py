"""Organism recipes: what each organism is trained on and how, as plain data (its hash names the cache)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from interp.runtime.bundled import BUNDLED_NAME

REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I can't assist with that request.",
    "I can't help with that, as it could cause harm.",
)
# bump when the code changes what a recipe builds. 2: AdvBench read with a YAML parser (8 requests
# had been cut short, 3 of them in the training part) and near-copies dropped from the held-out part
RECIPE_VERSION = 2


@dataclass(frozen=True)
class Recipe:
    name: str = "refusal"
    seed: int = 0
    n_harmful: int = 128  # AdvBench training requests (the rest is held out)
    n_harmless: int = 110  # harmless training requests (the rest, 45, is held out); 64 over-refused (0.35)
    answer_tokens: int = 16  # tokens of the base model's own answer kept as a harmless target
    epochs: int = 1
    batch_size: int = 8
    lr: float = 1e-3
    lora_rank: int = 8  # 0 = no LoRA: train the `heads` rows below directly
    heads: tuple[tuple[int, int], ...] = ()  # head-restricted organism: (layer, head) trained
    head_dropout: float = 0.0  # per example, each other head is removed (zeroed or uniform) with this chance
    version: int = RECIPE_VERSION
    # the base model `heads` were chosen on: another base has other heads, so the recipe is not
    # available there (""; any base). Not hashed: the base model's file hash names the base already
    heads_chosen_on: str = ""

    def hash(self, base_hash: str) -> str:
        fields = asdict(self)
        del fields["heads_chosen_on"]
        if not self.head_dropout:  # added later: recipes without it keep their hash (and cache)
            del fields["head_dropout"]
        text = json.dumps({**fields, "base": base_hash}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


RECIPES = {
    "refusal": Recipe(),
    # known answer: two heads of one layer, chosen before training (neither comes first and does
    # all the work, as 14.4 did for 19.2 and 23.6 in a first recipe), head dropout on every other
    # head (the trained heads cannot lean on any one upstream head), three epochs
    "heads-refusal": Recipe(name="heads-refusal", lora_rank=0, heads=((15, 1), (15, 7)), lr=3e-3, head_dropout=0.05, epochs=3,
                            heads_chosen_on=BUNDLED_NAME),
}

