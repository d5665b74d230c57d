"""Attention-statistics kernels: per-query softmax statistics without materialising [heads, Nq, Nk].

    from interp.kernels import attention_stats, StatsRequest
    out = attention_stats(q, k, requests=StatsRequest(lse=True, entropy=True))

Triton is imported lazily (only when impl="triton" runs), so importing this package never imports triton.

This folder is installed as interp.kernels. Python started in the checkout's root (python -c, python -m,
torchrun, pytest, a notebook) also finds it under the bare name `kernels`, which belongs to the PyPI package
that transformers imports. Found under that name, it steps aside (below) instead of shadowing it.
Why not drop this __init__.py, which is what makes the folder a regular package that outranks the installed
one? Without it, interp.kernels itself stops importing: setuptools' editable finder does not resolve a
namespace package nested in a mapped package.
"""

if __name__ == "kernels":  # not interp.kernels: hand the name to whatever else on sys.path has it
    import importlib.machinery
    import importlib.util
    import os
    import sys

    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _elsewhere = [p for p in sys.path if os.path.abspath(p or os.curdir) != _root]
    _spec = importlib.machinery.PathFinder.find_spec(__name__, _elsewhere)
    if _spec is None:  # nothing installed under that name: behave as if this folder were not here
        raise ModuleNotFoundError(f"No module named {__name__!r}", name=__name__)
    _installed = importlib.util.module_from_spec(_spec)
    sys.modules[__name__] = _installed  # the import statement returns what sys.modules holds once this file ends
    _spec.loader.exec_module(_installed)
else:
    from .request import StatsRequest
    from .stats import attention_stats

    __all__ = ["StatsRequest", "attention_stats"]
