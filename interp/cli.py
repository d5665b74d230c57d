"""The `interp` command: scan a model's heads, ablate heads on a prompt, explore results.

    interp scan [--model M] [--analyses retrieval,sinks] [--out DIR]   score every head, resumable
    interp ablate --heads 12.3,14.0 --mode zero --prompt "..."          generation with/without heads
    interp explore DIR                                                   the Streamlit head explorer

Bad input ends in one red line on stderr ("error: ...") that says what to do, and a non-zero
exit code; InterpError is caught in one place (InterpGroup.invoke). The ablation helpers
below are plain functions so the head explorer runs the same code as `interp ablate`.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import click
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from typer.core import TyperGroup

from interp import analyses as registry
from interp.errors import InterpError
from interp.results import ResultsDir, open_results

# torch, transformers and interp.models are imported inside the commands that need them,
# so `interp --help` and `interp explore` start in a second rather than ten.
BUNDLED_NAME = "SmolLM2-135M-Instruct"  # = interp.models.BUNDLED_NAME (a test checks they agree)
EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
MODES_HELP = "zero | mean | uniform | scale=FACTOR (e.g. scale=2)"

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
    from interp.models import load_model  # checks --device and --dtype before loading anything

    with err.status(f"loading {model or BUNDLED_NAME}"), no_transformers_progress_bars():
        return load_model(model, device=device, dtype=dtype)


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


def model_name(model: str | None) -> str:
    """A short name for default output folders: 'SmolLM2-135M-Instruct', 'gpt2', 'my-model'."""
    if model is None:
        return BUNDLED_NAME
    path = Path(model.rstrip("/\\"))
    name = path.stem if path.suffix == ".gguf" else path.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name) or "model"


def model_identity(model, source: str | None) -> tuple[str, str | None]:
    """(source, revision or file hash) to record in the manifest, so that a later
    `interp explore` can reload the model and a different model cannot mix into DIR."""
    if source is None or source == "bundled":  # load_model's alias: record it as the bundled model itself
        return model.source, model.file_hash
    path = Path(source)
    if path.exists():  # local: absolute, so the explorer finds it from any working directory
        return str(path.resolve()), model.file_hash or weights_hash(path)
    return source, model.file_hash or getattr(model.hf.config, "_commit_hash", None)


def weights_hash(directory: Path, sample: int = 1 << 20) -> str | None:
    """A sha256 fingerprint of a local model directory's weight files: names, sizes and the
    first and last MiB of each. Hashing every byte of a 15 GB model on each (resumed) scan
    would cost a minute; these bytes already differ between any two trainings."""
    files = sorted(p for ext in ("*.safetensors", "*.bin", "*.pt") for p in directory.glob(ext)) if directory.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}\n".encode())
        with open(file, "rb") as f:
            digest.update(f.read(sample))
            f.seek(max(0, size - sample))
            digest.update(f.read(sample))
    return digest.hexdigest()


# ---- scan ----------------------------------------------------------------------------------------


def analysis_modules(names: str | None) -> dict:
    """name -> module for --analyses (default: every registered analysis)."""
    default = [n for n in registry.ANALYSES if n not in getattr(registry, "ON_REQUEST", ())]
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else default
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


def analysis_options(name: str, **options) -> dict:
    """Options only some analyses take (safety: --harmful/--harmless), passed on when given."""
    takes = {"safety": ("harmful", "harmless")}.get(name, ())
    return {k: str(v) for k, v in options.items() if k in takes and v is not None}


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


def top_heads_table(results: ResultsDir, names: list[str], top: int) -> Table | None:
    """Rank x analysis table of the best heads, "layer.head (score)"."""
    columns, entries = {}, results.manifest["analyses"]
    for name in names:
        if entries.get(name, {}).get("status") == "done":
            df = results.read_table(name).dropna(subset=["score"]).sort_values("score", ascending=False).head(top)
            columns[name] = [f"{r.layer}.{r.head} ({r.score:.3g})" for r in df.itertuples()] or ["no scores"]
    if not columns:
        return None
    table = Table(title=f"top {top} heads", caption="layer.head (score)")
    table.add_column("rank", justify="right")
    for name in columns:
        table.add_column(name)
    for rank in range(max(len(c) for c in columns.values())):
        table.add_row(str(rank + 1), *(c[rank] if rank < len(c) else "" for c in columns.values()))
    return table


@app.command()
def scan(
    model: Optional[str] = typer.Option(None, help=f"HF id, local directory or .gguf file [default: bundled {BUNDLED_NAME}]"),
    analyses: Optional[str] = typer.Option(None, help="comma-separated analyses [default: all registered]"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="results directory [default: results/<model-name>]"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1, mps ... [default: cpu]"),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16"),
    max_length: Optional[int] = typer.Option(None, min=1, help="longest prompt in tokens [default: per analysis]"),
    samples: Optional[int] = typer.Option(None, min=1, help="number of probes/prompts [default: per analysis]"),
    seed: int = typer.Option(0, help="random seed for probe sampling"),
    top: int = typer.Option(5, min=1, help="heads per analysis in the summary table"),
    harmful: Optional[Path] = typer.Option(None, help="safety: harmful requests, one a line or a 'prompt' column [default: held-out AdvBench]"),
    harmless: Optional[Path] = typer.Option(None, help="safety: harmless requests [default: the project's held-out set]"),
):
    """Score every head for each analysis; re-running the same command resumes.

    Writes DIR/<analysis>.parquet (one row per head) and DIR/manifest.json. Finished
    analyses are skipped and saved samples are not redone when the command runs again.
    """
    modules = analysis_modules(analyses)
    out_dir = out_dir or Path("results") / model_name(model)
    if out_dir.exists() and not out_dir.is_dir():
        raise InterpError(f"--out {out_dir} is a file; choose a directory")
    results = ResultsDir(out_dir)  # refuses a foreign or newer-format directory before the model loads
    loaded = load(model, device, dtype)
    results.set_model(*model_identity(loaded, model), loaded.layout.as_dict())

    given = dict(samples=samples, max_length=max_length, seed=seed, dtype=dtype)
    failed = []
    with sigterm_as_interrupt():
        for name, module in modules.items():
            extra = analysis_options(name, harmful=harmful, harmless=harmless)
            params = run_params(module, {**given, **extra})
            if results.is_done(name, params):
                err.print(f"[green]{name}[/green]: already done in {out_dir}, skipped")
                continue
            results.start_analysis(name, params)  # drops progress saved under other params
            resumed = len(results.load_progress(name))
            err.print(f"[bold]{name}[/bold]: scanning" + (f" (resuming after {resumed} saved samples)" if resumed else ""))
            try:
                tables = module.scan(loaded, samples=samples, max_length=max_length, seed=seed, results=results, **extra)
                results.write_tables(name, tables)
                results.finish_analysis(name)
            except KeyboardInterrupt:
                results.fail_analysis(name, "interrupted; re-run the same command to resume")
                print_error(f"{name} interrupted: finished samples are saved in {out_dir}; re-run the same command to resume")
                raise typer.Exit(EXIT_INTERRUPTED) from None
            except Exception as e:  # one failing analysis does not stop the others
                results.fail_analysis(name, e)
                if isinstance(e, InterpError):
                    print_error(f"{name} failed: {e}")
                elif os.environ.get("INTERP_DEBUG") == "1":
                    err.print_exception()
                else:  # a bug rather than bad input: say how to see where
                    print_error(f"{name} failed: {type(e).__name__}: {e} (INTERP_DEBUG=1 shows the traceback)")
                failed.append(name)

    summary = top_heads_table(results, list(modules), top)
    if summary is not None:
        out.print(summary)
    out.print(f"results in {out_dir}; look at them with: interp explore {out_dir}", soft_wrap=True)
    if failed:
        print_error(f"{', '.join(failed)} failed (see above and {results.manifest_path}); fix it and re-run to resume")
        raise typer.Exit(EXIT_FAILED)


# ---- ablate --------------------------------------------------------------------------------------


@dataclass
class Mode:
    """A parsed --mode: 'zero', 'mean', 'uniform' or 'scale' with its factor."""

    kind: str
    factor: float = 1.0

    @classmethod
    def parse(cls, text: str) -> "Mode":
        text = text.strip().lower()
        if text in ("zero", "mean", "uniform"):
            return cls(text)
        match = re.fullmatch(r"scale[=:]([-+0-9.eE]+)", text)
        if match:
            try:
                return cls("scale", float(match.group(1)))
            except ValueError:
                pass
        raise InterpError(f"unknown mode '{text}': use {MODES_HELP}")

    def __str__(self) -> str:
        return f"scale={self.factor:g}" if self.kind == "scale" else self.kind


def make_intervention(model, heads, mode: Mode, means: torch.Tensor | None = None):
    """The intervention for --mode; mean ablation uses `means` or the mean head outputs over
    the bundled prompts (43 forward passes, so callers that ablate often pass cached means)."""
    from interp.data import load_prompts
    from interp.interventions import MeanAblation, ScaleHead, UniformAttention, ZeroAblation

    heads = model.heads(heads)  # range-checked against the model's layout
    if mode.kind == "zero":
        return ZeroAblation(heads)
    if mode.kind == "uniform":
        return UniformAttention(heads)
    if mode.kind == "scale":
        return ScaleHead(heads, factor=mode.factor)
    return MeanAblation(heads, means=model.head_means(load_prompts()) if means is None else means)


@dataclass
class AblationEffect:
    clean_text: str
    ablated_text: str
    kl: float  # KL(clean || ablated) of the next-token distribution at the last prompt position, nats
    top_tokens: pd.DataFrame  # token, p_clean, p_ablated: the top tokens of either distribution


def ablation_effect(model, intervention, prompt: str, max_new_tokens: int = 32, chat: bool | None = None, top: int = 5) -> AblationEffect:
    if chat is None:  # instruct models answer better in their chat format; base models have none
        chat = getattr(model.tokenizer, "chat_template", None) is not None
    inputs = model.tokenize(prompt, chat=chat)
    clean = model.generate(inputs, max_new_tokens=max_new_tokens, output_logits=True)  # one prompt pass each side
    with model.intervene(intervention):
        ablated = model.generate(inputs, max_new_tokens=max_new_tokens, output_logits=True)
    log_p, log_q = clean.first_logits[0].float().log_softmax(-1), ablated.first_logits[0].float().log_softmax(-1)
    kl = float((log_p.exp() * (log_p - log_q)).sum())
    ids = list(dict.fromkeys(log_p.topk(top).indices.tolist() + log_q.topk(top).indices.tolist()))
    table = pd.DataFrame({
        "token": [repr(model.tokenizer.decode([i])) for i in ids],
        "p_clean": [float(log_p[i].exp()) for i in ids],
        "p_ablated": [float(log_q[i].exp()) for i in ids],
    }).sort_values("p_clean", ascending=False, ignore_index=True)
    return AblationEffect(clean.text, ablated.text, kl, table)


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
    from interp.interventions import parse_heads

    parsed_mode = Mode.parse(mode)
    parse_heads(heads)  # syntax errors before the slow model load; ranges are checked after it
    loaded = load(model, device, dtype)
    with err.status("computing mean head outputs over the bundled prompts" if parsed_mode.kind == "mean" else "preparing"):
        intervention = make_intervention(loaded, heads, parsed_mode)
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
    """apps/head_explorer.py: next to the interp package in a source checkout (pip install -e)."""
    import interp

    candidates = [Path(interp.__file__).resolve().parent / "apps" / "head_explorer.py",  # if packaged as interp/apps
                  Path(interp.__file__).resolve().parent.parent / "apps" / "head_explorer.py"]
    for path in candidates:
        if path.is_file():
            return path
    raise InterpError("the head explorer app (apps/head_explorer.py) is not installed: install interp from its source checkout with pip install -e .")


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
):
    """Open the Streamlit head explorer on a results directory."""
    open_results(directory)  # a clear one-line error here beats a traceback in the browser
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}  # no usage stats: no network
    try:
        code = subprocess.call(streamlit_command(directory, port, headless), env=env)
    except KeyboardInterrupt:  # Ctrl-C stops streamlit too; that is the normal way to quit
        code = 0
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
