"""Head explorer: browse an interp results directory, pick a head, see where it attends, ablate it.

    interp explore results/smollm2
    streamlit run apps/head_explorer.py -- results/smollm2      (the same)
    streamlit run apps/head_explorer.py -- results/smollm2 results/gemma   (Models tab: beside another model)

It reads only the results format (interp.run.results). Browsing needs no model; the model named
in the manifest is loaded the first time a panel runs it (attention pattern, ablation) and
then kept for the session (st.cache_resource). Heat maps, overlaps and the atlas are the
report's (interp.report): the explorer adds the clicks, the selected head and the model.
"""

from __future__ import annotations

import sys
from functools import partial

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
import torch

from interp import compare, report
from interp.runtime.ablation import Mode, ablation_effect, make_intervention
from interp.data import load_prompts
from interp.base.errors import InterpError
from interp.kernels import StatsRequest
from interp.run.results import ResultsDir, open_results

TOKEN_LEVEL_LIMIT = 64  # longer prompts are shown as a pooled map: a token grid would be unreadable
POOLED_BINS = (64, 64)
DEFAULT_PROMPT = "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is"
DEFAULT_QUESTION = "What is the capital of France?"


# ---- reading results -------------------------------------------------------------------------


def open_chosen_results() -> ResultsDir:
    """The directory from the command line (after `--`) or typed into the sidebar."""
    default = sys.argv[1] if len(sys.argv) > 1 else ""
    path = st.sidebar.text_input("Results directory", value=default, key="results_dir",
                                 help="a directory written by `interp scan`")
    if not path:
        st.info("Enter a results directory written by `interp scan` in the sidebar.")
        st.stop()
    try:
        return open_results(path)
    except InterpError as e:
        st.error(str(e))
        st.stop()


@st.cache_data(show_spinner=False)
def read_tables(path: str, updated: str) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, pd.DataFrame]]]:
    """(head tables by analysis, per-sample tables by analysis and name). `updated` (the
    manifest's time stamp) is only part of the cache key, so a new scan is picked up."""
    results = ResultsDir(path)
    heads, samples = {}, {}
    for analysis, table in results.tables():
        try:
            df = results.read_table(analysis, table)
        except InterpError as e:
            st.warning(str(e))
            continue
        if table is None:
            heads[analysis] = df
        else:
            samples.setdefault(analysis, {})[table] = df
    return heads, samples


def ranked(df: pd.DataFrame) -> pd.DataFrame:
    """The head table best first, ranked as the report ranks (ties: lower layer, then head; NaN last)."""
    table = df.sort_values(["score", "layer", "head"], ascending=[False, True, True], ignore_index=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def score_title(measures: report.Measures, name: str) -> str:
    """"heads (induction score)" where interp knows what the analysis measures, else "<name> score"."""
    return measures.title(name) if name in measures.labels else f"{name} score"


# ---- the selected head (shared by every panel) ---------------------------------------------------


def select_head(layer: int, head: int) -> None:
    st.session_state["layer"], st.session_state["head"] = layer, head


def pick_from_heatmap(chart_key: str) -> None:
    """Callback of a heat map click: the clicked cell becomes the selected head."""
    points = st.session_state[chart_key]["selection"]["points"]
    if points:
        select_head(int(points[0]["x"]), int(points[0]["y"]))


def pick_from_table(table_key: str, table: pd.DataFrame) -> None:
    rows = st.session_state[table_key]["selection"]["rows"]
    if rows:
        row = table.iloc[rows[0]]
        select_head(int(row["layer"]), int(row["head"]))


def head_picker(n_layers: int, n_heads: int, best: pd.Series) -> tuple[int, int]:
    st.sidebar.subheader("Head")
    if "layer" not in st.session_state:  # start on the best head of the first analysis
        select_head(int(best["layer"]), int(best["head"]))
    left, right = st.sidebar.columns(2)
    layer = left.selectbox("layer", range(n_layers), key="layer")
    head = right.selectbox("head", range(n_heads), key="head")
    st.sidebar.caption("or click a cell of a heat map, or a row of a ranked table")
    return layer, head


# ---- panels --------------------------------------------------------------------------------------


def sidebar_manifest(manifest: dict) -> None:
    model = manifest.get("model") or {}
    st.sidebar.subheader("Model")
    st.sidebar.write(f"`{model.get('source', 'unknown')}`")
    layout = model.get("layout") or {}
    if layout:
        st.sidebar.caption(f"{layout.get('n_layers')} layers x {layout.get('n_heads')} heads "
                           f"({layout.get('n_kv_heads')} KV heads), head dim {layout.get('head_dim')}")
    entries = manifest.get("analyses") or {}
    if entries:
        st.sidebar.dataframe(pd.DataFrame([{"analysis": name, "status": e.get("status"), "rows": e.get("rows")}
                                           for name, e in entries.items()]), hide_index=True)


def heatmap_figure(measures: report.Measures, measure: str, selected: tuple[int, int]) -> go.Figure:
    """The report's heat map of a measure (layers across), made clickable: Streamlit reports no
    clicks on heat map traces, so an invisible marker sits on every cell to receive them (and
    the hover); the selected head is outlined."""
    n_layers, n_heads = measures.n_layers, measures.n_heads
    fig = report.heatmap_figure(measures, measure)
    fig.update_traces(hoverinfo="skip", hovertemplate=None)
    cells = measures.scores[measure].reset_index()
    fig.add_trace(go.Scatter(
        x=cells["layer"], y=cells["head"], mode="markers", customdata=cells[measure], showlegend=False,
        marker=dict(symbol="square", size=18, opacity=0), selected=dict(marker=dict(opacity=0)),
        unselected=dict(marker=dict(opacity=0)),
        hovertemplate=f"head %{{x}}.%{{y}}<br>{measures.label(measure)} %{{customdata:.4g}}<extra></extra>",
    ))
    layer, head = selected
    fig.add_shape(type="rect", x0=layer - 0.5, x1=layer + 0.5, y0=head - 0.5, y1=head + 0.5, line=dict(color="red", width=3))
    # Fixed ranges: the invisible markers would otherwise pad the axes past the first and last cell.
    fig.update_layout(xaxis=dict(range=[-0.5, n_layers - 0.5], dtick=1 if n_layers <= 32 else None),
                      yaxis=dict(autorange=False, range=[n_heads - 0.5, -0.5], dtick=1 if n_heads <= 32 else None),
                      height=max(260, 26 * n_heads + 120))
    return fig


def analysis_panel(name: str, df: pd.DataFrame, measures: report.Measures, selected: tuple[int, int]) -> None:
    chart, table = st.columns([3, 2])
    with chart:
        chart_key = f"heatmap_{name}"
        st.plotly_chart(heatmap_figure(measures, name, selected), key=chart_key,
                        on_select=partial(pick_from_heatmap, chart_key), selection_mode="points")
    with table:
        table_key = f"ranked_{name}"
        top = ranked(df)
        st.dataframe(top, key=table_key, hide_index=True, height=max(260, 26 * measures.n_heads + 120),
                     on_select=partial(pick_from_table, table_key, top), selection_mode="single-row")


def head_summary(layer: int, head: int, tables: dict[str, pd.DataFrame], measures: report.Measures) -> None:
    """The selected head's score and rank in every analysis."""
    rows = []
    for name, df in tables.items():
        table = ranked(df)
        match = table[(table["layer"] == layer) & (table["head"] == head)]
        if len(match):
            rows.append({"analysis": name, "score": match["score"].iloc[0], "rank": int(match["rank"].iloc[0]), "of": len(table)})
    columns = st.columns(max(1, len(rows)))
    for column, row in zip(columns, rows):
        column.metric(score_title(measures, row["analysis"]), f"{row['score']:.4g}", f"rank {row['rank']} of {row['of']}",
                      delta_color="off", delta_arrow="off")


def score_distribution(name: str, layer: int, head: int, heads: pd.DataFrame, per_sample: dict[str, pd.DataFrame],
                       label: str) -> None:
    """This head's scores over the probes/samples of a per-sample table with layer and head
    columns; without one, where the head stands among all heads (`label`: what the score is)."""
    usable = {t: df for t, df in per_sample.items() if {"layer", "head"} <= set(df.columns)}
    if not usable:
        among_all_heads(name, layer, head, heads, label)
        return
    table = st.selectbox("per-sample table", list(usable), key=f"sample_table_{name}") if len(usable) > 1 else next(iter(usable))
    df = usable[table]
    rows = df[(df["layer"] == layer) & (df["head"] == head)]
    numeric = [c for c in rows.select_dtypes("number").columns if c not in ("layer", "head")]
    if rows.empty or not numeric:
        st.caption(f"{name}.{table} holds no numbers for head {layer}.{head}.")
        return
    column = st.selectbox("value", numeric, index=numeric.index("score") if "score" in numeric else 0, key=f"sample_value_{name}")
    fig = px.histogram(rows, x=column, nbins=min(40, max(5, len(rows))), title=f"head {layer}.{head}: {column} over {len(rows)} rows of {name}.{table}")
    fig.add_vline(x=rows[column].mean(), line_dash="dash", annotation_text="mean")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, key=f"distribution_{name}")


def among_all_heads(name: str, layer: int, head: int, heads: pd.DataFrame, label: str) -> None:
    score = heads.loc[(heads["layer"] == layer) & (heads["head"] == head), "score"]
    fig = px.histogram(heads, x="score", nbins=40, labels={"score": label},
                       title=f"{name} scores of all {len(heads)} heads (no per-sample table with "
                             f"layer and head columns); red: head {layer}.{head}")
    if len(score) and pd.notna(score.iloc[0]):
        fig.add_vline(x=float(score.iloc[0]), line_color="red", line_width=3)
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, key=f"distribution_{name}")


@st.cache_resource(show_spinner="loading the model ...")
def get_model(source: str):
    from interp.runtime import models  # here, not at the top: browsing needs no torch model code

    return models.load_model(source)  # the bundled model is recorded by name; load_model knows it


@st.cache_resource(show_spinner="computing mean head outputs over the bundled prompts ...")
def mean_head_outputs(source: str):
    return get_model(source).head_means(load_prompts())


def model_or_stop(manifest: dict):
    """The manifest's model, loaded once; None (with the reason shown) if it cannot be loaded."""
    source = (manifest.get("model") or {}).get("source")
    if not source:
        st.warning("The manifest names no model, so nothing can be run.")
        return None
    try:
        return get_model(source)
    except InterpError as e:
        st.error(f"cannot load the model of these results: {e}")
        return None


def token_labels(model, ids) -> list[str]:
    # The index keeps repeated tokens apart (plotly merges equal category labels).
    return [f"{i}:{model.tokenizer.decode([t])!r}" for i, t in enumerate(ids.tolist())]


def attention_panel(layer: int, head: int, manifest: dict) -> None:
    """Where the head attends on a prompt: every token for short prompts, pooled for long ones."""
    prompt = st.text_area("Prompt", DEFAULT_PROMPT, key="attention_prompt")
    if not st.toggle("Show where this head attends (runs the model)", key="attention_on"):
        return
    model = model_or_stop(manifest)
    if model is None or not prompt.strip():
        return
    try:
        fig = attention_figure(model, layer, head, prompt)
    except InterpError as e:  # e.g. a prompt longer than the model allows
        st.error(str(e))
        return
    st.plotly_chart(fig, key="attention_map")


@torch.no_grad()
def attention_figure(model, layer: int, head: int, prompt: str) -> go.Figure:
    inputs = model.tokenize(prompt)
    ids = inputs["input_ids"][0]
    if len(ids) <= TOKEN_LEVEL_LIMIT:
        with model.capture(pattern=True, layers=[layer], heads=[head]) as cap:
            model.base_forward(inputs)  # the pattern only: no [tokens, vocab] logits
        labels = token_labels(model, ids)
        fig = px.imshow(cap.pattern[0, 0, 0].float().numpy(), x=labels, y=labels, color_continuous_scale="Viridis",
                        labels=dict(x="key", y="query", color="attention"), aspect="auto")
        title = f"head {layer}.{head}: attention of every token ({len(ids)} tokens)"
    else:
        with model.capture(stats=StatsRequest(pooled=POOLED_BINS), layers=[layer], heads=[head]) as cap:
            model.base_forward(inputs)  # the pattern only: no [tokens, vocab] logits
        pooled = cap.pooled[0, 0, 0].float()
        pooled = pooled / pooled.sum(-1, keepdim=True).clamp_min(1e-30)  # summed -> mean over the queries of a bin
        fig = px.imshow(pooled.numpy(), color_continuous_scale="Viridis", aspect="auto",
                        labels=dict(x=f"key bin ({len(ids)} tokens / {POOLED_BINS[1]})", y="query bin", color="attention"))
        title = f"head {layer}.{head}: pooled attention map of {len(ids)} tokens"
    fig.update_layout(title=title, height=520, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def image_panel(layer: int, head: int, manifest: dict) -> None:
    """A vision model's head on an image: its attention from the last prompt position on each
    image token, drawn over the image (analyses.divergence.image_attention)."""
    from interp.analyses import divergence as dv
    from interp.analyses.sinks import image_inputs
    from interp.data.scenes import default_images

    st.subheader(f"Head {layer}.{head} on an image")
    left, right = st.columns(2)
    scenes = dict(default_images(dv.DEFAULT_SCENES))  # held-out synthetic scenes, as `interp scan --analyses vhd` uses
    photos = dict(scene_photos())  # real photos (skimage.data), as notebooks/vision.ipynb uses
    key = left.selectbox("Held-out scene or photo", list(scenes) + list(photos), key="image_scene",
                         format_func=lambda name: f"photo {name}" if name in photos else f"scene {name}")
    upload = right.file_uploader("or an image of your own", type=["png", "jpg", "jpeg"], key="image_upload")
    prompt = st.text_input("Prompt", "Describe the image.", key="image_prompt")
    if not st.toggle("Show this head on the image (runs the model)", key="image_on"):
        return
    model = model_or_stop(manifest)
    if model is None:
        return
    if upload is not None:
        from PIL import Image

        key, image = upload.name, Image.open(upload).convert("RGB")
    else:
        image = scenes[key] if key in scenes else photos[key]
    try:
        grid = dv.image_attention(model, image_inputs(model, image, prompt), layer, head).numpy()
    except InterpError as e:  # e.g. a text-only model, or a grid that is not square
        st.error(str(e))
        return
    st.caption(f"attention on the image from the last prompt position: {grid.sum():.3g} of the head's attention, drawn "
               "over the image as the model sees it (resized and centre-cropped by its processor)")
    seen = dv.image_as_seen(model, image)  # what the grid covers: the processor's resize and crop
    st.plotly_chart(report.image_attention_figure(seen, grid, f"head {layer}.{head} on {key}"), key="image_attention")


@st.cache_resource(show_spinner=False)
def scene_photos() -> list[tuple[str, object]]:
    """The real photos of interp.data.scenes, read once per server (decoding them takes a moment)."""
    from interp.data.scenes import photos

    return photos()


def ablation_panel(layer: int, head: int, n_layers: int, n_heads: int, manifest: dict) -> None:
    all_heads = [f"{l}.{h}" for l in range(n_layers) for h in range(n_heads)]
    chosen = st.multiselect("Heads", all_heads, default=[f"{layer}.{head}"], key="ablate_heads")
    left, middle, right = st.columns(3)
    kind = left.selectbox("Mode", ["zero", "mean", "uniform", "scale"], key="ablate_mode",
                          help="zero/mean: replace the head's output; uniform: flat attention; scale: multiply its output")
    factor = middle.number_input("Scale factor", value=2.0, key="ablate_factor", disabled=kind != "scale")
    max_new_tokens = right.number_input("New tokens", 1, 256, 24, key="ablate_tokens")
    prompt = st.text_area("Prompt", DEFAULT_QUESTION, key="ablate_prompt")
    if st.button("Run with and without", key="ablate_run", disabled=not chosen):
        model = model_or_stop(manifest)
        if model is not None:
            mode = Mode(kind, factor)
            means = mean_head_outputs(manifest["model"]["source"]) if kind == "mean" else None
            with st.spinner("generating ..."):
                try:
                    intervention = make_intervention(model, ",".join(chosen), mode, means)
                    effect = ablation_effect(model, intervention, prompt, int(max_new_tokens))
                except InterpError as e:
                    st.error(str(e))
                    return
            st.session_state["ablation"] = (f"{mode} {', '.join(chosen)}", effect)
    if "ablation" in st.session_state:
        show_ablation(*st.session_state["ablation"])


def show_ablation(label: str, effect) -> None:
    before, after = st.columns(2)
    before.markdown("**clean**")
    before.text(effect.clean_text)
    after.markdown(f"**with {label}**")
    after.text(effect.ablated_text)
    changed = "changed" if effect.clean_text != effect.ablated_text else "unchanged"
    st.metric("KL(clean || ablated), next token", f"{effect.kl:.4g} nats", f"generation {changed}",
              delta_color="off", delta_arrow="off")
    st.dataframe(effect.top_tokens, hide_index=True)


def compare_panel(tables: dict[str, pd.DataFrame], measures: report.Measures) -> None:
    """Heads in the top k of two analyses (e.g. retrieval and sinks), as a table and a scatter,
    with the report's overlap statistics of the two."""
    names = list(tables)
    if len(names) < 2:
        st.info("Comparing needs two analyses in this results directory.")
        return
    left, middle, right = st.columns(3)
    a = left.selectbox("First analysis", names, index=0, key="compare_a")
    b = middle.selectbox("Second analysis", names, index=1, key="compare_b")
    k = int(right.number_input("Top k", 1, len(tables[a]), min(10, len(tables[a])), key="compare_k"))
    stats = report.pair_overlap(measures, a, b, k)
    both = ranked(tables[a])[["layer", "head", "score", "rank"]].merge(
        ranked(tables[b])[["layer", "head", "score", "rank"]], on=["layer", "head"], suffixes=(f" {a}", f" {b}"))
    heads = pd.MultiIndex.from_frame(both[["layer", "head"]])
    in_a, in_b = heads.isin(measures.top(a, k)), heads.isin(measures.top(b, k))  # the report's top k: NaN never in it
    both["top k of"] = "neither"
    both.loc[in_a, "top k of"] = a
    both.loc[in_b, "top k of"] = b
    both.loc[in_a & in_b, "top k of"] = "both"
    both["name"] = both["layer"].astype(str) + "." + both["head"].astype(str)
    shared = both[in_a & in_b].sort_values(f"rank {a}")
    if pd.isna(stats["jaccard"]):
        against_chance = f"one of them scores fewer than {k} heads"
    else:
        against_chance = (f"Jaccard {stats['jaccard']:.2f}, {stats['chance_jaccard']:.2f} by chance; "
                          f"p = {stats['p_value']:.2g}")
    st.markdown(f"**{stats['shared']}** heads are in the top {k} of both ({against_chance}).")
    st.dataframe(shared.drop(columns=["top k of"]), hide_index=True)
    fig = px.scatter(both, x=f"score {a}", y=f"score {b}", color="top k of", hover_name="name",
                     color_discrete_map={"both": "red", a: "orange", b: "royalblue", "neither": "lightgray"})
    fig.update_layout(height=450, margin=dict(l=10, r=10, t=30, b=10))
    st.plotly_chart(fig, key="compare_scatter")


# ---- circuits (analyses.circuits) ----------------------------------------------------------------


def circuit_tables(per_sample: dict[str, dict[str, pd.DataFrame]]) -> tuple[dict, pd.DataFrame | None]:
    """(task -> (its analysis, its head table with an in_circuit column), the overlap table) from any analysis."""
    found, overlap = {}, None
    for analysis, tables in per_sample.items():
        for name, df in tables.items():
            if {"layer", "head", "score", "in_circuit"} <= set(df.columns):
                found[name] = analysis, df
            elif name == "overlap" and "iou" in df.columns:
                overlap = df
    return found, overlap


def circuits_panel(found: dict, overlap: pd.DataFrame | None, layout: dict, selected: tuple[int, int],
                   per_sample: dict | None = None) -> None:
    """A task's importance heat map with its circuit heads outlined, its head classes and effects
    per position role where the scan measured them, and the overlap of circuits."""
    task = st.radio("Task", list(found), horizontal=True, key="circuit_task")
    analysis, df = found[task]
    circuit = df[df["in_circuit"].astype(bool)]
    # named after its analysis, so that the heat map says what the score is
    fig = heatmap_figure(report.measures_from_tables({analysis: df}, layout), analysis, selected)
    for row in circuit.itertuples():
        fig.add_shape(type="rect", x0=row.layer - 0.45, x1=row.layer + 0.45, y0=row.head - 0.45, y1=row.head + 0.45,
                      line=dict(color="white", width=2, dash="dot"), name="circuit")
    fig.update_layout(title=f"{task}: importance, circuit of {len(circuit)} heads outlined (white)")
    chart_key = "heatmap_circuit"
    st.plotly_chart(fig, key=chart_key, on_select=partial(pick_from_heatmap, chart_key), selection_mode="points")
    st.dataframe(circuit.sort_values("rank") if "rank" in circuit else circuit, hide_index=True, key="circuit_heads")
    tables = (per_sample or {}).get(analysis, {})
    if f"{task}_classes" in tables and f"{task}_class_edges" in tables:  # --set classes=true (ioi, colored_objects)
        from interp.analyses.circuit_classes import diagrams

        st.plotly_chart(diagrams(tables)[task], key="circuit_classes")
        st.dataframe(tables[f"{task}_classes"], hide_index=True, key="circuit_class_heads")
    if f"{task}_positions" in tables:  # --set positions=roles
        st.markdown("**Effect of each head at each position role** (exact patching where measured)")
        st.dataframe(tables[f"{task}_positions"], hide_index=True, key="circuit_positions")
    if overlap is not None and len(overlap):
        st.markdown("**Overlap of the circuits** (iou = |A & B| / |A u B|, containment_a = |A & B| / |A|, "
                    "chance_iou for random sets of the same sizes, p_value hypergeometric)")
        st.dataframe(overlap, hide_index=True, key="circuit_overlap")

# ---- atlas: every analysis in one view (the same functions as `interp report`) ------------------------


def atlas_panel(measures: report.Measures, results: ResultsDir) -> None:
    """What interp.report writes to HTML: what stands out (each analysis's headline, then what
    the measures share), the top-k overlaps and rank correlations of every pair of measures,
    and the atlas of every head."""
    k = int(st.number_input("Top k heads per measure", 1, measures.n, report.default_k(measures), key="atlas_k"))
    overlaps = report.overlap_table(measures, k)
    for name, lines in report.analysis_headlines(results, measures).items():
        st.markdown(f"**{name}**\n" + "\n".join(f"- {line}" for line in lines))
    st.markdown("\n".join(f"- {line}" for line in report.highlights(measures, k, overlaps=overlaps)) or "Nothing stands out.")
    if len(measures.names) > 1:
        st.caption(report.chance_note(measures, k))
        left, right = st.columns(2)
        left.plotly_chart(report.matrix_figure(report.pair_matrix(overlaps, measures, "jaccard"), f"Jaccard of the top {k}", 0, 1),
                          key="atlas_jaccard")
        right.plotly_chart(report.matrix_figure(report.pair_matrix(overlaps, measures, "spearman"), "Spearman rank correlation", -1, 1),
                           key="atlas_spearman")
        st.dataframe(overlaps.drop(columns=["k"]), hide_index=True, key="atlas_overlaps")
    st.subheader("Every head")
    st.dataframe(report.atlas_table(measures), hide_index=True, key="atlas_table")


# ---- models: this directory beside other models' (the same functions as `interp report A B`) --------


def models_panel(results: ResultsDir) -> None:
    """This results directory beside other models' (interp.compare): the papers' claims per model and
    whether the models agree, the heads above the papers' thresholds, scores against relative depth,
    and which head types coincide within each model."""
    others = st.text_area("Other models' results directories, one a line", value="\n".join(sys.argv[2:]), key="models_dirs",
                          help="directories written by `interp scan --model ...`; `streamlit run apps/head_explorer.py "
                               "-- DIR OTHER ...` fills this in")
    paths = [str(results.path)] + [line.strip() for line in others.splitlines() if line.strip()]
    if len(paths) < 2:
        st.info("Add the results directory of another model to compare this one with.")
        return
    try:
        models = compare.load_models(paths)
        claims, shares = compare.claims_table(models), compare.share_table(models)
        coincidences = compare.coincidence_table(models)
    except InterpError as e:
        st.error(str(e))
        return
    for note in compare.same_model_notes(models) + compare.settings_notes(models):
        st.warning(note)
    st.markdown("**The papers' claims**")
    st.dataframe(claims.drop(columns=["verdict"]), hide_index=True, key="models_claims")
    st.markdown("\n".join(f"- **{claim}**: {verdict}" for claim, verdict in zip(claims["claim"], claims["verdict"])))
    st.markdown("**Heads above the papers' thresholds** (and their median relative depth)")
    st.dataframe(shares, hide_index=True, key="models_shares")
    measure = st.selectbox("Scores against relative depth", compare.depth_measures(models), key="models_measure")
    st.plotly_chart(compare.depth_figure(models, measure), key="models_depth")
    st.markdown("**Which head types coincide within each model** (top-k overlap against chance)")
    st.markdown("\n".join(f"- {line}" for line in compare.coincidence_lines(models, coincidences)) or "Nothing to compare.")


# ---- page ----------------------------------------------------------------------------------------


def main() -> None:
    st.set_page_config(page_title="interp head explorer", layout="wide")
    st.title("Head explorer")
    results = open_chosen_results()
    manifest = results.manifest
    tables, per_sample = read_tables(str(results.path), manifest.get("updated", ""))
    sidebar_manifest(manifest)
    if not tables:
        st.warning(f"{results.path} holds no head tables yet: run `interp scan --out {results.path}` to completion.")
        st.stop()
    measures = report.measures_from_tables(tables, (manifest.get("model") or {}).get("layout"))
    n_layers, n_heads = measures.n_layers, measures.n_heads
    best = ranked(next(iter(tables.values()))).iloc[0]  # NaN scores sort last
    layer, head = head_picker(n_layers, n_heads, best)

    found, overlap = circuit_tables(per_sample)
    heads_tab, compare_tab, ablate_tab, atlas_tab, models_tab, *circuits_tab = st.tabs(
        ["Heads", "Compare", "Ablate", "Atlas", "Models"] + (["Circuits"] if found else []))
    with heads_tab:
        name = st.radio("Analysis", list(tables), horizontal=True, key="analysis")
        analysis_panel(name, tables[name], measures, (layer, head))
        st.subheader(f"Head {layer}.{head}")
        head_summary(layer, head, tables, measures)
        score_distribution(name, layer, head, tables[name], per_sample.get(name, {}), measures.label(name))
        attention_panel(layer, head, manifest)
        if "vhd" in tables:  # a vision-language model's results: where the head looks in an image
            image_panel(layer, head, manifest)
    with compare_tab:
        compare_panel(tables, measures)
    with ablate_tab:
        ablation_panel(layer, head, n_layers, n_heads, manifest)
    with atlas_tab:
        atlas_panel(measures, results)
    with models_tab:
        models_panel(results)
    if found:
        with circuits_tab[0]:
            circuits_panel(found, overlap, {"n_layers": n_layers, "n_heads": n_heads}, (layer, head), per_sample)


main()
