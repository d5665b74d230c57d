"""What holds across models (interp/compare.py) and `interp report DIR_A DIR_B`: two results directories
that interp.scan writes here from two tiny random architectures (a llama saved to disk, scanned for
retrieval, sinks and heads; a gemma3 with window layers, sinks and heads only), compared; every figure
is checked against what the parquet tables give when read here."""

import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

import interp
import interp.cli
from interp import InterpModel, compare
from interp.base.errors import InterpError
from tests.tiny import build_hf, save_tiny_long_model, tiny_tokenizer


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """(llama dir, gemma3 dir): scans of two tiny random architectures (about 5 s)."""
    root = tmp_path_factory.mktemp("compare")
    llama = save_tiny_long_model(root / "tiny-llama")  # 1,024 positions: room for retrieval's haystacks
    scanned = interp.scan(str(llama), "retrieval,sinks,heads", root / "llama", samples=2, max_length=200)
    assert not scanned.failed, scanned.failed
    gemma = InterpModel(build_hf("gemma3"), tiny_tokenizer(), source="tiny-gemma3")
    scanned = interp.scan(gemma, "sinks,heads", root / "gemma3", samples=2, max_length=64)
    assert not scanned.failed, scanned.failed
    return root / "llama", root / "gemma3"


@pytest.fixture(scope="module")
def models(two_models):
    return compare.load_models(two_models)


def table(directory, analysis, name=None) -> pd.DataFrame:
    suffix = f".{name}" if name else ""
    return pd.read_parquet(directory / f"{analysis}{suffix}.parquet")


def claim_row(claims: pd.DataFrame, words: str) -> pd.Series:
    (index,) = [i for i, claim in enumerate(claims["claim"]) if words in claim]
    return claims.iloc[index]


def test_models_are_labelled_with_their_model_names(models):
    assert [m.label for m in models] == ["tiny-llama", "tiny-gemma3"]
    assert [(m.measures.n_layers, m.measures.n_heads) for m in models] == [(2, 4), (2, 4)]
    assert compare.same_model_notes(models) == []
    # scanned with other settings (max_length 200 and 64): said for the analyses both ran, not for retrieval
    notes = compare.settings_notes(models)
    assert [note.split()[0] for note in notes] == ["heads", "sinks"]
    assert "tiny-llama: max_length=200, samples=2, seed=0; tiny-gemma3: max_length=64, samples=2, seed=0" in notes[0]


def test_claims_figures_are_the_tables_figures(two_models, models):
    llama, gemma = two_models
    claims = compare.claims_table(models)
    assert list(claims.columns) == ["claim", "source", "tiny-llama", "tiny-gemma3", "agrees?", "verdict"]
    for directory, label in ((llama, "tiny-llama"), (gemma, "tiny-gemma3")):
        heads, sinks = table(directory, "heads"), table(directory, "sinks")
        # the sink rate: the share of (sample, layer, head) above eps = the mean of the heads' per-sample rates
        rate = sinks["sink_rate"].mean()
        row = claim_row(claims, "sink rate")
        assert row[label] == f"sink rate {rate:.2f} (eps 0.3) ({'holds' if rate > 0.5 else 'does not hold'})"
        induction = int((heads["score"] > compare.HEAD_TYPE_THRESHOLD).sum())
        assert claim_row(claims, "Induction heads form")[label].startswith(f"{induction} of 8 heads")
        dims = sorted(set(table(directory, "sinks", "massive_entries")["dim"]))
        assert claim_row(claims, "Massive activations")[label].endswith("(holds)" if dims else "none (does not hold)")
        causal = table(directory, "heads", "causal")
        top = causal.loc[causal["condition"] == "top induction", "loss_repeated_half"].item()
        assert claim_row(claims, "Ablating the top induction")[label].startswith(f"loss {top:.2f} with the top 2 ablated")
    # retrieval: scanned in the llama's directory only; a random tiny model answers no needle, so no head has a score
    retrieval = table(llama, "retrieval")
    sparse = claim_row(claims, "Retrieval heads are sparse")
    assert sparse["tiny-gemma3"] == "not measured"
    if retrieval["score"].isna().all():
        probes = len(table(llama, "retrieval", "probes"))
        assert sparse["tiny-llama"] == f"no probe answered (0 of {probes})" and sparse["agrees?"] == "cannot tell"
    else:
        above = int((retrieval["score"] > 0.1).sum())
        assert sparse["tiny-llama"].startswith(f"{above} of 8 heads")


def test_each_verdict_follows_the_figures(models):
    for _, row in compare.claims_table(models).iterrows():
        said = [row["tiny-llama"], row["tiny-gemma3"]]
        decided = [s.endswith("(holds)") for s in said if s.endswith("hold)")]  # "(holds)" / "(does not hold)"
        if len(decided) == 2:
            assert row["agrees?"] == ("yes" if decided[0] == decided[1] else "no"), row
            assert row["verdict"].startswith("The models agree" if decided[0] == decided[1] else "The models disagree")
        else:
            assert row["agrees?"] in ("cannot tell", "not measured"), row


def test_verdict_sentences():
    assert compare.verdict({"A": ("1%", True), "B": ("2%", True)}) == ("yes", "The models agree: it holds in both (A: 1%; B: 2%).")
    agrees, sentence = compare.verdict({"A": ("1%", True), "B": ("9%", False), "C": ("not measured", None)})
    assert agrees == "no" and sentence == ("The models disagree: it holds in A (A: 1%) but not in B (B: 9%). "
                                           "Not measured (or not decidable) in C.")
    assert compare.verdict({"A": ("not measured", None), "B": ("not measured", None)}) == ("not measured", "Not measured in any model.")


def test_shares_above_the_thresholds_and_their_depth(two_models, models):
    llama, gemma = two_models
    shares = compare.share_table(models).set_index("head type")
    for directory, label in ((llama, "tiny-llama"), (gemma, "tiny-gemma3")):
        sinks = table(directory, "sinks")
        above = sinks[sinks["score"] > 0.3]
        expected = f"{len(above)} of 8 ({len(above) / 8:.1%})"
        if len(above):  # two layers: relative depth is the layer itself
            expected += f", depth {above['layer'].median():.2f}"
        assert shares.loc["sink heads", label] == expected
    assert shares.loc["retrieval heads", "tiny-gemma3"] == "not measured"
    assert shares.loc["retrieval heads", "tiny-llama"] in ("no scores", "0 of 8 (0.0%)")


def test_depth_figure_has_a_trace_per_model_at_relative_depth(two_models, models):
    assert set(compare.depth_measures(models)) >= {"retrieval", "sinks", "heads", "heads.previous_token"}
    fig = compare.depth_figure(models, "heads")
    assert [trace.name for trace in fig.data] == ["tiny-llama", "tiny-gemma3"]
    heads = table(two_models[1], "heads")
    trace = fig.data[1]
    assert sorted(trace.x) == sorted(heads["layer"] / 1)  # 2 layers: layer / (2 - 1)
    assert sorted(trace.y) == pytest.approx(sorted(heads["score"]))
    assert compare.relative_depth(9, 18) == pytest.approx(9 / 17)
    # retrieval has no scores in the llama and is not measured in the gemma3: an empty figure, no error
    assert len(compare.depth_figure(models, "retrieval").data) == 0


def test_head_types_coincide_by_the_reports_top_k_overlap(two_models, models):
    coincidences = compare.coincidence_table(models, k=3)
    row = coincidences.query("model == 'tiny-gemma3' and a == 'sink heads' and b == 'induction heads'")
    if row.empty:  # the pair's order follows the measures' order
        row = coincidences.query("model == 'tiny-gemma3' and a == 'induction heads' and b == 'sink heads'")
    top = lambda df: set(df.sort_values(["score", "layer", "head"], ascending=[False, True, True]).head(3)[["layer", "head"]]
                         .itertuples(index=False, name=None))
    gemma = two_models[1]
    shared = len(top(table(gemma, "sinks")) & top(table(gemma, "heads")))
    assert row["shared"].item() == shared and row["chance_shared"].item() == pytest.approx(9 / 8)
    lines = compare.coincidence_lines(models, coincidences)
    for (a, b), rows in coincidences.groupby(["a", "b"], sort=False):  # a sentence per pair of head types
        (line,) = [line for line in lines if line.startswith(f"{a} and {b} ")]
        if not rows["coincide"].any():
            assert line.startswith(f"{a} and {b} do not coincide in any model ("), line
        elif rows["coincide"].all():
            assert line.startswith(f"{a} and {b} coincide in every model ("), line
    with pytest.raises(InterpError, match="k=9 must be between 1 and tiny-llama's 8 heads"):
        compare.coincidence_table(models, k=9)


def test_report_command_with_two_directories_writes_one_page(two_models, tmp_path):
    result = CliRunner().invoke(interp.cli.app, ["report", *map(str, two_models), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "What holds across models" in page and "tiny-llama" in page and "tiny-gemma3" in page
    assert "Retrieval heads are sparse" in page and "not measured" in page
    models = compare.load_models(two_models)
    assert page.count('class="plotly-graph-div"') == len(compare.depth_measures(models))
    assert f"report: {tmp_path / 'cmp' / 'compare.html'}" in result.stdout.replace("\n", "")
    # without --out: beside the directories
    result = CliRunner().invoke(interp.cli.app, ["report", *map(str, two_models)])
    assert result.exit_code == 0 and (two_models[0].parent / "compare.html").is_file(), result.output


def test_bad_input_is_one_line(two_models, tmp_path):
    llama, gemma = two_models
    with pytest.raises(InterpError, match="two or more results directories; for one, run `interp report DIR`"):
        compare.load_models([llama])
    with pytest.raises(InterpError, match="is given twice"):
        compare.load_models([llama, gemma, llama])
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(interp.cli.app, ["report", str(llama), str(tmp_path / "empty")])
    assert result.exit_code == 2 and "is not an interp results directory" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (llama.parent / "empty").exists()


def test_the_same_model_twice_is_compared_with_a_note(two_models, tmp_path):
    copy = shutil.copytree(two_models[1], tmp_path / "again")
    models = compare.load_models([two_models[1], copy])
    assert [m.label for m in models] == ["tiny-gemma3 (gemma3)", "tiny-gemma3 (again)"]
    (note,) = compare.same_model_notes(models)
    assert compare.settings_notes(models) == []  # the same scans
    assert note.startswith("tiny-gemma3 (gemma3) and tiny-gemma3 (again) hold the same model (tiny-gemma3)")
    claims = compare.claims_table(models)
    assert (claims["agrees?"] != "no").all()  # the same tables: never a disagreement
    assert note in compare.write_comparison([two_models[1], copy], tmp_path / "out").html.read_text().replace("&#x27;", "'")
