"""Every notebook in notebooks/ runs top to bottom on the bundled model, and shows what it exists to
show: each notebook has a check below that reads the executed notebook's cell outputs (printed lines,
the HTML of its tables, the JSON of its plotly figures) and asserts that its key result is there and
plausible, cross-checked where two outputs show the same numbers (a figure against a table, a
printed count against a figure)."""

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from tests.tiny import values

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
PLOTLY = "application/vnd.plotly.v1+json"
N_LAYERS, N_HEADS = 30, 9  # SmolLM2-135M-Instruct


class _TableParser(HTMLParser):
    """The cells of the rows of an HTML table, as pandas' to_html writes it (th and td alike)."""

    def __init__(self):
        super().__init__()
        self.rows, self.head_rows, self.cell, self.in_head = [], 0, None, False

    def handle_starttag(self, tag, attrs):
        if tag in ("thead", "tbody"):
            self.in_head = tag == "thead"
        elif tag == "tr":
            self.rows.append([])
            self.head_rows += self.in_head
        elif tag in ("th", "td"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self.rows[-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def html_table(html: str) -> pd.DataFrame:
    """A DataFrame's HTML (its first header row: the column names; then index and values per row),
    with numeric (NaN included) and True/False columns converted back."""
    parser = _TableParser()
    parser.feed(html)
    columns = parser.rows[0][1:]
    body = parser.rows[parser.head_rows:]
    table = pd.DataFrame([row[1:] for row in body], index=[row[0] for row in body], columns=columns)
    for column in table.columns:
        if set(table[column]) <= {"True", "False"}:
            table[column] = table[column] == "True"
        else:
            try:
                table[column] = pd.to_numeric(table[column].mask(table[column] == "NaN"))
            except ValueError:
                pass
    return table


class Executed:
    """The outputs of an executed notebook, found by a piece of each cell's source."""

    def __init__(self, notebook):
        self.cells = [cell for cell in notebook.cells if cell.cell_type == "code"]

    def outputs(self, snippet: str) -> list:
        found = [cell for cell in self.cells if snippet in cell.source]
        assert len(found) == 1, f"{len(found)} code cells contain {snippet!r}"
        return found[0].outputs

    def stdout(self, snippet: str) -> str:
        return "".join(o["text"] for o in self.outputs(snippet) if o["output_type"] == "stream" and o["name"] == "stdout")

    def shown(self, snippet: str, mime: str):
        shown = [o["data"][mime] for o in self.outputs(snippet)
                 if o["output_type"] in ("execute_result", "display_data") and mime in o["data"]]
        assert len(shown) == 1, f"the cell with {snippet!r} shows {len(shown)} outputs of type {mime}"
        return shown[0]

    def table(self, snippet: str) -> pd.DataFrame:
        return html_table(self.shown(snippet, "text/html"))

    def figure(self, snippet: str) -> dict:
        return self.shown(snippet, PLOTLY)

    def text(self, snippet: str) -> str:
        return self.shown(snippet, "text/plain")


def heatmap(figure) -> np.ndarray:
    """The z values of a figure's one heat map: [head, layer] of the bundled model."""
    (trace,) = [t for t in figure["data"] if t["type"] == "heatmap"]
    z = values(trace["z"]).astype(float)
    assert z.shape == (N_HEADS, N_LAYERS)
    return z


def assert_heatmap_shows(z: np.ndarray, table: pd.DataFrame, column: str):
    """Every row of a head table has its value at [head, layer] of the heat map (tables show 6 decimals)."""
    for row in table.itertuples():
        assert z[row.head, row.layer] == pytest.approx(getattr(row, column), abs=2e-6, rel=1e-5)


def head_names(table: pd.DataFrame) -> list[str]:
    return [f"{layer}.{head}" for layer, head in zip(table["layer"], table["head"])]


def is_descending(series) -> bool:
    return bool((np.diff(np.asarray(series, dtype=float)) <= 0).all())


CHECKS = {}


def check(name):
    def register(function):
        CHECKS[name] = function
        return function

    return register


@check("quickstart")
def _(nb):
    assert nb.text("model = interp.load_model()").startswith(f"HeadLayout(n_layers={N_LAYERS}, n_heads={N_HEADS},")
    sink = "put more than half their attention"
    count = re.fullmatch(r"(\d+) of 270 heads put more than half their attention on the first token\n", nb.stdout(sink))
    z = heatmap(nb.figure(sink))  # mass on token 0 of every head
    assert ((z >= 0) & (z <= 1 + 1e-6)).all() and 0 < int(count[1]) == (z > 0.5).sum() < 270
    focused = re.fullmatch(r"most focused head \(lowest entropy\): \((\d+), (\d+)\)\n", nb.stdout("entropy.argmin"))
    assert int(focused[1]) < N_LAYERS and int(focused[2]) < N_HEADS
    clean, ablated = re.fullmatch(r"clean: +(.+)\nablated: (.+)\n", nb.stdout("ZeroAblation(heads)")).groups()
    assert "Paris" in clean and ablated.strip()  # the bundled model answers the question


@check("sinks")
def _(nb):
    summary = nb.table('tables["summary"]').set_index("metric")["value"]
    assert 0.2 < summary["sink_rate"] < 1 and summary["top_sink_carries_massive"] == 1
    top = nb.table('heads.sort_values("score"')
    assert len(top) == 8 and is_descending(top["score"]) and top["score"].iloc[0] > 0.5
    assert (top["score_min"] <= top["score"]).all() and top["sink_rate"].between(0, 1).all()
    z = heatmap(nb.figure("Sink score per head"))
    assert_heatmap_shows(z, top, "score")
    assert z.max() == pytest.approx(top["score"].iloc[0], abs=2e-6)  # the table's first head is the best
    massive = nb.table('tables["massive_entries"]')
    assert len(massive) == 10 and (massive["value"].abs() > 100).all() and (massive["ratio"] > 100).all()
    assert (massive["position"] == 0).all()  # SmolLM2's massive activations sit on the first token
    tokens = nb.table('tables["tokens"]')
    assert len(tokens) == 10 and tokens["importance"].idxmax() == tokens.index[tokens["position"] == 0][0]
    assert tokens["sink_heads"].iloc[0] > 0  # ... which is the top sink token


@check("retrieval")
def _(nb):
    probes = nb.table("retrieval.scan(")
    assert len(probes) == 4 and (probes["length"] == 256).all() and set(probes["depth"]) == {0.25, 0.75}
    assert (probes["prompt_tokens"] <= 256).all() and probes["answered"].equals(probes["rouge"] >= 0.5)
    summary = re.fullmatch(r"answered (\d+)% of the probes; (\d+) heads score > 0.1\n", nb.stdout("answered_fraction"))
    assert int(summary[1]) == round(100 * probes["answered"].mean()) > 0  # some probes answered: scores defined
    top = nb.table("answered_fraction")
    assert len(top) == 8 and is_descending(top["score"]) and top["score"].between(0, 1).all()
    assert top["is_retrieval"].equals(top["score"] > 0.1) and top["copies"].ge(0).all()
    z = heatmap(nb.figure("Retrieval score per head"))
    assert_heatmap_shows(z, top, "score")
    assert int(summary[2]) == (z > 0.1).sum() > 0
    causal = nb.table('tables["causal"]')
    assert list(causal["condition"]) == ["baseline", "top", "random"] and causal["accuracy"].between(0, 1).all()
    # the top condition masks the 4 best heads of the heat map (ties: lower layer, then head, first)
    order = sorted(((-z[h, l], l, h) for l in range(N_LAYERS) for h in range(N_HEADS)))[:4]
    assert causal["heads"].iloc[1] == ",".join(f"{l}.{h}" for _, l, h in order)
    assert not set(causal["heads"].iloc[2].split(",")) & set(causal["heads"].iloc[1].split(","))


@check("circuits")
def _(nb):
    lines = nb.stdout("acc = torch.cat").splitlines()
    assert len(lines) == 2
    for line, task in zip(lines, ("ioi", "colored_objects")):
        accuracy, clean, corrupt = re.fullmatch(rf"{task}: accuracy (\d+)%, logit diff clean (\S+), corrupted (\S+)", line).groups()
        assert int(accuracy) > 50 and float(clean) > 0 > float(corrupt)  # the corruption flips the answer
    summary = nb.table("tables['summary']").set_index("task")
    assert list(summary.index) == ["ioi", "colored_objects"]
    assert (summary["clean_logit_diff"] > summary["corrupt_logit_diff"]).all()
    assert summary["circuit_size"].between(1, 270).all() and (summary["faithfulness"] >= 0.8).all()  # the target
    assert (summary["verify_spearman"] > 0.5).all()  # attribution agrees with exact patching of the verified heads
    ioi = nb.table("tables['ioi'].sort_values('rank')")
    assert len(ioi) == 10 and is_descending(ioi["ig"].abs())  # ranked by |integrated gradients|
    assert ioi["in_circuit"].equals(pd.Series(np.arange(10) < summary.loc["ioi", "circuit_size"], index=ioi.index))
    overlap = nb.table("tables['overlap'].T")["0"]
    assert (overlap["task_a"], overlap["task_b"]) == ("ioi", "colored_objects")
    a, b, shared = (int(overlap[k]) for k in ("size_a", "size_b", "intersection"))
    assert (a, b) == tuple(summary["circuit_size"]) and shared <= min(a, b)
    assert float(overlap["iou"]) == pytest.approx(shared / (a + b - shared), abs=1e-6)
    curves = {t["name"]: (values(t["x"]), values(t["y"])) for t in nb.figure("px.line(tables['faithfulness']")["data"]}
    assert set(curves) == {"ioi", "colored_objects"}
    for task, (k, f) in curves.items():  # f(0) = 0 and f(all heads) = 1 by definition; f(circuit) as in the summary
        assert k[0] == 0 and f[0] == pytest.approx(0, abs=1e-6) and k[-1] == 270 and f[-1] == pytest.approx(1)
        assert f[list(k).index(summary.loc[task, "circuit_size"])] == pytest.approx(summary.loc[task, "faithfulness"], abs=1e-5)
    figure = nb.figure("circuit heads marked")
    heatmap(figure)
    (marked,) = [t for t in figure["data"] if t.get("name") == "circuit"]
    assert len(values(marked["x"])) == summary.loc["ioi", "circuit_size"]


@check("divergence")
def _(nb):
    assert re.search(r"'Context: .*' context span \(\d+, \d+\)\n", nb.stdout("dv.context_prompt(model, items[0])"))
    z = heatmap(nb.figure("px.imshow(grid"))
    top = nb.table('heads.sort_values("filtered"')
    assert len(top) == 10 and is_descending(top["filtered"]) and (z >= 0).all()
    assert (top["filtered"] <= top["score"] + 1e-6).all() and top["cosine"].between(0, 2).all()
    assert top["outlier_rate"].between(0, 1).all()
    assert_heatmap_shows(z, top, "filtered")
    effect = {name.strip(): (int(share), float(diff)) for name, share, diff in
              re.findall(r"^(.+?) +follows the context (\d+)% +mean logit diff (\S+)$", nb.stdout("reinforce_pairs"), re.M)}
    assert list(effect) == ["none", "VHR heads x 2.0", "VHR heads x 0.5"]
    # the notebook's answer: doubling the high-divergence heads pushes the model towards the context, halving away
    assert effect["VHR heads x 2.0"][1] > effect["none"][1] > effect["VHR heads x 0.5"][1]
    assert effect["VHR heads x 2.0"][0] > effect["none"][0] > effect["VHR heads x 0.5"][0]


@check("head_atlas")
def _(nb):
    assert f"{N_LAYERS} layers x {N_HEADS} heads" in nb.text("model = interp.load_model()")
    tops = {}
    for line in nb.stdout('interp.scan(model, "heads"').splitlines():
        column, rest = line.split(maxsplit=1)
        tops[column] = [(name, float(s)) for name, s in re.findall(r"(\d+\.\d+) \(([\d.]+)\)", rest)]
    assert list(tops) == ["score", "score.previous_token", "score.duplicate_token", "score.first_token"]
    for top in tops.values():
        scores = [s for _, s in top]
        assert len(top) == 5 and is_descending(scores) and 0 <= min(scores) and max(scores) <= 1
    assert tops["score"][0][1] > 0.5  # SmolLM2 has induction heads
    causal = nb.table('read_table("heads", "causal")').set_index("condition")
    assert list(causal.index) == ["clean", "top induction", "random", "random"]
    top_loss = causal.loc["top induction", "loss_repeated_half"]
    assert top_loss > causal.loc["clean", "loss_repeated_half"] and (top_loss > causal.loc["random", "loss_repeated_half"]).all()
    assert causal.loc["top induction", "heads"] == ",".join(name for name, _ in tops["score"])
    ours, detector = map(float, re.fullmatch(r"head \d+\.\d+: ours ([\d.]+), detector convention ([\d.]+)\n",
                                              nb.stdout("heads.detector_scores")).groups())
    assert detector / ours == pytest.approx(48 / 97, abs=0.01)  # 48 of the 97 queries of [BOS] + r + r have a target
    highlights = nb.stdout("report.highlights").splitlines()
    assert highlights and all(line.startswith("- ") for line in highlights)
    overlaps = nb.table("report.overlap_table")
    assert len(overlaps) > 1 and (overlaps["b"] == "sinks").all()
    # top 10 against top 10: the union holds 20 - shared heads
    assert np.allclose(overlaps["jaccard"], overlaps["shared"] / (20 - overlaps["shared"]), atol=1e-6)
    z = heatmap(nb.figure("report.heatmap_figure"))
    path, pngs, messages = re.fullmatch(r"(\S+) (\[.*\]) (\[.*\])\n", nb.stdout("report.write_report")).groups()
    assert path.endswith("report.html") and ast.literal_eval(pngs) == ["heads.png", "sinks.png"] and messages == "[]"
    atlas = nb.table("report.atlas_table")
    assert len(atlas) == 10 and list(atlas["heads rank"]) == list(range(1, 11)) and is_descending(atlas["heads"])
    assert head_names(atlas)[:5] == [name for name, _ in tops["score"]]  # the atlas reads what the heads scan wrote
    assert_heatmap_shows(z, atlas, "heads")


@check("safety_heads")
def _(nb):
    judges = nb.table("safety_data.judge_accuracy()").set_index("judge")
    assert (judges["n"] == 105).all()
    counts = judges[["true_refusal", "missed_refusal", "false_refusal", "true_answer"]].sum(axis=1)
    assert (counts == 105).all()
    assert np.allclose(judges["accuracy"], (judges["true_refusal"] + judges["true_answer"]) / 105, atol=1e-6)
    assert judges.loc["interp", "accuracy"] > judges.loc["original keyword rule", "accuracy"]
    labels = re.findall(r"Verdict\(label='(\w+)'", nb.stdout("safety_data.judge(text)"))
    assert labels == ["refusal", "compliance", "compliance", "broken", "broken"]
    (bar,) = nb.figure("safety.head_effects(tiny")["data"]
    kl = dict(zip(values(bar["x"]), values(bar["y"]).astype(float)))
    assert len(kl) == 8 and max(kl, key=kl.get) == "1.2"  # the planted refusal head
    assert all(v < 1e-3 * kl["1.2"] for head, v in kl.items() if head != "1.2")
    picks = ast.literal_eval(nb.text("safety.sahara("))
    assert [p["step"] for p in picks] == [1, 2] and picks[0]["head"] == "1.2" and picks[1]["group"].startswith("1.2,")
    answers = re.findall(r"^(\w+) +'.*'\n +-> ", nb.stdout("model.answers(harmful"), re.M)
    assert len(answers) == 4 and set(answers) <= {"refusal", "compliance", "broken"}
    assert answers.count("refusal") <= 1  # the bundled model barely refuses
    for name, rows in (("refusal", 8), ("heads-refusal", 6)):  # the organisms: a table if built, else how to build them
        snippet = f'recipe = organisms.RECIPES["{name}"]'
        if f"the {name} organism is not built" in nb.stdout(snippet):
            assert f"python -m interp.organisms {name}" in nb.stdout(snippet)
        else:
            assert len(nb.table(snippet)) == rows


@check("vision")
def _(nb):
    built = re.match(r"vision organism cached: (True|False)\n", nb.stdout("vision.is_built()"))
    assert built, "the notebook says whether the organism is cached"
    figure = nb.figure("scene_data.scenes(4")
    assert [t["type"] for t in figure["data"]] == ["image"] * 4  # the generator works everywhere
    assert [t["type"] for t in nb.figure("scene_data.photos()")["data"]] == ["image"] * 6  # so do the photos
    if built[1] == "False":  # CI: nothing cached, nothing built
        assert "python -m interp.organisms vision" in nb.stdout("vision.is_built()")
        assert nb.stdout(SCENE_VHD).startswith("not built") and nb.stdout(SCENE_LOOK).startswith("not built")
        for snippet in (PHOTO_VHD, PHOTO_LOOK):  # the photo section says how to build it
            assert nb.stdout(snippet).startswith("not built") and "python -m interp.organisms vision" in nb.stdout(snippet)
        return
    top = nb.table(SCENE_VHD)
    assert len(top) == 8 and is_descending(top["filtered"]) and (top["filtered"] > 0).all()
    assert (top["vhd"] >= top["filtered"] - 1e-6).all()  # the filter only zeroes
    assert ((top["layer"] >= 0) & (top["layer"] < N_LAYERS) & (top["head"] >= 0) & (top["head"] < N_HEADS)).all()
    said = re.fullmatch(r"head (\d+)\.(\d+) puts ([\d.]+) of its attention on the image of (\S+)\n",
                        nb.stdout(SCENE_LOOK))
    assert said and (int(said[1]), int(said[2])) == (top["layer"].iloc[0], top["head"].iloc[0])
    assert_attention_grid(nb.figure(SCENE_LOOK), float(said[3]))

    # the real photos: VHD of every head on them, and the top two heads drawn over two of them
    on_photos = nb.table(PHOTO_VHD)
    assert len(on_photos) == 8 and is_descending(on_photos["filtered"]) and (on_photos["filtered"] > 0).all()
    assert (on_photos["vhd"] >= on_photos["filtered"] - 1e-6).all()
    assert on_photos["rank on scenes"].between(1, N_LAYERS * N_HEADS).all()
    said = re.findall(r"head (\d+)\.(\d+) puts ([\d.]+) of its attention on the photo (\S+)\n", nb.stdout(PHOTO_LOOK))
    shown_heads = sorted({(int(layer), int(head)) for layer, head, _, _ in said})
    assert len(said) == 4 and shown_heads == sorted(zip(on_photos["layer"][:2], on_photos["head"][:2]))
    figures = [o["data"][PLOTLY] for o in nb.outputs(PHOTO_LOOK) if o["output_type"] == "display_data" and PLOTLY in o["data"]]
    assert len(figures) == 4
    for (layer, head, mass, photo), figure in zip(said, figures):
        assert figure["layout"]["title"]["text"] == f"head {layer}.{head} on {photo}"
        assert_attention_grid(figure, float(mass))


SCENE_VHD, SCENE_LOOK = "held_out = dv.default_scenes()", "key, image = held_out[0]"  # the vision notebook's cells
PHOTO_VHD, PHOTO_LOOK = "on_photos = dv.divergence(", "photos_by_name = dict(photo_list)"


def assert_attention_grid(figure, said: float):
    """A head's attention over the 4 x 4 grid of image tokens, drawn over the image: it sums to what the cell printed."""
    assert [t["type"] for t in figure["data"]] == ["image", "heatmap"]
    grid = values(figure["data"][1]["z"]).astype(float)
    assert grid.shape == (4, 4) and (grid >= 0).all()
    assert grid.sum() == pytest.approx(said, abs=1e-4) and 0 < grid.sum() <= 1 + 1e-6


def test_every_notebook_has_a_check_of_its_key_output():
    assert sorted(CHECKS) == [path.stem for path in NOTEBOOKS]


def test_html_tables_read_back():
    frame = pd.DataFrame({"layer": [1, 0], "name": ["a b", ""], "flag": [True, False], "x": [0.5, float("nan")]},
                         index=[7, 3])
    table = html_table(frame.to_html())
    assert list(table.index) == ["7", "3"] and list(table.columns) == ["layer", "name", "flag", "x"]
    assert table["layer"].tolist() == [1, 0] and table["name"].tolist() == ["a b", ""] and table["flag"].tolist() == [True, False]
    assert table["x"].iloc[0] == 0.5 and np.isnan(table["x"].iloc[1])


@pytest.mark.bundled
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_shows_its_result(path):
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    CHECKS[path.stem](Executed(notebook))


@check("patching")
def _(nb):
    compared = nb.table("compared = top.merge(")
    assert len(compared) == 10
    # the exact patch of the heads attribution ranks first: rank agreement printed from the table itself
    rho = float(nb.stdout("compared = top.merge(").split(": ")[-1])
    assert rho == pytest.approx(compared[["score_attribution", "score_exact"]].corr("spearman").iloc[0, 1], abs=0.01)
    assert abs(compared["score_exact"].iloc[0]) > 0.05  # the top head matters when really patched
    assert_heatmap_shows(heatmap(nb.figure("attribution = patching.gradient_scores(")), compared.rename(
        columns={"score_attribution": "score"}), "score")
    path = nb.stdout("sender = (")
    assert path.startswith("path ") or "no later top head" in path
