"""Heads as tables and sets, shared by the analyses and the report: the per-head table an
analysis returns, the top-k and seeded random-k head sets of a causal check, and how much
two head sets overlap against chance (the report's top-k overlaps, the overlap of circuits).

    head_table(model.layout, {"score": scores})        # layer, head, score: one row per head
    top, randoms = causal_heads(table, k=3, draws=5, seed=0)
    overlap({(0, 1), (2, 3)}, {(2, 3)}, n=270)          # IoU, containment, chance, hypergeometric p
    top_text(table, k=3)                                 # "15.1 (1.44), 15.7 (0.185), 7.2 (0.179)"

No torch here: the report imports it to compare score tables.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd

Head = tuple[int, int]


def head_names(heads) -> str:
    """"12.3,14.0": how causal-check tables name a head set."""
    return ",".join(f"{layer}.{head}" for layer, head in heads)


# ---- the per-head table ------------------------------------------------------------------------


def head_table(layout, columns: dict, samples: list[str] | None = None) -> pd.DataFrame:
    """One row per head, layer-major: layer, head, then `columns` ({name: [layers, heads] values
    (a tensor or array), or one value for every row}). With samples: one row per (sample,
    layer, head), a "sample" column first and column values [samples, layers, heads]."""
    n_samples = 1 if samples is None else len(samples)
    per_head = layout.n_layers * layout.n_heads
    table = {} if samples is None else {"sample": [s for s in samples for _ in range(per_head)]}
    table["layer"] = np.tile(np.repeat(np.arange(layout.n_layers), layout.n_heads), n_samples)
    table["head"] = np.tile(np.arange(layout.n_heads), layout.n_layers * n_samples)
    for name, values in columns.items():
        table[name] = np.asarray(values).reshape(-1) if np.ndim(values) else values
    return pd.DataFrame(table)


# ---- the heads of a causal check -----------------------------------------------------------------


def top_heads(table: pd.DataFrame, k: int) -> list[Head]:
    """The k highest-scoring heads of a head table (ties: lower layer, then lower head)."""
    ranked = table.sort_values(["score", "layer", "head"], ascending=[False, True, True])
    return [(int(layer), int(head)) for layer, head in zip(ranked["layer"][:k], ranked["head"][:k])]


def random_head_sets(pool: list[Head], k: int, draws: int, seed: int | random.Random) -> list[list[Head]]:
    """`draws` seeded draws of k heads of `pool`, each sorted. Pass a random.Random instead of a
    seed to go on drawing from it."""
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    return [sorted(rng.sample(pool, k)) for _ in range(draws)]


def causal_heads(table: pd.DataFrame, k: int, draws: int, seed: int, prefer=None) -> tuple[list[Head], list[list[Head]]]:
    """The top-k heads by score, and `draws` seeded draws of k other heads to compare them with:
    from the heads `prefer` marks (one bool per row of the table, e.g. the non-retrieval heads)
    when there are at least k of them, else from every head outside the top k."""
    top = top_heads(table, k)
    every = [(int(layer), int(head)) for layer, head in zip(table["layer"], table["head"])]
    others = [head for head in every if head not in top]
    preferred = [] if prefer is None else [head for head, ok in zip(every, prefer) if ok and head not in top]
    return top, random_head_sets(preferred if len(preferred) >= k else others, k, draws, seed)


# ---- overlap against chance ----------------------------------------------------------------------
# Chance is a set B of size_b heads drawn at random among n, against a set A of size_a: the
# intersection is then hypergeometric, P(|A & B| = s) = C(a, s) C(n - a, b - s) / C(n, b).


def _ways(size_a: int, size_b: int, n: int, shared: int) -> int:
    return math.comb(size_a, shared) * math.comb(n - size_a, size_b - shared)


def overlap_p_value(shared: int, size_a: int, size_b: int, n: int) -> float:
    """P(a random size_b-set shares >= `shared` heads with a size_a-set among n): the hypergeometric tail."""
    ways = sum(_ways(size_a, size_b, n, s) for s in range(max(shared, 0), min(size_a, size_b) + 1))
    return ways / math.comb(n, size_b)


def chance_shared(size_a: int, size_b: int, n: int) -> float:
    """The expected intersection of random sets of these sizes among n heads."""
    return size_a * size_b / n


def chance_jaccard(size_a: int, size_b: int, n: int) -> float:
    """Expected intersection / expected union (about K / (2 - K) for two k-sets, K = k / n): the
    report's chance level, in closed form."""
    shared = chance_shared(size_a, size_b, n)
    return shared / (size_a + size_b - shared)


def expected_jaccard(size_a: int, size_b: int, n: int) -> float:
    """The expectation of the Jaccard index (IoU) itself over random sets of these sizes."""
    sizes = range(max(0, size_a + size_b - n), min(size_a, size_b) + 1)
    weighted = sum(_ways(size_a, size_b, n, s) * s / (size_a + size_b - s) for s in sizes if size_a + size_b - s > 0)
    return weighted / math.comb(n, size_b)


def overlap(a, b, n: int) -> dict:
    """IoU and containment of two head sets among n heads, the intersection and IoU expected of
    random sets of the same sizes, and the hypergeometric p-value of an intersection at least this large."""
    a, b = set(a), set(b)
    inter, union = len(a & b), len(a | b)
    return {"size_a": len(a), "size_b": len(b), "intersection": inter, "iou": inter / union if union else float("nan"),
            "containment_a": inter / len(a) if a else float("nan"), "containment_b": inter / len(b) if b else float("nan"),
            "chance_intersection": chance_shared(len(a), len(b), n), "chance_iou": expected_jaccard(len(a), len(b), n),
            "p_value": overlap_p_value(inter, len(a), len(b), n)}


# ---- the top heads in words (the analyses' headlines, the CLI's summary table) -------------------


def is_signed(values: pd.Series) -> bool:
    """A score that takes negative values: a head working against the answer matters as much as one for it."""
    return bool((values.dropna() < 0).any())


def ranked(table: pd.DataFrame, column: str = "score", k: int = 5) -> pd.DataFrame:
    """The k rows of a head table with the largest |column| when it is signed, else the largest
    column; NaN never ranks; ties: lower layer, then lower head."""
    scored = table.dropna(subset=[column])
    key = scored[column].abs() if is_signed(scored[column]) else scored[column]
    return scored.assign(_key=key).sort_values(["_key", "layer", "head"], ascending=[False, True, True]).head(k).drop(columns="_key")


def value_text(value: float, signed: bool) -> str:
    return f"{value + 0.0:+.3g}" if signed else f"{value:.3g}"  # + 0.0: -0.0 reads +0


def top_text(table: pd.DataFrame, column: str = "score", k: int = 5, beside: dict[str, str] | None = None) -> str:
    """"15.1 (1.44), 15.7 (0.185)": the ranked() heads with their values, signed ones with their
    sign ("9.6 (+0.41), 9.9 (-0.2)"); beside: {label: column} shown with each value."""
    signed = is_signed(table[column])
    parts = []
    for row in ranked(table, column, k).to_dict("records"):
        extra = "".join(f", {label} {row[c]:.3g}" for label, c in (beside or {}).items())
        parts.append(f"{int(row['layer'])}.{int(row['head'])} ({value_text(row[column], signed)}{extra})")
    return ", ".join(parts) or "no scores"
