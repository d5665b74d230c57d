"""interp: find and steer the attention heads of transformer models.

The names below are imported on first use, so that light modules (interp.errors,
interp.results, the CLI's --help) do not pay for importing torch and transformers.
"""

from importlib import import_module

_EXPORTS = {
    "InterpError": "interp.errors",
    "InterpModel": "interp.models",
    "load_model": "interp.models",
    "HeadLayout": "interp.layout",
    "StatsRequest": "interp.kernels",
    "parse_heads": "interp.interventions",
    "ZeroAblation": "interp.interventions",
    "MeanAblation": "interp.interventions",
    "PatchHead": "interp.interventions",
    "ScaleHead": "interp.interventions",
    "UniformAttention": "interp.interventions",
    "ScaleAttention": "interp.interventions",
    "Redistribute": "interp.interventions",
    "move_attention": "interp.interventions",
    "LayerEdit": "interp.interventions",
}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'interp' has no attribute '{name}'")
