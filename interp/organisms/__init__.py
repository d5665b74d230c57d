"""Model organisms: small, reproducible fine-tunes of a base model with a behaviour it lacks.

The bundled SmolLM2-135M-Instruct answers harmful requests, so safety heads cannot be
studied on it. `refusal_model()` builds an organism that refuses them:

- data: a seeded 128-request training part of AdvBench -> one of a few short refusals, and
  110 of the project's harmless requests -> the base model's own greedy answers (first
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

A recipe is trained over any base model known by name: the bundled SmolLM2-135M-Instruct by
default ("refusal"), or another as "BASE:ORGANISM" ("gemma3-270m:refusal"; entry points of the
group "interp.organisms"). A base model without a chat template (Gemma 3 270M is a base model)
reads every request as plain text, in training as in evaluation and analyses. A head-restricted
recipe names heads of the model they were chosen on (Recipe.heads_chosen_on) and is not
available over another base.

Organisms are cached under interp's cache dir (INTERP_CACHE, default ~/.cache/interp) in
organisms/[<base>-]<name>-<recipe hash>/, the hash covering the recipe and the base model's
file, so they are rebuilt only when either changes. Build from the shell:

    python -m interp.organisms refusal        # or: heads-refusal; prints the held-out evaluation
    python -m interp.organisms refusal --base gemma3-270m
    interp scan --model refusal --analyses safety   # or --model gemma3-270m:refusal

and load with `interp.load_model("refusal")` or `interp.load_model("gemma3-270m:refusal")`
(builds on first use).
"""


from __future__ import annotations

from pathlib import Path

from interp.organisms.evaluate import refusal_rates  # noqa: F401
from interp.organisms.planted import PLANTED, REFUSE, planted_refusal_model  # noqa: F401
from interp.base.errors import InterpError
from interp.organisms.recipes import RECIPES, REFUSALS, Recipe  # noqa: F401


def organism_dir(recipe: Recipe, base: str | None = None) -> Path:
    """Where the organism `recipe` over `base` (default: the bundled model) is cached: its recipe hash
    covers the base model's file, so another base, or another file of the same name, is another organism."""
    from interp.base.files import cache_dir

    base = base_name(base)
    prefix = "" if base is None else f"{base}-"  # the bundled model's organisms keep their folders
    return cache_dir() / "organisms" / f"{prefix}{recipe.name}-{recipe.hash(base_file_hash(base))}"


def organism_name(recipe: Recipe, base: str | None = None) -> str:
    """What results record and load_model() reloads: "refusal" over the bundled model, else "BASE:refusal"."""
    base = base_name(base)
    return recipe.name if base is None else f"{base}:{recipe.name}"


def base_name(base: str | None) -> str | None:
    """None for the bundled model (under any of its names), else a model name load_model() knows."""
    from interp.runtime.bundled import BUNDLED_NAME
    from interp.runtime.models import named_models

    if base in (None, "", "bundled", BUNDLED_NAME):
        return None
    models = named_models()
    # an organism over an organism is not a recipe's base: the project's organisms are its own named models
    bases = sorted(name for name, entry in models.items()
                   if name not in named_organisms() and not entry.value.startswith("interp.organisms"))
    if base not in bases:
        known = [BUNDLED_NAME] + bases
        raise InterpError(f"unknown base model '{base}' for an organism: use one of {', '.join(known)} (BASE:ORGANISM)")
    return base


def named_organisms() -> dict:
    """Organisms by name (entry points of "interp.organisms": name -> a function taking base=)."""
    from importlib.metadata import entry_points

    return {entry.name: entry for entry in entry_points(group="interp.organisms")}


def base_file_hash(base: str | None) -> str:
    """The sha256 of the base model's file: of its GGUF where it ships as one (read, not loaded),
    else the file hash load_model() gives it, else the sha256 of its weight files' hashes."""
    import hashlib

    from interp.base.files import file_hash
    from interp.runtime.bundled import GEMMA_NAME, bundled_gguf_path, gemma_gguf_path
    from interp.runtime.models import load_model

    gguf = {None: bundled_gguf_path, GEMMA_NAME: gemma_gguf_path}.get(base)
    if gguf is not None:
        return file_hash(gguf())
    model = load_model(base)
    if model.file_hash:
        return model.file_hash
    folder = Path(model.hf.config._name_or_path)
    weights = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not weights:
        raise InterpError(f"{base} has no weight files to name its organisms by: it cannot be a base model")
    return hashlib.sha256("".join(f"{w.name}:{file_hash(w)}" for w in weights).encode()).hexdigest()


def check_available(recipe: Recipe, base: str | None) -> None:
    """A head-restricted recipe is trained only over the model its heads were chosen on."""
    from interp.runtime.bundled import BUNDLED_NAME

    base = base_name(base)
    if recipe.heads and recipe.heads_chosen_on and (base or BUNDLED_NAME) != recipe.heads_chosen_on:
        heads = ", ".join(f"{layer}.{head}" for layer, head in recipe.heads)
        raise InterpError(f"{recipe.name} trains heads {heads}, chosen on {recipe.heads_chosen_on}; none are chosen for "
                          f"{base}: use {base}:refusal, or a Recipe with heads of {base}")


def refusal_model(rebuild: bool = False, recipe: Recipe | None = None, base: str | None = None):
    """The refusal organism as an InterpModel (built and cached on first use), over `base`
    (default: the bundled model; any model load_model() knows by name, e.g. "gemma3-270m")."""
    return load_organism(recipe or RECIPES["refusal"], rebuild, base)


def heads_refusal_model(rebuild: bool = False, recipe: Recipe | None = None, base: str | None = None):
    """The known-answer organism: refusal trained into `recipe.heads` only (the bundled model's)."""
    return load_organism(recipe or RECIPES["heads-refusal"], rebuild, base)


def load_organism(recipe: Recipe, rebuild: bool = False, base: str | None = None):
    from interp.runtime.models import load_model

    base = base_name(base)
    check_available(recipe, base)
    path = organism_dir(recipe, base)
    if rebuild or not (path / "config.json").is_file():
        from interp.organisms.train import build

        build(recipe, path, base)
    model = load_model(str(path))
    model.source = organism_name(recipe, base)  # what results record; load_model(model.source) reloads it
    model.file_hash = path.name.rsplit("-", 1)[-1]  # the recipe hash: another recipe is another model
    return model
