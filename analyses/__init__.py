"""Head analyses, one file per method. Every analysis module exposes

    scan(model: InterpModel, *, samples: int | None = None, max_length: int | None = None,
         seed: int = 0, results: ResultsDir | None = None, **options) -> dict[str, pandas.DataFrame]

returning at least "heads" (one row per layer x head: layer, head, score, ...) and any
per-sample tables under other keys. With `results`, long scans save each finished
sample through results.save_progress and skip it when re-run (resume).
`PARAMS` in each module names the scan() keywords that identify a run (for resume); they are
what `interp scan --set KEY=VALUE` sets, read as scan()'s annotation or default says
(interp.run.params), and `PARAM_HELP` says in a line what each is (`interp params NAME`).
`MEASURE` says what its head table's `score` is ("induction score", "Ships", ...): the CLI, the
report and the explorer label the score with it. `headline(tables)` gives a few lines on the
result, the first naming the measure: `interp scan` prints them and the report lists them.

The same pattern makes an analysis run on several ranks (`torchrun -m interp scan`,
interp.run.distributed) with no code of its own. What an analysis must do:
- loop over its samples with `interp.base.progress.track(items, ...)`, with the same items in the
  same order on every run (seeded choices only), and not break out of a track loop;
- in the loop, skip a sample whose key is in `done = results.load_progress(NAME)` and save
  every computed sample with `results.save_progress(NAME, key, record)` (a JSON-able record
  holding everything the tables need), reading records only from `done`;
- build its tables after the loop from the records of all samples. Several loops are fine
  (a second pass that needs the first one's results): each is split in turn.
Under several ranks the sharded loop yields only this rank's share, and scan() is called
again once the records are shared, so everything before and between loops must be cheap or
depend on records only; work done outside track loops is done by every rank, and a track
loop whose body saves nothing is still correct but is computed in full by every rank.
"""

from importlib import import_module

ANALYSES = {
    "retrieval": "interp.analyses.retrieval",
    "sinks": "interp.analyses.sinks",
    "heads": "interp.analyses.heads",
    "context": "interp.analyses.divergence:CONTEXT",  # context divergence (text)
    "vhd": "interp.analyses.divergence:VHD",  # vision-aware head divergence (VLMs + images)
    "circuits": "interp.analyses.circuits",
    "safety": "interp.analyses.safety",
}
# Run only when named (--analyses NAME): they need inputs of their own (images, tasks, a model
# that refuses) or take longer than a first look should.
ON_REQUEST = {"context", "vhd", "circuits", "safety"}


def default_names() -> list[str]:
    """The analyses `interp scan` runs when none are named."""
    return [name for name in ANALYSES if name not in ON_REQUEST]


def get(name: str):
    from interp.base.errors import InterpError

    if name not in ANALYSES:
        raise InterpError(f"unknown analysis '{name}': choose from {', '.join(ANALYSES)}")
    module, _, attribute = ANALYSES[name].partition(":")  # "module:OBJECT" names one of several in a module
    found = import_module(module)
    return getattr(found, attribute) if attribute else found


def headline(name: str, tables: dict) -> list[str]:
    """A few lines on one analysis's tables (as its scan() returned them or a results directory
    holds them): its module's headline(), else its top heads by score."""
    from interp.analyses.head_sets import top_text

    module = get(name)
    if hasattr(module, "headline"):
        return module.headline(tables)
    return [f"{getattr(module, 'MEASURE', 'score')}: top {top_text(tables['heads'])}"]
