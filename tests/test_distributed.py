"""Scans over several ranks (interp.run.distributed): 2 gloo processes under torchrun write the
same results directory as one process, and a scan whose rank was killed resumes each shard."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from interp.run.results import open_results

SCAN = ["--samples", "4", "--max-length", "200"]
BOTH = ["--analyses", "retrieval,sinks", *SCAN]
# One thread per process on both sides, as torchrun sets it: the same kernels, the same floats.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "INTERP_PROGRESS": "0"}

# `interp` with every save_progress logged per rank (and slowed down, so a rank can be killed mid-scan).
LOGGED_INTERP = """
import os, sys, time
from pathlib import Path
from interp.run.results import ResultsDir
real, delay, log = ResultsDir.save_progress, float(os.environ.get("SLOW", "0")), Path(os.environ["SAVE_LOG"])
def save(self, analysis, key, record):
    real(self, analysis, key, record)
    with open(log / f"rank{os.environ.get('RANK', '0')}.txt", "a") as f:
        f.write(f"{analysis}/{key}\\n")
    time.sleep(delay)
ResultsDir.save_progress = save
(log / f"pid{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))
from interp.cli import app
app(sys.argv[1:], prog_name="interp")
"""


def one_process(model, out):
    done = subprocess.run([sys.executable, "-m", "interp", "scan", "--model", model, *BOTH, "--out", out],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def torchrun(*args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *map(str, args)]


def assert_same_results(one: Path, two: Path, analyses=("retrieval", "sinks")):
    a, b = open_results(one), open_results(two)
    tables = [(analysis, table) for analysis, table in a.tables() if analysis in analyses]
    assert tables == b.tables()
    for analysis, table in tables:
        pd.testing.assert_frame_equal(a.read_table(analysis, table), b.read_table(analysis, table), check_exact=True)
    for name, entry in b.manifest["analyses"].items():
        assert entry["status"] == a.manifest["analyses"][name]["status"] == "done"
        assert entry["params"] == a.manifest["analyses"][name]["params"]
    assert a.manifest["model"] == b.manifest["model"]
    assert not list((two / ".progress").glob("*.jsonl"))  # progress of every rank is cleared at the end


@pytest.fixture(scope="module")
def reference(tiny_long_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("one-process") / "out"
    one_process(tiny_long_dir, out)
    return out


def test_two_gloo_ranks_write_what_one_process_writes(tiny_long_dir, reference, tmp_path):
    (tmp_path / "log").mkdir()
    script = tmp_path / "logged_interp.py"
    script.write_text(LOGGED_INTERP)
    done = subprocess.run(torchrun(script, "scan", "--model", tiny_long_dir, *BOTH, "--out", tmp_path / "out"),
                          env={**ENV, "SAVE_LOG": str(tmp_path / "log")}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_same_results(reference, tmp_path / "out")
    shards = [(tmp_path / "log" / f"rank{r}.txt").read_text().split() for r in range(2)]
    assert shards[0] and shards[1] and not set(shards[0]) & set(shards[1])  # both worked, on disjoint samples
    assert len(shards[0]) + len(shards[1]) == 8  # 4 probes + 4 prompts, each computed once
    assert done.stdout.count("top 5 heads") == 1  # rank 0 speaks for all


def test_a_killed_rank_resumes_its_shard(tiny_long_dir, reference, tmp_path):
    script, out, log = tmp_path / "logged_interp.py", tmp_path / "out", tmp_path / "log"
    script.write_text(LOGGED_INTERP)
    log.mkdir()
    command = torchrun(script, "scan", "--model", tiny_long_dir, "--analyses", "sinks", *SCAN, "--out", out)
    job = subprocess.Popen(command, env={**ENV, "SAVE_LOG": str(log), "SLOW": "1"},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rank1 = log / "rank1.txt"
    deadline = time.time() + 180
    while time.time() < deadline and not (rank1.exists() and rank1.read_text().strip()):
        time.sleep(0.1)
    os.kill(int((log / "pid1").read_text()), signal.SIGKILL)  # rank 1 dies after its first sample
    job.communicate(timeout=120)
    assert job.returncode != 0
    before = {r: (log / f"rank{r}.txt").read_text().split() for r in range(2)}
    assert before[1] and len(before[0]) + len(before[1]) < 4
    for r in range(2):
        (log / f"rank{r}.txt").unlink()

    done = subprocess.run(command, env={**ENV, "SAVE_LOG": str(log)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = {r: (log / f"rank{r}.txt").read_text().split() if (log / f"rank{r}.txt").exists() else [] for r in range(2)}
    redone = set(after[0]) | set(after[1])
    assert not redone & (set(before[0]) | set(before[1]))  # nothing saved before the kill is computed again
    assert len(redone) + len(set(before[0]) | set(before[1])) == 4
    assert_same_results(reference, out, analyses=("sinks",))


# ---- the mechanism on an analysis with two loops (the second needs the first's results) ---------------


@pytest.fixture
def plain_main(monkeypatch):
    """Spawned ranks re-import the parent's __main__ module; after an in-process Streamlit
    AppTest that is the app script. A bare __main__ keeps the ranks to the test's own code."""
    import types

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_loop_of_an_analysis_is_sharded_in_turn(tmp_path, plain_main):
    import json

    import torch.multiprocessing as mp

    from interp.run.results import ResultsDir
    from tests.two_pass import two_pass_rank, two_pass_scan

    alone = two_pass_scan(ResultsDir(tmp_path / "alone"), computed=[])
    mp.spawn(two_pass_rank, args=(2, free_port(), str(tmp_path / "two"), str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r, out in enumerate(ranks):
        assert [x["value"] for x in out["first"]] == [x["value"] for x in alone["first"]]
        assert [x["value"] for x in out["second"]] == [x["value"] for x in alone["second"]]
        assert [x["rank"] for x in out["first"] + out["second"]] == [i % 2 for i in range(7)] * 2  # round-robin shares
        assert out["attempts"] == 3  # loop 1 sharded, loop 2 sharded, then the tables from all records
    assert len(ranks[0]["computed"]) == 8 and len(ranks[1]["computed"]) == 6  # each sample once: 4 + 4 and 3 + 3


def test_an_error_in_one_rank_ends_every_rank(tmp_path, plain_main):
    import torch.multiprocessing as mp

    from interp.run.results import ResultsDir
    from tests.two_pass import failing_rank

    with pytest.raises(mp.ProcessExitedException):
        mp.spawn(failing_rank, args=(2, free_port(), str(tmp_path / "out"), str(tmp_path)), nprocs=2)
    # rank 1 failed; rank 0, waiting for its records, did not hang: both left through SystemExit
    assert [(tmp_path / f"rank{r}.exit").read_text() for r in range(2)] == ["SystemExit", "SystemExit"]
    assert {0, 2, 4} <= set(ResultsDir(tmp_path / "out").load_progress("failing"))  # rank 0's share is saved
