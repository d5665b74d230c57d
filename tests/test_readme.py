"""Every command block of README.md runs, or at least parses, and shows what the README's text says.

The blocks are parsed from README.md itself, so the test follows the README when it changes; a new
block fails `test_every_command_block_is_checked` until it is given a check here.

Run for real (through typer's CliRunner, in a temporary working directory, so `--out results/...`
lands in tmp), with substitutions because the bundled model is too slow for the suite:
  * the main-job scan / report / explore block, the ablate block, the params / --set block, the head
    types block and the context-divergence block: `--model <tiny llama with 1024 positions>`, at most
    2 `--samples`, prompts and heads in the tiny model's made-up words (w1 w2 ..., heads 1.0,1.2),
    `causal_k` capped at the tiny model's limit (half its 8 heads), `explore --check` (no browser);
  * the circuits block: `--model <tiny llama over the circuit tasks' words>` (the tiny long model's
    made-up words would make every IOI answer <unk>), `--samples 2`;
  * the first ```python block with the bundled model as written (about 10 s);
  * the second ```python block (interp.scan of sinks,heads: about 20 s more on the bundled model)
    with interp.load_model replaced by the tiny model.
Only parsed (each flag accepted by the subcommand: invoked with a nonexistent model, the error
must be about the model, not an option), because they need what the suite cannot have:
  * torchrun with 8 processes on CUDA and an 8B model, the 70B --device-map block (real GPUs);
  * the safety blocks: `python -m interp.organisms ...` trains an organism (minutes to 17 minutes)
    and `--model refusal` / `heads-refusal` need that build; the organism CLI is checked by its
    --help and its recipe names instead.
The install and test blocks at the top are run by CI itself: only their place is checked.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interp import cli
from interp.run.results import open_results

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
TINY_HEADS = "1.0,1.2"
TINY_PROMPT = "w1 w2 w3 w4 w5"
MISSING_MODEL = "/nonexistent/model-for-readme-test"
runner = CliRunner()


def blocks(language: str = "") -> list[str]:
    """The fenced blocks of README.md in the given language ("" = plain, the shell commands)."""
    return [body for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", README, re.S | re.M) if lang == language]


def commands(block: str) -> list[list[str]]:
    """The commands of a block, one a line, without their trailing # comments."""
    return [args for line in block.splitlines() if (args := shlex.split(line, comments=True))]


COMMAND_BLOCKS = blocks("")
PYTHON_BLOCKS = blocks("python")


def block_with(*words: str) -> str:
    """The one command block whose text holds every word."""
    found = [b for b in COMMAND_BLOCKS if all(w in b for w in words)]
    assert len(found) == 1, f"{len(found)} README command blocks hold {words}"
    return found[0]


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def set_option(args: list[str], name: str, value) -> list[str]:
    args = list(args)
    if name in args:
        args[args.index(name) + 1] = str(value)
    else:
        args += [name, str(value)]
    return args


def small(args: list[str], model: Path) -> list[str]:
    """An `interp ...` command of the README made fit for a tiny model: its arguments after `interp`."""
    assert args[0] == "interp", args
    args = args[1:]
    if args[0] in ("scan", "ablate"):
        args = set_option(args, "--model", model)
    if args[0] == "scan":
        samples = option(args, "--samples")
        args = set_option(args, "--samples", min(int(samples or 2), 2))
        args = [re.sub(r"^causal_k=\d+$", "causal_k=2", a) for a in args]  # the tiny model allows at most half of 8 heads
    if args[0] == "ablate":
        args = set_option(set_option(args, "--heads", TINY_HEADS), "--prompt", TINY_PROMPT)
        args = set_option(args, "--max-new-tokens", 4)
    if args[0] == "explore":
        args = args + ["--check"]  # print the streamlit command instead of opening a browser
    return args


def invoke(args):
    result = runner.invoke(cli.app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run_block(block: str, model: Path) -> list:
    """Every command of the block, made small; each must succeed."""
    results = []
    for args in commands(block):
        result = invoke(small(args, model))
        assert result.exit_code == 0, (args, result.output)
        results.append(result)
    return results


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the README's relative --out results/... lands here
    return tmp_path


@pytest.fixture(scope="module")
def circuits_dir(tmp_path_factory):
    """A tiny random llama over word_tokenizer(): every word of the bundled circuit tasks is one token."""
    from tests.tiny import save_tiny_llama, word_tokenizer

    directory = tmp_path_factory.mktemp("tiny-circuits")
    save_tiny_llama(directory, vocab_size=len(word_tokenizer()), num_hidden_layers=3)
    word_tokenizer().save_pretrained(directory)
    return directory


# ---- which blocks there are ----------------------------------------------------------------------


def test_install_and_test_blocks_come_first():
    assert commands(COMMAND_BLOCKS[0])[0][:2] == ["pip", "install"]
    assert commands(COMMAND_BLOCKS[1]) == [["python", "-m", "pytest", "-q", "--durations=15"]]
    assert "<!-- install -->\n```" in README and "<!-- test -->\n```" in README


CHECKED = [  # words that pick out each block checked below, in README order
    ("interp scan --analyses sinks,retrieval,heads", "interp explore"),
    ("interp ablate",),
    ("interp params heads",),
    ("interp scan --analyses sinks,heads", "interp report"),
    ("--analyses context",),
    ("torchrun",),
    ("--device-map",),
    ("--analyses circuits",),
    ("python -m interp.organisms refusal",),
    ("--model heads-refusal",),
]


def test_every_command_block_is_checked():
    """A block added to the README needs a check here (run it, or at least parse it)."""
    assert len(COMMAND_BLOCKS) == 2 + len(CHECKED), COMMAND_BLOCKS[2:]
    for block, words in zip(COMMAND_BLOCKS[2:], CHECKED):
        assert all(w in block for w in words), (words, block)
    assert len(PYTHON_BLOCKS) == 2


# ---- blocks run for real on a tiny model ----------------------------------------------------------


def assert_scanned(out: Path, analyses: list[str], result) -> None:
    """What the README says a scan writes and prints."""
    manifest = open_results(out).manifest
    assert {a: manifest["analyses"][a]["status"] for a in analyses} == {a: "done" for a in analyses}
    assert (out / "manifest.json").is_file()
    for analysis in analyses:
        assert (out / f"{analysis}.parquet").is_file()
        assert f"\n{analysis}\n" in result.stdout  # its headline lines, under its name
    assert "top 5 heads" in result.stdout  # the table of top heads
    assert "wall time per analysis" in result.stdout


def assert_report(out: Path, analyses: list[str], result) -> None:
    assert (out / "report" / "report.html").is_file()
    for analysis in analyses:
        assert (out / "report" / f"{analysis}.png").is_file(), result.stdout
    assert f"report: {out / 'report' / 'report.html'}" in result.stdout.replace("\n", "")


def test_main_job_scan_report_explore(in_tmp, tiny_long_dir):
    block = block_with("interp scan --analyses sinks,retrieval,heads", "interp explore")
    scanned, reported, explored = run_block(block, tiny_long_dir)
    out = Path(option(commands(block)[0], "--out"))
    analyses = option(commands(block)[0], "--analyses").split(",")
    assert_scanned(out, analyses, scanned)
    assert "results in" in scanned.stdout
    assert_report(out, analyses, reported)
    assert "streamlit run" in explored.stdout and "head_explorer.py" in explored.stdout and str(out) in explored.stdout
    again = invoke(small(commands(block)[0], tiny_long_dir))  # the same command again skips finished analyses
    assert again.exit_code == 0 and again.stderr.count("already done") == len(analyses), again.output


def test_ablate(tiny_long_dir):
    (result,) = run_block(block_with("interp ablate"), tiny_long_dir)
    assert "KL(clean || ablated) = " in result.stdout  # how the next-token distribution moves
    assert "p clean" in result.stdout and "p ablated" in result.stdout  # and its top tokens
    assert f"with uniform {TINY_HEADS}" in result.stdout  # with and without the heads


def test_params_and_set(in_tmp, tiny_long_dir):
    block = block_with("interp params heads")
    params, scanned = run_block(block, tiny_long_dir)
    for word in ("lengths", "causal_k", "integer", "default"):  # its parameters: type, default, what each is
        assert word in params.stdout
    out = Path(option(commands(block)[1], "--out"))
    assert_scanned(out, ["heads"], scanned)


def test_head_types_and_report(in_tmp, tiny_long_dir):
    block = block_with("interp scan --analyses sinks,heads", "interp report")
    scanned, reported = run_block(block, tiny_long_dir)
    out = Path(option(commands(block)[0], "--out"))
    assert_scanned(out, ["sinks", "heads"], scanned)
    assert "induction" in scanned.stdout and "causal check" in scanned.stdout  # head types, checked causally
    assert_report(out, ["sinks", "heads"], reported)


def test_context_divergence(in_tmp, tiny_long_dir):
    block = block_with("--analyses context")
    (scanned,) = run_block(block, tiny_long_dir)
    assert_scanned(Path(option(commands(block)[0], "--out")), ["context"], scanned)
    assert "context divergence" in scanned.stdout


def test_circuits(in_tmp, circuits_dir):
    block = block_with("--analyses circuits")
    (args,) = commands(block)
    assert option(args, "--out") is None  # the default: results/<model name>
    (scanned,) = run_block(block, circuits_dir)
    out = in_tmp / "results" / circuits_dir.name
    for table in [f"circuits.{task}" for task in option(args, "--tasks").split(",")] + ["circuits.overlap"]:
        assert (out / f"{table}.parquet").is_file(), (table, sorted(p.name for p in out.iterdir()))
    assert "circuits" in scanned.stdout


# ---- blocks that only parse (GPUs, 70B models, organism builds) ---------------------------------------


def assert_parses(args: list[str]) -> None:
    """`interp ...` with the model replaced by a missing one: the error is about the model, not an option."""
    args = set_option(args[1:], "--model", MISSING_MODEL)
    result = invoke(args)
    assert result.exit_code == 2, result.output
    assert f"cannot load model '{MISSING_MODEL}'" in result.stderr, result.output
    assert "No such option" not in result.output and "Invalid value" not in result.output


def test_torchrun_block_parses():
    (args,) = commands(block_with("torchrun"))
    assert args[:4] == ["torchrun", "--nproc-per-node", "8", "-m"] and args[4] == "interp"
    args = ["interp", *args[5:]]
    assert option(args, "--device") == "cuda"
    import torch

    if not torch.cuda.is_available():  # the device is checked before the model: parsed, then refused here
        result = invoke(set_option(args[1:], "--model", MISSING_MODEL))
        assert result.exit_code == 2 and "no cuda device is available here" in result.stderr, result.output
        args = set_option(args, "--device", "cpu")
    assert_parses(args)


def test_device_map_block_parses():
    (args,) = commands(block_with("--device-map"))
    assert cli.parse_max_memory(option(args, "--max-memory")) is not None
    assert_parses(args)


def test_safety_blocks_parse(capsys):
    from interp.organisms import RECIPES
    from interp.organisms.__main__ import main

    for block in (block_with("python -m interp.organisms refusal"), block_with("--model heads-refusal")):
        for args in commands(block):
            if args[:3] == ["python", "-m", "interp.organisms"]:
                assert set(args[3:]) <= set(RECIPES), args  # an organism it knows
            else:
                assert option(args, "--model") in RECIPES
                assert_parses(args)
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    shown = capsys.readouterr().out
    for flag in re.findall(r"`python -m interp\.organisms --help`: (.*?)\.\)", README, re.S)[0].split("`"):
        if flag.startswith("--"):  # --rebuild, --no-eval, --eval-n N, as the README's text names them
            assert flag.split()[0] in shown, flag
    assert "INTERP_EVAL_N" in shown
    params = invoke(["params", "safety"])
    assert params.exit_code == 0 and "extra_groups" in params.stdout


# ---- the Python blocks ----------------------------------------------------------------------------------


def run_python(code: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_first_python_block_on_the_bundled_model(tmp_path):
    """As written (about 10 s): layout, a capture, an intervened generation."""
    out = run_python(PYTHON_BLOCKS[0], tmp_path)
    assert "HeadLayout(n_layers=30, n_heads=9" in out
    assert out.strip().splitlines()[-1].strip()  # the generated text


def test_scan_python_block_on_a_tiny_model(tmp_path, tiny_long_dir):
    """interp.scan as written, with interp.load_model giving the tiny model (the bundled one takes ~30 s)."""
    preamble = (f"import interp\n_load = interp.load_model\ninterp.load_model = lambda *a, **k: _load({str(tiny_long_dir)!r})\n"
                "model = interp.load_model()\n")
    after = "\nprint('FAILED', dict(scanned.failed))\nprint('ROWS', len(scanned.results.read_table('sinks')))\n"
    out = run_python(preamble + PYTHON_BLOCKS[1] + after, tmp_path)
    assert "FAILED {}" in out and "ROWS 8" in out, out
    assert (tmp_path / "results" / "smollm2" / "heads.parquet").is_file()
