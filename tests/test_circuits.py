"""Circuits on tiny random llamas with a word-level tokenizer that knows the task words:
known answers (heads outside a set S write nothing), patching identities, the first-order
error of attribution, overlap statistics against brute force, and the scan's tables."""

import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch

from interp import InterpError
from interp.data import tasks
from interp.analyses import circuits
from interp.run.results import ResultsDir
from interp.run.tables import validate_head_table
from tests.tiny import CIRCUIT_HEADS as S, circuits_model as tiny, word_tokenizer

TOKENIZER = word_tokenizer()  # the tokenizer of every tiny() model


@pytest.fixture(scope="module")
def planted():
    model = tiny(only=S)
    return model, circuits.prepare(model, tasks.ioi(TOKENIZER, n=8, seed=1))


def test_generators_give_equal_lengths_and_single_token_answers():
    for task in (tasks.ioi(TOKENIZER, n=12), tasks.ioi(TOKENIZER, n=12, corruption="s2_swap"),
                 tasks.colored_objects(TOKENIZER, n=12), tasks.colored_objects(TOKENIZER, n=12, form="paper"),
                 tasks.induction(TOKENIZER, n=12)):
        batches = task.batches(TOKENIZER)
        assert sum(len(b.index) for b in batches) == 12
        for b in batches:
            assert b.clean.shape == b.corrupt.shape and (b.answer != b.counterfactual).all()
            assert (b.clean != b.corrupt).any(1).all()  # every corruption changes the prompt
    ioi = tasks.ioi(TOKENIZER, n=4, corruption="s2_swap")
    assert all(a.strip() in c.split(",")[1] for a, c in zip(ioi.answer, ioi.corrupt))  # S2 became the IO
    listed = tasks.colored_objects(TOKENIZER, n=1, seed=3)
    assert listed.clean[0].endswith(":") and f"{listed.clean[0].split(chr(10))[-1][:-1]}:{listed.answer[0]}" in listed.clean[0]


def test_user_task_files_and_one_line_errors(tmp_path):
    rows = [{"clean": "w1 w2 w3", "corrupt": "w1 w4 w3", "answer": " w5", "counterfactual": " w6"}] * 2
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    csv = tmp_path / "mine.csv"
    csv.write_text("clean,corrupt,answer,counterfactual\n" + "\n".join(",".join(r.values()) for r in rows))
    for path in (jsonl, csv):
        task = tasks.load_task(path)
        assert task.name == "mine" and task.answer == [" w5", " w5"]
    bad = {"empty.jsonl": "", "notjson.jsonl": "{oops", "missing.jsonl": json.dumps({"clean": "w1"}),
           "nohead.csv": "a,b\n1,2", "x.txt": "w1"}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InterpError) as e:
            tasks.load_task(tmp_path / name)
        assert "\n" not in str(e.value)
    with pytest.raises(InterpError, match="does not exist"):
        tasks.load_task(tmp_path / "nope.jsonl")
    uneven = tasks.Task("t", ["w1 w2"], ["w1"], [" w3"], [" w4"])
    with pytest.raises(InterpError, match="same token length"):
        uneven.batches(TOKENIZER)
    with pytest.raises(InterpError, match="unknown task"):
        tasks.make_task("nope", TOKENIZER)


def test_every_method_scores_zero_outside_the_planted_set(planted):
    model, prepared = planted
    outside = lambda df: df[[(l, h) not in S for l, h in zip(df.layer, df["head"])]]
    exact = circuits.exact_patching(model, prepared)
    attribution = circuits.gradient_scores(model, prepared, "attribution")
    ig = circuits.gradient_scores(model, prepared, "ig", ig_steps=3)
    for df in (attribution, ig):
        assert (outside(df)["score"] == 0).all()
    assert outside(exact)["score"].abs().max() < 1e-9  # float64 rounding of a batched forward
    inside = exact[[(l, h) in S for l, h in zip(exact.layer, exact["head"])]]
    assert inside["score"].abs().min() > 1e-4  # ... while the planted heads matter


@pytest.mark.parametrize("ablation,order", [("patch", "signed"), ("mean", "signed"), ("patch", "abs")])
def test_circuit_stays_inside_the_planted_set_and_is_faithful(planted, ablation, order):
    model, prepared = planted
    importance = circuits.exact_patching(model, prepared)
    circuit = circuits.find_circuit(model, prepared, importance, target=0.8, ablation=ablation, order=order)
    assert circuit.reached and set(circuit.heads) <= set(S)
    assert circuit.faithfulness >= 0.8
    assert abs(circuits.faithfulness_of(model, prepared, S, ablation) - 1) < 1e-4
    assert circuit.curve["f"].iloc[0] == 0 and abs(circuit.curve["f"].iloc[-1] - 1) < 1e-12
    assert circuit.m_empty != circuit.m_full  # measured, not assumed


def test_patching_every_head_at_the_last_token_gives_the_corrupted_metric(planted):
    model, prepared = planted
    heads = circuits.all_heads(model)
    for run in prepared.runs:
        B = run.batch.clean.shape[0]
        m = circuits.patched_metrics(model, run, list(range(B)), [heads] * B, run.corrupt_z, "last")
        assert (m - run.corrupt).abs().max() < 1e-6
        full = circuits.patched_metrics(model, run, list(range(B)), [heads] * B, run.corrupt_z, "all")
        assert not torch.allclose(full, run.clean)


def test_last_position_equals_full_forward_and_each_position(planted):
    model, prepared = planted
    heads = S[:2]
    last = circuits.exact_patching(model, prepared, heads, positions="last")
    each = circuits.exact_patching(model, prepared, heads, positions="each")
    at_end = each[each.position == -1].reset_index(drop=True)
    assert np.allclose(last["score"], at_end["score"], atol=1e-8)
    run = prepared.runs[0]
    B, n = run.batch.clean.shape
    cached = circuits.patched_metrics(model, run, list(range(B)), [heads] * B, run.corrupt_z, "last")
    full = circuits.patched_metrics(model, run, list(range(B)), [heads] * B, run.corrupt_z, n - 1)
    assert (cached - full).abs().max() < 1e-9
    attribution_each = circuits.gradient_scores(model, prepared, "attribution", positions="each")
    attribution_all = circuits.gradient_scores(model, prepared, "attribution", positions="all")
    summed = attribution_each.groupby(["layer", "head"], sort=False)["score"].sum().to_numpy()
    assert np.allclose(summed, attribution_all["score"], atol=1e-9)


def test_attribution_error_is_second_order():
    model = tiny(seed=2, arch="gpt2")  # float64 throughout, so rounding stays far below eps^2
    prepared = circuits.prepare(model, tasks.ioi(TOKENIZER, n=4, seed=2))
    heads = circuits.all_heads(model)

    def error(eps):
        runs = [dataclasses.replace(r, corrupt_z=r.clean_z + eps * (r.corrupt_z - r.clean_z)) for r in prepared.runs]
        scaled = circuits.Prepared(prepared.task, runs)
        exact = circuits.exact_patching(model, scaled, heads)["score"].to_numpy()
        attribution = circuits.gradient_scores(model, scaled, "attribution")["score"].to_numpy()
        return np.abs(exact - attribution).sum()

    ratio = error(0.002) / error(0.001)
    assert 3.8 < ratio < 4.2


def test_path_patching_through_a_silent_head_is_zero_and_a_full_path_is_not(planted):
    model, prepared = planted
    assert abs(circuits.path_patching(model, prepared, (0, 0), [(1, 3), (2, 0)])) < 1e-12
    assert abs(circuits.path_patching(model, prepared, (0, 1), [(1, 3), (2, 0), (2, 2)])) > 1e-6
    with pytest.raises(InterpError, match="later layers"):
        circuits.path_patching(model, prepared, (1, 0), [(0, 1)])


def test_overlap_matches_brute_force():
    n, a, b = 9, {0, 1, 2, 3}, {2, 3, 4}
    got = circuits.overlap(a, b, n)
    inters = [len(a & set(c)) for c in itertools.combinations(range(n), len(b))]
    ious = [i / (len(a) + len(b) - i) for i in inters]
    assert got["intersection"] == 2 and got["iou"] == 2 / 5 and got["containment_a"] == 2 / 4
    assert got["p_value"] == pytest.approx(np.mean([i >= 2 for i in inters]), abs=1e-12)
    assert got["chance_iou"] == pytest.approx(np.mean(ious), abs=1e-12)
    assert got["chance_intersection"] == pytest.approx(np.mean(inters))


def test_scan_writes_valid_tables_and_resumes(tmp_path):
    model = tiny(only=S, dtype=torch.float32)
    results = ResultsDir(tmp_path / "out")
    options = dict(tasks="ioi,induction", samples=6, verify_top=4, verify_random=4, ig_steps=2, results=results)
    tables = circuits.scan(model, **options)
    validate_head_table(tables["heads"], "circuits")
    assert len(tables["heads"]) == 12 and {"ioi", "induction", "overlap", "summary", "faithfulness"} <= set(tables)
    for name in ("ioi", "induction"):
        table = tables[name]
        validate_head_table(table, name)
        assert set(zip(table[table.in_circuit].layer, table[table.in_circuit]["head"])) <= set(S)
    assert len(tables["overlap"]) == 1 and tables["overlap"]["iou"].between(0, 1).all()
    assert tables["summary"]["reached"].all() and (tables["verification"]["kind"] == "top").sum() == 8
    results.write_tables("circuits", tables)
    assert set(results.load_progress("circuits")) == {"ioi", "induction"}
    again = circuits.scan(model, **options)  # from the saved progress
    assert again["ioi"].equals(tables["ioi"])
    with pytest.raises(InterpError, match="unknown ablation"):
        circuits.scan(model, tasks="ioi", ablation="zero")
    with pytest.raises(InterpError, match="positions"):
        circuits.scan(model, tasks="ioi", positions="each")


def test_cli_scan_writes_a_head_table_per_task_and_the_overlap(tmp_path):
    from typer.testing import CliRunner

    import interp.analyses
    from interp import cli

    model = tiny(only=S, dtype=torch.float32)
    model.hf.save_pretrained(tmp_path / "model")
    TOKENIZER.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    args = ["scan", "--model", tmp_path / "model", "--analyses", "circuits", "--tasks", "ioi,colored_objects",
            "--samples", 4, "--out", out]
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    results = ResultsDir(out)
    assert {("circuits", None), ("circuits", "ioi"), ("circuits", "colored_objects"), ("circuits", "overlap")} <= set(results.tables())
    assert results.manifest["analyses"]["circuits"]["params"]["tasks"] == "ioi,colored_objects"
    assert "circuits" not in interp.analyses.default_names() and "circuits" in interp.analyses.ANALYSES
    wrong = CliRunner().invoke(cli.app, [str(a) for a in ["scan", "--model", tmp_path / "model", "--analyses", "sinks",
                                                          "--tasks", "ioi", "--out", tmp_path / "x"]])
    assert wrong.exit_code == 2 and "--tasks is for --analyses circuits" in wrong.output


@pytest.mark.bundled
def test_bundled_model_solves_ioi_and_the_corruption_removes_it():
    import interp

    model = interp.load_model()
    prepared = circuits.prepare(model, tasks.ioi(model.tokenizer, n=16, seed=0))
    assert prepared.m_clean > 1.0 and abs(prepared.m_corrupt) < prepared.m_clean / 2
    assert all(len(tasks.colored_objects(model.tokenizer, n=4, form=f).batches(model.tokenizer)) for f in tasks.COLORED_FORMS)
