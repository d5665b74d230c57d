"""What holds across models: two or more results directories of `interp scan` side by side.

    models = load_models(["results/smollm2", "results/gemma"])   # each manifest names its model
    share_table(models)           # per head type: the heads above the paper's threshold, per model
    depth_figure(models, "heads")  # scores against relative depth (layer / (layers - 1)), a trace per model
    coincidence_table(models)     # within each model: top-k overlap of the head types against chance
    claims_table(models)          # the papers' claims: the figure per model, and whether the models agree
    write_comparison(["results/smollm2", "results/gemma"])   # all of it as one self-contained HTML page

Every figure is read from the directories' tables (interp.report's measures, the analyses' other
tables); nothing here knows what a model should show. A claim whose analysis a directory lacks (or
has not finished) reads "not measured" there. The overlap statistics are interp.report's (and so
interp.analyses.head_sets'). `interp report DIR_A DIR_B ...` and the explorer's Models tab call
these functions.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Callable

import pandas as pd

from interp import report
from interp.analyses.heads import TYPE_THRESHOLD as HEAD_TYPE_THRESHOLD  # a head type's threshold: the analysis's own
from interp.base.errors import InterpError
from interp.run.manifest import model_name
from interp.run.params import parameters
from interp.run.results import ResultsDir, open_results

MAJORITY = 0.5  # "high" sink rate, "most" prompts: more than half
COINCIDE_P = 0.01  # a top-k overlap this unlikely by chance counts as the two types coinciding
NOT_MEASURED = "not measured"  # what a model's figure reads where its directory lacks the analysis


# ---- the models ------------------------------------------------------------------------------------


@dataclass
class ModelResults:
    """One results directory and what the comparison reads of it."""

    label: str  # the model's short name, unique among the models compared
    results: ResultsDir
    measures: report.Measures
    manifest: dict  # read once: every figure of a comparison comes from the same state of the directory
    _tables: dict = field(default_factory=dict, repr=False)

    @property
    def model(self) -> dict:
        return self.manifest.get("model") or {}

    @property
    def source(self) -> str:
        return str(self.model.get("source", "unknown model"))

    def tables(self, analysis: str) -> dict[str, pd.DataFrame] | None:
        """The analysis's tables ("heads", "causal", ...) when its scan finished here, else None."""
        if analysis not in self._tables:
            entry = self.manifest["analyses"].get(analysis, {})
            done = entry.get("status") == "done" and analysis in self.measures.analyses()
            self._tables[analysis] = self.results.read_tables(analysis) if done else None
        return self._tables[analysis]

    def param(self, analysis: str, name: str):
        """A parameter of the analysis's run: as the manifest recorded it, else the scan()'s default."""
        from interp import analyses  # the front door may import the analyses

        given = (self.manifest["analyses"].get(analysis) or {}).get("params") or {}
        return given[name] if name in given else parameters(analyses.get(analysis))[name].default


def load_models(directories) -> list[ModelResults]:
    """The results directories to compare (two or more), each labelled with its model's name
    (and its folder's name where two hold models of the same name)."""
    paths = [Path(d) for d in directories]
    if len(paths) < 2:
        raise InterpError("a comparison needs two or more results directories; for one, run `interp report DIR`")
    seen = set()
    for path in paths:
        if path.resolve() in seen:
            raise InterpError(f"{path} is given twice; name each results directory once")
        seen.add(path.resolve())
    opened = [open_results(path) for path in paths]
    manifests = [results.manifest for results in opened]
    names = [model_name((manifest.get("model") or {}).get("source")) for manifest in manifests]
    labels = [f"{name} ({r.path.name})" if names.count(name) > 1 else name for name, r in zip(names, opened)]
    if len(set(labels)) < len(labels):  # the same model in folders of the same name
        labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
    return [ModelResults(label, results, report.read_measures(results), manifest)
            for label, results, manifest in zip(labels, opened, manifests)]


def same_model_notes(models: list[ModelResults]) -> list[str]:
    """A sentence for each pair of directories that hold the same model: allowed (a rerun with other
    settings), but their differences are the scans', not the models'."""
    identity = lambda m: (m.model.get("source"), m.model.get("revision_or_hash"))
    return [f"{a.label} and {b.label} hold the same model ({a.source}): where they differ, the scans' settings differ, "
            "not the models." for a, b in combinations(models, 2) if identity(a) == identity(b)]


def settings(model: ModelResults, analysis: str) -> str:
    """The settings an analysis ran with here, as text ("max_length=512, samples=4"; dtype aside)."""
    params = (model.manifest["analyses"].get(analysis) or {}).get("params") or {}
    return ", ".join(f"{name}={value}" for name, value in sorted(params.items()) if name != "dtype" and value is not None)


def settings_notes(models: list[ModelResults]) -> list[str]:
    """A sentence for each analysis that ran with other settings in different models: its figures
    (the share of retrieval heads at 512 vs 2,048 tokens, ...) then differ for that reason too."""
    notes = []
    for analysis in dict.fromkeys(a for m in models for a in m.measures.analyses()):
        ran = {m.label: settings(m, analysis) for m in models if m.tables(analysis) is not None}
        if len(set(ran.values())) > 1:
            each = "; ".join(f"{label}: {text or 'defaults'}" for label, text in ran.items())
            notes.append(f"{analysis} ran with other settings in each model ({each}): some of its differences are the settings'.")
    return notes


def relative_depth(layer, n_layers: int):
    """layer / (n_layers - 1): 0 is the first layer, 1 the last (0 for a one-layer model)."""
    return layer / (n_layers - 1) if n_layers > 1 else layer * 0.0


# ---- head types and the papers' thresholds ---------------------------------------------------------


@dataclass(frozen=True)
class HeadKind:
    """Heads whose score in `measure` (an interp.report measure) is above `threshold`."""

    name: str  # "retrieval heads"
    measure: str
    threshold: float
    source: str  # where the threshold comes from


def head_kinds(model: ModelResults) -> list[HeadKind]:
    """The head types with a threshold, as this model's scans ran them (the sinks' eps is a parameter)."""
    from interp.analyses import retrieval

    own = "interp's threshold (the paper gives none)"
    return [
        HeadKind("retrieval heads", "retrieval", retrieval.THRESHOLD, "Wu et al. 2024"),
        HeadKind("sink heads", "sinks", float(model.param("sinks", "eps")), "Gu et al. 2024 (eps)"),
        HeadKind("induction heads", "heads", HEAD_TYPE_THRESHOLD, own),
        HeadKind("previous-token heads", "heads.previous_token", HEAD_TYPE_THRESHOLD, own),
        HeadKind("duplicate-token heads", "heads.duplicate_token", HEAD_TYPE_THRESHOLD, own),
    ]


def kind_names(models: list[ModelResults]) -> dict[str, str]:
    """measure -> the head type it picks out ("heads" -> "induction heads")."""
    return {kind.measure: kind.name for kind in head_kinds(models[0])}


def head_shares(models: list[ModelResults]) -> pd.DataFrame:
    """One row per (head type, model): heads above the threshold, of how many, the share, and the
    median relative depth of those heads; measured is False where the model has no scores for it."""
    rows = []
    for model in models:
        measures = model.measures
        for kind in head_kinds(model):
            row = {"kind": kind.name, "measure": kind.measure, "threshold": kind.threshold, "source": kind.source,
                   "model": model.label, "n_heads": measures.n, "measured": False, "above": 0, "share": math.nan,
                   "depth": math.nan}
            scores = measures.scores[kind.measure] if kind.measure in measures.names else None
            if scores is not None and scores.notna().any():
                above = scores[scores > kind.threshold]
                depths = relative_depth(above.index.get_level_values("layer").to_numpy(), measures.n_layers)
                row.update(measured=True, above=len(above), share=len(above) / measures.n,
                           depth=float(pd.Series(depths).median()) if len(above) else math.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def share_table(models: list[ModelResults]) -> pd.DataFrame:
    """head type, threshold, source, then per model "3 of 72 (4.2%), depth 0.47" (median relative
    depth of those heads), "no scores" or "not measured"."""
    shares = head_shares(models)
    table = shares.drop_duplicates("kind")[["kind", "source"]].rename(columns={"kind": "head type"}).set_index("head type")
    thresholds = shares.groupby("kind", sort=False)["threshold"].agg(lambda t: " / ".join(f"{v:g}" for v in dict.fromkeys(t)))
    table.insert(0, "score above", thresholds)
    for row in shares.itertuples():
        table.loc[row.kind, row.model] = _share_text(row, models)
    return table.reset_index()


def _share_text(row, models) -> str:
    if not row.measured:
        model = next(m for m in models if m.label == row.model)
        return "no scores" if row.measure in model.measures.names else NOT_MEASURED
    depth = f", depth {row.depth:.2f}" if row.above else ""
    return f"{row.above} of {row.n_heads} ({row.share:.1%}){depth}"


# ---- scores against relative depth ----------------------------------------------------------------


def depth_measures(models: list[ModelResults]) -> list[str]:
    """The measures worth a depth figure: each analysis's score and every head type's, in any model."""
    names = []
    for model in models:
        kinds = {kind.measure for kind in head_kinds(model)}
        names += [m for m in model.measures.names if m in kinds or m in model.measures.analyses()]
    return list(dict.fromkeys(names))


def depth_figure(models: list[ModelResults], measure: str):
    """Every head's score in `measure` against its layer's relative depth, one trace per model that
    scored it, with the head type's threshold as a dashed line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    label, title, thresholds = "score", measure, set()
    for model in models:
        measures = model.measures
        if measure not in measures.names or measures.scores[measure].isna().all():
            continue
        scores = measures.scores[measure].dropna()
        layers, heads = scores.index.get_level_values("layer"), scores.index.get_level_values("head")
        fig.add_trace(go.Scatter(
            x=relative_depth(layers.to_numpy(), measures.n_layers), y=scores.to_numpy(), mode="markers", name=model.label,
            text=[report.head_name(l, h) for l, h in zip(layers, heads)], marker=dict(size=7, opacity=0.7),
            hovertemplate=f"{model.label}<br>head %{{text}}<br>relative depth %{{x:.2f}}<br>score %{{y:.4g}}<extra></extra>"))
        label, title = measures.label(measure), measures.title(measure)
        thresholds |= {kind.threshold for kind in head_kinds(model) if kind.measure == measure}
    for threshold in sorted(thresholds):
        fig.add_hline(y=threshold, line_dash="dash", line_color="gray", annotation_text=f"threshold {threshold:g}")
    fig.update_layout(title=f"{title} against relative depth", height=380, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(title="relative depth: layer / (layers - 1)", range=[-0.03, 1.03]),
                      yaxis=dict(title=label), legend=dict(title="model"), showlegend=True)  # also with one model
    return fig


# ---- which head types coincide within each model -----------------------------------------------------


def coincidence_table(models: list[ModelResults], k: int | None = None) -> pd.DataFrame:
    """Within each model, every pair of head types (the depth_measures it scored): interp.report's
    top-k overlap (shared heads, chance, Jaccard, hypergeometric p, Spearman). k: top heads per
    measure (default: interp.report's, per model)."""
    names = kind_names(models)
    rows = []
    for model in models:
        measures = model.measures
        top_k = report.default_k(measures) if k is None else int(k)
        if not 1 <= top_k <= measures.n:
            raise InterpError(f"k={top_k} must be between 1 and {model.label}'s {measures.n} heads")
        scored = [m for m in depth_measures([model]) if measures.scores[m].notna().any()]
        for a, b in combinations(scored, 2):
            pair = report.pair_overlap(measures, a, b, top_k)
            rows.append({"model": model.label, **pair, "a": names.get(a, a), "b": names.get(b, b),
                         "coincide": bool(pair["p_value"] < COINCIDE_P)})  # NaN p (no full top k): no
    columns = ["model", "a", "b", "k", "shared", "chance_shared", "jaccard", "chance_jaccard", "p_value", "spearman",
               "coincide", "shared_heads"]
    return pd.DataFrame(rows, columns=columns)


def coincidence_lines(models: list[ModelResults], coincidences: pd.DataFrame) -> list[str]:
    """A sentence per pair of head types: in which models their top k share more heads than chance."""
    lines = []
    for (a, b), rows in coincidences.groupby(["a", "b"], sort=False):
        parts = [f"{r.model}: {r.shared} of {r.k} shared (chance {r.chance_shared:.2g}, p = {r.p_value:.2g})"
                 for r in rows.itertuples()]
        where, measured = list(rows.loc[rows["coincide"], "model"]), list(rows["model"])
        others = [label for label in measured if label not in where]
        if not others:
            verdict = "coincide in " + ("every model" if len(where) == len(models) else report.join_words(where))
        elif not where:
            verdict = "do not coincide in " + ("any model" if len(others) == len(models) else report.join_words(others))
        else:
            verdict = f"coincide in {report.join_words(where)} but not in {report.join_words(others)}"
        missing = [m.label for m in models if m.label not in measured]
        lines.append(f"{a} and {b} {verdict} ({'; '.join(parts)})" + (f"; not measured in {report.join_words(missing)}" if missing else "") + ".")
    return lines


# ---- the papers' claims -----------------------------------------------------------------------------

Outcome = tuple[str, "bool | None"]  # (the figure, does the claim hold; None: the tables cannot tell)


@dataclass(frozen=True)
class Claim:
    claim: str
    source: str
    analysis: str  # whose tables the check reads; "not measured" where the model lacks them
    check: Callable[[ModelResults, dict], Outcome]  # (model, the analysis's tables) -> outcome


def _above(model: ModelResults, measure: str, threshold: float) -> tuple[int, int] | None:
    scores = model.measures.scores[measure] if measure in model.measures.names else None
    if scores is None or scores.isna().all():
        return None
    return int((scores > threshold).sum()), model.measures.n


def _retrieval_counts(model, tables):
    from interp.analyses import retrieval

    counts = _above(model, "retrieval", retrieval.THRESHOLD)
    probes = tables.get("probes")
    unanswered = "no probe answered" + (f" (0 of {len(probes)})" if probes is not None else "")
    return counts, unanswered


def retrieval_sparse(model, tables) -> Outcome:
    counts, unanswered = _retrieval_counts(model, tables)
    if counts is None:
        return unanswered, None
    above, n = counts
    return f"{above} of {n} heads ({above / n:.1%})", above / n < 0.05


def retrieval_universal(model, tables) -> Outcome:
    counts, unanswered = _retrieval_counts(model, tables)
    if counts is None:
        return unanswered, None
    above, n = counts
    top = model.measures.top("retrieval", 1)
    best = f"; top {report.head_name(*top[0])} ({model.measures.scores['retrieval'][top[0]]:.2f})" if top else ""
    return f"{above} of {n} heads{best}", above > 0


def retrieval_causal(model, tables) -> Outcome:
    causal = tables.get("causal")
    if causal is None or not (causal["condition"] == "top").any():
        return "no causal check", None
    accuracy = lambda condition: causal.loc[causal["condition"] == condition, "accuracy"]
    top, random, k = accuracy("top").iloc[0], accuracy("random"), int(causal["k"].max())
    baseline = accuracy("baseline")
    unmasked = f", {baseline.iloc[0]:.2f} unmasked" if len(baseline) else ""
    return (f"accuracy {top:.2f} with the top {k} masked vs {random.mean():.2f} +- {random.std(ddof=0):.2f} "
            f"with {k} random{unmasked}"), bool(top < random.mean())


def induction_exist(model, tables) -> Outcome:
    counts = _above(model, "heads", HEAD_TYPE_THRESHOLD)
    if counts is None:
        return "no scores", None
    above, n = counts
    top = model.measures.top("heads", 1)
    return (f"{above} of {n} heads ({above / n:.1%}); top {report.head_name(*top[0])} "
            f"({model.measures.scores['heads'][top[0]]:.2f})"), above > 0


def induction_causal(model, tables) -> Outcome:
    causal = tables.get("causal")
    if causal is None or not len(causal):
        return "no causal check", None
    loss = lambda condition: causal.loc[causal["condition"] == condition, "loss_repeated_half"]
    top, random, clean, k = loss("top induction").iloc[0], loss("random"), loss("clean").iloc[0], int(causal["k"].max())
    return (f"loss {top:.2f} with the top {k} ablated vs {random.mean():.2f} +- {random.std(ddof=0):.2f} "
            f"with {k} random (clean {clean:.2f})"), bool(top > random.max())


def _summary(tables) -> pd.Series | None:
    summary = tables.get("summary")
    return None if summary is None else summary.set_index("metric")["value"]


def sink_rate_high(model, tables) -> Outcome:
    summary = _summary(tables)
    if summary is None or "sink_rate" not in summary:
        return "no summary table", None
    rate = float(summary["sink_rate"])
    return f"sink rate {rate:.2f} (eps {float(model.param('sinks', 'eps')):g})", rate > MAJORITY


def massive_present(model, tables) -> Outcome:
    massive = tables.get("massive")
    if massive is None:
        return "no massive table", None
    dims = sorted(int(d) for d in massive["dim"].unique())
    layers = massive["layer"].nunique()
    shown = ", ".join(map(str, dims[:5])) + (", ..." if len(dims) > 5 else "")
    return (f"{len(dims)} dims ({shown}) in {layers} layers" if dims else "none"), bool(dims)


def sinks_carry_massive(model, tables) -> Outcome:
    summary = _summary(tables)
    share = float(summary["top_sink_carries_massive"]) if summary is not None and "top_sink_carries_massive" in summary else math.nan
    if math.isnan(share):
        return "no massive activations to compare", None
    return f"{share:.0%} of prompts", share > MAJORITY


CLAIMS = [
    Claim("Retrieval heads are sparse: fewer than 5% of heads score above 0.1",
          "Wu et al. 2024 (33 of 1,024 heads in Llama-2-7B-80K, 43 in Mistral-7B)", "retrieval", retrieval_sparse),
    Claim("Retrieval heads are universal: every model has some (score above 0.1)", "Wu et al. 2024", "retrieval",
          retrieval_universal),
    Claim("Masking the top retrieval heads lowers needle accuracy more than masking as many random heads",
          "Wu et al. 2024 (about 0.44 vs 0.88)", "retrieval", retrieval_causal),
    Claim(f"Induction heads form in every model: some head scores above {HEAD_TYPE_THRESHOLD:g} on repeated random tokens",
          "Olsson et al. 2022", "heads", induction_exist),
    Claim("Ablating the top induction heads raises the loss on the repeated half above every draw of as many random heads",
          "Olsson et al. 2022 (causal)", "heads", induction_causal),
    Claim("Attention sinks are everywhere: the sink rate (first-token importance above eps) is above 50%",
          "Gu et al. 2024", "sinks", sink_rate_high),
    Claim("Massive activations: a few dimensions carry values above 100 and 1000x their hidden state's median",
          "Sun et al. 2024", "sinks", massive_present),
    Claim("Sinks and massive activations go together: on most prompts the most important key carries one",
          "Sun et al. 2024; Gu et al. 2024", "sinks", sinks_carry_massive),
]


def claim_outcomes(models: list[ModelResults], claim: Claim) -> dict[str, Outcome]:
    """model label -> (figure, holds) of one claim; ("not measured", None) where the analysis is missing."""
    outcomes = {}
    for model in models:
        tables = model.tables(claim.analysis)
        outcomes[model.label] = (NOT_MEASURED, None) if tables is None else claim.check(model, tables)
    return outcomes


def verdict(outcomes: dict[str, Outcome]) -> tuple[str, str]:
    """("yes" / "no" / "cannot tell" / "not measured", a sentence) on whether the models agree about a claim."""
    holds = {label: ok for label, (_, ok) in outcomes.items() if ok is not None}
    figure = lambda labels: "; ".join(f"{label}: {outcomes[label][0]}" for label in labels)
    untold = [label for label in outcomes if label not in holds]
    missing = f" Not measured (or not decidable) in {report.join_words(untold)}." if untold else ""
    if all(figure_ == NOT_MEASURED for figure_, _ in outcomes.values()):
        return NOT_MEASURED, "Not measured in any model."
    if len(holds) < 2:
        if not holds:
            return "cannot tell", f"No model's tables decide it ({figure(outcomes)})."
        (label, ok), = holds.items()
        return "cannot tell", f"Only {label} decides it: it {'holds' if ok else 'does not hold'} ({figure([label])}).{missing}"
    yes, no = [l for l, ok in holds.items() if ok], [l for l, ok in holds.items() if not ok]
    if not no:
        return "yes", f"The models agree: it holds in {'both' if len(yes) == 2 else 'all ' + str(len(yes))} ({figure(yes)}).{missing}"
    if not yes:
        return "yes", f"The models agree: it holds in {'neither' if len(no) == 2 else 'none'} ({figure(no)}).{missing}"
    return "no", f"The models disagree: it holds in {report.join_words(yes)} ({figure(yes)}) but not in {report.join_words(no)} ({figure(no)}).{missing}"


def claims_table(models: list[ModelResults]) -> pd.DataFrame:
    """claim, source, the figure per model (with "(holds)" / "(does not hold)"), agrees?, and a
    sentence saying whether the models agree."""
    rows = []
    for claim in CLAIMS:
        outcomes = claim_outcomes(models, claim)
        agrees, sentence = verdict(outcomes)
        figures = {label: figure + ("" if ok is None else " (holds)" if ok else " (does not hold)")
                   for label, (figure, ok) in outcomes.items()}
        rows.append({"claim": claim.claim, "source": claim.source, **figures, "agrees?": agrees, "verdict": sentence})
    return pd.DataFrame(rows, columns=["claim", "source", *[m.label for m in models], "agrees?", "verdict"])


# ---- the HTML page ------------------------------------------------------------------------------------

PAGE_NAME = "compare.html"


def default_out(directories) -> Path:
    """Where `interp report DIR_A DIR_B ...` writes without --out: the first directory's parent."""
    return Path(directories[0]).resolve().parent


def write_comparison(directories, out: str | Path | None = None, k: int | None = None) -> report.Report:
    """OUT/compare.html (OUT default: the first directory's parent): the claims, the shares above
    the thresholds, scores against relative depth and the coincidence of head types per model."""
    models = load_models(directories)
    page = render_html(models, k)  # before anything is written: bad input leaves no folder behind
    out = default_out(directories) if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = report.Report(out / PAGE_NAME)
    written.html.write_text(page, encoding="utf-8")
    return written


def model_table(models: list[ModelResults]) -> pd.DataFrame:
    rows = []
    for model in models:
        entries = model.manifest["analyses"]
        rows.append({"model": model.label, "source": model.source, "layers": model.measures.n_layers,
                     "heads per layer": model.measures.n_heads, "heads": model.measures.n,
                     "analyses done": ", ".join(n for n, e in entries.items() if e.get("status") == "done"),
                     "results": str(model.results.path)})
    return pd.DataFrame(rows)


def render_html(models: list[ModelResults], k: int | None = None) -> str:
    from plotly.offline import get_plotlyjs

    coincidences = coincidence_table(models, k)
    claims = claims_table(models)
    items = lambda lines: "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"
    labels = ", ".join(m.label for m in models)
    notes = same_model_notes(models) + settings_notes(models)
    parts = [f"<h1>What holds across models</h1><p>{html.escape(labels)}.</p>", report.table_html(model_table(models), "{:.3g}"),
             items(notes) if notes else ""]
    verdicts = "".join(f"<li><b>{html.escape(row.claim)}</b> ({html.escape(row.source)}): {html.escape(row.verdict)}</li>"
                       for row in claims.itertuples())
    parts += ["<h2>The papers' claims</h2>", report.table_html(claims.drop(columns=["verdict"]), "{:.3g}"), f"<ul>{verdicts}</ul>"]
    parts += ["<h2>Heads above the papers' thresholds</h2>",
              "<p>Per model: heads whose score is above the threshold, of all heads, and the median relative depth "
              "(layer / (layers - 1)) of those heads.</p>", report.table_html(share_table(models), "{:.3g}")]
    parts.append("<h2>Scores against relative depth</h2><div class='row'>")
    parts += [f"<div>{depth_figure(models, m).to_html(full_html=False, include_plotlyjs=False)}</div>"
              for m in depth_measures(models)]
    parts.append("</div><h2>Which head types coincide within each model</h2>")
    parts.append(f"<p>Top-k overlap of each pair of head types within a model, against two random sets of k heads; "
                 f"they coincide where p &lt; {COINCIDE_P:g}.</p>")
    parts += [items(coincidence_lines(models, coincidences)), f"<div class='scroll'>{report.table_html(coincidences, '{:.3g}')}</div>"]
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>What holds across models</title>"
            f"<style>{report.CSS} td {{ text-align: left; }}</style><script type='text/javascript'>{get_plotlyjs()}</script>"
            "</head><body>" + "\n".join(parts) + "</body></html>")
