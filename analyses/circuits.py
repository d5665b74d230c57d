"""Circuits: which heads carry a task, the smallest faithful head set, and how much two
tasks' circuits overlap (METHODS.md section 5; Wang et al. 2022, Merullo et al. 2024).

A task (interp.data.tasks) gives clean and corrupted prompts of equal token length and the
metric m = logit(answer) - logit(counterfactual) at the last position. A head's importance
is the normalised effect of giving it its corrupted output in the clean run,
    (m(patched) - m(clean)) / (m(corrupt) - m(clean))      (means over prompts),
measured three ways:
- exact activation patching of z, batched: every batch row patches one head of one prompt
  (PatchHead with a per-row mask). At the last position (the default) the clean prefix is
  run once and reused as a KV cache, so a row costs one token; "all" patches every
  position, "each" one position at a time (positions counted from the end);
- attribution patching: one forward and backward, (z_corrupt - z_clean) . dm/dz;
- integrated gradients (EAP-IG): the same product with dm/dz averaged over inputs moved
  from the clean to the corrupted embeddings in `ig_steps` steps.
Positions "roles" score each head at each role of the task (IOI: S1, S1+1, IO, S2, END;
interp.data.tasks), whose position differs from prompt to prompt: the head is given the
clean run's z with its corrupted z at the role's position (a head's z does not depend on
itself, so elsewhere this changes nothing). The prefix before the first token the
corruption changes is run once as a KV cache (clean and corrupted z agree there).
Path patching (path_patching, path_effects: many senders batched) gives the effect of a
head through chosen later heads, or through its direct path to the logits; the IOI head
classes of Wang et al. built on it are in analyses/circuit_classes.py. The mechanism (patching, path patching,
faithfulness) is analyses/patching.py.
Attribution is first order and can miss heads, so a scan always verifies it: exact
patching of the top heads by attribution plus random heads, with the rank correlation
and the false negatives in its output.

A circuit is the smallest set of top-ranked heads (by |importance|, or with order="signed"
by importance, heads that work against the answer last) whose faithfulness
    f = (m(circuit) - m(empty)) / (m(full) - m(empty))
reaches `target`; heads outside it are ablated at every position, by default with their
output from the corrupted run ("patch", the counterfactual the importance was measured
with), or with the task's own mean output per position ("mean"). m(empty) (every head
ablated) is measured. The curve f(k) gives CPR (area under f) and CMD (area under |1 - f|)
over k / n_heads; curves that fall somewhere or exceed 1 are flagged.

    tables = scan(model, tasks=("ioi", "colored_objects"))
"""

from __future__ import annotations

import pandas as pd
import torch
from scipy import stats

from interp.analyses.circuit_classes import class_overlap, find_classes
from interp.analyses.head_sets import overlap, top_text
from interp.analyses.patching import (  # noqa: F401  (the mechanism; also reached as circuits.<name>)
    ABLATIONS, FALSE_NEGATIVE, ORDERS, POSITIONS, ROW_CHUNK, Circuit, Head, Prepared, Run, ablation_values, all_heads,
    at_role, exact_patching, faithfulness_of, find_circuit, first_change, gradient_scores, k_grid, last_logits,
    logit_diff, patched_metrics, path_effects, path_patching, prepare, set_metrics, verify,
)
from interp.base.errors import InterpError
from interp.base.progress import track
from interp.data.tasks import Task, make_task

NAME = "circuits"
MEASURE = "importance"  # the head table's score: normalised effect of patching the head, first task, rank_by method
PARAMS = ("samples", "max_length", "seed", "tasks", "ablation", "target", "rank_by", "exact", "verify_top",
          "verify_random", "ig_steps", "positions", "order", "classes")
PARAM_HELP = {
    "samples": "prompts per task (default 32)",
    "max_length": "prompts with more tokens are left out",
    "seed": "seed of the prompts and of the random heads of the verification",
    "tasks": "tasks: ioi, colored_objects, induction or .jsonl/.csv task files",
    "ablation": "how heads outside a circuit are ablated: patch (corrupted run) or mean",
    "target": "faithfulness a circuit must reach",
    "rank_by": "the importance circuits are built from: exact, attribution or ig",
    "exact": "verify: exact patching of the verified heads only; all: of every head",
    "verify_top": "heads of the attribution top verified by exact patching",
    "verify_random": "random heads verified by exact patching",
    "ig_steps": "steps of integrated gradients",
    "positions": "positions patched: last, all, or roles (all, plus a head x role table <task>_positions)",
    "order": "abs: circuits take heads by |importance|; signed: by importance",
    "classes": "true: IOI head classes (Wang et al.) on ioi and colored_objects: <task>_classes, _class_edges, ...",
}
DEFAULT_TASKS = ("ioi", "colored_objects")
METHODS = ("exact", "attribution", "ig")
RESERVED = {"heads", "overlap", "faithfulness", "verification", "summary", "class_overlap"}  # other table names
PER_TASK = ("positions", "classes", "class_edges", "class_evidence")  # tables named <task>_<kind>
CLASS_COLUMNS = ["layer", "head", "class", "task"]  # of a task's classes table when no head is in a class




# ---- scan ------------------------------------------------------------------------------------------


def scan(model, *, samples=None, max_length=None, seed=0, results=None, tasks=DEFAULT_TASKS, ablation="patch",
         target=0.8, rank_by="ig", exact="verify", verify_top=20, verify_random=20, ig_steps=5,
         positions="last", order="abs", classes: bool = False) -> dict[str, pd.DataFrame]:
    """Importance of every head for each task (attribution, integrated gradients, exact
    patching of the verified heads or of all heads with exact="all"), each task's circuit
    ranked by `rank_by`, and the overlap of every pair of circuits.

    positions: "last", "all", or "roles": importance at all positions, plus the table
    <task>_positions (attribution, IG and exact patching per head and role; exact for every
    head with exact="all", else for the verified heads). classes=True: for ioi and
    colored_objects, the IOI head classes (analyses.circuit_classes): <task>_classes,
    <task>_class_edges, their circuit in the summary and class_overlap between tasks.

    tasks: names (ioi, colored_objects, induction), paths of task files, or Task objects;
    a comma-separated string works too. samples: prompts per task (default 32)."""
    tasks = _task_list(model, tasks, samples or 32, seed)
    if ablation not in ABLATIONS:
        raise InterpError(f"unknown ablation '{ablation}': choose from {', '.join(ABLATIONS)}")
    if rank_by not in METHODS:
        raise InterpError(f"rank_by must be one of {', '.join(METHODS)}, not {rank_by!r}")
    if positions not in POSITIONS:
        raise InterpError("scan positions must be 'last', 'all' or 'roles'; per-position scores: "
                          "exact_patching(..., positions='each') or gradient_scores(..., positions='each')")
    if exact not in ("verify", "all"):
        raise InterpError(f"exact must be 'verify' or 'all', not {exact!r}")
    if rank_by == "exact" and exact != "all":
        raise InterpError("rank_by='exact' needs exact='all' (exact scores of every head)")
    done = results.load_progress(NAME) if results is not None else {}
    prepared, circuits, outputs = {}, {}, {}
    for task in track(tasks, "circuits"):
        prepared[task.name] = prepare(model, task, max_length)
        if task.name not in done:
            done[task.name] = _task_tables(model, prepared[task.name], ablation, target, rank_by, exact, verify_top,
                                           verify_random, ig_steps, positions, seed, order, classes)
            if results is not None:
                results.save_progress(NAME, task.name, done[task.name])
        outputs[task.name] = {k: pd.DataFrame(v, columns=CLASS_COLUMNS if k == "classes" and not v else None)
                              for k, v in done[task.name].items()}
        table = outputs[task.name]["heads"]
        circuits[task.name] = [(int(r.layer), int(r.head)) for r in table[table["in_circuit"]].sort_values("rank").itertuples()]

    names = [t.name for t in tasks]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    overlaps = []
    measured = lambda t: outputs[t]["summary"].iloc[0][["m_empty", "m_full"]].astype(float).tolist()  # find_circuit's
    for a, b in pairs:
        row = {"task_a": a, "task_b": b, **overlap(set(circuits[a]), set(circuits[b]), model.layout.n_total_heads)}
        sa, sb = (outputs[t]["heads"].sort_values(["layer", "head"])["score"] for t in (a, b))
        row["spearman_importance"] = float(stats.spearmanr(sa, sb).statistic)
        row["faithfulness_b_with_a"] = faithfulness_of(model, prepared[b], circuits[a], ablation, *measured(b))
        row["faithfulness_a_with_b"] = faithfulness_of(model, prepared[a], circuits[b], ablation, *measured(a))
        overlaps.append(row)

    heads = outputs[names[0]]["heads"][["layer", "head", "score"]].copy()
    keys = list(zip(heads["layer"], heads["head"]))
    for name in names:
        per_task = outputs[name]["heads"].set_index(["layer", "head"])
        heads[f"{name}_score"] = per_task.loc[keys, "score"].to_numpy()
        heads[f"{name}_in_circuit"] = per_task.loc[keys, "in_circuit"].to_numpy()
    tables = {"heads": heads}
    for name in names:
        tables[name] = outputs[name]["heads"]
        for kind in PER_TASK:
            if kind in outputs[name]:
                tables[f"{name}_{kind}"] = outputs[name][kind]
    for key in ("faithfulness", "verification", "summary"):
        tables[key] = pd.concat([outputs[n][key] for n in names], ignore_index=True)
    with_classes = {n: outputs[n]["classes"] for n in names if "classes" in outputs[n]}
    if len(with_classes) > 1:
        tables["class_overlap"] = class_overlap(with_classes, model.layout.n_total_heads)
    tables["overlap"] = pd.DataFrame(overlaps, columns=["task_a", "task_b", "size_a", "size_b", "intersection", "iou",
                                                        "containment_a", "containment_b", "chance_intersection",
                                                        "chance_iou", "p_value", "spearman_importance",
                                                        "faithfulness_b_with_a", "faithfulness_a_with_b"])
    return tables


def _task_list(model, tasks, n, seed) -> list[Task]:
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    if not tasks:
        raise InterpError(f"no tasks given: choose from {', '.join(DEFAULT_TASKS)} or task files")
    made = [t if isinstance(t, Task) else make_task(t, model.tokenizer, n=n, seed=seed) for t in tasks]
    names = [t.name for t in made]
    if len(set(names)) != len(names):
        raise InterpError(f"tasks must have different names, got {', '.join(names)}")
    clash = [name for name in names if name in RESERVED or name.endswith(tuple(f"_{k}" for k in PER_TASK))]
    if clash:
        raise InterpError(f"task name {clash[0]!r} is reserved for another table: rename the task file")
    return made


def _task_tables(model, prepared: Prepared, ablation, target, rank_by, exact, verify_top, verify_random, ig_steps,
                 positions, seed, order, classes=False) -> dict[str, list[dict]]:
    """Everything measured on one task, as JSON-able records (saved as scan progress)."""
    name = prepared.task.name
    roles, positions = positions == "roles", "all" if positions == "roles" else positions
    scores = {"attribution": gradient_scores(model, prepared, "attribution", positions),
              "ig": gradient_scores(model, prepared, "ig", positions, ig_steps)}
    exact_all = exact_patching(model, prepared, positions=positions) if exact == "all" else None
    if exact_all is not None:
        scores["exact"] = exact_all
    verification, check = verify(model, prepared, scores["attribution"], verify_top, verify_random, seed, positions,
                                 exact_all)
    extra = {}
    if roles:
        verified = list(zip(verification["layer"].astype(int), verification["head"].astype(int)))
        extra["positions"] = role_table(model, prepared, None if exact == "all" else verified, ig_steps)
    circuit = find_circuit(model, prepared, scores[rank_by], target, ablation, order=order)

    heads = scores[rank_by][["layer", "head", "score"]].copy()
    for method, df in scores.items():
        heads[method] = df["score"].to_numpy()
    if "exact" not in scores:  # exact scores where verified, NaN elsewhere
        heads = heads.merge(verification[["layer", "head", "exact"]], on=["layer", "head"], how="left")
    rank = {h: i + 1 for i, h in enumerate(circuit.ranking)}
    heads["rank"] = [rank[(int(l), int(h))] for l, h in zip(heads["layer"], heads["head"])]
    heads["in_circuit"] = heads["rank"] <= len(circuit.heads)
    heads["task"] = name

    curve = circuit.curve.assign(task=name, ablation=ablation)
    verification = verification.assign(task=name)
    runs = prepared.runs
    summary = {
        "task": name, "description": prepared.task.description, "prompts": len(prepared.task),
        "clean_accuracy": float(torch.cat([r.clean_correct for r in runs]).float().mean()),
        "corrupt_accuracy": float(torch.cat([r.corrupt_correct for r in runs]).float().mean()),
        "clean_logit_diff": prepared.m_clean, "corrupt_logit_diff": prepared.m_corrupt,
        "clean_logit_diff_positive": float((torch.cat([r.clean for r in runs]) > 0).float().mean()),
        "rank_by": rank_by, "order": order, "ablation": ablation, "target": target, "circuit_size": len(circuit.heads),
        "reached": circuit.reached, "faithfulness": circuit.faithfulness, "m_full": circuit.m_full,
        "m_empty": circuit.m_empty, "cpr": circuit.cpr, "cmd": circuit.cmd, "non_monotone": circuit.non_monotone,
        "exceeds_one": circuit.exceeds_one, **{f"verify_{k}": v for k, v in check.items()},
    }
    if classes and name in ("ioi", "colored_objects") and prepared.task.roles:
        found = find_classes(model, prepared, heads[["layer", "head", "score"]], target)
        extra["classes"], extra["class_edges"] = found.classes.assign(task=name), found.edges.assign(task=name)
        extra["class_evidence"] = found.evidence.assign(task=name)
        summary.update(found.summary)
    return {"heads": heads.to_dict("records"), "faithfulness": curve.to_dict("records"),
            "verification": verification.to_dict("records"), "summary": [summary],
            **{kind: table.to_dict("records") for kind, table in extra.items()}}


def role_table(model, prepared: Prepared, exact_heads: list[Head] | None, ig_steps: int = 5) -> pd.DataFrame:
    """Head x role: attribution, IG and exact patching (of exact_heads, all if None; NaN for
    the others) at each role's position of each prompt, in the task's role order."""
    keys = ["layer", "head", "role"]
    table = gradient_scores(model, prepared, "attribution", "roles").rename(columns={"score": "attribution"})
    ig = gradient_scores(model, prepared, "ig", "roles", ig_steps).rename(columns={"score": "ig"})
    exact = exact_patching(model, prepared, exact_heads, positions="roles").rename(columns={"score": "exact"})
    table = table.merge(ig, on=keys).merge(exact, on=keys, how="left")
    order = {role: i for i, role in enumerate(prepared.task.role_names)}
    table = table.assign(order=table["role"].map(order)).sort_values(["layer", "head", "order"])
    return table.assign(task=prepared.task.name)[[*keys, "exact", "attribution", "ig", "task"]].reset_index(drop=True)


def headline(tables: dict[str, pd.DataFrame]) -> list[str]:
    """What `interp scan` prints and the report lists: per task the top heads by |importance|
    with their sign, the circuit's size and faithfulness; per pair of tasks their overlap."""
    lines = []
    for task in tables["summary"].to_dict("records"):
        top = top_text(tables[task["task"]], k=3) if task["task"] in tables else "?"
        reached = "" if task["reached"] else ", not reached"
        lines.append(f"{task['task']}: {MEASURE} ({task['rank_by']}) top {top}; circuit of {task['circuit_size']} heads, "
                     f"faithfulness {task['faithfulness']:.2f} (target {task['target']:g}{reached})")
        roles = tables.get(f"{task['task']}_positions")
        if roles is not None and len(roles):
            lines.append(f"{task['task']} by role: {_role_text(roles)}")
        if pd.notna(task.get("class_circuit_size", float("nan"))):
            lines.append(f"{task['task']} head classes: {_classes_text(tables.get(task['task'] + '_classes'))}; class circuit "
                         f"{int(task['class_circuit_size'])} heads, faithfulness {task['class_circuit_faithfulness']:.2f} "
                         f"(mean ablation) beside the greedy circuit's {int(task['greedy_size'])} heads for "
                         f"{task['greedy_target']:g} ({task['greedy_same_size_faithfulness']:.2f} at the same size)")
    for pair in tables.get("overlap", pd.DataFrame()).to_dict("records"):
        lines.append(f"{pair['task_a']} / {pair['task_b']}: circuits share {pair['intersection']} of their heads, IoU {pair['iou']:.2f} "
                     f"(chance {pair['chance_iou']:.2f}, p = {pair['p_value']:.2g})")
    return lines


def _role_text(roles: pd.DataFrame, k: int = 3) -> str:
    """The k largest |effects| of a head at a role other than END, then at END (exact where
    measured, else attribution)."""
    column = "exact" if roles["exact"].notna().any() else "attribution"
    scored = roles.dropna(subset=[column]).assign(size=lambda t: t[column].abs())
    top = lambda part, at: ", ".join(f"{int(r.layer)}.{int(r.head)}{f' at {r.role}' if at else ''} ({getattr(r, column):+.3g})"
                                     for r in part.nlargest(k, "size").itertuples())
    return (f"{column}, before END {top(scored[scored.role != 'END'], True)}; "
            f"at END {top(scored[scored.role == 'END'], False)}")


def _classes_text(classes: pd.DataFrame | None) -> str:
    if classes is None or not len(classes):
        return "none found"
    groups = classes.groupby("class", sort=False)
    return "; ".join(f"{name} " + ", ".join(f"{int(r.layer)}.{int(r.head)}" for r in group.itertuples())
                     for name, group in groups)
