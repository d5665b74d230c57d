"""The scan runner: analyses of one model into one results directory. `interp scan`, notebooks
and every rank under torchrun run this one loop.

    import interp
    outcome = interp.scan("HuggingFaceTB/SmolLM2-360M-Instruct", ["sinks", "heads"], "results/smol", samples=8)
    outcome.results.read_table("sinks")

Per analysis: skipped when the directory holds it done with the same params; else started
(resuming after the samples an earlier run saved), scanned (on several ranks through
interp.run.distributed), its tables written and marked done with its wall time. An analysis
that raises is marked failed and the others still run; Ctrl-C or a kill (SIGTERM) marks it
failed and ends the scan with ScanInterrupted. The same call again resumes. What happens is
told as it happens to a ScanEvents object; the CLI's subclass prints it.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Iterable

import interp.analyses as registry
from interp.base.errors import InterpError
from interp.run import distributed
from interp.run.params import read_settings
from interp.run.manifest import model_identity, model_name
from interp.run.results import ResultsDir


class ScanEvents:
    """What a scan tells as it goes. These say nothing; the CLI's subclass prints them."""

    def loading(self, source: str | None):
        """A context manager around loading the model (source None: the bundled model)."""
        return nullcontext()

    def skipped(self, name: str, out: Path) -> None:
        """The analysis is done in out with the same params already."""

    def scanning(self, name: str, resumed: int) -> None:
        """The analysis starts; resumed: samples saved by earlier runs, which it does not redo."""

    def failed(self, name: str, error: Exception) -> None:
        """The analysis raised (told inside the `except`, so a traceback can be shown); the others still run."""

    def interrupted(self, name: str, out: Path) -> None:
        """Ctrl-C or a kill ended the analysis; its finished samples are saved in out."""


class ScanInterrupted(KeyboardInterrupt):
    """Ctrl-C or a kill during an analysis, once it is marked failed; the same scan again resumes it."""


@dataclass
class ScanOutcome:
    """What a scan did; the tables and the manifest are in results."""

    results: ResultsDir
    analyses: dict[str, ModuleType]  # every analysis asked for, in the order they ran
    failed: dict[str, Exception]  # the analyses that raised, and what


def scan(model=None, analyses: str | Iterable[str] | None = None, out: str | os.PathLike | None = None, *,
         samples: int | None = None, max_length: int | None = None, seed: int = 0, dtype: str | None = None,
         device: str | None = None, device_map=None, max_memory: dict | None = None,
         settings: Iterable[str] = (), events: ScanEvents | None = None, **options) -> ScanOutcome:
    """Score every head for each analysis into the results directory `out`; the same call again resumes.

    model: an InterpModel, or what load_model loads (HF id, local directory, .gguf; None: the
        bundled model) with dtype (default float32) and device, or device_map and max_memory.
    analyses: names, as a list or "retrieval,sinks" (None: every registered one but ON_REQUEST).
    out: the results directory [default: results/<model name>].
    options: options of particular analyses (images=..., tasks=..., lengths=...), each given to
        the analyses whose PARAMS name it.
    settings: "KEY=VALUE" or "ANALYSIS.KEY=VALUE" texts, as `interp scan --set` takes them
        (interp.run.params: typed from each analysis's scan() signature); like options, they
        are part of the params that identify a run.
    """
    events = events or ScanEvents()
    modules = analysis_modules(analyses)
    device = distributed.init(device)  # under torchrun & co: join the ranks (interp.run.distributed)
    taken = analysis_options(modules, **options)
    for name, values in read_settings(modules, settings).items():  # bad text fails here, before the model loads
        twice = sorted(set(values) & set(taken[name]))
        if twice:
            raise InterpError(f"{name}: {', '.join(twice)} given both as an option and with --set; keep one")
        taken[name].update(values)
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    loaded = model if source is None and model is not None else None  # an InterpModel, used as it is
    if loaded is not None and (dtype, device, device_map, max_memory) != (None,) * 4:
        raise InterpError("dtype, device, device_map and max_memory are for loading: pass a model id, directory "
                          "or .gguf file, or leave them out for a loaded model")
    out = Path(out) if out is not None else Path("results") / model_name(source if loaded is None else loaded.source)
    if out.exists() and not out.is_dir():
        raise InterpError(f"--out {out} is a file; choose a directory")
    results = distributed.results_dir(out)  # refuses a foreign or newer-format directory before the model loads
    if loaded is None:
        from interp.runtime.models import load_model  # torch: imported when a scan runs, not with the CLI

        dtype = dtype or "float32"
        with events.loading(source):
            loaded = load_model(source, device=device, dtype=dtype, device_map=device_map, max_memory=max_memory)
    else:  # its precision identifies its results, as a loading dtype does
        dtype = str(loaded.hf.dtype).removeprefix("torch.")
    results.set_model(*model_identity(loaded, source), loaded.layout.as_dict())

    run = dict(samples=samples, max_length=max_length, seed=seed)
    failed = {}
    with sigterm_as_interrupt():
        for name, module in modules.items():
            error = _scan_one(name, module, loaded, results, run, dtype, taken.get(name, {}), events)
            if error is not None:
                failed[name] = error
    return ScanOutcome(results, modules, failed)


def _scan_one(name, module, model, results: ResultsDir, run: dict, dtype: str, extra: dict,
              events: ScanEvents) -> Exception | None:
    """One analysis into results; returns its error when it failed."""
    params = run_params(module, {**run, "dtype": dtype, **extra})
    if results.is_done(name, params):
        events.skipped(name, results.path)
        return None
    resumed = results.start_analysis(name, params)  # drops progress saved under other params
    events.scanning(name, resumed)
    try:
        started = time.perf_counter()
        tables = distributed.run_scan(module.scan, model, **{**run, **extra}, results=results)  # --set samples=... wins
        results.write_tables(name, tables)
        results.finish_analysis(name, seconds=time.perf_counter() - started)
    except KeyboardInterrupt:
        results.fail_analysis(name, "interrupted; re-run the same command to resume")
        events.interrupted(name, results.path)
        raise ScanInterrupted(f"{name}: finished samples are saved in {results.path}; the same scan again resumes") from None
    except Exception as e:  # one failing analysis does not stop the others
        results.fail_analysis(name, e)
        events.failed(name, e)
        return e
    return None


def analysis_modules(names: str | Iterable[str] | None) -> dict:
    """name -> module for "retrieval,sinks" or a list of names (none: the registered analyses not
    marked on-request-only)."""
    if not names:
        wanted = registry.default_names()
    else:
        wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not wanted:
        raise InterpError(f"--analyses is empty: choose from {', '.join(registry.ANALYSES)}")
    modules = {}
    for name in wanted:
        try:
            modules[name] = registry.get(name)
        except ImportError as e:
            raise InterpError(f"analysis '{name}' cannot be imported ({type(e).__name__}: {e}); check the install") from None
    return modules


def run_params(module, given: dict) -> dict:
    """The parameters that identify a run for resume: the scan() keywords the analysis names
    in PARAMS, plus dtype (results in another precision are different results)."""
    names = getattr(module, "PARAMS", ("samples", "max_length", "seed"))
    return {**{n: given[n] for n in names if n in given}, "dtype": given["dtype"]}


def analysis_options(modules: dict, **options) -> dict[str, dict]:
    """name -> the options of its own (images, tasks, harmful ...) that an analysis takes: those
    its PARAMS name, when given (not None). An option no chosen analysis takes is a mistake."""
    given = {k: v for k, v in options.items() if v is not None}
    taken = {name: {k: v for k, v in given.items() if k in getattr(module, "PARAMS", ())} for name, module in modules.items()}
    for option in given:
        if not any(option in t for t in taken.values()):
            takers = [n for n in registry.ANALYSES if option in getattr(registry.get(n), "PARAMS", ())]
            raise InterpError(f"--{option} is for --analyses {','.join(takers) or '?'}; add it to --analyses")
    return taken


@contextmanager
def sigterm_as_interrupt():
    """A `kill` ends the scan like Ctrl-C, so the manifest says 'failed' rather than 'running'."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave the default
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
