"""The Streamlit head explorer through streamlit's AppTest, on a results directory that
`interp scan` writes here (two small analyses of a tiny random llama saved to disk)."""

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import interp.cli
from interp.run.results import open_results
from tests.tiny import app_on, build_hf, charts, make_results, save_tiny_long_model, tiny_tokenizer, values


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return make_results(tmp_path_factory.mktemp("explorer"))


def chart_titled(at, text: str) -> dict:
    titled = [c for c in charts(at) if text in c["layout"].get("title", {}).get("text", "")]
    assert len(titled) == 1, f"no chart titled {text!r}"
    return titled[0]


def best_head(results_dir, analysis="first_token"):
    top = open_results(results_dir).read_table(analysis).nlargest(1, "score")
    return int(top["layer"].iloc[0]), int(top["head"].iloc[0])


def test_heat_map_ranked_table_and_the_best_heads_details(results_dir, monkeypatch):
    at = app_on(results_dir, monkeypatch)
    assert at.title[0].value == "Head explorer"
    assert at.radio(key="analysis").options == ["first_token", "previous_token"]
    heatmap = next(c for c in charts(at) if c["data"][0]["type"] == "heatmap")["data"][0]
    scores = open_results(results_dir).read_table("first_token")
    assert heatmap["type"] == "heatmap" and values(heatmap["z"]).shape == (4, 2)  # heads x layers
    assert values(heatmap["z"])[1, 0] == pytest.approx(scores.query("layer == 0 and head == 1")["score"].item())
    ranked = next(d.value for d in at.dataframe if "rank" in d.value.columns)
    assert list(ranked.columns[:4]) == ["rank", "layer", "head", "score"] and ranked["score"].is_monotonic_decreasing

    layer, head = best_head(results_dir)
    assert (at.selectbox(key="layer").value, at.selectbox(key="head").value) == (layer, head)
    assert f"Head {layer}.{head}" in [s.value for s in at.subheader]
    assert [m.label for m in at.metric] == ["first_token score", "previous_token score"]
    assert at.metric[0].delta == "rank 1 of 8"
    chart_titled(at, f"head {layer}.{head}: score over 6 rows of first_token.samples")  # its score distribution


def test_picking_another_head_and_analysis(results_dir, monkeypatch):
    at = app_on(results_dir, monkeypatch)
    at.selectbox(key="layer").set_value(1).run()
    at.selectbox(key="head").set_value(3).run()
    assert "Head 1.3" in [s.value for s in at.subheader]
    previous = open_results(results_dir).read_table("previous_token")
    at.radio(key="analysis").set_value("previous_token").run()
    assert not at.exception
    heatmap = next(c for c in charts(at) if c["data"][0]["type"] == "heatmap")["data"][0]
    assert values(heatmap["z"])[3, 1] == pytest.approx(previous.query("layer == 1 and head == 3")["score"].item())
    score = previous.query("layer == 1 and head == 3")["score"].item()
    assert at.metric[1].value == f"{score:.4g}"


def test_where_a_head_attends_short_and_long_prompts(results_dir, monkeypatch):
    at = app_on(results_dir, monkeypatch)
    at.text_area(key="attention_prompt").set_value("w1 w2 w3 w4 w5 w6")
    at.toggle(key="attention_on").set_value(True).run()
    assert not at.exception and not at.error
    layer, head = best_head(results_dir)  # the head the app selects first
    pattern = chart_titled(at, f"head {layer}.{head}: attention of every token (6 tokens)")
    # the map is that head's attention: transformers' eager attention of the same tiny llama (tests/tiny.py)
    ids = tiny_tokenizer()("w1 w2 w3 w4 w5 w6", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        eager = build_hf("llama")(input_ids=ids, output_attentions=True).attentions[layer][0, head]
    assert ids.shape == (1, 6) and np.allclose(values(pattern["data"][0]["z"]), eager.numpy(), atol=1e-5)

    at.text_area(key="attention_prompt").set_value(" ".join(f"w{i % 80}" for i in range(100))).run()
    pooled = values(chart_titled(at, "pooled attention map of 100 tokens")["data"][0]["z"])
    # 64 x 64 bins, each row the mean attention of a bin's queries: sums to 1, and no bin looks ahead of itself
    assert pooled.shape == (64, 64) and np.allclose(pooled.sum(-1), 1, atol=1e-5) and np.allclose(np.triu(pooled, 1), 0)


def test_ablation_panel_runs_the_model_with_and_without(results_dir, monkeypatch):
    at = app_on(results_dir, monkeypatch)
    at.multiselect(key="ablate_heads").set_value(["0.0", "0.1", "1.0", "1.1"])
    at.selectbox(key="ablate_mode").set_value("scale").run()  # enables the factor
    at.number_input(key="ablate_factor").set_value(20.0)
    at.text_area(key="ablate_prompt").set_value("w1 w2 w3 w4 w5")
    at.number_input(key="ablate_tokens").set_value(6)
    at.button(key="ablate_run").click().run()
    assert not at.exception and not at.error
    assert "**with scale=20 0.0, 0.1, 1.0, 1.1**" in [m.value for m in at.markdown]
    clean, ablated = (t.value for t in at.text)
    assert len(clean.split()) > 0 and clean != ablated
    kl = at.metric[-1]
    assert kl.label.startswith("KL(clean || ablated)") and float(kl.value.split()[0]) > 0
    assert any(list(d.value.columns) == ["token", "p_clean", "p_ablated"] for d in at.dataframe)


def test_compare_two_analyses(results_dir, monkeypatch):
    at = app_on(results_dir, monkeypatch)
    at.number_input(key="compare_k").set_value(3).run()
    first = open_results(results_dir).read_table("first_token").nlargest(3, "score")
    previous = open_results(results_dir).read_table("previous_token").nlargest(3, "score")
    shared = set(zip(first.layer, first["head"])) & set(zip(previous.layer, previous["head"]))
    assert any(m.value.startswith(f"**{len(shared)}** heads are in the top 3 of both") for m in at.markdown)
    table = next(d.value for d in at.dataframe if "rank first_token" in d.value.columns)
    assert set(zip(table.layer, table["head"])) == shared
    scatter = next(c for c in charts(at) if c["data"][0]["type"] == "scatter" and "score first_token" in json.dumps(c["layout"]))
    assert sum(len(values(trace["x"])) for trace in scatter["data"]) == 8


def test_browsing_needs_no_model(results_dir, tmp_path, monkeypatch):
    moved = shutil.copytree(results_dir, tmp_path / "results")
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["model"]["source"] = str(tmp_path / "model-that-is-gone")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    import interp.runtime.models

    loads, real_load = [], interp.runtime.models.load_model

    def counted_load(*args, **kwargs):
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(interp.runtime.models, "load_model", counted_load)

    at = app_on(moved, monkeypatch)
    at.selectbox(key="head").set_value(0).run()
    at.radio(key="analysis").set_value("previous_token").run()
    assert not at.exception and loads == []  # browsing never loads the model
    at.toggle(key="attention_on").set_value(True).run()
    assert len(loads) == 1 and "cannot load the model of these results" in at.error[0].value


def test_a_bad_directory_is_a_clear_error(tmp_path, monkeypatch):
    at = app_on(tmp_path / "nowhere", monkeypatch)
    assert "does not exist; run `interp scan --out" in at.error[0].value


def test_the_directory_can_be_typed_in(results_dir, monkeypatch):
    at = app_on(None, monkeypatch)
    assert "Enter a results directory" in at.info[0].value
    at.text_input(key="results_dir").set_value(str(results_dir)).run()
    assert not at.exception and at.radio(key="analysis").value == "first_token"


def test_mean_ablation_and_a_too_long_prompt(results_dir, monkeypatch):
    at = app_on(results_dir, monkeypatch)
    at.selectbox(key="ablate_mode").set_value("mean")
    at.text_area(key="ablate_prompt").set_value("w1 w2 w3")
    at.number_input(key="ablate_tokens").set_value(3)
    at.button(key="ablate_run").click().run()
    assert not at.exception and not at.error
    layer, head = best_head(results_dir)
    assert f"**with mean {layer}.{head}**" in [m.value for m in at.markdown]

    at.text_area(key="attention_prompt").set_value(" ".join(["w1"] * 200))  # the tiny model has 128 positions
    at.toggle(key="attention_on").set_value(True).run()
    assert not at.exception
    assert "the prompt is 200 tokens but the model allows 128" in at.error[0].value


def test_results_of_the_real_analyses(tmp_path, monkeypatch):
    """retrieval (no probe answered by a random model: every score NaN) and sinks."""
    tiny = save_tiny_long_model(tmp_path / "tiny")
    result = CliRunner().invoke(interp.cli.app, ["scan", "--model", str(tiny), "--analyses", "retrieval,sinks",
                                                 "--samples", "2", "--max-length", "300", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    at = app_on(tmp_path / "out", monkeypatch)
    assert at.radio(key="analysis").options == ["retrieval", "sinks"]
    at.radio(key="analysis").set_value("sinks").run()
    assert not at.exception
    chart_titled(at, "sinks scores of all 8 heads")  # sinks has no per-sample table with layer and head
    # what each analysis's score is (its MEASURE), where the score is labelled
    assert [m.label for m in at.metric] == ["retrieval (retrieval score)", "sinks (sink importance)"]
    heatmap = next(c for c in charts(at) if c["data"][0]["type"] == "heatmap")
    assert heatmap["data"][0]["colorbar"]["title"]["text"] == "sink importance"
    at.number_input(key="compare_k").set_value(3).run()
    assert not at.exception and any("heads are in the top 3 of both" in m.value for m in at.markdown)
    # the Atlas tab starts with each analysis's headline, the lines `interp scan` printed
    from interp import analyses
    from interp.run.results import open_results

    shown = "\n".join(m.value for m in at.markdown)
    for name in ("retrieval", "sinks"):
        lines = analyses.headline(name, open_results(tmp_path / "out").read_tables(name))
        assert lines and f"**{name}**\n" + "\n".join(f"- {line}" for line in lines) in shown


# ---- the Atlas tab: the same functions as `interp report` -----------------------------------------------


def test_atlas_tab_shows_what_the_report_computes(results_dir, tmp_path, monkeypatch):
    import pandas as pd

    from interp import report
    from interp.run.results import ResultsDir

    moved = shutil.copytree(results_dir, tmp_path / "results")  # plus a table with a further measure
    extra = open_results(moved).read_table("first_token")[["layer", "head"]]
    extra["score"] = -extra["layer"].astype(float)
    extra["score.by_head"] = extra["head"].astype(float)
    ResultsDir(moved).write_table("layered", extra)
    at = app_on(moved, monkeypatch)
    measures = report.read_measures(moved)
    assert measures.names == ["first_token", "layered", "layered.by_head", "previous_token"]
    assert at.number_input(key="atlas_k").value == 2  # 8 heads: a quarter
    for k in (2, 3):
        at.number_input(key="atlas_k").set_value(k).run()
        assert not at.exception
        bullets = next(m.value for m in at.markdown if m.value.startswith("- "))
        assert bullets == "\n".join(f"- {line}" for line in report.highlights(measures, k))
        overlaps = next(d.value for d in at.dataframe if "jaccard" in d.value.columns)
        pd.testing.assert_frame_equal(overlaps.reset_index(drop=True), report.overlap_table(measures, k).drop(columns=["k"]))
    atlas = next(d.value for d in at.dataframe if "layered.by_head rank" in d.value.columns)
    pd.testing.assert_frame_equal(atlas.reset_index(drop=True), report.atlas_table(measures), check_dtype=False)
    assert len(atlas) == 8
    jaccard = chart_titled(at, "Jaccard of the top 3")
    assert values(jaccard["data"][0]["z"]).shape == (4, 4)
    chart_titled(at, "Spearman rank correlation")


# ---- the Models tab: the same functions as `interp report DIR_A DIR_B` -----------------------------------


def test_models_tab_puts_another_models_results_beside(results_dir, tmp_path, monkeypatch):
    import interp
    from interp import InterpModel, compare

    other = tmp_path / "gemma3"  # a second architecture, sinks only (about a second)
    assert not interp.scan(InterpModel(build_hf("gemma3"), tiny_tokenizer(), source="tiny-gemma3"), "sinks", other,
                           samples=2, max_length=32).failed
    at = app_on(results_dir, monkeypatch)
    assert "Add the results directory of another model" in " ".join(i.value for i in at.info)
    at.text_area(key="models_dirs").set_value(str(other)).run()
    assert not at.exception and not at.error
    claims = next(d.value for d in at.dataframe if "claim" in d.value.columns)
    expected = compare.claims_table(compare.load_models([results_dir, other])).drop(columns=["verdict"])
    assert list(claims.columns) == ["claim", "source", "tiny", "tiny-gemma3", "agrees?"]  # the first model's folder: tiny
    assert claims.equals(expected)
    sinks = claims[claims["claim"].str.contains("sink rate")].iloc[0]
    assert sinks["tiny"] == "not measured" and sinks["tiny-gemma3"].startswith("sink rate ")
    at.selectbox(key="models_measure").set_value("sinks").run()
    figure = chart_titled(at, "sinks (sink importance) against relative depth")
    assert [trace["name"] for trace in figure["data"]] == ["tiny-gemma3"]  # the first directory has no sinks
    assert sorted(values(figure["data"][0]["x"])) == [0, 0, 0, 0, 1, 1, 1, 1]  # 2 layers: depth 0 and 1

    at.text_area(key="models_dirs").set_value(str(tmp_path / "nowhere")).run()
    assert not at.exception and "does not exist" in at.error[0].value
