"""The IOI circuit's head classes (Wang et al. 2022, "Interpretability in the Wild", section 3),
recovered on any model with path patching and attention patterns; the same classes looked for
in other templated tasks (Colored Objects: Merullo et al. 2024 found the classes reused).

The paper's prompt: "When Mary and John went to the store, John gave a drink to" -> " Mary".
Roles (interp.data.tasks): S1 (first John), S1+1 (the token after it), IO (Mary), S2 (the
second John), END (" to"). The paper works backwards from the logits, and so does this file:

3.1 Name movers: heads at END whose direct path to the logits carries the answer (path
    patching head -> logits: the head gets its corrupted output, every other head is frozen
    at its clean output, MLPs are recomputed), that attend from END to IO, and whose OV
    circuit copies the name: the copy score is the fraction of prompts where the IO token is
    in the top COPY_TOP tokens of the unembedding (after the final norm) of the head's output
    when it attends to IO alone (its OV applied to the residual stream at IO, at its layer).
    Negative name movers: the same attention, a negative direct effect (they write against
    the answer), and a negative copy score (the IO token in the top tokens of -OV).
    S suppression (not a class of the paper's GPT-2 circuit; McDougall et al. 2023 call such
    heads copy suppression): a positive direct effect, attention END -> S2, and a negative
    copy score: the head lowers the logit of the name it attends to, the subject.
3.2 S-inhibition heads: their effect runs through the name movers' queries. Path patching
    sender -> name movers with the sender changed at END only: the name movers' keys and
    values at earlier positions do not change, so the effect runs through their query at
    END (and their key and value at END itself, which they attend to little).
3.3 Induction and duplicate-token heads, at S2: attention S2 -> S1+1 (induction) or S2 -> S1
    (duplicate token), and an effect on the S-inhibition heads (path patching with the
    sender changed at S2 only: it reaches them through their keys and values at S2).
3.4 Previous-token heads, at S1+1: attention S1+1 -> S1 and an effect on the induction
    heads. The "abc" corruption changes S2 only, so a head's corrupted output at S1+1 equals
    its clean one; these heads' path is measured with their output at S1+1 replaced by
    its mean over the task's prompts instead.
3.5 The circuit: the union of the classes, with every other head mean-ablated (Wang et al.:
    26 heads, 87% of the logit difference), beside the greedy circuit
    (patching.find_circuit with the same ablation) and the greedy ranking's top heads of
    the same size.

Scores are normalised as in analyses.circuits: (m(patched) - m(clean)) / (m(corrupt) - m(clean)),
so a head that helps the answer scores > 0. Path patching and attention are measured for
candidates only (CANDIDATES heads by |importance|, plus heads that attend where the class
needs), to keep a scan short; the thresholds below decide membership. For Colored Objects the
roles map to: IO -> the asked object's colour (the answer's mention), S1 -> the object's
mention, S1+1 -> the token after it, S2 -> the query (the object named again), END.

    found = find_classes(model, prepared, importance)   # prepared: patching.prepare(model, task)
    found.classes, found.edges, found.summary
    figure = diagram(found.classes, found.edges)
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from interp.analyses import patching
from interp.analyses.head_sets import overlap
from interp.base.errors import InterpError
from interp.runtime.interventions import Redistribute

Head = tuple[int, int]

# ---- which task role plays which part of the paper's prompt ------------------------------------


@dataclass(frozen=True)
class Parts:
    io: str  # the answer's mention
    s1: str  # the repeated token's first mention
    s1_next: str  # the token after it
    s2: str  # the repeated token's second mention
    end: str = "END"


PARTS = {"ioi": Parts("IO", "S1", "S1+1", "S2"),
         "colored_objects": Parts("colour", "object", "object+1", "query")}

# ---- thresholds (normalised effects: fractions of the clean - corrupt logit difference) -------------

CANDIDATES = 40  # heads by |importance| whose paths are measured (plus heads picked by attention)
DIRECT = 0.02  # |direct effect| of a (negative) name mover
ATTEND_IO = 0.1  # mean attention END -> IO of a (negative) name mover, END -> S2 of an S suppression head
COPY_TOP = 5  # the copy score counts the IO token among this many top tokens
S_INHIBITION = 0.02  # path effect through the name movers' queries
AT_S2 = 0.1  # attention S2 -> S1+1 (induction) or S2 -> S1 (duplicate token)
VIA_S_INHIBITION = 0.01  # path effect through the S-inhibition heads
PREVIOUS = 0.3  # attention S1+1 -> S1
VIA_INDUCTION = 0.01  # path effect (mean-ablated at S1+1) through the induction heads
BY_ATTENTION = 12  # heads picked by attention alone for the S2 and S1+1 classes (most attentive first)

CLASSES = ("previous token", "duplicate token", "induction", "S-inhibition", "name mover", "S suppression",
           "negative name mover")
# the paper's figure 2 (S suppression added): which class feeds which, the logits last
EDGES = (("previous token", "induction"), ("induction", "S-inhibition"), ("duplicate token", "S-inhibition"),
         ("S-inhibition", "name mover"), ("S-inhibition", "S suppression"), ("S-inhibition", "negative name mover"),
         ("name mover", "logits"),
         ("S suppression", "logits"), ("negative name mover", "logits"))
# per head: importance (the scan's), direct (path to the logits), path (into the next class: S-inhibition -> name
# movers, induction and duplicate token -> S-inhibition, previous token -> induction), mean attention query_key
# between roles (end_io = END -> IO, ...), copy and negative_copy scores
EVIDENCE = ("importance", "direct", "path", "end_io", "end_s2", "s2_s1_next", "s2_s1", "s1_next_s1", "copy", "negative_copy")


@dataclass
class Found:
    classes: pd.DataFrame  # layer, head, class and the EVIDENCE columns
    edges: pd.DataFrame  # source, target, effect (sum of the heads' path effects), heads, how
    summary: dict  # the class circuit's size and faithfulness beside the greedy circuit's
    evidence: pd.DataFrame  # every head's EVIDENCE (direct and path NaN where not measured)


# ---- measurements ------------------------------------------------------------------------------------


def parts_of(task) -> Parts:
    if task.name not in PARTS:
        raise InterpError(f"head classes are defined for {', '.join(PARTS)}, not task '{task.name}'")
    missing = [r for r in vars(PARTS[task.name]).values() if r not in task.role_names]
    if missing:
        raise InterpError(f"task '{task.name}' lacks the roles {', '.join(missing)}: make it with interp.data.tasks")
    return PARTS[task.name]


@torch.no_grad()
def attention(model, prepared, parts: Parts) -> pd.DataFrame:
    """Mean attention (clean prompts) of every head between the positions the classes need."""
    pairs = {"end_io": (parts.end, parts.io), "end_s2": (parts.end, parts.s2), "s2_s1_next": (parts.s2, parts.s1_next),
             "s2_s1": (parts.s2, parts.s1), "s1_next_s1": (parts.s1_next, parts.s1)}
    L, H = model.layout.n_layers, model.layout.n_heads
    sums = {name: torch.zeros(L, H, dtype=torch.float64) for name in pairs}
    count = 0
    for run in prepared.runs:
        with model.capture(pattern=True) as cap:
            model.base_forward({"input_ids": run.batch.clean})
        pattern = cap.pattern  # [B, L, H, N, N]
        rows = torch.arange(pattern.shape[0], device=pattern.device)
        for name, (query, key) in pairs.items():
            q, k = run.batch.roles[query].to(pattern.device), run.batch.roles[key].to(pattern.device)
            sums[name] += pattern[rows, :, :, q, k].double().sum(0).cpu()
        count += pattern.shape[0]
    return pd.DataFrame([{"layer": l, "head": h, **{name: float(s[l, h]) / count for name, s in sums.items()}}
                         for l in range(L) for h in range(H)])


def _final_norm(model):
    """The final norm of the residual stream before the unembedding (identity if none is found)."""
    base = model.hf.base_model
    for name in ("norm", "ln_f", "final_layernorm", "final_layer_norm"):
        if isinstance(getattr(base, name, None), torch.nn.Module):
            return getattr(base, name)
    return torch.nn.Identity()


@torch.no_grad()
def copy_scores(model, prepared, parts: Parts) -> pd.DataFrame:
    """Per head, the fraction of prompts where the answer token (the token at IO) is among the
    COPY_TOP top tokens of unembed(final_norm(OV write)), the head at END made to attend to IO
    alone (so its output is its OV circuit applied to the residual stream at IO); and the same
    for -OV (negative copying). One forward forces every head at once: a head's output at END
    depends on earlier positions only, which no forcing at END changes."""
    unembed, norm = model.hf.get_output_embeddings().weight, _final_norm(model)
    L, H = model.layout.n_layers, model.layout.n_heads
    hits = {"copy": torch.zeros(L, H), "negative_copy": torch.zeros(L, H)}
    count = 0
    for run in prepared.runs:
        B, n = run.batch.clean.shape
        io = run.batch.roles[parts.io]
        if (run.batch.answer != run.batch.clean[torch.arange(B), io]).any():
            raise InterpError(f"task '{prepared.task.name}': the token at role {parts.io} is not the answer")

        def onto_io(probs, ctx, io=io.to(model.device)):
            one_hot = torch.nn.functional.one_hot(io, probs.shape[-1]).to(probs)
            return one_hot[:, None, None, :].expand_as(probs)

        force = Redistribute(patching.all_heads(model), positions=[n - 1], rule=onto_io)
        with model.capture(resid=True, positions="last") as cap, model.intervene(force):
            model.base_forward({"input_ids": run.batch.clean})
        writes = cap.resid[:, :, :, -1]  # [B, L, H, d_model]
        answer = run.batch.answer.to(writes.device)[:, None, None]
        for name, sign in (("copy", 1), ("negative_copy", -1)):
            for layer in range(L):  # [B, H, vocab] at a time
                logits = norm((sign * writes[:, layer]).to(unembed.dtype)) @ unembed.T
                hits[name][layer] += (logits.topk(COPY_TOP, dim=-1).indices == answer).any(-1).float().sum(0).cpu()
        count += B
    return pd.DataFrame([{"layer": l, "head": h, **{k: float(v[l, h]) / count for k, v in hits.items()}}
                         for l in range(L) for h in range(H)])


def _paths(model, prepared, senders: list[Head], receivers: list[Head], role: str, source: str = "corrupt") -> dict:
    """path_effects of each sender into the receivers in later layers than its own (senders
    grouped by the receivers above them; a sender with none above gets no entry)."""
    groups: dict[tuple, list[Head]] = {}
    for s in senders:
        above = tuple(r for r in receivers if r[0] > s[0])
        if above:
            groups.setdefault(above, []).append(s)
    effects = {}
    for above, group in groups.items():
        effects.update(patching.path_effects(model, prepared, group, list(above), role=role, source=source))
    return effects


def _top(table: pd.DataFrame, column: str, k: int, at_least: float, below: int | None = None) -> list[Head]:
    """Up to k heads with column >= at_least (largest first), in layers below `below`."""
    picked = table[table[column] >= at_least]
    if below is not None:
        picked = picked[picked["layer"] < below]
    picked = picked.sort_values(column, ascending=False).head(k)
    return [(int(r.layer), int(r.head)) for r in picked.itertuples()]


# ---- the classes, backwards from the logits ----------------------------------------------------------


def find_classes(model, prepared, importance: pd.DataFrame, target: float = 0.8) -> Found:
    """Every class of section 3 with its evidence, the class edges with their measured path
    effects, and the class circuit's faithfulness (rest mean-ablated) beside the greedy one's."""
    parts = parts_of(prepared.task)
    evidence = attention(model, prepared, parts).merge(copy_scores(model, prepared, parts), on=["layer", "head"])
    evidence = evidence.merge(importance[["layer", "head", "score"]].rename(columns={"score": "importance"}),
                              on=["layer", "head"])
    by_importance = evidence.reindex(evidence["importance"].abs().sort_values(ascending=False).index)
    candidates = [(int(r.layer), int(r.head)) for r in by_importance.head(CANDIDATES).itertuples()]
    heads = lambda rows: [(int(r.layer), int(r.head)) for r in rows.itertuples()]
    key = lambda head: (evidence["layer"] == head[0]) & (evidence["head"] == head[1])
    evidence["direct"] = float("nan")
    evidence["path"] = float("nan")
    members: dict[str, list[Head]] = {c: [] for c in CLASSES}

    # 3.1 name movers and negative name movers: direct path to the logits, attention END -> IO, copying
    attending = heads(evidence[(evidence["end_io"] >= ATTEND_IO) | (evidence["end_s2"] >= ATTEND_IO)])
    direct = patching.path_effects(model, prepared, sorted(set(candidates) | set(attending)))
    for head, effect in direct.items():
        evidence.loc[key(head), "direct"] = effect
    rows = evidence.set_index(["layer", "head"])
    for head, effect in direct.items():
        row = rows.loc[head]
        if row["end_io"] >= ATTEND_IO and effect >= DIRECT and row["copy"] > row["negative_copy"]:
            members["name mover"].append(head)
        elif row["end_io"] >= ATTEND_IO and effect <= -DIRECT and row["negative_copy"] > row["copy"]:
            members["negative name mover"].append(head)
        elif row["end_s2"] >= ATTEND_IO and effect >= DIRECT and row["negative_copy"] > row["copy"]:
            members["S suppression"].append(head)
    edges = [("name mover", "logits", members["name mover"], direct, "direct path (path patching head -> logits)"),
             ("S suppression", "logits", members["S suppression"], direct, "direct path"),
             ("negative name mover", "logits", members["negative name mover"], direct, "direct path")]

    # 3.2 S-inhibition heads: through the name movers' queries (sender changed at END only)
    movers = members["name mover"]
    senders = [h for h in candidates if h not in movers + members["negative name mover"] + members["S suppression"]]
    via_movers = _paths(model, prepared, senders, movers, parts.end)
    members["S-inhibition"] = [h for h, e in via_movers.items() if e >= S_INHIBITION]
    for head in members["S-inhibition"]:
        evidence.loc[key(head), "path"] = via_movers[head]
    edges.append(("S-inhibition", "name mover", members["S-inhibition"], via_movers, "path to the name movers, sender at END"))
    for name in ("S suppression", "negative name mover"):  # the same senders' paths into the other output classes
        if members[name]:
            into = _paths(model, prepared, members["S-inhibition"], members[name], parts.end)
            edges.append(("S-inhibition", name, members["S-inhibition"], into, f"path to the {name} heads, sender at END"))

    # 3.3 induction and duplicate-token heads: attention at S2, effect through the S-inhibition heads
    inhibitors = members["S-inhibition"]
    top_layer = max((h[0] for h in inhibitors), default=0)
    at_s2 = {h for column in ("s2_s1_next", "s2_s1") for h in _top(evidence, column, BY_ATTENTION, AT_S2, top_layer)}
    via_inhibition = _paths(model, prepared, sorted(at_s2 - set(inhibitors)), inhibitors, parts.s2)
    for head, effect in via_inhibition.items():
        evidence.loc[key(head), "path"] = effect
        if effect >= VIA_S_INHIBITION:
            row = rows.loc[head]
            members["induction" if row["s2_s1_next"] >= row["s2_s1"] else "duplicate token"].append(head)
    for name in ("induction", "duplicate token"):
        edges.append((name, "S-inhibition", members[name], via_inhibition, "path to the S-inhibition heads, sender at S2"))

    # 3.4 previous-token heads: attention S1+1 -> S1, effect through the induction heads (mean at S1+1)
    inductors = members["induction"]
    top_layer = max((h[0] for h in inductors), default=0)
    previous = [h for h in _top(evidence, "s1_next_s1", BY_ATTENTION, PREVIOUS, top_layer) if h not in inductors]
    via_induction = _paths(model, prepared, previous, inductors, parts.s1_next, source="mean")
    members["previous token"] = [h for h, e in via_induction.items() if e >= VIA_INDUCTION]
    for head in members["previous token"]:
        evidence.loc[key(head), "path"] = via_induction[head]
    edges.append(("previous token", "induction", members["previous token"], via_induction,
                  "path to the induction heads, sender's mean output at S1+1"))

    classes = pd.DataFrame([{"layer": h[0], "head": h[1], "class": name} for name in CLASSES for h in members[name]],
                           columns=["layer", "head", "class"])
    classes = classes.merge(evidence, on=["layer", "head"], how="left")[["layer", "head", "class", *EVIDENCE]]
    edge_table = pd.DataFrame([{"source": a, "target": b, "effect": sum(effects.get(h, 0.0) for h in group),
                                "heads": len(group), "how": how} for a, b, group, effects, how in edges],
                              columns=["source", "target", "effect", "heads", "how"])
    evidence = evidence[["layer", "head", *EVIDENCE]]
    return Found(classes, edge_table, class_circuit(model, prepared, importance, classes, target), evidence)


def class_circuit(model, prepared, importance: pd.DataFrame, classes: pd.DataFrame, target: float = 0.8) -> dict:
    """3.5: the union of the classes with every other head mean-ablated, beside the greedy
    circuit at the same ablation and the greedy ranking's top heads of the same size."""
    union = sorted({(int(r.layer), int(r.head)) for r in classes.itertuples()})
    greedy = patching.find_circuit(model, prepared, importance, target, ablation="mean")
    same_size = patching.faithfulness_of(model, prepared, greedy.ranking[: len(union)], "mean", greedy.m_empty, greedy.m_full)
    faithfulness = patching.faithfulness_of(model, prepared, union, "mean", greedy.m_empty, greedy.m_full)
    return {"class_circuit_size": len(union), "class_circuit_faithfulness": faithfulness,
            "greedy_size": len(greedy.heads), "greedy_faithfulness": greedy.faithfulness, "greedy_target": target,
            "greedy_reached": greedy.reached, "greedy_same_size_faithfulness": same_size,
            **{f"n_{name.replace(' ', '_').replace('-', '_')}": int((classes["class"] == name).sum()) for name in CLASSES}}


def class_overlap(classes: dict[str, pd.DataFrame], n_heads: int) -> pd.DataFrame:
    """Per class and pair of tasks: the heads both tasks put in it, against chance (head_sets.overlap)."""
    names = list(classes)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for name in CLASSES:
                heads_a, heads_b = ({(int(r.layer), int(r.head)) for r in classes[t][classes[t]["class"] == name].itertuples()}
                                    for t in (a, b))
                shared = sorted(heads_a & heads_b)
                rows.append({"task_a": a, "task_b": b, "class": name, **overlap(heads_a, heads_b, n_heads),
                             "shared": ", ".join(f"{l}.{h}" for l, h in shared)})
    return pd.DataFrame(rows)


# ---- the diagram (Wang et al.'s figure 2 as measured) ---------------------------------------------------

COLUMNS = {"previous token": 0, "duplicate token": 1, "induction": 1, "S-inhibition": 2, "name mover": 3,
           "S suppression": 3, "negative name mover": 3, "logits": 4}
ROWS = {"previous token": 1, "duplicate token": 0, "induction": 1.2, "S-inhibition": 0.6, "name mover": 0,
        "S suppression": 0.6, "negative name mover": 1.2, "logits": 0.6}


def diagram(classes: pd.DataFrame, edges: pd.DataFrame, title: str = "IOI head classes"):
    """A plotly figure: each class a node listing its heads, the paper's edges between classes,
    labelled with the measured path effect (sum over the sending class's heads)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for edge in edges.to_dict("records"):
        (x0, y0), (x1, y1) = ((COLUMNS[c], ROWS[c]) for c in (edge["source"], edge["target"]))
        fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                           arrowhead=3, arrowwidth=1.5 if edge["heads"] else 0.5, standoff=28, startstandoff=28,
                           arrowcolor="#555" if edge["heads"] else "#bbb")
        fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2 + 0.06, text=f"{edge['effect']:+.2f}" if edge["heads"] else "none",
                           showarrow=False, font=dict(size=11, color="#333"))
    names = list(CLASSES) + ["logits"]
    labels = []
    for name in names:
        members = classes[classes["class"] == name] if name != "logits" else classes.iloc[:0]
        heads = ", ".join(f"{int(r.layer)}.{int(r.head)}" for r in members.itertuples())
        labels.append(f"<b>{name}</b><br>{heads or ('' if name == 'logits' else 'none found')}")
    fig.add_trace(go.Scatter(x=[COLUMNS[n] for n in names], y=[ROWS[n] for n in names], mode="markers+text",
                             text=labels, textposition="middle center", hoverinfo="text",
                             marker=dict(size=70, color=["#e8eef7"] * len(CLASSES) + ["#f3e6d8"],
                                         line=dict(color="#557", width=1))))
    fig.update_xaxes(visible=False, range=[-0.6, 4.6])
    fig.update_yaxes(visible=False, range=[-0.4, 1.6])
    fig.update_layout(title=title, height=420, showlegend=False, plot_bgcolor="white", margin=dict(l=10, r=10, t=40, b=10))
    return fig


def diagrams(tables: dict[str, pd.DataFrame]) -> dict[str, object]:
    """task -> its class diagram, from a circuits scan's tables (scan() or results.read_tables):
    what the report, the explorer and the notebook show."""
    return {name[: -len("_classes")]: diagram(table, tables[name[: -len("_classes")] + "_class_edges"],
                                              f"{name[: -len('_classes')]}: head classes (Wang et al. 2022), "
                                              "edges labelled with measured path effects")
            for name, table in tables.items()
            if name.endswith("_classes") and name[: -len("_classes")] + "_class_edges" in tables}
