"""The `interp` command through typer's CliRunner, on a tiny random llama saved to disk.

Until the real analyses exist, `first_token` and `previous_token` (tests/tiny.py's make_analysis) stand in
for them: small but real analyses (they run the model and capture attention patterns) that save
per-sample progress and resume from it, exactly as the analysis contract asks.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import interp.analyses
from interp import cli
from interp.runtime.ablation import Mode, ablation_effect, make_intervention
from interp.run.results import ResultsDir, open_results
from tests.tiny import build_hf, make_analysis, save_tiny_model, tiny_tokenizer

REPO = Path(__file__).resolve().parent.parent
REAL_SAVE_PROGRESS = ResultsDir.save_progress
runner = CliRunner()


# ---- a small, real analysis with resume -----------------------------------------------------------


@pytest.fixture
def analyses(monkeypatch):
    """Register fake analyses by name: analyses("first_token", key="first") -> list of computed samples."""
    registered = {}

    def register(name, key="first", **kwargs):
        calls = []
        module = make_analysis(name, key, calls, **kwargs)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(interp.analyses.ANALYSES, name, module.__name__)
        registered[name] = calls
        return calls

    return register


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def invoke(*args):
    result = runner.invoke(cli.app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def scan(tiny_dir, out, analyses="first_token", *extra):
    return invoke("scan", "--model", tiny_dir, "--analyses", analyses, "--out", out, *extra)


# ---- scan -------------------------------------------------------------------------------------------


def test_scan_writes_valid_results(tiny_dir, tmp_path, analyses):
    analyses("first_token", "first")
    analyses("previous_token", "previous")
    result = scan(tiny_dir, tmp_path / "out", "first_token,previous_token", "--samples", 4, "--max-length", 12)
    assert result.exit_code == 0, result.output

    results = open_results(tmp_path / "out")
    manifest = results.manifest
    assert manifest["model"]["source"] == str(tiny_dir.resolve())
    assert len(manifest["model"]["revision_or_hash"]) == 64  # sha256 of the weights
    assert manifest["model"]["layout"]["n_layers"] == 2 and manifest["model"]["layout"]["n_heads"] == 4
    for name in ("first_token", "previous_token"):
        entry = manifest["analyses"][name]
        assert entry["status"] == "done" and entry["rows"] == 8
        assert entry["params"] == {"samples": 4, "max_length": 12, "seed": 0, "dtype": "float32"}
        heads = results.read_table(name)
        assert len(heads) == 8 and heads["score"].between(0, 1).all()
        assert len(results.read_table(name, "samples")) == 4 * 8
    assert not (tmp_path / "out" / ".progress" / "first_token.jsonl").exists()  # superseded by the table
    # the summary names the best head of each analysis
    best = results.read_table("first_token").nlargest(1, "score")
    assert "top 5 heads" in result.stdout and f"{best.layer.item()}.{best['head'].item()}" in result.stdout
    assert f"interp explore {tmp_path / 'out'}" in result.stdout
    # the wall time of each analysis is recorded and printed
    assert all(manifest["analyses"][name]["seconds"] >= 0 for name in ("first_token", "previous_token"))
    assert "wall time per analysis" in result.stdout


def test_the_summary_heads_a_column_with_what_the_analysis_measures(tiny_dir, tmp_path, analyses, monkeypatch):
    analyses("first_token")
    analyses("previous_token", "previous")
    monkeypatch.setattr(sys.modules["fake_analysis_first_token"], "MEASURE", "first-key mass", raising=False)
    result = scan(tiny_dir, tmp_path / "out", "first_token,previous_token", "--samples", 2)
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "rank" in line)
    assert "first-key mass" in header and "previous_token" in header and "first_token" not in header


def test_default_out_is_results_slash_model_name(tiny_dir, tmp_path, analyses, monkeypatch):
    analyses("first_token")
    monkeypatch.chdir(tmp_path)
    assert invoke("scan", "--model", tiny_dir, "--analyses", "first_token", "--samples", 2).exit_code == 0
    assert (tmp_path / "results" / tiny_dir.name / "first_token.parquet").is_file()


def test_interrupted_scan_resumes_without_redoing_samples(tiny_dir, tmp_path, analyses):
    calls = analyses("first_token", interrupt_after=3)
    first = scan(tiny_dir, tmp_path / "out", "first_token", "--samples", 6)
    assert first.exit_code == 130
    assert "interrupted" in first.stderr and "re-run the same command" in first.stderr
    results = open_results(tmp_path / "out")
    assert results.manifest["analyses"]["first_token"]["status"] == "failed"
    assert sorted(results.load_progress("first_token")) == [0, 1, 2]
    assert not (tmp_path / "out" / "first_token.parquet").exists()

    calls = analyses("first_token")  # the same command again, not interrupted this time
    second = scan(tiny_dir, tmp_path / "out", "first_token", "--samples", 6)
    assert second.exit_code == 0, second.output
    assert calls == [3, 4, 5]  # only the samples not saved before
    assert results.manifest["analyses"]["first_token"]["status"] == "done"
    assert len(results.read_table("first_token", "samples")) == 6 * 8

    third = scan(tiny_dir, tmp_path / "out", "first_token", "--samples", 6)
    assert third.exit_code == 0 and calls == [3, 4, 5] and "already done" in third.stderr
    calls.clear()
    other_params = scan(tiny_dir, tmp_path / "out", "first_token", "--samples", 5)  # other params: a new run
    assert other_params.exit_code == 0 and calls == [0, 1, 2, 3, 4]


def test_a_failing_analysis_is_recorded_and_the_others_still_run(tiny_dir, tmp_path, analyses):
    analyses("broken", fail=True)
    analyses("first_token")
    result = scan(tiny_dir, tmp_path / "out", "broken,first_token", "--samples", 2)
    assert result.exit_code == 1
    assert "error: broken failed: RuntimeError: this analysis always fails (INTERP_DEBUG=1 shows the traceback)" in result.stderr
    assert "Traceback" not in result.output
    entries = open_results(tmp_path / "out").manifest["analyses"]
    assert entries["broken"]["status"] == "failed" and "always fails" in entries["broken"]["error"]
    assert entries["first_token"]["status"] == "done"


KILLED_SCAN = """
import sys, time
from tests.tiny import make_analysis
import interp.analyses
module = make_analysis("first_token", "first", calls=[])
real_scan = module.scan
def slow_scan(model, **kwargs):  # slow down every forward pass so the kill lands mid-scan
    forward = model.__class__.__call__
    def slow(self, *args, **kw):
        time.sleep(0.3)
        return forward(self, *args, **kw)
    model.__class__.__call__ = slow
    return real_scan(model, **kwargs)
module.scan = slow_scan
sys.modules[module.__name__] = module
interp.analyses.ANALYSES["first_token"] = module.__name__
from interp.cli import app
app(sys.argv[1:], prog_name="interp")
"""


def test_a_killed_scan_keeps_finished_samples(tiny_dir, tmp_path, analyses):
    out = tmp_path / "out"
    args = ["--model", str(tiny_dir), "--analyses", "first_token", "--samples", "40", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-c", KILLED_SCAN, "scan", *args], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = out / ".progress" / "first_token.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not progress.exists() or len(progress.read_text().splitlines()) < 2):
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    results = open_results(out)
    assert results.manifest["analyses"]["first_token"]["status"] == "failed"
    saved = len(results.load_progress("first_token"))
    assert 2 <= saved < 40

    calls = analyses("first_token")
    assert scan(tiny_dir, out, "first_token", "--samples", 40).exit_code == 0
    assert len(calls) == 40 - saved


def test_scan_takes_any_parameter_with_set_and_prints_each_headline(tiny_dir, tmp_path, analyses):
    analyses("first_token")
    analyses("previous_token", "previous")
    given = []
    for name in ("first_token", "previous_token"):  # keywords of their own: scale (a number) and tag (text)
        module, inner = sys.modules[f"fake_analysis_{name}"], sys.modules[f"fake_analysis_{name}"].scan

        def keyworded(model, *, samples=None, max_length=None, seed=0, results=None, scale=1.0, tag="x", inner=inner):
            given.append((scale, tag))
            return inner(model, samples=samples, max_length=max_length, seed=seed, results=results)

        module.scan, module.PARAMS = keyworded, ("samples", "max_length", "seed", "scale", "tag")
    args = ["first_token,previous_token", "--samples", 2, "--set", "scale=2.5", "--set", "first_token.tag=b"]
    result = scan(tiny_dir, tmp_path / "out", *args)
    assert result.exit_code == 0, result.output
    assert given == [(2.5, "b"), (2.5, "x")]
    results = open_results(tmp_path / "out")
    assert results.manifest["analyses"]["first_token"]["params"]["tag"] == "b"
    for name in ("first_token", "previous_token"):  # the analyses' headline, one line each, as the report shows it
        lines = interp.analyses.headline(name, results.read_tables(name))
        assert lines[0].startswith("score: top ") and f"  {lines[0]}\n" in result.stdout
    assert "already done" in scan(tiny_dir, tmp_path / "out", *args).stderr
    again = scan(tiny_dir, tmp_path / "out", *args[:-1], "first_token.tag=c").stderr  # another run of first_token only
    assert "first_token: scanning" in again and "previous_token: already done" in again


def test_a_signed_score_ranks_by_its_size_and_shows_its_sign(tiny_dir, tmp_path, analyses):
    analyses("first_token")
    module = sys.modules["fake_analysis_first_token"]
    inner = module.scan

    def signed(model, **kwargs):  # first-key attention less its mean: heads far below matter as much as heads far above
        tables = inner(model, **kwargs)
        return {**tables, "heads": tables["heads"].assign(score=lambda df: df["score"] - df["score"].mean())}

    module.scan = signed
    result = scan(tiny_dir, tmp_path / "out", "first_token", "--samples", 2, "--top", 8)
    assert result.exit_code == 0, result.output
    heads = open_results(tmp_path / "out").read_table("first_token")
    assert (heads["score"] < 0).any() and (heads["score"] > 0).any()
    by_size = heads.reindex(heads["score"].abs().sort_values(ascending=False).index)
    shown = [f"{r.layer}.{r.head} ({r.score:+.3g})" for r in by_size.itertuples()]
    table = result.stdout.split("top 8 heads")[1].split("layer.head (score)")[0]
    assert [cell for row in table.splitlines() for cell in shown if cell in row] == shown


def test_params_lists_each_parameter_with_its_type_default_and_meaning():
    result = invoke("params", "safety")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert {"asr_samples", "random_draws", "extra_groups", "samples", "harmful"} <= set(rows)
    assert "integer" in rows["asr_samples"] and "32" in rows["asr_samples"]
    assert "head groups" in rows["extra_groups"]
    help_text = " ".join(invoke("scan", "--help").stdout.split())
    assert "--set" in help_text and "interp params ANALYSIS" in help_text


# ---- ablate -----------------------------------------------------------------------------------------


def test_ablate_shows_the_change_for_heads_that_matter(tiny_dir):
    every_head = ",".join(f"{layer}.{head}" for layer in range(2) for head in range(4))
    result = invoke("ablate", "--model", tiny_dir, "--heads", every_head, "--mode", "scale=20",
                    "--prompt", "w1 w2 w3 w4 w5", "--max-new-tokens", 6)
    assert result.exit_code == 0, result.output
    assert "the generated text changed" in result.stdout
    kl = float(result.stdout.split("KL(clean || ablated) = ")[1].split()[0])
    assert kl > 1e-3
    assert "p clean" in result.stdout and "p ablated" in result.stdout


@pytest.mark.parametrize("mode", ["zero", "mean", "uniform", "scale=0.5"])
def test_every_ablation_mode_moves_the_next_token_distribution(tiny_dir, mode):
    result = invoke("ablate", "--model", tiny_dir, "--heads", "1.0,1.2", "--mode", mode,
                    "--prompt", "w7 w8 w9", "--max-new-tokens", 3)
    assert result.exit_code == 0, result.output
    assert float(result.stdout.split("KL(clean || ablated) = ")[1].split()[0]) > 0


def test_the_cli_module_imports_no_torch():
    # --help and explore start in a second: interp.cli names the bundled model without loading torch
    done = subprocess.run([sys.executable, "-c", "import sys, interp.cli; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_ablation_effect_reports_kl_and_top_tokens():
    from interp import InterpModel

    model = InterpModel(build_hf("llama"), tiny_tokenizer())
    same = ablation_effect(model, make_intervention(model, "0.0", Mode("scale", 1.0)), "w1 w2", 4)
    assert same.kl == pytest.approx(0, abs=1e-6) and same.clean_text == same.ablated_text
    assert list(same.top_tokens.columns) == ["token", "p_clean", "p_ablated"] and len(same.top_tokens) == 5


# ---- explore ----------------------------------------------------------------------------------------


def test_explore_launches_streamlit_on_the_app(tiny_dir, tmp_path, analyses, monkeypatch):
    analyses("first_token")
    assert scan(tiny_dir, tmp_path / "out", "first_token", "--samples", 2).exit_code == 0
    launched = {}

    def fake_call(command, env):
        launched.update(command=command, env=env)
        return 0

    monkeypatch.setattr(cli.subprocess, "call", fake_call)
    assert invoke("explore", tmp_path / "out", "--port", 8765, "--headless").exit_code == 0
    command = launched["command"]
    assert command[1:4] == ["-m", "streamlit", "run"] and Path(command[4]).is_file()
    assert Path(command[4]) == REPO / "apps" / "head_explorer.py"
    assert command[-2:] == ["--", str((tmp_path / "out").resolve())]
    assert ["--server.port", "8765"] == command[command.index("--server.port"):][:2]
    assert launched["env"]["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"


# ---- bad input: one line, no traceback, non-zero exit -------------------------------------------------


BAD_INPUTS = ["unknown model path", "unknown model id", "unknown analysis", "empty analyses", "foreign out dir",
              "out is a file", "bad dtype", "bad device", "head out of range", "head syntax", "bad mode", "missing dir", "not a dir", "dir without manifest",
              "unknown set key", "bad set value", "set without value", "set for an analysis not chosen", "params of an unknown analysis"]


def bad_inputs(tiny_dir, tmp_path):
    """case -> (arguments, what the error line must say)."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text(json.dumps({"something": "else"}))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    ablate = ["ablate", "--model", tiny_dir, "--prompt", "w1 w2"]
    return {
        "unknown model path": (["scan", "--model", tmp_path / "no-such-model", "--analyses", "first_token"], "cannot load model"),
        "unknown model id": (["ablate", "--model", "no-such-org/no-such-model", "--heads", "0.0", "--prompt", "hi"], "cannot load model"),
        "unknown analysis": (["scan", "--model", tiny_dir, "--analyses", "first_token,nonsense"], "unknown analysis 'nonsense'"),
        "empty analyses": (["scan", "--analyses", ","], "--analyses is empty"),
        "foreign out dir": (["scan", "--model", tiny_dir, "--analyses", "first_token", "--out", foreign], "not an interp results manifest"),
        "out is a file": (["scan", "--model", tiny_dir, "--analyses", "first_token", "--out", a_file], "is a file; choose a directory"),
        "bad dtype": (["scan", "--model", tiny_dir, "--analyses", "first_token", "--dtype", "float8"], "unknown dtype"),
        "bad device": ([*ablate, "--heads", "0.1", "--device", "gpu7"], "unknown device 'gpu7'"),
        "head out of range": ([*ablate, "--heads", "2.0"], "head 2.0 is out of range"),
        "head syntax": ([*ablate, "--heads", "3-1"], "cannot read head '3-1'"),
        "bad mode": ([*ablate, "--heads", "0.1", "--mode", "halve"], "unknown mode 'halve'"),
        "missing dir": (["explore", tmp_path / "missing"], "does not exist"),
        "not a dir": (["explore", a_file], "is a file"),
        "dir without manifest": (["explore", tmp_path], "not an interp results directory"),
        "unknown set key": (["scan", "--model", tiny_dir, "--analyses", "first_token", "--set", "asr_samples=8"],
                            "unknown --set key 'asr_samples': valid keys are first_token: samples, max_length, seed (interp params"),
        "bad set value": (["scan", "--model", tiny_dir, "--analyses", "first_token", "--set", "samples=many"],
                          "--set samples=many: first_token's samples takes integer"),
        "set without value": (["scan", "--model", tiny_dir, "--analyses", "first_token", "--set", "samples"], "write KEY=VALUE"),
        "set for an analysis not chosen": (["scan", "--model", tiny_dir, "--analyses", "first_token", "--set", "safety.samples=2"],
                                           "safety is not among the chosen analyses (first_token)"),
        "params of an unknown analysis": (["params", "nonsense"], "unknown analysis 'nonsense'"),
    }


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gives_one_line_error(case, tiny_dir, tmp_path, analyses, monkeypatch):
    import huggingface_hub.constants

    # an unknown model id must not wait for the network (the env var is read at import only)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    analyses("first_token")
    args, expected = bad_inputs(tiny_dir, tmp_path)[case]
    result = invoke(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output


# ---- the real analyses --------------------------------------------------------------------------------


def test_scan_retrieval_and_sinks_on_a_tiny_model(tiny_long_dir, tmp_path):
    out = tmp_path / "out"
    args = ["scan", "--model", tiny_long_dir, "--analyses", "retrieval,sinks", "--samples", 2, "--max-length", 300, "--out", out]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    results = open_results(out)
    assert {name: entry["status"] for name, entry in results.manifest["analyses"].items()} == {"retrieval": "done", "sinks": "done"}
    assert len(results.read_table("retrieval")) == 8 and len(results.read_table("sinks")) == 8
    tables = results.tables()
    assert ("retrieval", "probes") in tables and ("sinks", "tokens") in tables
    assert len(results.read_table("retrieval", "probes")) == 2

    again = invoke(*args)
    assert again.exit_code == 0 and again.stderr.count("already done") == 2


def count_saves(monkeypatch, interrupt_after: int | None = None) -> list:
    """Record every results.save_progress call; optionally Ctrl-C right after the n-th."""
    saves = []

    def save(self, analysis, key, record):
        REAL_SAVE_PROGRESS(self, analysis, key, record)
        saves.append(key)
        if interrupt_after is not None and len(saves) == interrupt_after:
            raise KeyboardInterrupt

    monkeypatch.setattr(ResultsDir, "save_progress", save)  # replaces any earlier count_saves patch
    return saves


@pytest.mark.parametrize("analysis", ["retrieval", "sinks"])
def test_real_analyses_resume_after_ctrl_c(analysis, tiny_long_dir, tmp_path, monkeypatch):
    args = ["--model", tiny_long_dir, "--analyses", analysis, "--samples", 3, "--max-length", 300]
    uninterrupted = count_saves(monkeypatch)
    assert invoke("scan", *args, "--out", tmp_path / "whole").exit_code == 0
    assert len(uninterrupted) >= 3  # one save per sample at least

    count_saves(monkeypatch, interrupt_after=2)
    interrupted = invoke("scan", *args, "--out", tmp_path / "out")
    assert interrupted.exit_code == 130 and open_results(tmp_path / "out").manifest["analyses"][analysis]["status"] == "failed"
    resumed = count_saves(monkeypatch)
    assert invoke("scan", *args, "--out", tmp_path / "out").exit_code == 0
    assert len(resumed) == len(uninterrupted) - 2  # the two saved units of work were not redone
    whole, out = open_results(tmp_path / "whole"), open_results(tmp_path / "out")
    pd.testing.assert_frame_equal(whole.read_table(analysis), out.read_table(analysis))


@pytest.mark.bundled
def test_bundled_scan_of_retrieval_and_sinks(tmp_path):
    """The main job, small: both analyses on the bundled SmolLM2 into one directory."""
    out = tmp_path / "smol"
    result = invoke("scan", "--analyses", "sinks", "--samples", 4, "--out", out)
    assert result.exit_code == 0, result.output
    result = invoke("scan", "--analyses", "retrieval", "--samples", 1, "--max-length", 256, "--out", out)
    assert result.exit_code == 0, result.output
    results = open_results(out)
    model = results.manifest["model"]
    assert model["source"] == "SmolLM2-135M-Instruct" and len(model["revision_or_hash"]) == 64
    assert (model["layout"]["n_layers"], model["layout"]["n_heads"]) == (30, 9)
    sinks, retrieval = results.read_table("sinks"), results.read_table("retrieval")
    assert len(sinks) == len(retrieval) == 270
    assert sinks["score"].max() > 0.5  # SmolLM2 has attention-sink heads
    assert len(results.read_table("retrieval", "probes")) == 1
    assert "top 5 heads" in result.stdout and "retrieval" in result.stdout  # the summary table
    assert "already done" in invoke("scan", "--analyses", "sinks", "--samples", 4, "--out", out).stderr


@pytest.mark.bundled
def test_bundled_ablate_of_a_head_that_matters():
    # Zeroing head 1.5 moves SmolLM2's next-token distribution more than any other single head
    # on short chat prompts (KL 1.36 nats on "What is the capital of France?"), and changes this answer.
    result = invoke("ablate", "--heads", "1.5", "--prompt", "Complete the sentence: The weather today is", "--max-new-tokens", 12)
    assert result.exit_code == 0, result.output
    assert "the generated text changed" in result.stdout
    assert float(result.stdout.split("KL(clean || ablated) = ")[1].split()[0]) > 0.1
