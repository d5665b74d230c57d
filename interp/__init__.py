"""interp: find and steer the attention heads of transformer models."""

from interp.errors import InterpError
from interp.interventions import (
    MeanAblation,
    Redistribute,
    ScaleAttention,
    ScaleHead,
    UniformAttention,
    ZeroAblation,
    move_attention,
    parse_heads,
)
from interp.kernels import StatsRequest
from interp.layout import HeadLayout
from interp.models import InterpModel, load_model

__all__ = [
    "InterpError", "InterpModel", "HeadLayout", "StatsRequest", "load_model", "parse_heads",
    "ZeroAblation", "MeanAblation", "ScaleHead", "UniformAttention", "ScaleAttention", "Redistribute", "move_attention",
]
__version__ = "0.1.0"
