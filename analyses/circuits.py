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

import copy
import math
import random
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy import stats

from interp.analyses.head_sets import overlap, top_text
from interp.base.errors import InterpError
from interp.runtime.ablation import head_ablation
from interp.base.progress import track
from interp.data.tasks import Task, TaskBatch, make_task

NAME = "circuits"
MEASURE = "importance"  # the head table's score: normalised effect of patching the head, first task, rank_by method
PARAMS = ("samples", "max_length", "seed", "tasks", "ablation", "target", "rank_by", "exact", "verify_top",
          "verify_random", "ig_steps", "positions", "order")
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
    "positions": "positions patched: last or all",
    "order": "abs: circuits take heads by |importance|; signed: by importance",
}
DEFAULT_TASKS = ("ioi", "colored_objects")
ABLATIONS = ("patch", "mean")
METHODS = ("exact", "attribution", "ig")
ORDERS = ("signed", "abs")
RESERVED = {"heads", "overlap", "faithfulness", "verification", "summary"}  # other table names
ROW_CHUNK = 256  # batch rows per patched forward
FALSE_NEGATIVE = 0.05  # |exact effect| that a head missed by attribution must reach to count

Head = tuple[int, int]


# ---- running a task ------------------------------------------------------------------------------


@dataclass
class Run:
    """One same-length group of a task's prompts, run clean and corrupted."""

    batch: TaskBatch
    clean_z: torch.Tensor  # [B, layers, heads, N, d_head]
    corrupt_z: torch.Tensor
    clean: torch.Tensor  # metric per prompt [B]
    corrupt: torch.Tensor
    clean_correct: torch.Tensor  # the answer is the top token [B]
    corrupt_correct: torch.Tensor


@dataclass
class Prepared:
    task: Task
    runs: list[Run]

    @property
    def m_clean(self) -> float:
        return float(torch.cat([r.clean for r in self.runs]).mean())

    @property
    def m_corrupt(self) -> float:
        return float(torch.cat([r.corrupt for r in self.runs]).mean())

    def normalise(self, patched_mean: torch.Tensor) -> torch.Tensor:
        return (patched_mean - self.m_clean) / self.scale

    @property
    def scale(self) -> float:
        scale = self.m_corrupt - self.m_clean
        if abs(scale) < 1e-9:
            raise InterpError(f"task '{self.task.name}': clean and corrupted prompts give the same metric, so no head "
                              "can explain a difference; use a corruption that changes the answer")
        return scale


def logit_diff(logits: torch.Tensor, batch: TaskBatch, rows: torch.Tensor | None = None) -> torch.Tensor:
    """m per row from last-position logits [R, vocab]; rows maps batch rows to prompts."""
    answer, counter = batch.answer.to(logits.device), batch.counterfactual.to(logits.device)
    if rows is not None:
        answer, counter = answer[rows], counter[rows]
    picked = logits.gather(1, torch.stack([answer, counter], 1))
    return picked[:, 0] - picked[:, 1]


def last_logits(model, ids: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    return model.hf(input_ids=ids, logits_to_keep=1, **kwargs).logits[:, -1].double()


def prepare(model, task: Task, max_length: int | None = None) -> Prepared:
    """Run every prompt clean and corrupted once: metrics and every head's z."""
    if model.tokenizer is None:
        raise InterpError("circuits need a model with a tokenizer")
    runs = []
    for batch in task.batches(model.tokenizer, max_length):
        batch = batch.to(model.device)
        model.check_length(batch.clean.shape[1])
        out = {}
        for side in ("clean", "corrupt"):
            with torch.no_grad(), model.capture(z=True) as cap:
                logits = last_logits(model, getattr(batch, side))
            out[side] = (cap.z, logit_diff(logits, batch), logits.argmax(-1) == batch.answer)
        runs.append(Run(batch, out["clean"][0], out["corrupt"][0], out["clean"][1], out["corrupt"][1],
                        out["clean"][2], out["corrupt"][2]))
    return Prepared(task, runs)


def all_heads(model) -> list[Head]:
    return model.layout.all_heads()


# ---- exact patching ---------------------------------------------------------------------------


def _mask(model, rows: int, heads_per_row: list[list[Head]]) -> torch.Tensor:
    mask = torch.zeros(rows, model.layout.n_layers, model.layout.n_heads, dtype=torch.bool)
    for r, heads in enumerate(heads_per_row):
        if heads:
            layers, indices = zip(*heads)
            mask[r, list(layers), list(indices)] = True
    return mask


@torch.no_grad()
def patched_metrics(model, run: Run, prompts: list[int], head_sets: list[list[Head]], values: torch.Tensor,
                    positions: str | int = "all", chunk: int = ROW_CHUNK) -> torch.Tensor:
    """m of row r = prompt prompts[r] with the heads head_sets[r] given `values`
    ([prompts or 1, layers, heads, N, d_head]) at `positions`: "all", "last" (one token per
    row on the clean prefix's KV cache) or an int (one position, counted from the start)."""
    n = run.batch.clean.shape[1]
    prefix = None
    if positions == "last" and n > 1:
        prefix = model.prefill(run.batch.clean[:, :-1])
    out = []
    for start in range(0, len(prompts), chunk):
        rows = torch.tensor(prompts[start : start + chunk], device=model.device)
        sets = head_sets[start : start + chunk]
        heads = sorted({h for s in sets for h in s})
        if not heads:  # nothing patched in these rows
            logits = last_logits(model, run.batch.clean[rows])
            out.append(logit_diff(logits, run.batch, rows))
            continue
        mask = _mask(model, len(rows), sets).to(model.device)
        source = rows if values.shape[0] > 1 else torch.zeros_like(rows)
        if prefix is not None:
            cache = copy.deepcopy(prefix)
            cache.batch_select_indices(rows)
            patch = head_ablation("patch", heads, values=values[:, :, :, -1:], source=source, mask=mask)
            with model.intervene(patch):
                logits = last_logits(model, run.batch.clean[rows, -1:], cache=cache)
        else:
            where = None if positions in ("all", "last") else [int(positions)]
            with model.intervene(head_ablation("patch", heads, values=values, source=source, mask=mask, positions=where)):
                logits = last_logits(model, run.batch.clean[rows])
        out.append(logit_diff(logits, run.batch, rows))
    return torch.cat(out) if out else torch.zeros(0)


def exact_patching(model, prepared: Prepared, heads: list[Head] | None = None, positions: str = "last",
                   chunk: int = ROW_CHUNK) -> pd.DataFrame:
    """Normalised effect of patching each head's corrupted z into the clean run, one head
    per batch row. positions: "last", "all", or "each" (a row per position from the end)."""
    heads = heads if heads is not None else all_heads(model)
    if positions not in ("last", "all", "each"):
        raise InterpError(f"positions must be 'last', 'all' or 'each', not {positions!r}")
    total: dict[tuple, float] = {}
    n_prompts: dict[tuple, int] = {}  # per key: with "each", runs of other lengths have other offsets
    for run in prepared.runs:
        B, n = run.batch.clean.shape
        where_list = [positions] if positions != "each" else list(range(n))
        for where in where_list:
            prompts = [b for _ in heads for b in range(B)]
            sets = [[h] for h in heads for _ in range(B)]
            m = patched_metrics(model, run, prompts, sets, run.corrupt_z, where, chunk).view(len(heads), B)
            offset = where - n if positions == "each" else None
            for j, head in enumerate(heads):
                key = (head, offset)
                total[key] = total.get(key, 0.0) + float(m[j].sum())
                n_prompts[key] = n_prompts.get(key, 0) + B
    rows = []
    for (head, offset), s in total.items():
        mean = torch.tensor(s / n_prompts[(head, offset)], dtype=torch.float64)
        row = {"layer": head[0], "head": head[1], "score": float(prepared.normalise(mean))}
        if positions == "each":
            row["position"] = offset
        rows.append(row)
    return pd.DataFrame(rows)


# ---- gradient methods --------------------------------------------------------------------------


def _z_grads(model, run: Run, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """d(sum of m over prompts)/dz for every head and position, [B, layers, heads, N, d_head]."""
    with torch.enable_grad(), model.capture(z=True, detach=False) as cap:
        logits = last_logits(model, run.batch.clean if inputs_embeds is None else None, inputs_embeds=inputs_embeds)
        metric = logit_diff(logits, run.batch).sum()
        zs = [cap.graph_z(layer)[0] for layer in range(model.layout.n_layers)]  # [B, N, heads, d]
        grads = torch.autograd.grad(metric, zs)
    return torch.stack([g.transpose(1, 2) for g in grads], dim=1).detach()


def gradient_scores(model, prepared: Prepared, method: str = "attribution", positions: str = "last",
                    ig_steps: int = 5) -> pd.DataFrame:
    """Attribution patching ("attribution") or integrated gradients ("ig") for every head:
    sum over prompts (and the chosen positions) of (z_corrupt - z_clean) . dm/dz, normalised
    like exact patching. positions "each" adds a position column (counted from the end)."""
    if method not in ("attribution", "ig"):
        raise InterpError(f"gradient method must be 'attribution' or 'ig', not {method!r}")
    if ig_steps < 1:
        raise InterpError(f"ig_steps must be at least 1, got {ig_steps}")
    if positions not in ("last", "all", "each"):
        raise InterpError(f"positions must be 'last', 'all' or 'each', not {positions!r}")
    L, H = model.layout.n_layers, model.layout.n_heads
    sums: dict[int | None, torch.Tensor] = {}
    count = 0
    for run in prepared.runs:
        if method == "attribution":
            grads = _z_grads(model, run)
        else:  # EAP-IG: gradients at inputs moved from clean to corrupted (midpoint rule)
            embed = model.hf.get_input_embeddings()
            with torch.no_grad():
                clean, corrupt = embed(run.batch.clean), embed(run.batch.corrupt)
            grads = sum(_z_grads(model, run, clean + (k + 0.5) / ig_steps * (corrupt - clean)) for k in range(ig_steps))
            grads = grads / ig_steps
        per_position = ((run.corrupt_z - run.clean_z) * grads).sum(-1).sum(0)  # [L, H, N]
        n = per_position.shape[-1]
        if positions == "each":
            for p in range(n):
                sums[p - n] = sums.get(p - n, torch.zeros(L, H, dtype=torch.float64)) + per_position[..., p].cpu()
        else:
            part = per_position[..., -1] if positions == "last" else per_position.sum(-1)
            sums[None] = sums.get(None, torch.zeros(L, H, dtype=torch.float64)) + part.cpu()
        count += run.batch.clean.shape[0]
    scale = prepared.scale
    rows = []
    for offset, total in sums.items():
        for l in range(L):
            for h in range(H):
                row = {"layer": l, "head": h, "score": float(total[l, h]) / count / scale}
                if offset is not None:
                    row["position"] = offset
                rows.append(row)
    return pd.DataFrame(rows)


def verify(model, prepared: Prepared, attribution: pd.DataFrame, top: int = 20, n_random: int = 20, seed: int = 0,
           positions: str = "last", exact: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """Exact patching of the top heads by |attribution| and of random other heads: the
    table of both scores, Spearman over them, and the false negatives (heads outside the
    attribution top whose exact |effect| >= FALSE_NEGATIVE and >= the weakest top head's)."""
    ranked = attribution.reindex(attribution["score"].abs().sort_values(ascending=False).index)
    top_heads = [(int(r.layer), int(r.head)) for r in ranked.head(top).itertuples()]
    rest = [(int(r.layer), int(r.head)) for r in ranked.iloc[top:].itertuples()]
    random_heads = random.Random(seed).sample(rest, min(n_random, len(rest)))
    heads = top_heads + random_heads
    if exact is None:
        exact = exact_patching(model, prepared, heads, positions)
    table = pd.DataFrame({"layer": [h[0] for h in heads], "head": [h[1] for h in heads],
                          "kind": ["top"] * len(top_heads) + ["random"] * len(random_heads)})
    table = table.merge(attribution[["layer", "head", "score"]].rename(columns={"score": "attribution"}), on=["layer", "head"])
    table = table.merge(exact[["layer", "head", "score"]].rename(columns={"score": "exact"}), on=["layer", "head"])
    weakest_top = table.loc[table["kind"] == "top", "exact"].abs().min()
    table["false_negative"] = (table["kind"] == "random") & (table["exact"].abs() >= max(FALSE_NEGATIVE, weakest_top))
    rho = stats.spearmanr(table["attribution"], table["exact"]).statistic if len(table) > 2 else float("nan")
    rho_top = (stats.spearmanr(table.loc[table.kind == "top", "attribution"], table.loc[table.kind == "top", "exact"]).statistic
               if len(top_heads) > 2 else float("nan"))
    summary = {"spearman": float(rho), "spearman_top": float(rho_top), "false_negatives": int(table["false_negative"].sum()),
               "verified": len(table)}
    return table, summary


# ---- path patching -------------------------------------------------------------------------------


@torch.no_grad()
def path_patching(model, prepared: Prepared, sender: Head, receivers: list[Head]) -> float:
    """Normalised effect of the path sender -> receivers: the sender gets its corrupted z
    while every other head is frozen at its clean z (MLPs recomputed), the receivers'
    resulting z are recorded, then the clean run is given only those receiver outputs."""
    sender, receivers = model.heads(sender)[0], list(model.heads(receivers))
    if any(r[0] <= sender[0] for r in receivers):
        raise InterpError(f"receivers must lie in later layers than the sender {sender[0]}.{sender[1]}")
    frozen = [h for h in all_heads(model) if h != sender and h not in receivers]
    total, count = 0.0, 0
    for run in prepared.runs:
        values = run.clean_z.clone()
        values[:, sender[0], sender[1]] = run.corrupt_z[:, sender[0], sender[1]]
        with model.capture(z=True) as cap, model.intervene(head_ablation("patch", frozen + [sender], values=values)):
            model.hf(input_ids=run.batch.clean, logits_to_keep=1)
        with model.intervene(head_ablation("patch", receivers, values=cap.z)):
            total += float(logit_diff(last_logits(model, run.batch.clean), run.batch).sum())
        count += run.batch.clean.shape[0]
    return float(prepared.normalise(torch.tensor(total / count, dtype=torch.float64)))


# ---- circuits and faithfulness -------------------------------------------------------------------


def ablation_values(run: Run, ablation: str) -> torch.Tensor:
    if ablation == "patch":
        return run.corrupt_z
    if ablation == "mean":  # the task's own mean per position (prompts of this length)
        return run.clean_z.mean(0, keepdim=True)
    raise InterpError(f"unknown ablation '{ablation}': choose from {', '.join(ABLATIONS)}")


def set_metrics(model, prepared: Prepared, head_sets: list[list[Head]], ablation: str = "patch") -> list[float]:
    """Mean m with only each head set intact (every other head ablated at every position)."""
    everyone = all_heads(model)
    ablated = [[h for h in everyone if h not in keep] for keep in map(set, head_sets)]
    totals, count = torch.zeros(len(head_sets), dtype=torch.float64), 0
    for run in prepared.runs:
        B = run.batch.clean.shape[0]
        prompts = [b for _ in ablated for b in range(B)]
        sets = [a for a in ablated for _ in range(B)]
        m = patched_metrics(model, run, prompts, sets, ablation_values(run, ablation), "all")
        totals += m.view(len(head_sets), B).sum(1).cpu()
        count += B
    return (totals / count).tolist()


@dataclass
class Circuit:
    task: str
    heads: list[Head]  # the circuit, most important first
    target: float
    reached: bool
    faithfulness: float
    ablation: str
    m_full: float
    m_empty: float
    curve: pd.DataFrame  # k, f, m
    cpr: float
    cmd: float
    non_monotone: bool
    exceeds_one: bool
    ranking: list[Head] = field(default_factory=list)


def k_grid(n: int) -> list[int]:
    """Circuit sizes tried first: 0-5, then steps of x1.5 up to n."""
    ks = set(range(min(n, 5) + 1)) | {n}
    k = 5
    while k < n:
        k = int(math.ceil(k * 1.5))
        ks.add(min(k, n))
    return sorted(ks)


def find_circuit(model, prepared: Prepared, importance: pd.DataFrame, target: float = 0.8, ablation: str = "patch",
                 order: str = "abs") -> Circuit:
    """The smallest top-k with f >= target: f on a grid of k, then bisection between the last
    grid point below the target and the first at or above it (so a curve that dips between
    grid points can hide a smaller k: the flags say when it is not monotone).
    order "abs" (default): by |importance|, so heads that do not matter come last and negative
    heads early; "signed": heads that move m towards the answer first, negative heads last (f
    can exceed 1 while they are ablated, and heads of no importance come before them)."""
    if not 0 < target <= 1:
        raise InterpError(f"target faithfulness must be in (0, 1], got {target}")
    if order not in ORDERS:
        raise InterpError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    key = importance["score"] if order == "signed" else importance["score"].abs()
    order = importance.reindex(key.sort_values(ascending=False, kind="stable").index)
    ranking = [(int(r.layer), int(r.head)) for r in order.itertuples()]
    n = len(ranking)
    ks = k_grid(n)  # 0 and n included
    m = dict(zip(ks, set_metrics(model, prepared, [ranking[:k] for k in ks], ablation)))
    m_full, m_empty = m[n], m[0]
    f = lambda k: (m[k] - m_empty) / (m_full - m_empty)
    first = next((k for k in ks if f(k) >= target), None)
    if first is not None:
        low = max([k for k in ks if k < first], default=0)
        while first - low > 1:
            mid = (low + first) // 2
            m[mid] = set_metrics(model, prepared, [ranking[:mid]], ablation)[0]
            low, first = (mid, first) if f(mid) < target else (low, mid)
    curve = pd.DataFrame({"k": sorted(m), "m": [m[k] for k in sorted(m)]})
    curve["f"] = (curve["m"] - m_empty) / (m_full - m_empty)
    x = curve["k"] / n
    cpr = float(np.trapezoid(curve["f"], x))
    cmd = float(np.trapezoid((1 - curve["f"]).abs(), x))
    k = first if first is not None else n
    return Circuit(prepared.task.name, ranking[:k], target, first is not None, float(f(k)), ablation, m_full, m_empty,
                   curve, cpr, cmd, bool((curve["f"].diff().dropna() < -1e-6).any()), bool((curve["f"] > 1 + 1e-6).any()),
                   ranking)


def faithfulness_of(model, prepared: Prepared, heads: list[Head], ablation: str = "patch",
                    m_empty: float | None = None, m_full: float | None = None) -> float:
    """f of one head set on a task (e.g. another task's circuit); m(empty) and m(full) are
    measured unless given (find_circuit's, with the same ablation)."""
    if m_empty is None or m_full is None:
        m_empty, m_full, m = set_metrics(model, prepared, [[], all_heads(model), list(heads)], ablation)
    else:
        m = set_metrics(model, prepared, [list(heads)], ablation)[0]
    return (m - m_empty) / (m_full - m_empty)


# ---- scan ------------------------------------------------------------------------------------------


def scan(model, *, samples=None, max_length=None, seed=0, results=None, tasks=DEFAULT_TASKS, ablation="patch",
         target=0.8, rank_by="ig", exact="verify", verify_top=20, verify_random=20, ig_steps=5,
         positions="last", order="abs") -> dict[str, pd.DataFrame]:
    """Importance of every head for each task (attribution, integrated gradients, exact
    patching of the verified heads or of all heads with exact="all"), each task's circuit
    ranked by `rank_by`, and the overlap of every pair of circuits.

    tasks: names (ioi, colored_objects, induction), paths of task files, or Task objects;
    a comma-separated string works too. samples: prompts per task (default 32)."""
    tasks = _task_list(model, tasks, samples or 32, seed)
    if ablation not in ABLATIONS:
        raise InterpError(f"unknown ablation '{ablation}': choose from {', '.join(ABLATIONS)}")
    if rank_by not in METHODS:
        raise InterpError(f"rank_by must be one of {', '.join(METHODS)}, not {rank_by!r}")
    if positions not in ("last", "all"):
        raise InterpError("scan positions must be 'last' or 'all'; per-position scores: "
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
                                           verify_random, ig_steps, positions, seed, order)
            if results is not None:
                results.save_progress(NAME, task.name, done[task.name])
        outputs[task.name] = {k: pd.DataFrame(v) for k, v in done[task.name].items()}
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
    for key in ("faithfulness", "verification", "summary"):
        tables[key] = pd.concat([outputs[n][key] for n in names], ignore_index=True)
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
    clash = [name for name in names if name in RESERVED]
    if clash:
        raise InterpError(f"task name {clash[0]!r} is reserved for another table: rename the task file")
    return made


def _task_tables(model, prepared: Prepared, ablation, target, rank_by, exact, verify_top, verify_random, ig_steps,
                 positions, seed, order) -> dict[str, list[dict]]:
    """Everything measured on one task, as JSON-able records (saved as scan progress)."""
    name = prepared.task.name
    scores = {"attribution": gradient_scores(model, prepared, "attribution", positions),
              "ig": gradient_scores(model, prepared, "ig", positions, ig_steps)}
    exact_all = exact_patching(model, prepared, positions=positions) if exact == "all" else None
    if exact_all is not None:
        scores["exact"] = exact_all
    verification, check = verify(model, prepared, scores["attribution"], verify_top, verify_random, seed, positions,
                                 exact_all)
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
    return {"heads": heads.to_dict("records"), "faithfulness": curve.to_dict("records"),
            "verification": verification.to_dict("records"), "summary": [summary]}


def headline(tables: dict[str, pd.DataFrame]) -> list[str]:
    """What `interp scan` prints and the report lists: per task the top heads by |importance|
    with their sign, the circuit's size and faithfulness; per pair of tasks their overlap."""
    lines = []
    for task in tables["summary"].to_dict("records"):
        top = top_text(tables[task["task"]], k=3) if task["task"] in tables else "?"
        reached = "" if task["reached"] else ", not reached"
        lines.append(f"{task['task']}: {MEASURE} ({task['rank_by']}) top {top}; circuit of {task['circuit_size']} heads, "
                     f"faithfulness {task['faithfulness']:.2f} (target {task['target']:g}{reached})")
    for pair in tables.get("overlap", pd.DataFrame()).to_dict("records"):
        lines.append(f"{pair['task_a']} / {pair['task_b']}: circuits share {pair['intersection']} of their heads, IoU {pair['iou']:.2f} "
                     f"(chance {pair['chance_iou']:.2f}, p = {pair['p_value']:.2g})")
    return lines
