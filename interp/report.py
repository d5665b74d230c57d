"""The head atlas: every analysis of one results directory joined into one view.

A *measure* is one column of per-head scores: each analysis's `score`, named after the
analysis, and every numeric `score.<what>` column of its head table, named
"<analysis>.<what>" (the heads analysis writes score.previous_token, ...). Nothing here
knows any analysis by name: a new analysis shows up as soon as its table is in the directory,
and its `score` is labelled with what it measures (its module's MEASURE) when interp has it.

    measures = read_measures(ResultsDir("results/smollm2"))
    atlas_table(measures)            # every head, every measure's score and rank
    overlap_table(measures, k=10)    # top-k overlap (Jaccard, containment, chance, p) and Spearman
    pair_overlap(measures, "heads", "sinks", k=10)   # one row of it
    highlights(measures, k=10)       # a few sentences on what stands out across analyses
    analysis_headlines(results, measures)   # per analysis: the lines `interp scan` printed
    write_report("results/smollm2")  # report/report.html (self-contained) + one PNG per analysis

The CLI (`interp report DIR`) and the explorer (its heat maps, Compare and Atlas tabs) call
these same functions; the overlap statistics themselves are interp.analyses.head_sets'. The
per-analysis lines of "what stands out" are each analysis's headline (interp.analyses.headline),
the same text `interp scan` prints at its end.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import pandas as pd

from interp.analyses.head_sets import chance_jaccard, chance_shared, overlap
from interp.base.errors import InterpError
from interp.run.results import ResultsDir, open_results

DEFAULT_K = 10  # top heads per measure (capped at a quarter of the heads for tiny models)
MEASURE_PREFIX = "score."  # "score.<what>" columns are measures of their own


@dataclass
class Measures:
    """Per-head scores: `scores` has one column per measure and a (layer, head) index over every head."""

    scores: pd.DataFrame
    analysis: dict[str, str]  # measure -> the analysis whose table holds it
    n_layers: int
    n_heads: int
    labels: dict[str, str] = field(default_factory=dict)  # measure -> what its score is, where known

    def label(self, measure: str) -> str:
        """What the measure's score is ("induction score"), or plain "score"."""
        return self.labels.get(measure, "score")

    def title(self, measure: str) -> str:
        """The measure's name, with what its score is where known: "heads (induction score)"."""
        return f"{measure} ({self.labels[measure]})" if measure in self.labels else measure

    @property
    def names(self) -> list[str]:
        return list(self.scores.columns)

    @property
    def n(self) -> int:
        return self.n_layers * self.n_heads

    def analyses(self) -> list[str]:
        return list(dict.fromkeys(self.analysis.values()))

    def of(self, analysis: str) -> list[str]:
        return [m for m in self.names if self.analysis[m] == analysis]

    def top(self, measure: str, k: int) -> list[tuple[int, int]]:
        """The k best heads (ties: lower layer, then lower head); NaN scores are never in a top k."""
        column = self.scores[measure].dropna()
        order = sorted(column.items(), key=lambda item: (-item[1], item[0]))
        return [head for head, _ in order[:k]]


def head_name(layer: int, head: int) -> str:
    return f"{layer}.{head}"


def score_measure(analysis: str) -> str | None:
    """What an analysis's `score` column is (its module's MEASURE); None for an analysis interp
    does not know (a table written by someone else's code)."""
    from interp import analyses  # the front door may import the analyses; only when asked

    try:
        return analyses.get(analysis).MEASURE
    except (InterpError, ImportError):
        return None


def measures_from_tables(tables: dict[str, pd.DataFrame], layout: dict | None = None) -> Measures:
    """Measures of head tables by analysis; layout (n_layers, n_heads) from the manifest or the tables."""
    if not tables:
        raise InterpError("no head tables to report on: run `interp scan` first")
    layout = layout or {}
    if "n_layers" in layout and "n_heads" in layout:
        n_layers, n_heads = int(layout["n_layers"]), int(layout["n_heads"])
    else:
        every = pd.concat(tables.values())
        n_layers, n_heads = int(every["layer"].max()) + 1, int(every["head"].max()) + 1
    index = pd.MultiIndex.from_product([range(n_layers), range(n_heads)], names=["layer", "head"])
    columns, analysis, labels = {}, {}, {}
    for name, df in tables.items():
        df = df.set_index(["layer", "head"])
        for column in df.columns:
            if column != "score" and not column.startswith(MEASURE_PREFIX):
                continue
            if not pd.api.types.is_numeric_dtype(df[column]) or pd.api.types.is_bool_dtype(df[column]):
                continue
            measure = name if column == "score" else f"{name}.{column[len(MEASURE_PREFIX):]}"
            columns[measure] = df[column].astype(float).reindex(index)
            analysis[measure] = name
        label = score_measure(name) if "score" in df.columns else None
        if label:
            labels[name] = label
    return Measures(pd.DataFrame(columns, index=index), analysis, n_layers, n_heads, labels)


def read_measures(results: ResultsDir | str | Path) -> Measures:
    """Every head table of a results directory (per-sample tables are left out)."""
    results = results if isinstance(results, ResultsDir) else open_results(results)
    tables = {name: results.read_table(name) for name, table in results.tables() if table is None}
    if not tables:
        raise InterpError(f"{results.path} holds no head tables yet: run `interp scan --out {results.path}` to completion")
    return measures_from_tables(tables, (results.manifest.get("model") or {}).get("layout"))


def default_k(measures: Measures) -> int:
    return max(1, min(DEFAULT_K, measures.n // 4))


# ---- tables ------------------------------------------------------------------------------------------


def atlas_table(measures: Measures) -> pd.DataFrame:
    """One row per head: layer, head, name, then per measure its score and its rank (1 = best;
    heads without a score have no rank)."""
    table = measures.scores.reset_index()
    table.insert(2, "name", [head_name(l, h) for l, h in zip(table["layer"], table["head"])])
    for measure in measures.names:
        ranks = {head: rank for rank, head in enumerate(measures.top(measure, measures.n), start=1)}
        table[f"{measure} rank"] = pd.array([ranks.get(h) for h in measures.scores.index], dtype="Int64")
    ordered = ["layer", "head", "name"] + [c for m in measures.names for c in (m, f"{m} rank")]
    return table[ordered]


def pair_overlap(measures: Measures, a: str, b: str, k: int) -> dict:
    """How the top k of measures a and b overlap: shared heads, Jaccard, containment (shared / k),
    the chance levels for k of n heads, the hypergeometric p-value, and the Spearman rank
    correlation over the heads both score."""
    top_a, top_b = set(measures.top(a, k)), set(measures.top(b, k))
    both = measures.scores[[a, b]].dropna()
    rho = both[a].corr(both[b], method="spearman") if len(both) > 2 else math.nan
    stats = overlap(top_a, top_b, measures.n)
    row = {"a": a, "b": b, "k": k, "shared": stats["intersection"], "jaccard": math.nan, "containment": math.nan,
           "chance_shared": chance_shared(k, k, measures.n), "chance_jaccard": chance_jaccard(k, k, measures.n),
           "p_value": math.nan, "spearman": rho, "shared_heads": ", ".join(head_name(*h) for h in sorted(top_a & top_b))}
    if len(top_a) == k and len(top_b) == k:  # a measure with fewer than k scored heads has no top k
        row.update(jaccard=stats["iou"], containment=stats["containment_a"], p_value=stats["p_value"])
    return row


def overlap_table(measures: Measures, k: int | None = None) -> pd.DataFrame:
    """One row per pair of measures (pair_overlap)."""
    k = default_k(measures) if k is None else int(k)
    if not 1 <= k <= measures.n:
        raise InterpError(f"k={k} must be between 1 and the model's {measures.n} heads")
    rows = [pair_overlap(measures, a, b, k) for a, b in combinations(measures.names, 2)]
    return pd.DataFrame(rows, columns=["a", "b", "k", "shared", "jaccard", "containment", "chance_shared",
                                       "chance_jaccard", "p_value", "spearman", "shared_heads"])


def chance_note(measures: Measures, k: int) -> str:
    """The chance levels of top-k overlaps in words, beside every overlap table."""
    return (f"Chance for two random sets of {k} of {measures.n} heads: {chance_shared(k, k, measures.n):.2f} shared, "
            f"Jaccard {chance_jaccard(k, k, measures.n):.3f}, containment {k / measures.n:.3f}. "
            "p = hypergeometric probability of sharing at least that many by chance.")


def pair_matrix(overlaps: pd.DataFrame, measures: Measures, value: str) -> pd.DataFrame:
    """A symmetric measure x measure matrix of one overlap_table column (1 on the diagonal)."""
    matrix = pd.DataFrame(1.0, index=measures.names, columns=measures.names)
    for row in overlaps.itertuples():
        matrix.loc[row.a, row.b] = matrix.loc[row.b, row.a] = getattr(row, value)
    return matrix


# ---- what stands out ---------------------------------------------------------------------------------


def join_words(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _names(heads) -> str:
    return join_words([head_name(*h) for h in sorted(heads)])


def highlights(measures: Measures, k: int | None = None, limit: int = 12, overlaps: pd.DataFrame | None = None) -> list[str]:
    """Short sentences on what stands out: heads in the top k of measures of different
    analyses, pairs that overlap far above chance (p < 0.01) or not at all, strong rank
    correlations, measures without scores. overlaps: overlap_table(measures, k), if made."""
    k = default_k(measures) if k is None else int(k)
    overlaps = overlap_table(measures, k) if overlaps is None else overlaps
    # pairs from different analyses (a Series mask: a plain empty list would select columns)
    across = overlaps[overlaps.a.map(measures.analysis) != overlaps.b.map(measures.analysis)]
    lines = [f"{m} has no scores (every head is NaN), so it takes part in no comparison."
             for m in measures.names if measures.scores[m].isna().all()]
    # heads in the top k of measures of two or more analyses, grouped by the exact set of measures
    groups: dict[tuple[str, ...], list] = {}
    tops = {m: set(measures.top(m, k)) for m in measures.names}
    for head in measures.scores.index:
        where = tuple(m for m in measures.names if head in tops[m])
        if len({measures.analysis[m] for m in where}) >= 2:
            groups.setdefault(where, []).append(head)
    for where, heads in sorted(groups.items(), key=lambda item: (-len(item[0]), -len(item[1])))[:5]:
        verb = "is" if len(heads) == 1 else "are"
        lines.append(f"{_names(heads)} {verb} in the top {k} of {join_words(list(where))}.")
    for row in across[across["p_value"] < 0.01].sort_values("p_value").head(4).itertuples():
        lines.append(f"{row.a} and {row.b} share {row.shared} of their top {k} heads (chance {row.chance_shared:.2g}; "
                     f"Jaccard {row.jaccard:.2f} vs {row.chance_jaccard:.2f} by chance; p = {row.p_value:.1g}).")
    strong = across[across["spearman"].abs() >= 0.5].sort_values("spearman", key=abs, ascending=False).head(3)
    for row in strong.itertuples():
        direction = "rank heads alike" if row.spearman > 0 else "rank heads in opposite order"
        lines.append(f"{row.a} and {row.b} {direction} (Spearman {row.spearman:+.2f} over all heads).")
    disjoint = [f"{r.a} / {r.b}" for r in across.itertuples() if r.shared == 0 and not math.isnan(r.jaccard)]
    if disjoint:
        more = " (and more pairs)" if len(disjoint) > 4 else ""
        lines.append(f"No head is in the top {k} of both {join_words(disjoint[:4])}{more}.")
    return lines[:limit]


def analysis_headlines(results: ResultsDir, measures: Measures) -> dict[str, list[str]]:
    """analysis -> its headline, the lines `interp scan` printed for it: for the analyses interp knows
    that a scan finished here (a table written otherwise may lack the tables a headline reads)."""
    from interp import analyses  # the front door may import the analyses; only when asked

    entries = results.manifest["analyses"]
    return {name: analyses.headline(name, results.read_tables(name)) for name in measures.analyses()
            if name in analyses.ANALYSES and entries.get(name, {}).get("status") == "done"}


# ---- figures -----------------------------------------------------------------------------------------


def _grid(measures: Measures, measure: str) -> pd.DataFrame:
    """Heads down, layers across."""
    return measures.scores[measure].unstack("layer").reindex(index=range(measures.n_heads), columns=range(measures.n_layers))


def heatmap_figure(measures: Measures, measure: str):
    """Layer x head heat map of one measure (layers across, heads down; the explorer's too)."""
    import plotly.graph_objects as go

    grid = _grid(measures, measure)
    label = measures.label(measure)
    fig = go.Figure(go.Heatmap(z=grid.values, x=list(grid.columns), y=list(grid.index), colorscale="Viridis",
                               colorbar=dict(title=label), hovertemplate=f"head %{{x}}.%{{y}}<br>{label} %{{z:.4g}}<extra></extra>"))
    fig.update_layout(title=measures.title(measure), xaxis=dict(title="layer"), yaxis=dict(title="head", autorange="reversed"),
                      height=max(260, 22 * measures.n_heads + 140), margin=dict(l=10, r=10, t=40, b=10))
    return fig


def matrix_figure(matrix: pd.DataFrame, title: str, zmin: float, zmax: float):
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=matrix.values, x=list(matrix.columns), y=list(matrix.index), zmin=zmin, zmax=zmax,
                               colorscale="RdBu" if zmin < 0 else "Viridis", reversescale=zmin < 0,
                               text=matrix.round(2).values, texttemplate="%{text}", hovertemplate="%{y} / %{x}: %{z:.3f}<extra></extra>"))
    size = max(360, 40 * len(matrix) + 160)
    fig.update_layout(title=title, height=size, margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(autorange="reversed"))
    return fig


def image_attention_figure(image, grid, title: str, width: int = 520, height: int = 480):
    """A PIL image with a grid of attention [rows, cols] laid over it, one cell per image token (a vision
    model's head on an image: analyses.divergence.image_attention; the explorer's and notebooks')."""
    import numpy as np
    import plotly.graph_objects as go

    grid = np.asarray(grid)
    image_width, image_height = image.size
    cell_width, cell_height = image_width / grid.shape[1], image_height / grid.shape[0]
    fig = go.Figure(go.Image(z=np.asarray(image)))
    fig.add_trace(go.Heatmap(z=grid, x0=cell_width / 2, dx=cell_width, y0=cell_height / 2, dy=cell_height, opacity=0.45,
                             zmin=0, colorscale="Reds", colorbar_title="attention"))  # the scale starts at no attention
    fig.update_layout(title=title, width=width, height=height, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def top_heads_frame(measures: Measures, measure: str, k: int) -> pd.DataFrame:
    rows = [{"rank": r, "head": head_name(*h), "score": measures.scores[measure][h]}
            for r, h in enumerate(measures.top(measure, k), start=1)]
    return pd.DataFrame(rows, columns=["rank", "head", "score"])


def write_png(measures: Measures, analysis: str, path: Path, k: int) -> None:
    """One PNG of an analysis: a heat map per measure with its top heads. matplotlib (no browser needed)."""
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    names = measures.of(analysis)
    fig, axes = plt.subplots(len(names), 1, figsize=(max(6, 0.32 * measures.n_layers + 3), (0.3 * measures.n_heads + 1.6) * len(names)),
                             squeeze=False)
    for ax, measure in zip(axes[:, 0], names):
        grid = _grid(measures, measure)
        image = ax.imshow(grid.values.astype(float), aspect="auto", cmap="viridis", interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.03)
        top = ", ".join(f"{head_name(*h)}" for h in measures.top(measure, min(k, 5))) or "no scores"
        ax.set_title(f"{measures.title(measure)} - top: {top}", fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylabel("head")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- the report --------------------------------------------------------------------------------------


@dataclass
class Report:
    html: Path
    pngs: list[Path] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # what could not be made, and why


def write_report(directory: str | Path, out: str | Path | None = None, k: int | None = None) -> Report:
    """DIR/report/report.html (plotly, its JS inlined: opens from disk offline) and
    DIR/report/<analysis>.png for every analysis of the results directory."""
    results = open_results(directory)
    measures = read_measures(results)
    k = default_k(measures) if k is None else int(k)
    out = Path(out) if out is not None else results.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out / "report.html")
    report.html.write_text(render_html(results, measures, k), encoding="utf-8")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        report.messages.append("no PNGs: they are drawn with matplotlib, which is not installed (pip install matplotlib)")
        return report
    for analysis in measures.analyses():
        path = out / f"{analysis}.png"
        write_png(measures, analysis, path, k)
        report.pngs.append(path)
    return report


CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; position: sticky; top: 0; }
.row { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
.scroll { max-height: 480px; overflow: auto; }
li { margin: 4px 0; }
"""


def table_html(df: pd.DataFrame, float_format="{:.4g}") -> str:
    return df.to_html(index=False, na_rep="", float_format=float_format.format, border=0, escape=True)


def render_html(results: ResultsDir, measures: Measures, k: int) -> str:
    from plotly.offline import get_plotlyjs

    model = (results.manifest.get("model") or {}).get("source", "unknown model")
    overlaps = overlap_table(measures, k)
    fig_html = lambda fig: fig.to_html(full_html=False, include_plotlyjs=False)
    parts = [f"<h1>Head atlas</h1><p>{html.escape(str(model))}: {measures.n_layers} layers x {measures.n_heads} heads; "
             f"{len(measures.names)} measures from {len(measures.analyses())} analyses "
             f"({html.escape(', '.join(measures.analyses()))}); top k = {k}.</p>"]
    items = lambda lines: "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    per_analysis = "".join(f"<li><b>{html.escape(name)}</b><ul>{items(lines)}</ul></li>"
                           for name, lines in analysis_headlines(results, measures).items())
    parts.append(f"<h2>What stands out</h2><ul>{per_analysis}{items(highlights(measures, k, overlaps=overlaps))}</ul>")
    for analysis in measures.analyses():
        parts.append(f"<h2 id='{html.escape(analysis)}'>{html.escape(analysis)}</h2>")
        for measure in measures.of(analysis):
            parts.append(f"<div class='row'><div>{fig_html(heatmap_figure(measures, measure))}</div>"
                         f"<div><h3>top {k}: {html.escape(measures.title(measure))}</h3>"
                         f"{table_html(top_heads_frame(measures, measure, k))}</div></div>")
        if analysis == "circuits":  # its IOI head classes as Wang et al. drew them (analyses/circuit_classes.py)
            from interp.analyses.circuit_classes import diagrams

            parts += [fig_html(fig) for fig in diagrams(results.read_tables(analysis)).values()]
    if len(measures.names) > 1:
        parts.append("<h2>Overlap and rank correlation</h2>")
        parts.append(f"<p>{html.escape(chance_note(measures, k))}</p>")
        parts.append("<div class='row'>" + fig_html(matrix_figure(pair_matrix(overlaps, measures, "jaccard"), f"Jaccard of the top {k}", 0, 1))
                     + fig_html(matrix_figure(pair_matrix(overlaps, measures, "spearman"), "Spearman rank correlation", -1, 1)) + "</div>")
        parts.append(f"<div class='scroll'>{table_html(overlaps.drop(columns=['k']))}</div>")
    parts.append("<h2>Atlas: every head</h2>")
    parts.append(f"<div class='scroll'>{table_html(atlas_table(measures))}</div>")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Head atlas</title>"
            f"<style>{CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            + "\n".join(parts) + "</body></html>")
