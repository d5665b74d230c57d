"""The head atlas (interp/report.py) and `interp report DIR`: known-answer overlaps on made-up
tables, and the full report of a results directory with every analysis (retrieval, sinks,
heads of a tiny model, plus an analysis the report has never heard of), opened in headless
Chromium (screenshot: test-artifacts/report.png)."""

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom
from typer.testing import CliRunner

import interp.analyses
import interp.cli
from interp import report
from interp.analyses import head_sets
from interp.base.errors import InterpError
from interp.run.results import ResultsDir
from tests.tiny import save_tiny_long_model

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def heads_frame(scores, n_heads=4, **extra) -> pd.DataFrame:
    n = len(scores)
    return pd.DataFrame({"layer": [i // n_heads for i in range(n)], "head": [i % n_heads for i in range(n)],
                         "score": scores, **extra})


# ---- known answers -------------------------------------------------------------------------------------


def made_up_measures() -> report.Measures:
    """16 heads (4 x 4): "up" and "same" rank alike, "down" the other way round; "half" scores 8 heads."""
    up = np.arange(16, dtype=float)
    tables = {
        "up": heads_frame(up, **{"score.same": up * 2 + 1, "score_min": -up, "label": ["x"] * 16}),
        "down": heads_frame(-up),
        "half": heads_frame(np.where(up < 8, up, np.nan)),
    }
    return report.measures_from_tables(tables, {"n_layers": 4, "n_heads": 4})


def test_measures_are_score_and_score_dot_columns_only():
    measures = made_up_measures()
    assert measures.names == ["up", "up.same", "down", "half"]  # score_min and label are no measures
    assert measures.analysis == {"up": "up", "up.same": "up", "down": "down", "half": "half"}
    assert measures.labels == {} and measures.label("up") == "score" and measures.title("up") == "up"  # unknown analyses
    assert measures.top("up", 3) == [(3, 3), (3, 2), (3, 1)]
    assert measures.top("half", 20) == [(1, 3), (1, 2), (1, 1), (1, 0), (0, 3), (0, 2), (0, 1), (0, 0)]


def test_atlas_table_has_every_head_with_scores_and_ranks():
    atlas = report.atlas_table(made_up_measures())
    assert len(atlas) == 16 and list(atlas.columns[:3]) == ["layer", "head", "name"]
    best = atlas.set_index("name").loc["3.3"]
    assert best["up"] == 15 and best["up rank"] == 1 and best["down rank"] == 16 and pd.isna(best["half rank"])
    assert atlas.set_index("name").loc["1.3", "half rank"] == 1


def test_overlap_jaccard_containment_chance_and_spearman():
    overlaps = report.overlap_table(made_up_measures(), k=4).set_index(["a", "b"])
    alike = overlaps.loc[("up", "up.same")]
    assert (alike.shared, alike.jaccard, alike.containment, alike.spearman) == (4, 1.0, 1.0, pytest.approx(1.0))
    opposite = overlaps.loc[("up", "down")]
    assert (opposite.shared, opposite.jaccard, opposite.spearman) == (0, 0.0, pytest.approx(-1.0))
    assert opposite.p_value == pytest.approx(1.0)
    half = overlaps.loc[("up", "half")]  # top 4 of up: 3.x; of half: 1.x; the rank correlation only over 8 heads
    assert half.shared == 0 and half.spearman == pytest.approx(1.0)
    assert alike.chance_shared == pytest.approx(1.0) and alike.chance_jaccard == pytest.approx(1 / 7)  # 4*4/16; 1/(8-1)
    assert alike.p_value == pytest.approx(hypergeom.sf(3, 16, 4, 4))


def test_overlap_p_value_is_the_hypergeometric_tail():
    for shared in range(0, 6):
        assert head_sets.overlap_p_value(shared, 5, 5, 30) == pytest.approx(hypergeom.sf(shared - 1, 30, 5, 5))
    # chance Jaccard ~ K / (2 - K): simulated
    rng = np.random.default_rng(0)
    sims = [len(set(rng.choice(50, 10, replace=False)) & set(rng.choice(50, 10, replace=False))) for _ in range(4000)]
    assert np.mean(sims) == pytest.approx(head_sets.chance_shared(10, 10, 50), abs=0.1)


def test_highlights_name_shared_heads_and_disjoint_pairs():
    lines = report.highlights(made_up_measures(), k=2)
    assert "3.2 and 3.3 are in the top 2 of up and up.same" not in lines  # same analysis: not news
    assert any(line.startswith("No head is in the top 2 of both up / down") for line in lines)
    tables = {"sinks": heads_frame([0.9, 0.8, 0.1, 0.0, 0.1, 0.7, 0.0, 0.0]),
              "retrieval": heads_frame([0.5, 0.6, 0.0, 0.0, 0.0, 0.4, 0.0, 0.1])}
    lines = report.highlights(report.measures_from_tables(tables), k=3)
    assert lines[0] == "0.0, 0.1 and 1.1 are in the top 3 of sinks and retrieval."


def test_bad_input():
    with pytest.raises(InterpError, match="no head tables"):
        report.measures_from_tables({})
    with pytest.raises(InterpError, match="k=40 must be between 1 and the model's 16 heads"):
        report.overlap_table(made_up_measures(), k=40)


# ---- a results directory with every analysis ------------------------------------------------------------


@pytest.fixture(scope="module")
def every_analysis(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    tiny = save_tiny_long_model(root / "tiny")
    out = root / "out"
    result = CliRunner().invoke(interp.cli.app, ["scan", "--model", str(tiny), "--analyses", "retrieval,sinks,heads",
                                                 "--samples", "2", "--max-length", "200", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (root / "scan-output.txt").write_text(result.stdout)  # its headlines: the report lists the same lines
    # an analysis this module has never heard of, written the way any analysis writes its table
    ResultsDir(out).write_table("circuits", heads_frame(np.linspace(0, 1, 8)[::-1]))
    return out


def test_report_command_writes_html_and_a_png_per_analysis(every_analysis, tmp_path):
    out = tmp_path / "rep"
    result = CliRunner().invoke(interp.cli.app, ["report", str(every_analysis), "--out", str(out), "--top", "2"])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    for name in ("retrieval", "sinks", "heads", "circuits"):
        assert f"<h2 id='{name}'>" in page
        png = (out / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5_000
    for measure in ("heads.previous_token", "heads.text_first_token", "sinks", "circuits"):
        assert f"top 2: {measure}" in page
    # each analysis's score says what it is (its module's MEASURE), on the heat map too
    assert report.read_measures(every_analysis).labels == {"retrieval": "retrieval score", "sinks": "sink importance",
                                                           "heads": "induction score", "circuits": "importance"}
    assert "top 2: heads (induction score)" in page and '"title":{"text":"induction score"}' in page
    assert "retrieval has no scores" in page  # a random tiny model answers no needle
    assert not re.search(r"<script[^>]*\ssrc=", page) and "plotly.js v" in page  # the plotly JS is inlined
    assert page.count('class="plotly-graph-div"') == len(report.read_measures(every_analysis).names) + 2


def test_what_stands_out_lists_each_analysis_headline_as_the_scan_printed_it(every_analysis, tmp_path):
    import html

    printed = (every_analysis.parent / "scan-output.txt").read_text()
    page = report.write_report(every_analysis, tmp_path / "rep").html.read_text()
    stands_out = page.split("<h2>What stands out</h2>")[1].split("<h2")[0]
    results = ResultsDir(every_analysis)
    lines = {name: interp.analyses.headline(name, results.read_tables(name)) for name in ("retrieval", "sinks", "heads")}
    for name, measure in (("retrieval", "retrieval score"), ("sinks", "sink importance"), ("heads", "induction score")):
        assert lines[name][0].startswith(f"{measure} (") and f"<b>{name}</b>" in stands_out
        for line in lines[name]:
            assert f"  {line}\n" in printed and html.escape(line) in stands_out
    top = results.read_table("heads").sort_values("score", ascending=False).iloc[0]
    assert f"top {int(top.layer)}.{int(top['head'])} ({top.score:.3g})" in lines["heads"][0]
    assert lines["heads"][1].startswith("top head of each other type: previous-token ")
    assert lines["heads"][2].startswith("causal check (zero ablation): loss on the repeated half ")
    assert lines["retrieval"] == ["retrieval score (copies of the needle's answer per answered probe): top no scores",
                                  "0 of 8 heads (0.0%) score above 0.1 (retrieval heads); 0 of 2 probes answered"]
    assert lines["sinks"][1].startswith("sink rate ") and lines["sinks"][2].startswith("massive activations in ")
    assert "<b>circuits</b>" not in stands_out  # a table no circuits scan wrote: no headline to give


def test_report_of_a_bad_directory_is_one_line(tmp_path):
    result = CliRunner().invoke(interp.cli.app, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_without_matplotlib_the_html_is_still_written(every_analysis, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    written = report.write_report(every_analysis, tmp_path / "rep")
    assert written.html.is_file() and written.pngs == []
    assert written.messages == ["no PNGs: they are drawn with matplotlib, which is not installed (pip install matplotlib)"]


@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Debian's chromium is not installed: apt-get install -y chromium")
def test_the_report_opens_offline_in_headless_chromium(every_analysis, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package ([dev] extra) is not installed")
    from tests.tiny import CHROMIUM_ARGS

    written = report.write_report(every_analysis, tmp_path / "rep")
    n_figures = len(report.read_measures(every_analysis).names) + 2
    requested = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            # anything but the file itself would need the network: refuse it, and remember it
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                       else (requested.append(route.request.url), route.abort()))
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(written.html.as_uri())
            page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n_figures}",
                                   timeout=60_000)
            assert page.locator(".js-plotly-plot").count() == n_figures
            assert page.get_by_role("heading", name="Head atlas").is_visible()
            assert page.get_by_role("heading", name="What stands out").is_visible()
            page.wait_for_timeout(500)
            artifacts = REPO / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        finally:
            browser.close()
    assert requested == [] and errors == []
    assert (artifacts / "report.png").stat().st_size > 50_000
