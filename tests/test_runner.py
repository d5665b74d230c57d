"""The scan runner called from Python (interp.scan), on a tiny random llama: what it writes, what it
tells, resume, and one failing analysis among others. tests/test_cli.py runs it through `interp scan`."""

import sys
from pathlib import Path

import pytest

import interp
import interp.analyses
from interp import InterpError, InterpModel
from interp.run import runner
from interp.run.results import open_results
from tests.tiny import build_hf, make_analysis, save_tiny_model, tiny_tokenizer


class Told(runner.ScanEvents):
    """Every event of a scan, in order."""

    def __init__(self):
        self.events = []

    def skipped(self, name, out):
        self.events.append(("skipped", name))

    def scanning(self, name, resumed):
        self.events.append(("scanning", name, resumed))

    def failed(self, name, error):
        self.events.append(("failed", name, str(error)))

    def interrupted(self, name, out):
        self.events.append(("interrupted", name))


@pytest.fixture
def analyses(monkeypatch):
    """Register fake analyses by name (tests/tiny.py make_analysis) -> the list of samples each computes."""

    def register(name, key="first", params=("samples", "max_length", "seed"), **kwargs):
        calls = []
        module = make_analysis(name, key, calls, **kwargs)
        module.PARAMS = params
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(interp.analyses.ANALYSES, name, module.__name__)
        return calls

    return register


@pytest.fixture(scope="module")
def model():
    return InterpModel(build_hf("llama"), tiny_tokenizer(), source="tiny-llama")


def test_interp_scan_is_the_runner():
    assert interp.scan is runner.scan


def test_a_scan_resumes_after_an_interrupt_and_then_skips(model, tmp_path, analyses):
    out = tmp_path / "out"
    calls = analyses("first_token", interrupt_after=3)
    told = Told()
    with pytest.raises(runner.ScanInterrupted):  # a KeyboardInterrupt: a notebook cell stops
        interp.scan(model, "first_token", out, samples=6, events=told)
    assert told.events == [("scanning", "first_token", 0), ("interrupted", "first_token")]
    results = open_results(out)
    assert results.manifest["analyses"]["first_token"]["status"] == "failed"
    assert sorted(results.load_progress("first_token")) == [0, 1, 2]

    calls = analyses("first_token")  # the same scan again, not interrupted this time
    told = Told()
    outcome = interp.scan(model, ["first_token"], out, samples=6, events=told)
    assert told.events == [("scanning", "first_token", 3)] and calls == [3, 4, 5]  # only the samples not saved
    assert outcome.failed == {} and list(outcome.analyses) == ["first_token"]
    entry = outcome.results.manifest["analyses"]["first_token"]
    assert entry["status"] == "done" and entry["seconds"] >= 0
    assert entry["params"] == {"samples": 6, "max_length": None, "seed": 0, "dtype": "float32"}  # the model's dtype
    assert outcome.results.manifest["model"]["source"] == "tiny-llama"
    assert len(outcome.results.read_table("first_token", "samples")) == 6 * 8

    told = Told()
    interp.scan(model, "first_token", out, samples=6, events=told)
    assert told.events == [("skipped", "first_token")] and calls == [3, 4, 5]


def test_one_failing_analysis_does_not_stop_the_others(model, tmp_path, analyses):
    analyses("broken", fail=True)
    calls = analyses("first_token")
    told = Told()
    outcome = interp.scan(model, "broken,first_token", tmp_path / "out", samples=2, events=told)
    assert list(outcome.failed) == ["broken"] and isinstance(outcome.failed["broken"], RuntimeError)
    assert told.events == [("scanning", "broken", 0), ("failed", "broken", "this analysis always fails"),
                           ("scanning", "first_token", 0)]
    entries = outcome.results.manifest["analyses"]
    assert entries["broken"]["status"] == "failed" and "always fails" in entries["broken"]["error"]
    assert entries["first_token"]["status"] == "done" and calls == [0, 1]


def test_a_source_is_loaded_and_names_the_default_out(tmp_path, analyses, monkeypatch):
    analyses("first_token")
    tiny = save_tiny_model(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    outcome = interp.scan(str(tiny), "first_token", samples=2)
    assert outcome.results.path == Path("results", "tiny")
    manifest = open_results(tmp_path / "results" / "tiny").manifest
    assert manifest["model"]["source"] == str(tiny.resolve()) and len(manifest["model"]["revision_or_hash"]) == 64
    assert manifest["analyses"]["first_token"]["params"]["dtype"] == "float32"


def test_options_go_to_the_analyses_that_take_them_as_given(model, tmp_path, analyses):
    analyses("first_token", params=("samples", "max_length", "seed", "lengths"))
    analyses("previous_token", "previous")
    outcome = interp.scan(model, "first_token,previous_token", tmp_path / "out", samples=2, lengths=(48,))
    entries = outcome.results.manifest["analyses"]
    assert entries["first_token"]["params"]["lengths"] == [48] and "lengths" not in entries["previous_token"]["params"]
    assert runner.analysis_options(outcome.analyses, lengths=(48,), images=None) == {
        "first_token": {"lengths": (48,)}, "previous_token": {}}  # Python values as they are
    with pytest.raises(InterpError, match="--lengths is for --analyses"):
        runner.analysis_options({"previous_token": outcome.analyses["previous_token"]}, lengths=(48,))


def test_loading_options_are_refused_for_a_loaded_model(model, tmp_path, analyses):
    analyses("first_token")
    with pytest.raises(InterpError, match="are for loading"):
        interp.scan(model, "first_token", tmp_path / "out", dtype="bfloat16")
    assert not (tmp_path / "out").exists()


def with_keywords(module, calls: list):
    """The fake analysis with typed keywords of its own (scale, tag), recording what its scan() is given."""
    inner = module.scan

    def scan(model, *, samples=None, max_length=None, seed=0, results=None, scale=1.0, tag="x"):
        calls.append({"samples": samples, "scale": scale, "tag": tag})
        return inner(model, samples=samples, max_length=max_length, seed=seed, results=results)

    module.scan, module.PARAMS = scan, ("samples", "max_length", "seed", "scale", "tag")


def test_settings_are_typed_routed_and_identify_the_run(model, tmp_path, analyses):
    analyses("first_token")
    analyses("previous_token", "previous")
    given = []
    for name in ("first_token", "previous_token"):
        with_keywords(sys.modules[f"fake_analysis_{name}"], given)
    out = tmp_path / "out"
    settings = ["scale=2.5", "previous_token.tag=b", "previous_token.samples=3"]
    outcome = interp.scan(model, "first_token,previous_token", out, samples=2, settings=settings)
    assert given == [{"samples": 2, "scale": 2.5, "tag": "x"}, {"samples": 3, "scale": 2.5, "tag": "b"}]
    entries = outcome.results.manifest["analyses"]
    assert entries["first_token"]["params"] == {"samples": 2, "max_length": None, "seed": 0, "scale": 2.5, "dtype": "float32"}
    assert entries["previous_token"]["params"] == {"samples": 3, "max_length": None, "seed": 0, "scale": 2.5, "tag": "b",
                                                   "dtype": "float32"}
    told = Told()
    interp.scan(model, "first_token,previous_token", out, samples=2, settings=settings, events=told)
    assert told.events == [("skipped", "first_token"), ("skipped", "previous_token")]  # the same run
    told = Told()
    interp.scan(model, "first_token,previous_token", out, samples=2, settings=["scale=3", *settings[1:]], events=told)
    assert told.events == [("scanning", "first_token", 0), ("scanning", "previous_token", 0)]  # another value: another run


def test_bad_settings_fail_before_the_model_loads(tmp_path, analyses, monkeypatch):
    analyses("first_token")
    monkeypatch.setattr("interp.runtime.models.load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(InterpError, match="unknown --set key 'scale'"):
        interp.scan(str(tmp_path / "no-model"), "first_token", tmp_path / "out", settings=["scale=2"])
    with_keywords(sys.modules["fake_analysis_first_token"], [])
    with pytest.raises(InterpError, match="first_token: scale given both as an option and with --set; keep one"):
        interp.scan(str(tmp_path / "no-model"), "first_token", tmp_path / "out", scale=2.0, settings=["scale=2"])
    assert not (tmp_path / "out").exists()
