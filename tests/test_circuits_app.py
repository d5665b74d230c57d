"""The explorer's Circuits tab on a circuits scan of a tiny model (AppTest)."""

import pytest
import torch

from interp.analyses import circuits
from interp.run.results import ResultsDir
from tests.tiny import CIRCUIT_HEADS as S, app_on, charts, circuits_model as tiny


@pytest.fixture(scope="module")
def circuit_results(tmp_path_factory):
    model = tiny(only=S, dtype=torch.float32)
    out = tmp_path_factory.mktemp("circuits") / "results"
    results = ResultsDir(out)
    results.set_model("tiny-circuits", None, model.layout.as_dict())
    tables = circuits.scan(model, tasks="ioi,induction", samples=4, verify_top=4, verify_random=4, ig_steps=2)
    results.write_tables("circuits", tables)
    results.finish_analysis("circuits")
    return out, tables


def test_circuit_heads_are_outlined_and_the_overlap_shown(circuit_results, monkeypatch):
    out, tables = circuit_results
    at = app_on(out, monkeypatch)
    assert at.radio(key="circuit_task").options == ["induction", "ioi"]
    at.radio(key="circuit_task").set_value("ioi").run()
    chart = next(c for c in charts(at) if "circuit of" in c["layout"].get("title", {}).get("text", ""))
    outlined = {(round(s["x0"] + 0.45), round(s["y0"] + 0.45)) for s in chart["layout"]["shapes"] if s.get("name") == "circuit"}
    ioi = tables["ioi"]
    assert outlined == set(zip(ioi[ioi.in_circuit]["layer"], ioi[ioi.in_circuit]["head"])) and outlined <= set(S)
    overlap = next(df.value for df in at.dataframe if "iou" in df.value.columns)
    assert overlap["iou"].iloc[0] == pytest.approx(tables["overlap"]["iou"].iloc[0])
