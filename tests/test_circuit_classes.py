"""Position roles of the tasks, patching at a role, batched path patching, and the IOI head
classes (analyses/circuit_classes.py) on tiny models: a planted copying head and a planted
anti-copying head, made to attend from END to IO, must come out as a name mover and a
negative name mover with copy scores of 1 and nothing else in a class."""

import re

import numpy as np
import pytest
import torch

from interp.analyses import circuit_classes as cc
from interp.analyses import circuits
from interp.data import tasks
from interp.runtime.interventions import Redistribute
from tests.tiny import CIRCUIT_HEADS as S, circuits_model as tiny, word_tokenizer

TOKENIZER = word_tokenizer()


def words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text)  # how word_tokenizer splits


def test_ioi_roles_point_at_the_names_by_hand():
    task = tasks.ioi(TOKENIZER, n=8, seed=4)
    for batch in task.batches(TOKENIZER):
        for row, i in enumerate(batch.index):
            tokens = words(task.clean[i])
            io, s = task.answer[i].strip(), task.counterfactual[i].strip()
            names = [k for k, w in enumerate(tokens) if w in (io, s)]  # IO once, S twice
            assert [tokens[k] for k in names].count(s) == 2 and len(names) == 3
            expected = {"S1": names[0] if tokens[names[0]] == s else names[1], "IO": tokens.index(io), "S2": names[2],
                        "END": len(tokens) - 1}
            expected["S1+1"] = expected["S1"] + 1
            assert {role: int(p[row]) for role, p in batch.roles.items()} == expected
    assert task.role_names == list(tasks.IOI_ROLES)


def test_colored_objects_and_induction_roles():
    for form in tasks.COLORED_FORMS:
        task = tasks.colored_objects(TOKENIZER, n=6, seed=2, form=form)
        for batch in task.batches(TOKENIZER):
            for row, i in enumerate(batch.index):
                ids = batch.clean[row]
                at = {role: TOKENIZER.convert_ids_to_tokens(int(ids[p[row]])) for role, p in batch.roles.items()}
                asked = words(task.clean[i])[-2 if form == "list" else -4]
                assert at["colour"] == task.answer[i].strip() and at["object"] == at["query"] == asked
                assert batch.roles["object+1"][row] == batch.roles["object"][row] + 1
                assert batch.roles["query"][row] > batch.roles["colour"][row]
    task = tasks.induction(TOKENIZER, n=6, seed=1)
    batch = task.batches(TOKENIZER)[0]
    for row, i in enumerate(batch.index):
        tokens = words(task.clean[i])
        assert tokens[batch.roles["first+1"][row]] == task.answer[i].strip()
        assert tokens[batch.roles["first"][row]] == tokens[-1]
    user = tasks.Task("mine", ["Mary went to"], ["John went to"], [" Mary"], [" John"])
    assert set(user.batches(TOKENIZER)[0].roles) == {"END"} and user.role_names == ["END"]


@pytest.fixture(scope="module")
def planted():
    model = tiny(only=S)
    return model, circuits.prepare(model, tasks.ioi(TOKENIZER, n=8, seed=1))


def test_patching_at_a_role_equals_patching_its_position_prompt_by_prompt(planted):
    model, prepared = planted
    table = circuits.exact_patching(model, prepared, S, positions="roles")
    assert list(table["role"].unique()) == list(tasks.IOI_ROLES)
    for role in ("S2", "END", "S1"):
        for head in S:
            metrics = []
            for run in prepared.runs:
                for b in range(run.batch.clean.shape[0]):  # the role's position differs between prompts
                    p = int(run.batch.roles[role][b])
                    metrics.append(circuits.patched_metrics(model, run, [b], [[head]], run.corrupt_z, p))
            expected = float(prepared.normalise(torch.cat(metrics).mean()))
            got = table[(table.role == role) & (table.layer == head[0]) & (table["head"] == head[1])]["score"].item()
            assert got == pytest.approx(expected, abs=1e-9)
    run = prepared.runs[0]
    B = run.batch.clean.shape[0]
    assert int(circuits.first_change(run).min()) > 0  # the cached prefix below is not empty
    from_change = circuits.patched_metrics(model, run, list(range(B)), [S] * B, run.corrupt_z, "all",
                                           start=int(circuits.first_change(run).min()))
    full = circuits.patched_metrics(model, run, list(range(B)), [S] * B, run.corrupt_z, "all")
    assert (from_change - full).abs().max() < 1e-9  # clean and corrupted z agree before the first changed token
    end = table[table.role == "END"].reset_index(drop=True)
    last = circuits.exact_patching(model, prepared, S, positions="last")
    assert np.allclose(end["score"], last["score"], atol=1e-9)
    assert table[table.role == "S2"]["score"].abs().max() > 1e-3  # a role before END matters in the planted model
    by_role = circuits.gradient_scores(model, prepared, "attribution", positions="roles")
    each = circuits.gradient_scores(model, prepared, "attribution", positions="each")
    assert np.allclose(by_role[by_role.role == "END"]["score"], each[each.position == -1]["score"], atol=1e-12)


def test_batched_path_patching_equals_one_sender_at_a_time(planted):
    model, prepared = planted
    receivers = [(2, 0), (2, 2)]
    batched = circuits.path_effects(model, prepared, [(0, 1), (1, 3), (0, 0)], receivers)
    for sender, effect in batched.items():
        assert effect == pytest.approx(circuits.path_patching(model, prepared, sender, receivers), abs=1e-9)
    assert abs(batched[(0, 0)]) < 1e-12 and abs(batched[(0, 1)]) > 1e-4  # (0, 0) writes nothing
    direct = circuits.path_effects(model, prepared, S)  # sender -> logits, every other head frozen
    top = circuits.path_effects(model, prepared, [(2, 0)])
    exact_top = circuits.exact_patching(model, prepared, [(2, 0)], positions="all")["score"].item()
    assert top[(2, 0)] == pytest.approx(exact_top, abs=1e-9)  # in the last layer, the direct path is the whole effect
    assert len(direct) == len(S)


# ---- a planted name mover and negative name mover ------------------------------------------------

PROMPT = "When {io} and John went to the store, John gave a drink to"


def copying_model():
    """3 layers; embeddings unit vectors in the first head_dim dimensions (plus one shared large
    component), tied unembedding; no MLP
    and no head writes except 2.0 (OV = identity: it copies the token it attends to) and 2.2
    (OV = -0.5 identity: it writes against it)."""
    model = tiny(seed=3)
    hf, d = model.hf, model.layout.head_dim
    torch.manual_seed(0)
    with torch.no_grad():
        embed = torch.zeros_like(hf.model.embed_tokens.weight)
        embed[:, :d] = torch.nn.functional.normalize(torch.randn(embed.shape[0], d, dtype=embed.dtype), dim=-1)
        embed[:, d] = 10  # a large direction shared by every token: the norms act almost linearly, logit differences ignore it
        hf.model.embed_tokens.weight.copy_(embed)
        hf.lm_head.weight.copy_(embed)
        for layer in hf.model.layers:
            layer.mlp.down_proj.weight.zero_()
            layer.self_attn.o_proj.weight.zero_()
        attention = hf.model.layers[2].self_attn
        eye = torch.eye(d, dtype=embed.dtype)
        attention.v_proj.weight.zero_()
        attention.v_proj.weight[:d, :d] = eye  # KV group 0 (heads 0, 1)
        attention.v_proj.weight[d : 2 * d, :d] = eye  # KV group 1 (heads 2, 3)
        attention.o_proj.weight[:d, :d] = eye  # head 0 copies
        attention.o_proj.weight[:d, 2 * d : 3 * d] = -0.5 * eye  # head 2 copies negatively
    return model


def test_planted_name_movers_are_found_with_their_evidence():
    model = copying_model()
    names = ["Mary", "Alice", "Emma", "Anna", "Kate", "Lisa"]
    clean = [PROMPT.format(io=n) for n in names]
    corrupt = [PROMPT.format(io=n) for n in names[1:] + names[:1]]  # IO becomes another name
    roles = [{"S1": len(f"When {n} and John"), "S1+1": len(f"When {n} and John"), "IO": len(f"When {n}"),
              "S2": len(f"When {n} and John went to the store, John"), "END": len(c)} for n, c in zip(names, clean)]
    task = tasks.Task("ioi", clean, corrupt, [" " + n for n in names], [" John"] * len(names), roles=roles)
    end, io = len(words(clean[0])) - 1, 1

    def onto_io(probs, ctx):
        if probs.shape[-1] <= io:  # a forward of the prefix before IO (patching's KV cache)
            return probs
        forced = torch.zeros_like(probs)
        forced[..., io] = 1
        return forced

    # heads 2.0 and 2.2 attend from END to IO by construction
    with model.intervene(Redistribute([(2, 0), (2, 2)], positions=[end], rule=onto_io)):
        prepared = circuits.prepare(model, task)
        assert prepared.m_clean > 0.2 and prepared.m_corrupt < prepared.m_clean / 2
        importance = circuits.exact_patching(model, prepared, positions="all")
        found = cc.find_classes(model, prepared, importance)
    got = {(int(r.layer), int(r.head)): r._3 for r in found.classes.itertuples()}
    assert got == {(2, 0): "name mover", (2, 2): "negative name mover"}
    evidence = found.evidence.set_index(["layer", "head"])
    assert evidence.loc[(2, 0), "end_io"] == pytest.approx(1) and evidence.loc[(2, 0), "copy"] == 1
    assert evidence.loc[(2, 2), "negative_copy"] == 1 and evidence.loc[(2, 2), "copy"] == 0
    assert evidence.loc[(2, 0), "direct"] > 0.5 and evidence.loc[(2, 2), "direct"] < -0.1
    # every other head writes nothing: the class circuit is the whole model
    assert found.summary["class_circuit_faithfulness"] == pytest.approx(1, abs=1e-6)
    edges = found.edges.set_index(["source", "target"])
    assert edges.loc[("name mover", "logits"), "effect"] == pytest.approx(evidence.loc[(2, 0), "direct"])
    figure = cc.diagram(found.classes, found.edges)
    assert "2.0" in figure.data[0].text[list(cc.CLASSES).index("name mover")]


def test_class_overlap_against_chance():
    import pandas as pd

    a = pd.DataFrame({"layer": [1, 2, 2], "head": [0, 0, 1], "class": ["name mover", "name mover", "induction"]})
    b = pd.DataFrame({"layer": [2, 0], "head": [0, 3], "class": ["name mover", "induction"]})
    table = cc.class_overlap({"ioi": a, "colored_objects": b}, n_heads=12).set_index("class")
    assert table.loc["name mover", "intersection"] == 1 and table.loc["name mover", "shared"] == "2.0"
    assert table.loc["name mover", "chance_intersection"] == pytest.approx(2 * 1 / 12)
    assert table.loc["induction", "intersection"] == 0 and table.loc["S-inhibition", "size_a"] == 0


def test_scan_and_cli_give_the_role_table_and_the_classes(tmp_path):
    from typer.testing import CliRunner

    from interp import cli
    from interp.run.results import ResultsDir

    model = tiny(only=S, dtype=torch.float32)
    model.hf.save_pretrained(tmp_path / "model")
    TOKENIZER.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    args = ["scan", "--model", tmp_path / "model", "--analyses", "circuits", "--tasks", "ioi,colored_objects", "--samples", 4,
            "--set", "exact=all", "--set", "positions=roles", "--set", "classes=true", "--set", "ig_steps=2", "--out", out]
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "ioi by role: exact, before END" in result.output and "ioi head classes:" in result.output
    tables = ResultsDir(out).read_tables("circuits")
    positions = tables["ioi_positions"]
    assert len(positions) == 12 * len(tasks.IOI_ROLES) and positions["exact"].notna().all()
    assert list(positions["role"][:5]) == list(tasks.IOI_ROLES)
    assert {"ioi_classes", "ioi_class_edges", "colored_objects_class_evidence", "class_overlap"} <= set(tables)
    assert len(tables["class_overlap"]) == len(cc.CLASSES)
    summary = tables["summary"].set_index("task")
    assert summary.loc["ioi", "greedy_size"] >= 1 and "class_circuit_faithfulness" in summary


def test_explorer_and_report_show_the_class_diagram(tmp_path, monkeypatch):
    from interp.report import write_report
    from interp.run.results import ResultsDir
    from tests.tiny import app_on, charts

    model = tiny(only=S, dtype=torch.float32)
    results = ResultsDir(tmp_path / "results")
    results.set_model("tiny-circuits", None, model.layout.as_dict())
    tables = circuits.scan(model, tasks="ioi,colored_objects", samples=4, verify_top=4, verify_random=4, ig_steps=2,
                           positions="roles", classes=True)
    results.write_tables("circuits", tables)
    results.finish_analysis("circuits")
    at = app_on(tmp_path / "results", monkeypatch)
    at.radio(key="circuit_task").set_value("ioi").run()
    titles = [c["layout"].get("title", {}).get("text", "") for c in charts(at)]
    assert any(t.startswith("ioi: head classes") for t in titles)
    roles = next(df.value for df in at.dataframe if "role" in df.value.columns)
    assert set(roles["role"]) == set(tasks.IOI_ROLES) and roles["exact"].notna().sum() > 0  # the verified heads
    html = write_report(tmp_path / "results", tmp_path / "report").html.read_text()
    assert "ioi: head classes" in html and "colored_objects: head classes" in html
