"""Each analysis's headline (interp.analyses.headline): a few lines naming its measure, printed
by `interp scan` at its end and listed in the report's "what stands out", the same text in both.
Here the analyses that need a model of their own (circuits, context, vhd), scanned through the
runner; heads, retrieval and sinks are checked in tests/test_report.py, safety in tests/test_safety.py."""

import html
import io
import json

import pytest
import torch
from rich.console import Console

import interp
from interp import cli
from interp.analyses import head_sets
from interp.report import write_report
from tests.tiny import CIRCUIT_HEADS, build_hf, circuits_model, photo, tiny_llava, tiny_tokenizer


def printed_and_reported(outcome, monkeypatch) -> tuple[str, str]:
    """What `interp scan` prints at its end for these results, and the report's page."""
    buffer = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=buffer, width=80))
    cli.print_headlines(outcome.results, outcome.analyses)
    return buffer.getvalue(), write_report(outcome.results.path).html.read_text()


def check_both(name, outcome, monkeypatch) -> list[str]:
    printed, page = printed_and_reported(outcome, monkeypatch)
    lines = interp.analyses.headline(name, outcome.results.read_tables(name))
    assert printed.splitlines()[0] == name
    for line in lines:
        assert f"  {line}\n" in printed and html.escape(line) in page
    return lines


def test_circuits_headline_signed_top_heads_circuit_size_and_faithfulness(tmp_path, monkeypatch):
    model = circuits_model(only=CIRCUIT_HEADS, dtype=torch.float32)
    outcome = interp.scan(model, "circuits", tmp_path / "out", samples=6, tasks="ioi,induction",
                          settings=["verify_top=4", "verify_random=4", "ig_steps=2"])
    assert not outcome.failed
    lines = check_both("circuits", outcome, monkeypatch)
    summary = outcome.results.read_table("circuits", "summary").set_index("task")
    for line, task in zip(lines, ("ioi", "induction")):
        table = outcome.results.read_table("circuits", task)
        by_size = table.reindex(table["score"].abs().sort_values(ascending=False, kind="stable").index).head(3)
        signed = head_sets.is_signed(table["score"])
        top = ", ".join(f"{r.layer}.{r.head} ({head_sets.value_text(r.score, signed)})" for r in by_size.itertuples())
        assert line == (f"{task}: importance (ig) top {top}; circuit of {summary.loc[task, 'circuit_size']} heads, "
                        f"faithfulness {summary.loc[task, 'faithfulness']:.2f} (target 0.8)")
    assert lines[2].startswith("ioi / induction: ") and "IoU" in lines[2] and len(lines) == 3


def test_context_headline(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = interp.InterpModel(build_hf("llama"), tiny_tokenizer(), source="tiny-llama")
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps({"context": f"w{40 + i} w{50 + i}", "question": f"w{i} w{i + 1}",
                                           "stem": f"w{20 + i}"}) for i in range(3)))
    outcome = interp.scan(model, "context", tmp_path / "out", items=str(items))
    lines = check_both("context", outcome, monkeypatch)
    best = outcome.results.read_table("context").sort_values("score", ascending=False).iloc[0]
    assert len(lines) == 1 and lines[0].endswith("(over 3 counterfactual-context prompts)")
    assert lines[0].startswith(f"context divergence (CD): top {int(best.layer)}.{int(best['head'])} ({best.score:.3g}), ")


def test_vhd_headline(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    folder.mkdir()
    photo().save(folder / "china.png")
    photo().rotate(90).save(folder / "turned.jpg")
    (folder / "prompts.txt").write_text("w0 <image> w5 w6\nw1 w2 <image> w7\n")
    outcome = interp.scan(tiny_llava(), "vhd", tmp_path / "out", images=str(folder), settings=["max_new_tokens=2"])
    assert outcome.results.manifest["analyses"]["vhd"]["params"]["max_new_tokens"] == 2
    lines = check_both("vhd", outcome, monkeypatch)
    assert lines[0].startswith("vision-aware head divergence (VHD): top ") and lines[0].endswith("(over 2 images)")


@pytest.mark.parametrize("name", ["circuits", "context", "vhd", "heads", "retrieval", "sinks", "safety"])
def test_every_analysis_has_a_headline_of_its_own(name):
    assert callable(getattr(interp.analyses.get(name), "headline", None))
