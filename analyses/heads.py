"""Classic head types (previous-token, duplicate-token, induction, first-token) at any length.

For every query i of a sequence of token ids t and every head, the attention mass on
- previous token:  the key i - 1;
- duplicate token: the earlier copies of the current token, keys j < i with t[j] == t[i];
- induction:       the tokens right after an earlier copy, keys j with t[j - 1] == t[i], 1 <= j <= i
                   (j == i counts when t[i - 1] == t[i], as in TransformerLens' detection pattern);
- first token:     the key 0.
Each is one `key_match` pair of the attention-statistics kernels (query labels, key labels;
A key j counts for query i when their labels are equal), so the masses come out per query from
`model.capture(stats=StatsRequest(key_match=...))` and no [N, N] matrix is built: a head
type costs the same memory at 8,192 tokens as the forward pass itself.

A head's score for a type (our convention) = mean over the sequence's *eligible* queries of
that mass, then mean over sequences: eligible are the queries that have a target at all
(i >= 1 for previous/first token, queries with an earlier copy of their token for duplicate
and induction). A perfect induction head therefore scores 1 on [BOS] + r + r.
TransformerLens' detector (error_measure="mul") divides the mass on the targets summed over
*all* queries by the attention summed over all queries (N without exclusions), so the same
head scores about 1/2 there; `detector_scores` gives that convention from the same per-query
masses (with its exclude_bos / exclude_current_token options), and a test checks it against
TransformerLens to 1e-4.

Settings (scan): (a) the repeated-random-tokens protocol, [BOS] + r + r with r drawn
uniformly from the vocabulary without special tokens, several lengths and seeds; (b) natural
text, the bundled prompts. Head table: score = induction on repeated tokens, and
score.<type> / score.text_<type> for every other type and setting (the atlas, interp.report,
shows every "score." column as a measure of its own). The causal check ("causal" table):
in-context loss on the repeated half with the top-k induction heads ablated, vs k random
other heads (several draws).

    from interp import load_model
    from interp.analyses import heads
    tables = heads.scan(load_model())
    tables["heads"].nlargest(5, "score")
"""

from __future__ import annotations

import pandas as pd
import torch

from interp.analyses.head_sets import causal_heads, head_names, top_text
from interp.data import choose_prompts
from interp.base.errors import InterpError
from interp.runtime.ablation import head_ablation
from interp.kernels import StatsRequest
from interp.runtime.layout import text_config
from interp.runtime.logits import next_token_logprobs
from interp.base.progress import track

NAME = "heads"
MEASURE = "induction score"  # the head table's score: attention on the token after an earlier copy, repeated tokens
PARAMS = ("samples", "max_length", "seed", "lengths", "seeds", "text_length", "causal_k", "causal_draws", "ablation",
          "prompts")
PARAM_HELP = {
    "samples": "natural prompts scored (default: all bundled prompts)",
    "max_length": "longest sequence in tokens (repeated tokens and prompts are cut to fit)",
    "seed": "seed of the random tokens, the prompt subset and the random heads of the causal check",
    "lengths": "lengths of r in [BOS] + r + r",
    "seeds": "random r per length",
    "text_length": "natural prompts are cut to this many tokens",
    "causal_k": "induction heads ablated in the causal check (default: 10, or a quarter of all heads if fewer; at most half; 0 skips it)",
    "causal_draws": "draws of as many random other heads in the causal check",
    "ablation": "ablation of the causal check: zero (output 0) or uniform (flat attention)",
    "prompts": "natural prompts: a file, one a line (default: the bundled prompts)",
}
TYPES = ("previous_token", "duplicate_token", "induction", "first_token")
# The key_match pairs asked of the kernels (key_match_pairs); duplicate-token = "same" - "self".
PAIRS = ("previous_token", "self", "same", "induction", "first_token", "after_first")
LENGTHS = (64, 256)  # lengths of r: [BOS] + r + r has 2 * length + 1 tokens
SEEDS = 4
TEXT_LENGTH = 256  # natural prompts are cut to this many tokens
CAUSAL_K = 10  # induction heads ablated in the causal check (capped at a quarter of all heads)
ABLATIONS = ("zero", "uniform")  # head ablations of the causal check (interp.runtime.ablation)
# No paper fixes a threshold for the classic head types (Olsson et al. rank heads by their
# prefix-matching score). Here a perfect head scores 1 and a head that spreads its attention
# evenly about 1 / position, so 0.4 marks a head that gives the pattern a large part of its attention.
TYPE_THRESHOLD = 0.4  # a head of a type: its score above this (the cross-model comparison counts them)


# ---- sequences and labels -------------------------------------------------------------------


def repeated_tokens(model, length: int, seeds) -> torch.Tensor:
    """[len(seeds), 2 * length + 1]: [BOS] + r + r per seed, r uniform over the vocabulary
    without the tokenizer's special tokens and BOS (the tokenizer's BOS, else its EOS, else 0)."""
    vocab = int(text_config(model.hf.config).vocab_size)
    bos = _bos_id(model)
    excluded = (set(model.tokenizer.all_special_ids) if model.tokenizer is not None else set()) | {bos}
    allowed = torch.tensor([t for t in range(vocab) if t not in excluded])
    rows = []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        r = allowed[torch.randint(len(allowed), (length,), generator=g)]
        rows.append(torch.cat([torch.tensor([bos]), r, r]))
    return torch.stack(rows).to(model.device)


def _bos_id(model) -> int:
    tok = model.tokenizer
    for candidate in (getattr(tok, "bos_token_id", None), getattr(tok, "eos_token_id", None)):
        if candidate is not None:
            return int(candidate)
    return 0


def key_match_pairs(ids: torch.Tensor) -> tuple:
    """The (query_labels, key_labels) pairs of PAIRS for token ids [B, N] (the key_match contract)."""
    B, N = ids.shape
    pos = torch.arange(N, device=ids.device).expand(B, N)
    after_copy = torch.cat([torch.full((B, 1), -1, device=ids.device, dtype=ids.dtype), ids[:, :-1]], dim=1)
    return (
        (pos - 1, pos),  # previous token (query 0 gets -1: matches nothing)
        (pos, pos),  # the query itself
        (ids, ids),  # same token, the query itself included
        (ids, after_copy),  # key j follows a copy of the query's token
        (torch.zeros_like(pos), pos),  # first token
        # every key but the first, summed directly: 1 - first_token would lose the digits of what
        # a sink head leaves for the other keys (detector_scores with exclude_bos divides by it)
        (torch.zeros_like(pos), torch.where(pos >= 1, 0, -1)),
    )


def has_earlier_copy(ids: torch.Tensor) -> torch.Tensor:
    """Bool [B, N]: the token at i occurred before i in its row (first positions per token, no [N, N] compare)."""
    B, N = ids.shape
    pos = torch.arange(N, device=ids.device).expand(B, N)
    out = torch.zeros(B, N, dtype=torch.bool, device=ids.device)
    for b in range(B):
        values, inverse = torch.unique(ids[b], return_inverse=True)
        first = torch.full((len(values),), N, device=ids.device).scatter_reduce(0, inverse, pos[b], "amin")
        out[b] = pos[b] > first[inverse]
    return out


def eligible_queries(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Bool [B, N] per type: the queries that have a target key (see the module doc)."""
    B, N = ids.shape
    after_first = (torch.arange(N, device=ids.device) >= 1).expand(B, N)
    copied = has_earlier_copy(ids)
    return {"previous_token": after_first, "duplicate_token": copied, "induction": copied, "first_token": after_first}


# ---- per-query masses from the kernels -----------------------------------------------------------


@torch.no_grad()
def pair_masses(model, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """{pair: [B, layers, heads, N]} attention mass of every query on the keys each pair of PAIRS
    matches, from one forward pass through the statistics kernels (no [N, N] matrix)."""
    with model.capture(stats=StatsRequest(key_match=key_match_pairs(ids))) as cap:
        model.base_forward({"input_ids": ids, "attention_mask": attention_mask})
    mass = cap.match_mass.float()  # [B, L, H, N, pairs]
    return {name: mass[..., m] for m, name in enumerate(PAIRS)}


def type_masses(pairs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{type: [B, L, H, N]}: the masses of TYPES (duplicate = same token minus the query itself)."""
    return {
        "previous_token": pairs["previous_token"],
        "duplicate_token": (pairs["same"] - pairs["self"]).clamp_min(0),  # rounding could go a hair below 0
        "induction": pairs["induction"],
        "first_token": pairs["first_token"],
    }


def sequence_scores(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """{type: [B, layers, heads]} mean mass over each sequence's eligible queries (NaN if none)."""
    masses = type_masses(pair_masses(model, ids))
    scores = {}
    for name, ok in eligible_queries(ids).items():
        weight = ok.float()[:, None, None, :]
        count = weight.sum(-1)
        scores[name] = (masses[name] * weight).sum(-1) / count.where(count > 0, torch.nan)
    return scores


def detector_scores(model, ids: torch.Tensor, exclude_bos: bool = False, exclude_current_token: bool = False
                    ) -> dict[str, torch.Tensor]:
    """{type: [B, layers, heads]} in TransformerLens' head-detector convention (error_measure="mul"):
    sum over queries of the mass on the detection pattern / sum over queries of the attention
    kept, where exclude_bos drops key 0 and exclude_current_token the key i == query i from both
    (its duplicate pattern already leaves out the query itself). Computed from per-query
    masses: A[i, 0] is the first-token pair, A[i, i] the "self" pair, and the attention on keys
    j >= 1 its own pair (not 1 - A[i, 0], which cancels to noise for heads that sink ~all of it:
    with exclude_bos a sink head's score is a ratio of two small numbers)."""
    pairs = pair_masses(model, ids)
    masses = type_masses(pairs)
    B, N = ids.shape
    on_first, on_self = pairs["first_token"], pairs["self"]
    # D[i, 0] and D[i, i] of each detection pattern: the cells the exclusions remove from the numerator
    pos = torch.arange(N, device=ids.device)
    previous_first = (pos == 1).expand(B, N)
    duplicate_first = (ids == ids[:, :1]) & (pos >= 1)
    induction_self = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=ids.device), ids[:, 1:] == ids[:, :-1]], 1)
    none = torch.zeros(B, N, dtype=torch.bool, device=ids.device)
    cells = {"previous_token": (previous_first, none), "duplicate_token": (duplicate_first, none),
             "induction": (none, induction_self)}
    keep = pairs["after_first"] if exclude_bos else torch.ones_like(on_first)
    if exclude_current_token:  # without key 0 the query 0 has nothing left to exclude
        keep = keep - (on_self * (pos >= 1) if exclude_bos else on_self)
    scores = {}
    for name, (at_first, at_self) in cells.items():
        hit = masses[name]
        if exclude_bos:
            hit = hit - on_first * at_first[:, None, None, :]
        if exclude_current_token:
            hit = hit - on_self * at_self[:, None, None, :]  # A[0, 0] is in neither pattern: no double count
        scores[name] = hit.sum(-1) / keep.sum(-1)
    return scores


# ---- scan --------------------------------------------------------------------------------------


def scan(model, *, samples=None, max_length=None, seed=0, results=None, lengths=LENGTHS, seeds=SEEDS,
         text_length=TEXT_LENGTH, prompts: str | list[str] | None = None, causal_k: int | None = None, causal_draws=5,
         ablation="zero") -> dict[str, pd.DataFrame]:
    """Previous-token, duplicate-token, induction and first-token scores of every head.

    lengths: lengths of r in [BOS] + r + r (2 * length + 1 tokens; lengths whose sequence
    exceeds max_length are cut to fit); seeds: how many random r per length (seeded from seed).
    prompts: texts, a file for interp.data.load_prompts, or None for the bundled prompts, `samples`
    of them (all if None), each cut to min(text_length, max_length) tokens.
    causal_k: induction heads ablated in the causal check (default 10, or a quarter of all heads if
    that is fewer; at most half of them; 0 skips it), against causal_draws draws of as many random other heads, on the repeated
    sequences of the shortest length; ablation: "zero" (head output 0) or "uniform" (flat attention).
    Returns "heads", "samples" (per sequence and head) and "causal".
    """
    if model.tokenizer is None and prompts is None:
        raise InterpError("heads needs a model with a tokenizer for the bundled prompts: pass prompts= as token texts")
    if ablation not in ABLATIONS:
        raise InterpError(f"unknown ablation '{ablation}': use one of {', '.join(ABLATIONS)}")
    if seeds < 1 or not lengths:
        raise InterpError("heads needs at least one length and one seed of repeated tokens")
    limit = min(n for n in (max_length, model.layout.max_positions, 10**9) if n)
    fitted = sorted({min(int(n), (limit - 1) // 2) for n in lengths})
    if fitted[0] < 2:
        raise InterpError(f"max_length {max_length} leaves no room for [BOS] + r + r: use at least 5 tokens")
    seed_list = [seed * 1000 + s for s in range(seeds)]
    texts = choose_prompts(prompts, samples, seed)
    text_limit = min(text_length, limit)

    done = results.load_progress(NAME) if results is not None else {}
    todo = [(f"repeated:{n}", lambda n=n: repeated_tokens(model, n, seed_list)) for n in fitted]
    todo += [(f"text:{i}", lambda t=t: model.tokenize(t, truncation=True, max_length=text_limit)["input_ids"])
             for i, t in enumerate(texts)]
    rows = []
    for key, make_ids in track(todo, "heads"):
        if key not in done:
            ids = make_ids()
            scores = sequence_scores(model, ids)
            done[key] = {"tokens": ids.shape[1], "scores": {t: s.tolist() for t, s in scores.items()}}
            if results is not None:
                results.save_progress(NAME, key, done[key])
        rows += _sample_rows(key, done[key], seed_list)
    samples_table = pd.DataFrame(rows)
    heads = _head_table(samples_table)

    n_total = model.layout.n_total_heads
    k = min(CAUSAL_K, n_total // 4) if causal_k is None else int(causal_k)
    causal = pd.DataFrame()
    if k:
        if not 0 < k <= n_total // 2:
            raise InterpError(f"causal_k={k} must be between 0 and half the model's {n_total} heads")
        # on the shortest repeated sequences: (2 + draws) x seeds forward passes, the bulk of the default cost
        causal = _causal_check(model, heads, k, causal_draws, ablation, fitted[0], seed_list, seed, results, done)
    return {"heads": heads, "samples": samples_table, "causal": causal}


def _sample_rows(key: str, record: dict, seed_list: list[int]) -> list[dict]:
    setting, what = key.split(":")
    scores = record["scores"]
    rows = []
    for b in range(len(scores[TYPES[0]])):
        sample = f"repeated:{what}:{seed_list[b]}" if setting == "repeated" else key
        for layer, per_head in enumerate(scores[TYPES[0]][b]):
            for head in range(len(per_head)):
                row = {"sample": sample, "setting": "repeated" if setting == "repeated" else "text",
                       "tokens": record["tokens"], "layer": layer, "head": head}
                rows.append(row | {t: scores[t][b][layer][head] for t in TYPES})
    return rows


def _head_table(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per head: means over sequences per setting; score = induction on repeated tokens."""
    means = samples.groupby(["setting", "layer", "head"])[list(TYPES)].mean()  # NaN (no eligible query) skipped
    repeated = means.loc["repeated"].add_prefix("score.")
    table = repeated.reset_index()
    if "text" in means.index.get_level_values(0):
        table = table.merge(means.loc["text"].add_prefix("score.text_").reset_index(), on=["layer", "head"])
    table.insert(2, "score", table["score.induction"])
    table = table.drop(columns="score.induction")  # it is the score itself
    return table.astype({"layer": int, "head": int})


# ---- causal check --------------------------------------------------------------------------------


@torch.no_grad()
def repeated_half_loss(model, ids: torch.Tensor, interventions=()) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row mean next-token loss (nats) on the repeated half of [BOS] + r + r (predicting
    tokens 2..n of the second copy, all predictable by induction) and on the first copy (2..n).
    One row at a time, the LM head on a few positions at a time (interp.runtime.logits): [N, vocab]
    logits would cost GBs at long lengths with a large vocabulary."""
    n = (ids.shape[1] - 1) // 2
    # position p predicts token p + 1; the copies occupy positions 1..n and n+1..2n
    first_half, repeated_half = torch.arange(1, n), torch.arange(n + 1, 2 * n)
    repeated, first = [], []
    with model.intervene(*interventions):
        for row in ids:
            loss = -next_token_logprobs(model, row[None], torch.cat([first_half, repeated_half]))[0]
            first.append(loss[: len(first_half)].mean())
            repeated.append(loss[len(first_half) :].mean())
    return torch.stack(repeated), torch.stack(first)


def _causal_check(model, heads, k, draws, ablation, length, seed_list, seed, results, done) -> pd.DataFrame:
    """Mean loss on the repeated half: clean, with the top-k induction heads ablated, and with k
    random other heads ablated (`draws` seeded draws), on the repeated sequences of `length`."""
    top, randoms = causal_heads(heads, k, draws, seed)
    conditions = [("clean", 0, []), ("top induction", 0, top)] + [("random", d, hs) for d, hs in enumerate(randoms)]
    ids = None
    rows = []
    for condition, draw, masked in track(conditions, "heads: causal check"):
        key = f"causal:{condition}:{draw}"
        identity = [head_names(masked), ablation, length, seed_list]
        if done.get(key, {}).get("identity") != identity:  # not run, or run with other heads
            ids = repeated_tokens(model, length, seed_list) if ids is None else ids
            ablate = [head_ablation(ablation, masked)] if masked else []
            repeated, first = repeated_half_loss(model, ids, ablate)
            done[key] = {"identity": identity, "repeated": repeated.mean().item(), "first": first.mean().item()}
            if results is not None:
                results.save_progress(NAME, key, done[key])
        rows.append({"condition": condition, "k": len(masked), "draw": draw, "ablation": ablation,
                     "loss_repeated_half": done[key]["repeated"], "loss_first_half": done[key]["first"],
                     "heads": head_names(masked)})
    return pd.DataFrame(rows)


def headline(tables: dict[str, pd.DataFrame]) -> list[str]:
    """What `interp scan` prints and the report lists: the top induction heads, the top head of
    every other type, and the causal check."""
    heads, causal = tables["heads"], tables.get("causal")
    others = [f"{t.replace('_', '-')} {top_text(heads, f'score.{t}', k=1)}" for t in TYPES if f"score.{t}" in heads]
    lines = [f"{MEASURE} (attention on the token after an earlier copy, [BOS] + r + r): top {top_text(heads)}",
             "top head of each other type: " + "; ".join(others)]
    if causal is not None and len(causal):
        loss = lambda condition: causal.loc[causal["condition"] == condition, "loss_repeated_half"]
        k, ablation, random = int(causal["k"].max()), causal["ablation"].iloc[0], loss("random")
        lines.append(f"causal check ({ablation} ablation): loss on the repeated half {loss('top induction').iloc[0]:.2f} "
                     f"with the top {k} induction heads ablated, {loss('clean').iloc[0]:.2f} clean, {random.mean():.2f} "
                     f"+- {random.std(ddof=0):.2f} with {k} random heads ({len(random)} draws)")
    return lines
