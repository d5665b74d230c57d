"""The `interp` command: scan a model's heads, ablate heads on a prompt, explore results.

    interp scan [--model M] [--analyses retrieval,sinks] [--out DIR]   score every head, resumable
                [--set KEY=VALUE ...]                                  any parameter of the analyses
    interp params ANALYSIS                                               what --set takes for an analysis
    interp ablate --heads 12.3,14.0 --mode zero --prompt "..."          generation with/without heads
    interp explore DIR                                                   the Streamlit head explorer
    interp report DIR                                                    one HTML page + PNGs of every analysis
    interp report DIR_A DIR_B ...                                        one HTML page comparing their models

Commands parse their arguments, call the code that does the work and print: `scan` runs
interp.run.runner (the one scan loop, also `interp.scan` from Python; `--set` texts are read
there, by interp.run.params, which `params` lists), prints each analysis's headline
(interp.analyses.headline, also in the report), and the ablation
helpers live in interp.runtime.ablation, so the head explorer runs the same code as
`interp ablate`. Bad input ends in one red line on stderr ("error: ...") that says what to
do, and a non-zero exit code; InterpError is caught in one place (InterpGroup.invoke).
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from typer.core import TyperGroup

from interp import analyses as registry
from interp.analyses.head_sets import is_signed, ranked, value_text
from interp.base.errors import InterpError
from interp.run import distributed, runner
from interp.run.params import parameters, shown
from interp.run.results import ResultsDir, open_results
from interp.run.runner import ScanEvents
from interp.runtime.ablation import MODES_HELP, Mode, ablation_effect, make_intervention
from interp.runtime.bundled import BUNDLED_NAME

# torch, transformers and interp.runtime.models are imported inside the commands that need them,
# so `interp --help` and `interp explore` start in a second rather than ten.
EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130

out = Console()
err = Console(stderr=True)


def print_error(message: str) -> None:
    # soft_wrap keeps the message on one line whatever the terminal width.
    err.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)


class InterpGroup(TyperGroup):
    """Turns an InterpError from any command into the one-line error and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InterpError as e:
            print_error(str(e))
            raise typer.Exit(EXIT_BAD_INPUT) from None


app = typer.Typer(
    cls=InterpGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
    help="Find and steer the attention heads of transformer models.",
)


# ---- models --------------------------------------------------------------------------------------


def load(model: str | None, device: str | None = None, dtype: str = "float32"):
    from interp.runtime.models import load_model  # checks --device and --dtype before loading anything

    with loading(model):
        return load_model(model, device=device, dtype=dtype)


@contextmanager
def loading(model: str | None):
    """A status line while a model loads."""
    with err.status(f"loading {model or BUNDLED_NAME}"), no_transformers_progress_bars():
        yield


def parse_max_memory(text: str | None) -> dict | None:
    """--max-memory "0=20GiB,1=20GiB,cpu=64GiB" -> {0: "20GiB", 1: "20GiB", "cpu": "64GiB"}."""
    if not text:
        return None
    limits = {}
    for part in text.split(","):
        device, _, size = part.partition("=")
        if not device.strip() or not size.strip():
            raise InterpError(f"cannot read --max-memory '{text}': write DEVICE=SIZE pairs, e.g. 0=20GiB,cpu=64GiB")
        limits[int(device) if device.strip().isdigit() else device.strip()] = size.strip()
    return limits


@contextmanager
def no_transformers_progress_bars():
    """transformers' 'Loading weights' bars would print under our own status line."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


# ---- scan ----------------------------------------------------------------------------------------


class ScanPrinter(ScanEvents):
    """Says on stderr what the runner does (on torchrun's other ranks the consoles are quiet)."""

    def loading(self, source: str | None):
        return loading(source)

    def skipped(self, name: str, out: Path) -> None:
        err.print(f"[green]{name}[/green]: already done in {out}, skipped")

    def scanning(self, name: str, resumed: int) -> None:
        err.print(f"[bold]{name}[/bold]: scanning" + (f" (resuming after {resumed} saved samples)" if resumed else ""))

    def failed(self, name: str, error: Exception) -> None:
        if isinstance(error, InterpError):
            print_error(f"{name} failed: {error}")
        elif os.environ.get("INTERP_DEBUG") == "1":
            err.print_exception()
        else:  # a bug rather than bad input: say how to see where
            print_error(f"{name} failed: {type(error).__name__}: {error} (INTERP_DEBUG=1 shows the traceback)")

    def interrupted(self, name: str, out: Path) -> None:
        print_error(f"{name} interrupted: finished samples are saved in {out}; re-run the same command to resume")


def done_analyses(results: ResultsDir, modules: dict) -> list[str]:
    entries = results.manifest["analyses"]
    return [name for name in modules if entries.get(name, {}).get("status") == "done"]


def top_heads_table(results: ResultsDir, modules: dict, top: int) -> Table | None:
    """Rank x analysis table of the best heads, "layer.head (score)", by |score| with its sign
    where a score is signed; a column is headed by what its analysis's score measures (MEASURE),
    when the analysis says."""
    columns, signed = {}, []
    for name in done_analyses(results, modules):
        df = results.read_table(name)
        signed += [name] if is_signed(df["score"]) else []
        columns[name] = [f"{r['layer']}.{r['head']} ({value_text(r['score'], name in signed)})"
                         for r in ranked(df, k=top).to_dict("records")] or ["no scores"]
    if not columns:
        return None
    table = Table(title=f"top {top} heads", caption="layer.head (score)" + ("; signed: by |score|" if signed else ""))
    table.add_column("rank", justify="right")
    for name in columns:
        table.add_column(getattr(modules[name], "MEASURE", name))
    for rank in range(max(len(c) for c in columns.values())):
        table.add_row(str(rank + 1), *(c[rank] if rank < len(c) else "" for c in columns.values()))
    return table


def print_headlines(results: ResultsDir, modules: dict) -> None:
    """Each analysis's headline (interp.analyses.headline: the report's "what stands out" lists the same
    lines), one line each, unwrapped, so that logs and greps keep them whole."""
    for name in done_analyses(results, modules):
        out.print(f"[bold]{name}[/bold]")
        for line in registry.headline(name, results.read_tables(name)):
            out.print(f"  {escape(line)}", soft_wrap=True)


def timing_table(results: ResultsDir, names: list[str]) -> Table:
    """Wall time of each analysis's finishing run, as the manifest records it."""
    table = Table(title="wall time per analysis")
    table.add_column("analysis")
    table.add_column("status")
    table.add_column("wall time", justify="right")
    total, entries = 0.0, results.manifest["analyses"]  # the manifest is read from disk on each access
    for name in names:
        entry = entries.get(name, {})
        seconds = entry.get("seconds")
        total += seconds or 0.0
        table.add_row(name, str(entry.get("status")), "-" if seconds is None else f"{seconds / 60:.1f} min ({seconds:.0f} s)")
    table.add_row("all", "", f"{total / 60:.1f} min ({total:.0f} s)")
    return table


@app.command()
def scan(
    model: Optional[str] = typer.Option(None, help=f"HF id, local directory or .gguf file [default: bundled {BUNDLED_NAME}]"),
    analyses: Optional[str] = typer.Option(None, help=f"comma-separated analyses [default: all registered but {', '.join(sorted(registry.ON_REQUEST))}]"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="results directory [default: results/<model-name>]"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1, mps ... [default: cpu]"),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16"),
    device_map: Optional[str] = typer.Option(None, help="split the model over devices (accelerate): auto, balanced, sequential"),
    max_memory: Optional[str] = typer.Option(None, help="with --device-map: per-device limits, e.g. 0=20GiB,cpu=64GiB"),
    max_length: Optional[int] = typer.Option(None, min=1, help="longest prompt in tokens [default: per analysis]"),
    samples: Optional[int] = typer.Option(None, min=1, help="number of probes/prompts [default: per analysis]"),
    seed: int = typer.Option(0, help="random seed for probe sampling"),
    top: int = typer.Option(5, min=1, help="heads per analysis in the summary table"),
    images: Optional[Path] = typer.Option(None, help="image folder for --analyses vhd and sinks (jpg/png; optional prompts.txt)"),
    tasks: Optional[str] = typer.Option(None, help="circuits: tasks to compare, e.g. ioi,colored_objects,induction or .jsonl/.csv task files"),
    harmful: Optional[Path] = typer.Option(None, help="safety: harmful requests, one a line or a 'prompt' column [default: held-out AdvBench]"),
    harmless: Optional[Path] = typer.Option(None, help="safety: harmless requests [default: the project's held-out set]"),
    settings: Optional[list[str]] = typer.Option(
        None, "--set", metavar="KEY=VALUE",
        help="any parameter of the chosen analyses, repeatable: --set asr_samples=8 --set safety.extra_groups=trained:15.1+15.7 "
             "(ANALYSIS.KEY: that analysis alone); `interp params ANALYSIS` lists them"),
):
    """Score every head for each analysis; re-running the same command resumes.

    Writes DIR/<analysis>.parquet (one row per head) and DIR/manifest.json. Finished
    analyses are skipped and saved samples are not redone when the command runs again
    (with the same --set values: other values are another run). Every parameter of an
    analysis is set with --set KEY=VALUE; `interp params ANALYSIS` lists them with their
    types and defaults. Ends with each analysis's top heads and headline.
    """
    device = distributed.init(device)  # under torchrun & co: join the ranks first, so that rank 0 alone speaks
    out.quiet = err.quiet = not distributed.is_main()
    options = dict(images=images, tasks=tasks, harmful=harmful, harmless=harmless)  # each for the analyses that take it
    options = {k: None if v is None else str(v) for k, v in options.items()}  # paths as text, as the manifest records them
    try:
        outcome = runner.scan(model, analyses, out_dir, samples=samples, max_length=max_length, seed=seed, dtype=dtype,
                              device=device, device_map=device_map, max_memory=parse_max_memory(max_memory),
                              settings=settings or (), events=ScanPrinter(), **options)
    except runner.ScanInterrupted:
        raise typer.Exit(EXIT_INTERRUPTED) from None

    results = outcome.results
    if distributed.is_main():
        summary = top_heads_table(results, outcome.analyses, top)
        if summary is not None:
            out.print(summary)
        print_headlines(results, outcome.analyses)
        out.print(timing_table(results, list(outcome.analyses)))
    out.print(f"results in {results.path}; look at them with: interp explore {results.path}", soft_wrap=True)
    if outcome.failed:
        print_error(f"{', '.join(outcome.failed)} failed (see above and {results.manifest_path}); fix it and re-run to resume")
        raise typer.Exit(EXIT_FAILED)


# ---- params --------------------------------------------------------------------------------------


@app.command("params")
def list_params(analyses: str = typer.Argument(..., help="an analysis, or several comma-separated, e.g. safety")):
    """List the parameters of an analysis that `interp scan --set KEY=VALUE` sets: type, default, what it is."""
    for name, module in runner.analysis_modules(analyses).items():
        table = Table(title=f"{name}: interp scan --analyses {name} --set KEY=VALUE")
        for column in ("parameter", "type", "default", "what it is"):
            table.add_column(column)
        for param in parameters(module).values():
            kind = param.kind.name if param.kind else "(from Python only)"
            table.add_row(param.name, kind, escape(shown(param.default)), escape(param.help))
        out.print(table)


# ---- ablate --------------------------------------------------------------------------------------


@app.command()
def ablate(
    heads: str = typer.Option(..., help="heads as LAYER.HEAD, comma-separated, e.g. 12.3,14.0"),
    prompt: str = typer.Option(..., help="the prompt to generate from"),
    model: Optional[str] = typer.Option(None, help=f"HF id, local directory or .gguf file [default: bundled {BUNDLED_NAME}]"),
    mode: str = typer.Option("zero", help=MODES_HELP),
    max_new_tokens: int = typer.Option(32, min=1, help="tokens to generate"),
    chat: Optional[bool] = typer.Option(None, "--chat/--raw", help="wrap the prompt in the chat template [default: if the model has one]"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ..."),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16"),
):
    """Generate with and without the heads ablated, and show how the next-token distribution moves."""
    from interp.data import load_prompts
    from interp.runtime.interventions import parse_heads

    parsed_mode = Mode.parse(mode)
    parse_heads(heads)  # syntax errors before the slow model load; ranges are checked after it
    loaded = load(model, device, dtype)
    with err.status("computing mean head outputs over the bundled prompts" if parsed_mode.kind == "mean" else "preparing"):
        means = loaded.head_means(load_prompts()) if parsed_mode.kind == "mean" else None
        intervention = make_intervention(loaded, heads, parsed_mode, means)
    with err.status("generating"):
        effect = ablation_effect(loaded, intervention, prompt, max_new_tokens, chat)

    label = f"{parsed_mode} {','.join(f'{l}.{h}' for l, h in intervention.heads)}"
    side_by_side = Table(title=f"prompt: {prompt}", show_lines=True, expand=True)
    side_by_side.add_column("clean", ratio=1)
    side_by_side.add_column(f"with {label}", ratio=1)
    side_by_side.add_row(escape(effect.clean_text), escape(effect.ablated_text))
    out.print(side_by_side)

    tokens = Table(title="next token at the end of the prompt")
    for column in ("token", "p clean", "p ablated", "change"):
        tokens.add_column(column, justify="left" if column == "token" else "right")
    for row in effect.top_tokens.itertuples():
        tokens.add_row(escape(row.token), f"{row.p_clean:.3f}", f"{row.p_ablated:.3f}", f"{row.p_ablated - row.p_clean:+.3f}")
    out.print(tokens)
    changed = "the generated text changed" if effect.clean_text != effect.ablated_text else "the generated text is unchanged"
    out.print(Panel(f"KL(clean || ablated) = {effect.kl:.4g} nats; {changed}", expand=False))


# ---- explore -------------------------------------------------------------------------------------


def find_app() -> Path:
    """The head explorer: installed as interp.apps.head_explorer (apps/ is mapped into the
    package, so a wheel ships it), or apps/head_explorer.py of a source checkout."""
    import importlib.util

    import interp

    try:
        spec = importlib.util.find_spec("interp.apps.head_explorer")
    except ImportError:  # an editable install made before interp.apps existed
        spec = None
    candidates = [Path(spec.origin)] if spec is not None and spec.origin else []
    candidates.append(Path(interp.__file__).resolve().parent.parent / "apps" / "head_explorer.py")
    for path in candidates:
        if path.is_file():
            return path
    raise InterpError("the head explorer app (interp/apps/head_explorer.py) is missing: reinstall interp (pip install .)")


def streamlit_command(directory: Path, port: int | None, headless: bool) -> list[str]:
    command = [sys.executable, "-m", "streamlit", "run", str(find_app()), "--client.toolbarMode", "minimal"]
    if port is not None:
        command += ["--server.port", str(port)]
    if headless:
        command += ["--server.headless", "true"]
    return command + ["--", str(directory.resolve())]


@app.command()
def explore(
    directory: Path = typer.Argument(..., help="a results directory written by interp scan"),
    port: Optional[int] = typer.Option(None, help="port for the web app [default: streamlit's 8501]"),
    headless: bool = typer.Option(False, help="do not open a browser window"),
    check: bool = typer.Option(False, "--check", help="print the streamlit command that would run, and exit"),
):
    """Open the Streamlit head explorer on a results directory."""
    open_results(directory)  # a clear one-line error here beats a traceback in the browser
    if check:
        out.print(" ".join(streamlit_command(directory, port, headless)), soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(0)
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}  # no usage stats: no network
    try:
        code = subprocess.call(streamlit_command(directory, port, headless), env=env)
    except KeyboardInterrupt:  # Ctrl-C stops streamlit too; that is the normal way to quit
        code = 0
    raise typer.Exit(code)


# ---- report --------------------------------------------------------------------------------------


@app.command()
def report(
    directories: list[Path] = typer.Argument(..., help="a results directory written by interp scan; several: compare their models",
                                             metavar="DIR"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="where to write \\[default: DIR/report; with several DIRs: "
                                                                 "compare.html in the first DIR's parent]"),
    top: Optional[int] = typer.Option(None, min=1, help="top k heads per measure for the overlaps \\[default: 10, or a "
                                                          "quarter of the model's heads if fewer]"),
):
    """One self-contained HTML page (offline) and one PNG per analysis: heat maps, top heads,
    the atlas of every head, top-k overlaps and rank correlations of every pair of analyses.

    With several DIRs (each scanned from a different model): one page comparing the models, the
    papers' claims per model and whether they agree, the share of heads above the papers'
    thresholds, scores against relative depth, and which head types coincide within each model."""
    if len(directories) > 1:
        from interp.compare import write_comparison

        written = write_comparison(directories, out_dir, top)
        out.print(f"report: {written.html}", soft_wrap=True)
        return
    from interp.report import write_report

    written = write_report(directories[0], out_dir, top)
    for message in written.messages:
        print_error(message)
    out.print(f"report: {written.html}", soft_wrap=True)
    for path in written.pngs:
        out.print(f"png: {path}", soft_wrap=True)


if __name__ == "__main__":
    app()
