"""The mechanism of the circuits analysis (analyses/circuits.py, METHODS.md section 5): a task run
clean and corrupted, exact activation patching of head outputs (batched, at the last position, all
positions, each position or each role), attribution patching and integrated gradients, path
patching, and circuits found by faithfulness. circuits.py's scan() and circuit_classes.py (the IOI
head classes) are built on it; circuits.py explains the measures.
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

from interp.base.errors import InterpError
from interp.data.tasks import Task, TaskBatch
from interp.runtime.ablation import head_ablation

ABLATIONS = ("patch", "mean")
POSITIONS = ("last", "all", "roles")
ORDERS = ("signed", "abs")
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
                    positions: str | int = "all", chunk: int = ROW_CHUNK, start: int = 0) -> torch.Tensor:
    """m of row r = prompt prompts[r] with the heads head_sets[r] given `values`
    ([prompts or 1, layers, heads, N, d_head]) at `positions`: "all", "last" or an int (one
    position, counted from the start). start: where `values` may first differ from the clean
    run's z (the first token the corruption changes, say): the clean prefix before it is run
    once as a KV cache, and each row runs from there ("last": one token per row)."""
    n = run.batch.clean.shape[1]
    start = n - 1 if positions == "last" else min(start, n - 1)
    if isinstance(positions, int) and positions < start:
        raise InterpError(f"position {positions} lies in the cached prefix (start {start})")
    prefix = model.prefill(run.batch.clean[:, :start]) if start > 0 else None
    if values.shape[3] == n:
        values = values[:, :, :, start:]
    out = []
    for first in range(0, len(prompts), chunk):
        rows = torch.tensor(prompts[first : first + chunk], device=model.device)
        sets = head_sets[first : first + chunk]
        heads = sorted({h for s in sets for h in s})
        cache = None
        if prefix is not None:
            cache = copy.deepcopy(prefix)
            cache.batch_select_indices(rows)
        ids = run.batch.clean[rows, start:]
        if not heads:  # nothing patched in these rows
            logits = last_logits(model, ids, cache=cache)
            out.append(logit_diff(logits, run.batch, rows))
            continue
        mask = _mask(model, len(rows), sets).to(model.device)
        source = rows if values.shape[0] > 1 else torch.zeros_like(rows)
        where = [int(positions)] if isinstance(positions, int) else None  # absolute: the cache counts
        with model.intervene(head_ablation("patch", heads, values=values, source=source, mask=mask, positions=where)):
            logits = last_logits(model, ids, cache=cache)
        out.append(logit_diff(logits, run.batch, rows))
    return torch.cat(out) if out else torch.zeros(0)


def first_change(run: Run) -> torch.Tensor:
    """Per prompt, the first position where the corrupted prompt differs from the clean one:
    before it, clean and corrupted z are the same (the model is causal) [B]."""
    differs = run.batch.clean != run.batch.corrupt
    never = torch.full_like(differs[:, 0], differs.shape[1], dtype=torch.long)  # an unchanged prompt
    return torch.where(differs.any(1), differs.float().argmax(1), never)


def at_role(run: Run, source: torch.Tensor, role: str) -> torch.Tensor:
    """The clean run's z with `source`'s z ([B or 1, ...]) at each prompt's position of `role`:
    patching a head with it patches that head at the role only (elsewhere it gets its own
    clean z back, which leaves the run unchanged: a head's z does not depend on itself)."""
    values = run.clean_z.clone()
    rows = torch.arange(values.shape[0], device=values.device)
    where = run.batch.roles[role].to(values.device)
    values[rows, :, :, where] = source.expand_as(values)[rows, :, :, where]
    return values


def exact_patching(model, prepared: Prepared, heads: list[Head] | None = None, positions: str = "last",
                   chunk: int = ROW_CHUNK) -> pd.DataFrame:
    """Normalised effect of patching each head's corrupted z into the clean run, one head
    per batch row. positions: "last", "all", "each" (a row per position from the end), or
    "roles" (a row per role of the task: the head patched at that role's position of each
    prompt, which differs from prompt to prompt)."""
    heads = heads if heads is not None else all_heads(model)
    if positions not in POSITIONS + ("each",):
        raise InterpError(f"positions must be 'last', 'all', 'roles' or 'each', not {positions!r}")
    if positions == "roles":
        return _exact_at_roles(model, prepared, heads, chunk)
    total: dict[tuple, float] = {}
    n_prompts: dict[tuple, int] = {}  # per key: with "each", runs of other lengths have other offsets
    for run in prepared.runs:
        B, n = run.batch.clean.shape
        where_list = [positions] if positions != "each" else list(range(n))
        start = int(first_change(run).min())
        for where in where_list:
            prompts = [b for _ in heads for b in range(B)]
            sets = [[h] for h in heads for _ in range(B)]
            begin = min(start, where) if isinstance(where, int) else start
            m = patched_metrics(model, run, prompts, sets, run.corrupt_z, where, chunk, begin).view(len(heads), B)
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


def _exact_at_roles(model, prepared: Prepared, heads: list[Head], chunk: int) -> pd.DataFrame:
    """exact_patching(positions="roles"): a prompt whose role lies before its first changed
    token keeps its clean metric (corrupted and clean z agree there), the others run."""
    roles = prepared.task.role_names
    total = {(head, role): 0.0 for role in roles for head in heads}
    count = 0
    for run in prepared.runs:
        B = run.batch.clean.shape[0]
        changed = first_change(run)
        for role in roles:
            where = run.batch.roles[role]
            live = [b for b in range(B) if where[b] >= changed[b]]
            unchanged = float(run.clean[[b for b in range(B) if b not in live]].sum())
            m = torch.zeros(len(heads), 0)
            if live:
                start = int(where[live].min())
                prompts = [b for _ in heads for b in live]
                sets = [[h] for h in heads for _ in live]
                m = patched_metrics(model, run, prompts, sets, at_role(run, run.corrupt_z, role), "all", chunk,
                                    start).view(len(heads), len(live)).cpu()
            for j, head in enumerate(heads):
                total[(head, role)] += float(m[j].sum()) + unchanged
        count += B
    return pd.DataFrame([{"layer": head[0], "head": head[1], "role": role,
                          "score": float(prepared.normalise(torch.tensor(s / count, dtype=torch.float64)))}
                         for (head, role), s in total.items()])


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
    like exact patching. positions "each" adds a position column (counted from the end),
    "roles" a role column (each prompt's position of the role)."""
    if method not in ("attribution", "ig"):
        raise InterpError(f"gradient method must be 'attribution' or 'ig', not {method!r}")
    if ig_steps < 1:
        raise InterpError(f"ig_steps must be at least 1, got {ig_steps}")
    if positions not in POSITIONS + ("each",):
        raise InterpError(f"positions must be 'last', 'all', 'roles' or 'each', not {positions!r}")
    L, H = model.layout.n_layers, model.layout.n_heads
    sums: dict[int | str | None, torch.Tensor] = {}
    count = 0

    def add(key, part):
        sums[key] = sums.get(key, torch.zeros(L, H, dtype=torch.float64)) + part.cpu()

    for run in prepared.runs:
        if method == "attribution":
            grads = _z_grads(model, run)
        else:  # EAP-IG: gradients at inputs moved from clean to corrupted (midpoint rule)
            embed = model.hf.get_input_embeddings()
            with torch.no_grad():
                clean, corrupt = embed(run.batch.clean), embed(run.batch.corrupt)
            grads = sum(_z_grads(model, run, clean + (k + 0.5) / ig_steps * (corrupt - clean)) for k in range(ig_steps))
            grads = grads / ig_steps
        per_prompt = ((run.corrupt_z - run.clean_z) * grads).sum(-1)  # [B, L, H, N]
        per_position = per_prompt.sum(0)
        n = per_position.shape[-1]
        if positions == "each":
            for p in range(n):
                add(p - n, per_position[..., p])
        elif positions == "roles":
            rows = torch.arange(per_prompt.shape[0], device=per_prompt.device)
            for role in prepared.task.role_names:
                add(role, per_prompt[rows, :, :, run.batch.roles[role].to(per_prompt.device)].sum(0))
        else:
            add(None, per_position[..., -1] if positions == "last" else per_position.sum(-1))
        count += run.batch.clean.shape[0]
    scale = prepared.scale
    rows = []
    for key, total in sums.items():
        for l in range(L):
            for h in range(H):
                row = {"layer": l, "head": h, "score": float(total[l, h]) / count / scale}
                if key is not None:
                    row["role" if positions == "roles" else "position"] = key
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


@torch.no_grad()
def path_effects(model, prepared: Prepared, senders: list[Head], receivers: list[Head] = (), role: str | None = None,
                 source: str = "corrupt", chunk: int = ROW_CHUNK) -> dict[Head, float]:
    """path_patching for many senders at once, one sender per batch row: the normalised effect
    of the path sender -> receivers. With no receivers, the path sender -> logits (every other
    head frozen at its clean z, MLPs recomputed: Wang et al.'s direct path). role: the sender
    is changed at that role's position of each prompt only (its effect on the receivers then
    runs through what they read at that position, or their query there). source: the
    sender's corrupted z, or "mean" (its mean z over the task's prompts of that length)."""
    senders, receivers = list(model.heads(senders)) if senders else [], list(model.heads(receivers)) if receivers else []
    if receivers and any(r[0] <= s[0] for s in senders for r in receivers):
        raise InterpError("receivers must lie in later layers than every sender")
    if source not in ("corrupt", "mean"):
        raise InterpError(f"path source must be 'corrupt' or 'mean', not {source!r}")
    frozen = [h for h in all_heads(model) if h not in receivers]
    totals = torch.zeros(len(senders), dtype=torch.float64)
    count = 0
    for run in prepared.runs:
        B, n = run.batch.clean.shape
        values = run.corrupt_z if source == "corrupt" else run.clean_z.mean(0, keepdim=True).expand_as(run.clean_z)
        start = int(first_change(run).min()) if source == "corrupt" else 0
        if role is not None:
            values = at_role(run, values, role)
            start = max(start, int(run.batch.roles[role].min()))
        start = min(start, n - 1)
        prefix = model.prefill(run.batch.clean[:, :start]) if start > 0 else None
        clean_z, values = run.clean_z[:, :, :, start:], values[:, :, :, start:]
        pairs = [(j, b) for j in range(len(senders)) for b in range(B)]
        for first in range(0, len(pairs), chunk):
            part = pairs[first : first + chunk]
            rows = torch.tensor([b for _, b in part], device=model.device)
            mask = _mask(model, len(part), [[senders[j]] for j, _ in part]).to(model.device)

            def cache():
                if prefix is None:
                    return None
                copied = copy.deepcopy(prefix)
                copied.batch_select_indices(rows)
                return copied

            ids = run.batch.clean[rows, start:]
            freeze = head_ablation("patch", frozen, values=clean_z, source=rows)
            change = head_ablation("patch", senders, values=values, source=rows, mask=mask)
            with model.capture(z=True) as cap, model.intervene(freeze, change):
                logits = last_logits(model, ids, cache=cache())
            if receivers:
                with model.intervene(head_ablation("patch", receivers, values=cap.z)):
                    logits = last_logits(model, ids, cache=cache())
            m = logit_diff(logits, run.batch, rows).cpu()
            for (j, _), value in zip(part, m):
                totals[j] += float(value)
        count += B
    return {s: float(prepared.normalise(totals[j] / count)) for j, s in enumerate(senders)}


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
        start = int(first_change(run).min()) if ablation == "patch" else 0  # corrupted z = clean z before it
        m = patched_metrics(model, run, prompts, sets, ablation_values(run, ablation), "all", start=start)
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
