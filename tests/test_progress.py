"""Progress (interp.base.progress): bars on a terminal, periodic lines anywhere else, nothing with
INTERP_PROGRESS=0; loop policies still decide what a loop yields."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from interp.base import progress
from interp.base.progress import loops_run_by, note, track

REPO = Path(__file__).resolve().parent.parent
LINE = r"{}: (\d+)/{}, \d+:\d\d:\d\d elapsed(, \d+:\d\d:\d\d left)?"


@pytest.fixture
def no_flags(monkeypatch):
    monkeypatch.delenv("INTERP_PROGRESS", raising=False)
    monkeypatch.delenv("INTERP_PROGRESS_EVERY", raising=False)
    return monkeypatch


def test_mode_follows_the_flag_and_the_terminal(no_flags):
    no_flags.setattr(sys.stderr, "isatty", lambda: False)
    assert progress.mode() == "lines" and progress.line_every() == 30
    no_flags.setattr(sys.stderr, "isatty", lambda: True)
    assert progress.mode() == "bars"
    no_flags.setenv("INTERP_PROGRESS", "1")
    assert progress.mode() == "lines"  # forced, even on a terminal
    no_flags.setenv("INTERP_PROGRESS", "0")
    assert progress.mode() == "off"


def test_without_a_terminal_a_short_loop_prints_its_last_line_only(no_flags, capfd):
    assert list(track(range(5), "probes")) == list(range(5))
    err = capfd.readouterr().err
    assert re.fullmatch(r"probes: 5/5 done in 0:00:0\d\n", err), err


def test_lines_every_interval_with_time_left_and_a_note(no_flags, capfd):
    no_flags.setenv("INTERP_PROGRESS_EVERY", "0")
    for step in track(range(3), "training"):
        note(f"loss {step}.5")
    lines = capfd.readouterr().err.splitlines()
    assert [re.fullmatch(LINE.format(r"training \(loss \d.5\)", 3), line)[1] for line in lines[:3]] == ["1", "2", "3"]
    assert "0:00:00 left" in lines[0] and lines[1].startswith("training (loss 1.5): 2/3")
    assert lines[3].startswith("training (loss 2.5): 3/3 done in") and len(lines) == 4


def test_off_is_silent_and_a_broken_loop_prints_no_last_line(no_flags, capfd):
    no_flags.setenv("INTERP_PROGRESS", "0")
    assert list(track(iter("abc"), "quiet")) == ["a", "b", "c"]
    no_flags.setenv("INTERP_PROGRESS", "1")
    for item in track(range(10), "stopped"):
        break
    assert capfd.readouterr().err == "" and not progress._shown


def test_a_policy_decides_what_loops_yield_and_bar_shows_it(no_flags, capfd):
    def every_other(items, description, total):
        return progress.bar(list(items)[::2], f"{description} (half)")

    with loops_run_by(every_other):
        assert list(track(range(6), "sharded")) == [0, 2, 4]
    assert list(track(range(2), "plain")) == [0, 1]  # the policy is gone with its block
    err = capfd.readouterr().err.splitlines()
    assert [line.split(" done")[0] for line in err] == ["sharded (half): 3/3", "plain: 2/2"]


def test_a_scan_logged_to_a_file_shows_regular_lines(tiny_long_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "INTERP_PROGRESS"} | {"INTERP_PROGRESS_EVERY": "0"}
    log = tmp_path / "scan.log"
    with log.open("w") as stderr:
        done = subprocess.run([sys.executable, "-m", "interp", "scan", "--model", str(tiny_long_dir), "--analyses", "sinks",
                               "--samples", "4", "--max-length", "200", "--out", str(tmp_path / "out")],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr, timeout=600)
    text = log.read_text()
    assert done.returncode == 0, text
    counts = [int(m[1]) for m in re.finditer(LINE.format("sinks", 4), text)]
    assert counts == [1, 2, 3, 4], text
    assert re.search(r"^sinks: 4/4 done in \d+:\d\d:\d\d$", text, flags=re.M), text
    assert "\x1b[" not in text  # no bar's escape codes in a log
