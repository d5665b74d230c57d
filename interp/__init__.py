"""interp: find and steer the attention heads of transformer models.

The package in layers, bottom up; a layer imports only the layers below it (tests/test_layers.py):

    interp.base       errors, files, progress bars
    interp.kernels    attention statistics without [heads, N, N] matrices (kernels/ in the checkout)
    interp.runtime    the engine: InterpModel, attention, capture, interventions, layout
    interp.data       probe material: prompts, needles, tasks, safety request sets and their files
    interp.organisms  model organisms: recipes and training of behaviours a model lacks
    interp.analyses   one module per method (analyses/ in the checkout)
    interp.run        the job layer: the scan runner, results directories, ranks
    interp.cli, interp.report, interp.apps   the front doors

Names and submodules below are imported on first use (`interp.load_model`, `interp.analyses`),
so that `import interp` and the CLI's --help do not pay for torch and transformers.
"""

from importlib import import_module

_EXPORTS = {
    "InterpError": "interp.base.errors",
    "InterpModel": "interp.runtime.models",
    "load_model": "interp.runtime.models",
    "HeadLayout": "interp.runtime.layout",
    "StatsRequest": "interp.kernels",
    "parse_heads": "interp.runtime.interventions",
    "ZeroAblation": "interp.runtime.interventions",
    "MeanAblation": "interp.runtime.interventions",
    "PatchHead": "interp.runtime.interventions",
    "ScaleHead": "interp.runtime.interventions",
    "UniformAttention": "interp.runtime.interventions",
    "ScaleAttention": "interp.runtime.interventions",
    "Redistribute": "interp.runtime.interventions",
    "move_attention": "interp.runtime.interventions",
    "LayerEdit": "interp.runtime.interventions",
    "scan": "interp.run.runner",
}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


# submodules reachable as attributes after a plain `import interp`
_SUBMODULES = {"base", "kernels", "runtime", "data", "organisms", "analyses", "run", "report", "cli"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return import_module(f"interp.{name}")
    raise AttributeError(f"module 'interp' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_SUBMODULES])
