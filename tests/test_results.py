import json
import os

import pandas as pd
import pytest

from interp.base.errors import InterpError
from interp.base.files import file_hash
from interp.run.manifest import package_versions
from interp.run.results import ResultsDir, open_results


def head_table(n_layers=2, n_heads=3):
    rows = [(layer, head, layer + head / 10) for layer in range(n_layers) for head in range(n_heads)]
    return pd.DataFrame(rows, columns=["layer", "head", "score"])


def stray_files(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_write_read_round_trip_and_listing(tmp_path):
    results = ResultsDir(tmp_path / "run")
    df = head_table().assign(method_extra=1.5)
    results.write_table("retrieval", df)
    probes = pd.DataFrame({"sample": [0, 1], "depth": [0.1, 0.9], "hit": [True, False]})
    results.write_table("retrieval", probes, table="probes")

    pd.testing.assert_frame_equal(results.read_table("retrieval"), df)
    pd.testing.assert_frame_equal(results.read_table("retrieval", "probes"), probes)
    assert results.tables() == [("retrieval", None), ("retrieval", "probes")]


def test_nothing_is_created_until_first_write(tmp_path):
    ResultsDir(tmp_path / "run").manifest
    assert not (tmp_path / "run").exists()


def test_manifest_lifecycle(tmp_path):
    results = ResultsDir(tmp_path)
    results.set_model("org/model", "abc123", {"n_layers": 2, "n_heads": 3, "n_kv_heads": 1})
    params = {"depths": (0.0, 0.5, 1.0), "lengths": [512]}
    results.start_analysis("retrieval", params)

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == "interp-results" and manifest["format_version"] == 1
    assert manifest["model"] == {
        "source": "org/model", "revision_or_hash": "abc123", "layout": {"n_layers": 2, "n_heads": 3, "n_kv_heads": 1},
    }
    entry = manifest["analyses"]["retrieval"]
    assert entry["status"] == "running" and entry["finished"] is None
    assert {"python", "torch", "transformers", "interp"} <= set(manifest["versions"])
    assert not results.is_done("retrieval", params)

    results.write_table("retrieval", head_table())
    results.finish_analysis("retrieval")
    entry = results.manifest["analyses"]["retrieval"]
    assert entry["status"] == "done" and entry["rows"] == 6 and entry["finished"]
    # Tuples and lists compare equal after the manifest's JSON round trip.
    assert results.is_done("retrieval", {"lengths": [512], "depths": [0.0, 0.5, 1.0]})
    assert not results.is_done("retrieval", {"depths": [0.5], "lengths": [512]})
    assert not results.is_done("sinks", {})


def test_is_done_needs_the_table_on_disk(tmp_path):
    results = ResultsDir(tmp_path)
    results.start_analysis("sinks", {})
    results.finish_analysis("sinks", rows=6)
    assert not results.is_done("sinks", {})


def test_fail_analysis_records_error(tmp_path):
    results = ResultsDir(tmp_path)
    results.start_analysis("sinks", {"T": 64})
    results.fail_analysis("sinks", RuntimeError("out of memory"))
    entry = results.manifest["analyses"]["sinks"]
    assert entry["status"] == "failed" and entry["error"] == "RuntimeError: out of memory"


def test_set_model_refuses_a_different_model(tmp_path):
    results = ResultsDir(tmp_path)
    results.set_model("org/model", "abc", {"n_layers": 2})
    results.set_model("org/model", "abc", {"n_layers": 2})  # same model again: resume is fine
    with pytest.raises(InterpError, match="new --out directory"):
        results.set_model("org/other", "def", {"n_layers": 2})


@pytest.mark.parametrize(
    "df, message",
    [
        (pd.DataFrame({"layer": [0], "score": [1.0]}), "missing column"),
        (pd.DataFrame({"layer": [0.0], "head": [0], "score": [1.0]}), "'layer' must be integer"),
        (pd.DataFrame({"layer": [0], "head": [0], "score": ["high"]}), "'score' must be numeric"),
        (pd.DataFrame({"layer": [0, 0], "head": [1, 1], "score": [1.0, 2.0]}), "duplicate"),
    ],
)
def test_bad_head_tables_are_refused(tmp_path, df, message):
    with pytest.raises(InterpError, match=message):
        ResultsDir(tmp_path).write_table("retrieval", df)
    assert not (tmp_path / "retrieval.parquet").exists()


def test_bad_head_table_on_disk_is_refused_on_read(tmp_path):
    pd.DataFrame({"layer": [0, 0], "head": [1, 1], "score": [1.0, 2.0]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(InterpError, match="duplicate"):
        ResultsDir(tmp_path).read_table("x")


def test_per_sample_tables_may_repeat_heads(tmp_path):
    df = pd.DataFrame({"layer": [0, 0], "head": [1, 1], "sample": [0, 1]})
    ResultsDir(tmp_path).write_table("retrieval", df, table="probes")
    pd.testing.assert_frame_equal(ResultsDir(tmp_path).read_table("retrieval", "probes"), df)  # both rows kept


def test_missing_table_and_bad_names(tmp_path):
    results = ResultsDir(tmp_path)
    results.write_table("sinks", head_table())
    with pytest.raises(InterpError, match=r"tables in .*: sinks\); run that analysis"):
        results.read_table("retrieval")
    with pytest.raises(InterpError, match="letters, digits"):
        results.write_table("../escape", head_table())
    with pytest.raises(InterpError, match="letters, digits"):
        results.write_table("retrieval", head_table(), table="a.b")


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    results = ResultsDir(tmp_path)
    original = head_table()
    results.write_table("retrieval", original)
    real_to_parquet = pd.DataFrame.to_parquet

    def crash_mid_write(self, path, *args, **kwargs):
        real_to_parquet(self.head(1), path, *args, **kwargs)  # some bytes reach the temp file...
        raise OSError("disk full")  # ...then the write dies

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        results.write_table("retrieval", head_table(n_layers=5))
    monkeypatch.undo()

    pd.testing.assert_frame_equal(results.read_table("retrieval"), original)
    assert stray_files(tmp_path) == []


def test_failed_manifest_write_keeps_previous_manifest(tmp_path, monkeypatch):
    results = ResultsDir(tmp_path)
    results.start_analysis("sinks", {"T": 64})
    before = (tmp_path / "manifest.json").read_text()

    def crash(*args, **kwargs):
        raise OSError("fsync failed")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        results.finish_analysis("sinks", rows=1)
    monkeypatch.undo()
    assert (tmp_path / "manifest.json").read_text() == before
    assert stray_files(tmp_path) == []


def test_open_results_errors(tmp_path):
    with pytest.raises(InterpError, match="does not exist; run `interp scan --out"):
        open_results(tmp_path / "missing")
    with pytest.raises(InterpError, match=r"no manifest.json\); run `interp scan --out"):
        open_results(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InterpError, match="unreadable"):
        open_results(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InterpError, match="not an interp results manifest"):
        open_results(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "interp-results", "format_version": 99}))
    with pytest.raises(InterpError, match="upgrade interp"):
        open_results(tmp_path)


def test_open_results_reads_a_written_dir(tmp_path):
    ResultsDir(tmp_path).write_table("sinks", head_table())
    ResultsDir(tmp_path).start_analysis("sinks", {})
    assert open_results(tmp_path).tables() == [("sinks", None)]


def test_progress_resumes_and_skips_torn_line(tmp_path):
    results = ResultsDir(tmp_path)
    results.save_progress("retrieval", "len=512,depth=0.5", {"hits": 3})
    results.save_progress("retrieval", 7, {"hits": 1})
    path = tmp_path / ".progress" / "retrieval.jsonl"
    with open(path, "a") as f:
        f.write('{"key": "torn", "rec')  # a kill in the middle of an append
    assert results.load_progress("retrieval") == {"len=512,depth=0.5": {"hits": 3}, 7: {"hits": 1}}

    # The next append starts on a fresh line, so it is not glued to the torn one.
    results.save_progress("retrieval", 7, {"hits": 2})
    assert results.load_progress("retrieval") == {"len=512,depth=0.5": {"hits": 3}, 7: {"hits": 2}}

    results.clear_progress("retrieval")
    assert results.load_progress("retrieval") == {}


def test_progress_is_dropped_on_finish_and_on_changed_params(tmp_path):
    results = ResultsDir(tmp_path)
    results.start_analysis("retrieval", {"lengths": [512]})
    results.save_progress("retrieval", "a", {"x": 1})
    results.start_analysis("retrieval", {"lengths": [512]})  # resume with same params keeps it
    assert results.load_progress("retrieval") == {"a": {"x": 1}}
    results.start_analysis("retrieval", {"lengths": [1024]})
    assert results.load_progress("retrieval") == {}

    results.save_progress("retrieval", "a", {"x": 1})
    results.write_table("retrieval", head_table())
    results.finish_analysis("retrieval")
    assert results.load_progress("retrieval") == {}


def test_file_hash_and_versions(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"abc")
    assert file_hash(path, chunk_size=2) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    versions = package_versions()
    assert versions["python"] and versions["pandas"]
