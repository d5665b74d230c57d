"""Head analyses, one file per method. Every analysis module exposes

    scan(model: InterpModel, *, samples: int | None = None, max_length: int | None = None,
         seed: int = 0, results: ResultsDir | None = None, **options) -> dict[str, pandas.DataFrame]

returning at least "heads" (one row per layer x head: layer, head, score, ...) and any
per-sample tables under other keys. With `results`, long scans save each finished
sample through results.save_progress and skip it when re-run (resume).
`PARAMS` in each module names the scan() keywords that identify a run (for resume).
"""

from importlib import import_module

ANALYSES = {
    "retrieval": "interp.analyses.retrieval",
    "sinks": "interp.analyses.sinks",
    "safety": "interp.analyses.safety",
}
# Run only when named (--analyses safety): it needs a model that refuses (see interp.organisms).
ON_REQUEST = {"safety"}


def get(name: str):
    from interp.errors import InterpError

    if name not in ANALYSES:
        raise InterpError(f"unknown analysis '{name}': choose from {', '.join(ANALYSES)}")
    return import_module(ANALYSES[name])
