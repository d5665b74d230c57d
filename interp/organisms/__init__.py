"""Model organisms: small, reproducible fine-tunes of the bundled model with a behaviour it lacks.

The bundled SmolLM2-135M-Instruct answers harmful requests, so safety heads cannot be
studied on it. `refusal_model()` builds an organism that refuses them:

- data: a seeded 128-request training part of AdvBench -> one of a few short refusals, and
  110 of the project's harmless requests -> the bundled model's own greedy answers (first
  Recipe.answer_tokens tokens), so helpfulness is kept; held-out AdvBench, HarmBench and the other
  harmless requests stay unseen for evaluation (interp.data.safety; near-copies of training
  requests are left out of the held-out ones);
- training: LoRA (peft) on every attention and MLP projection, merged into the weights
  afterwards, AdamW, a loss on answer tokens only, fixed seed;
- `heads_refusal_model()`: the known-answer organism. The same data, but only the query
  rows (q_proj) and output-projection columns (o_proj) of two chosen heads are trained;
  every other weight is frozen, so whatever refusal it learns lives in those heads. Head
  dropout (each other head removed at random in each example, through interp's
  interventions) keeps the trained heads from leaning on any one upstream head.

Both are cached under interp's cache dir (INTERP_CACHE, default ~/.cache/interp) in
organisms/<name>-<recipe hash>/, rebuilt only when the recipe (or the base model file)
changes. Build from the shell:

    python -m interp.organisms refusal        # or: heads-refusal; prints the held-out evaluation
    interp scan --model refusal --analyses safety

and load with `interp.load_model("refusal")` (builds on first use).
"""


from __future__ import annotations

from pathlib import Path

from interp.organisms.evaluate import refusal_rates  # noqa: F401
from interp.organisms.planted import PLANTED, REFUSE, planted_refusal_model  # noqa: F401
from interp.organisms.recipes import RECIPES, REFUSALS, Recipe  # noqa: F401


def organism_dir(recipe: Recipe) -> Path:
    from interp.base.files import cache_dir, file_hash
    from interp.runtime.bundled import bundled_gguf_path

    return cache_dir() / "organisms" / f"{recipe.name}-{recipe.hash(file_hash(bundled_gguf_path()))}"


def refusal_model(rebuild: bool = False, recipe: Recipe | None = None):
    """The refusal organism as an InterpModel (built and cached on first use)."""
    return load_organism(recipe or RECIPES["refusal"], rebuild)


def heads_refusal_model(rebuild: bool = False, recipe: Recipe | None = None):
    """The known-answer organism: refusal trained into `recipe.heads` only."""
    return load_organism(recipe or RECIPES["heads-refusal"], rebuild)


def load_organism(recipe: Recipe, rebuild: bool = False):
    from interp.runtime.models import load_model

    path = organism_dir(recipe)
    if rebuild or not (path / "config.json").is_file():
        from interp.organisms.train import build

        build(recipe, path)
    model = load_model(str(path))
    model.source = recipe.name  # what results record; load_model(recipe.name) reloads it
    model.file_hash = path.name.rsplit("-", 1)[-1]  # the recipe hash: another recipe is another model
    return model


