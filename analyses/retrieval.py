"""Retrieval heads (Wu et al. 2024): the heads that copy a needle's answer out of a long context.

Method (METHODS.md section 1):
1. Needle-in-a-haystack probes: a grid of context lengths x needle depths x needles. The
   prompt is the haystack with the needle inserted, then an instruction and the question
   (chat-formatted when the tokenizer has a chat template).
2. Prefill the prompt with the fast path (plain SDPA, nothing captured), then decode
   greedily. At every step (step 0 = the last prompt token, which produces generated token
   0) every query head's argmax key j is taken from the statistics kernels, so no
   [heads, N, N] matrix is ever built. The head copies at step t if j lies in the needle's
   answer span and the token at j is the token generated at step t; each copy adds
   1 / |answer span| to the head's score for that probe.
3. A head's retrieval score = mean over the probes the model answered (ROUGE-1 recall of
   the answer >= 0.5); a retrieval head has score > 0.1.
4. Causal check: needle accuracy with the top-k heads masked vs k random non-retrieval
   heads (several draws), masking during decoding only, as in the original.

    from interp import load_model
    from interp.analyses import retrieval
    tables = retrieval.scan(load_model(), lengths=[512, 1024], depths=[0.0, 0.5, 1.0])
    tables["heads"].sort_values("score", ascending=False).head(10)
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from itertools import product

import pandas as pd
import torch

from interp.analyses.head_sets import causal_heads, head_names, head_table, top_text
from interp.data import Needle, count_tokens, insert_needle, load_needles, load_texts, make_haystack, parse_needles
from interp.data.probes import seeded_subset
from interp.base.errors import InterpError
from interp.runtime.ablation import head_ablation
from interp.kernels import StatsRequest
from interp.base.progress import track

MEASURE = "retrieval score"  # what the head table's score is: copies of the needle's answer per answered probe
# The scan() keywords that identify a run (a resumed run must pass the same ones).
PARAMS = ("samples", "max_length", "seed", "lengths", "depths", "needles", "haystack", "max_new_tokens",
          "causal_k", "causal_draws", "mask", "causal_probes")
PARAM_HELP = {
    "samples": "probes: a seeded subset of the lengths x depths x needles grid (default: all)",
    "max_length": "longest prompt in tokens (default 2048)",
    "seed": "seed of the probe subset and the random heads of the causal check",
    "lengths": "prompt lengths in tokens (default: longest/4, longest/2, longest)",
    "depths": "needle depths, fractions of the context (default 0,0.25,0.5,0.75,1)",
    "needles": "a needle file: JSON list or JSONL of {id, needle, question, answer} (default: 3 bundled needles)",
    "haystack": "a haystack text file (default: the bundled haystack)",
    "max_new_tokens": "tokens decoded per probe (default: the longest needle + 8, at most 50)",
    "causal_k": "heads masked in the causal check (default 3% of all heads; 0 skips it)",
    "causal_draws": "draws of as many random non-retrieval heads in the causal check",
    "mask": "mask of the causal check: uniform (the paper's) or zero",
    "causal_probes": "probes in the causal check (default: a seeded third of the grid)",
}

INSTRUCTION = "Answer the question using only the text above."
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
N_NEEDLES = 3  # bundled needles used by default
LONGEST = 2048  # default longest context: what 2 CPU cores decode in minutes, not hours
ANSWERED = 0.5  # ROUGE-1 recall from which a probe counts as answered (as in the paper)
THRESHOLD = 0.1  # a retrieval head scores above this (as in the paper)
MAX_STEPS = 50  # the paper decodes at most 50 tokens
HEAD_SHARE = 0.03  # default causal k: the paper masks 30 of 1024 heads, ~ the share above THRESHOLD
MASKS = ("uniform", "zero")  # the head ablations of the causal check (interp.runtime.ablation)
# The causal check prefills every probe it uses a second time; a seeded third of the grid gives the same drop
# as the whole grid on the bundled model (notes/kernels.md) in a third of the time. causal_probes overrides.
CAUSAL_SHARE = 3


@dataclass
class Probe:
    id: str
    length: int  # the prompt length asked for, in tokens
    depth: float
    needle: Needle
    input_ids: torch.Tensor  # [1, prompt_len]
    answer_span: tuple[int, int]  # token positions [start, end) of the needle's answer

    @property
    def prompt_len(self) -> int:
        return self.input_ids.shape[1]


def scan(model, *, samples=None, max_length=None, seed=0, results=None, lengths: tuple[int, ...] | None = None,
         depths: tuple[float, ...] | None = None, needles: str | list | None = None, haystack: str | list[str] | None = None,
         max_new_tokens: int | None = None, causal_k: int | None = None, causal_draws=3, mask="uniform",
         causal_probes: int | None = None) -> dict[str, pd.DataFrame]:
    """Retrieval score of every head.

    lengths: prompt lengths in tokens (default: longest/4, longest/2, longest with longest =
    min(max_length or 2048, model positions - max_new_tokens)); depths: needle depths 0..1
    (default 5); needles: Needle list or a needle file (default: 3 bundled); haystack: texts
    or a file for load_texts (default: bundled); samples: a seeded subset of the grid;
    max_new_tokens: default needle length + 8 tokens (models tend to restate the needle
    sentence), at most 50; causal_k: heads masked (default 3% of all heads, 0 = skip);
    mask: "uniform" (the original) or "zero"; causal_probes: probes in the causal check (default a seeded
    third of the grid, at least one; the baseline is their answered fraction).

    Returns "heads" (layer, head, score, n_probes = answered probes, copies, is_retrieval),
    "probes" (one row per probe, with its needle distance and the heads that copied) and "causal"
    (condition, k, draw, accuracy, heads); the answered fraction is also in heads.attrs["answered_fraction"]."""
    if model.tokenizer is None or not model.is_causal_lm:
        raise InterpError("retrieval needs a causal language model with a tokenizer")
    if mask not in MASKS:
        raise InterpError(f"mask must be one of {', '.join(MASKS)}, not '{mask}'")
    if samples is not None and samples < 1:
        raise InterpError(f"samples must be at least 1, got {samples}")
    if causal_probes is not None and causal_probes < 1:
        raise InterpError(f"causal_probes must be at least 1, got {causal_probes}")
    needles = _needles(needles)
    texts = load_texts(haystack) if haystack is None or isinstance(haystack, (str, os.PathLike)) else list(haystack)
    depths = list(DEPTHS if depths is None else depths)
    if not depths or any(not 0 <= d <= 1 for d in depths):
        raise InterpError(f"depths must be fractions between 0 and 1, got {depths}")
    n_new = max_new_tokens or decode_steps(model, needles)
    lengths = _lengths(model, lengths, max_length, n_new)

    grid = seeded_subset(product(lengths, depths, needles), samples, seed)
    done = results.load_progress("retrieval") if results is not None else {}
    haystacks: dict = {}  # (length, needle id) -> haystack text, shared by the depths
    make_probe = lambda length, depth, needle: _make_probe(model, length, depth, needle, texts, haystacks)

    records = []
    for length, depth, needle in track(grid, "retrieval: probes"):
        key = f"probe/{_probe_id(length, depth, needle)}"
        if key not in done:
            done[key] = _score_probe(model, make_probe(length, depth, needle), n_new)
            if results is not None:
                results.save_progress("retrieval", key, done[key])
        records.append(done[key])

    heads = _head_table(records, model.layout)
    probes_table = pd.DataFrame([{**{k: v for k, v in r.items() if k != "copies"}, "copying_heads": _copying(r)}
                                 for r in records])
    answered = float(probes_table["answered"].mean())
    heads.attrs["answered_fraction"] = probes_table.attrs["answered_fraction"] = answered
    k = max(1, round(HEAD_SHARE * model.layout.n_total_heads)) if causal_k is None else causal_k
    causal_grid = _causal_grid(grid, causal_probes, seed)
    ids = {_probe_id(*probe) for probe in causal_grid}
    baseline = float(probes_table.loc[probes_table["probe"].isin(ids), "answered"].mean())  # scored already
    causal = _causal_check(model, causal_grid, make_probe, baseline, heads, k, causal_draws, mask, n_new, seed,
                           results, done)
    return {"heads": heads, "probes": probes_table, "causal": causal}


# ---- probes ----------------------------------------------------------------------------------


def _causal_grid(grid: list, causal_probes: int | None, seed: int) -> list:
    """The probes of the causal check: `causal_probes` of the grid (default a third), a seeded sample."""
    return seeded_subset(grid, -(-len(grid) // CAUSAL_SHARE) if causal_probes is None else causal_probes, seed)


def _needles(needles) -> list[Needle]:
    if needles is None:
        return load_needles()[:N_NEEDLES]
    if isinstance(needles, (str, os.PathLike)):
        return load_needles(needles)
    return parse_needles([asdict(n) if isinstance(n, Needle) else n for n in needles], "the needles argument")


def _lengths(model, lengths, max_length, n_new) -> list[int]:
    """Prompt lengths in tokens; every prompt plus its decoding must fit the model."""
    limit = model.layout.max_positions
    if lengths is None:  # the paper spreads 20 lengths up to the maximum; 3 keep a CPU run short
        longest = max_length or LONGEST
        longest = min(longest, limit - n_new) if limit else longest
        lengths = sorted({longest // 4, longest // 2, longest})
    lengths = [int(n) for n in lengths]
    if not lengths or min(lengths) < 1:
        raise InterpError(f"lengths must be positive token counts, got {lengths}")
    if max_length is not None and max(lengths) > max_length:
        raise InterpError(f"length {max(lengths)} exceeds max_length={max_length}: drop it or raise max_length")
    if limit is not None and max(lengths) + n_new > limit:
        raise InterpError(f"length {max(lengths)} plus {n_new} new tokens exceeds the model's {limit} positions: "
                          f"pass lengths of at most {limit - n_new}")
    return lengths


def decode_steps(model, needles: list[Needle]) -> int:
    """Tokens to decode per probe: the longest needle and a margin, at most MAX_STEPS."""
    return min(MAX_STEPS, max(count_tokens(model.tokenizer, n.needle) for n in needles) + 8)


def _probe_id(length: int, depth: float, needle: Needle) -> str:
    return f"{length}-{depth:g}-{needle.id}"


def _prompt(model, context: str, question: str) -> tuple[str, bool]:
    """The prompt text, and whether the tokenizer should add its special tokens (the chat
    template already has them)."""
    user = f"{context}\n\n{INSTRUCTION}\nQuestion: {question}"
    if getattr(model.tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": user}]
        return model.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), False
    return user, True


def _make_probe(model, length, depth, needle, texts, haystacks) -> Probe:
    if (length, needle.id) not in haystacks:
        prompt, special = _prompt(model, needle.needle, needle.question)  # the prompt without any haystack
        overhead = len(model.tokenizer(prompt, add_special_tokens=special)["input_ids"])
        if length - overhead < 1:
            raise InterpError(f"length {length} leaves no room for a haystack: the prompt alone is {overhead} tokens; "
                              f"use lengths above {overhead}")
        haystacks[length, needle.id] = make_haystack(model.tokenizer, length - overhead, texts)
    context, needle_start, _ = insert_needle(haystacks[length, needle.id], needle.needle, depth)
    prompt, special = _prompt(model, context, needle.question)
    if context not in prompt:
        raise InterpError("the tokenizer's chat template changed the context text; pass a model whose template keeps it")
    answer_start = prompt.index(context) + needle_start + needle.needle.index(needle.answer)
    ids, span = _tokenize_with_span(model.tokenizer, prompt, special, answer_start, answer_start + len(needle.answer))
    model.check_length(ids.shape[1])
    return Probe(_probe_id(length, depth, needle), length, depth, needle, ids.to(model.device), span)


def _tokenize_with_span(tokenizer, prompt: str, special: bool, start: int, end: int):
    """Token ids of the prompt and the token span covering characters [start, end)."""
    try:
        enc = tokenizer(prompt, add_special_tokens=special, return_offsets_mapping=True)
        inside = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
        span = (inside[0], inside[-1] + 1) if inside else None
    except (NotImplementedError, TypeError, ValueError):  # slow tokenizers have no offsets: count prefixes
        enc = tokenizer(prompt, add_special_tokens=special)
        count = lambda text: len(tokenizer(text, add_special_tokens=special)["input_ids"])
        span = (count(prompt[:start].rstrip()), count(prompt[:end]))
    if span is None or span[0] >= span[1]:
        raise InterpError("cannot find the needle's answer among the prompt's tokens; check the tokenizer")
    return torch.tensor([enc["input_ids"]]), span


# ---- scoring one probe ----------------------------------------------------------------------------


def _prefill(model, probe: Probe):
    """KV cache of all prompt tokens but the last: decoding from it runs the last prompt
    token as step 0, so step t's query produces generated token t. The prefill itself
    runs with nothing active (plain SDPA). Each cache is decoded from once, so it is not copied."""
    return model.prefill(probe.input_ids[:, :-1])


def _decode(model, probe: Probe, cache, n_new: int, rows: int = 1):
    """Greedy decoding from the prefilled cache (used up), in `rows` identical batch rows."""
    if rows > 1:
        cache.batch_repeat_interleave(rows)
    ids = probe.input_ids.repeat(rows, 1)
    return model.generate({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, max_new_tokens=n_new, cache=cache)


def rouge1_recall(answer: str, generated: str) -> float:
    """Share of the answer's words (lowercase, with multiplicity) found in the generated text."""
    want, got = Counter(re.findall(r"\w+", answer.lower())), Counter(re.findall(r"\w+", generated.lower()))
    return sum((want & got).values()) / max(1, sum(want.values()))


def _score_probe(model, probe: Probe, n_new: int) -> dict:
    cache = _prefill(model, probe)
    with model.capture(stats=StatsRequest(argmax=True), positions="last") as cap:
        gen = _decode(model, probe, cache, n_new)
    new = gen.new_ids[0].cpu()
    keys = cap.argmax[0, :, :, : len(new)].cpu()  # [layer, head, step]: argmax key of each step's query
    sequence = torch.cat([probe.input_ids[0].cpu(), new])
    start, end = probe.answer_span
    in_answer = (keys >= start) & (keys < end)
    same_token = sequence[keys.clamp_min(0)] == new[: keys.shape[-1]]
    copies = (in_answer & same_token).sum(-1)  # [layer, head]
    rouge = rouge1_recall(probe.needle.answer, gen.text)
    return {
        "probe": probe.id, "length": probe.length, "depth": probe.depth, "needle": probe.needle.id,
        "prompt_tokens": probe.prompt_len, "answer_tokens": end - start, "answered": rouge >= ANSWERED,
        # tokens from the answer's last token to the first decoding query: a head whose sliding window is
        # shorter than this cannot see any of the answer (so cannot copy it) at any step
        "needle_distance": probe.prompt_len - end,
        "rouge": rouge, "generated": gen.text, "n_tokens": len(new),
        "copies": [[layer, head, int(copies[layer, head])] for layer, head in copies.nonzero().tolist()],
    }


def _copying(record: dict) -> str:
    """The heads that copied answer tokens in one probe, most copies first: "11.2:3 5.1:1"."""
    copies = sorted(record["copies"], key=lambda c: (-c[2], c[0], c[1]))
    return " ".join(f"{layer}.{head}:{count}" for layer, head, count in copies)


def _head_table(records: list[dict], layout) -> pd.DataFrame:
    """Score = mean over answered probes of copies / |answer span|."""
    shape = (layout.n_layers, layout.n_heads)
    score, copies = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.long)
    answered = [r for r in records if r["answered"]]
    for r in answered:
        for layer, head, count in r["copies"]:
            score[layer, head] += count / r["answer_tokens"]
            copies[layer, head] += count
    score = score / len(answered) if answered else torch.full(shape, float("nan"), dtype=torch.float64)
    return head_table(layout, {"score": score, "n_probes": len(answered), "copies": copies, "is_retrieval": score > THRESHOLD})


# ---- causal check ------------------------------------------------------------------------------------


def _causal_check(model, grid, make_probe, accuracy, heads, k, draws, mask, n_new, seed, results, done) -> pd.DataFrame:
    """Needle accuracy (share of probes answered) unmasked, with the top-k heads masked, and
    with k random non-retrieval heads masked (`draws` seeded draws). Masks act during
    decoding only, so all conditions decode from one prefilled cache, as the rows of one
    batch with a different mask in every row."""
    rows = [{"condition": "baseline", "k": 0, "draw": 0, "accuracy": accuracy, "heads": ""}]
    if k == 0 or heads["score"].isna().all():  # skipped, or nothing answered: masking cannot lower 0
        return pd.DataFrame(rows)
    if not 0 < k <= heads.shape[0] // 2:
        raise InterpError(f"causal_k={k} must be between 0 and half the model's {heads.shape[0]} heads")
    # Random heads come from the non-retrieval heads (the original code drew from all heads,
    # retrieval heads included); a small model may have too few, then from all but the top-k.
    top, randoms = causal_heads(heads, k, draws, seed, prefer=~heads["is_retrieval"])
    conditions = [("top", 0, top)] + [("random", d, hs) for d, hs in enumerate(randoms)]
    conditions_key = [[c, d, head_names(hs), mask] for c, d, hs in conditions]

    answered = {(c, d): 0 for c, d, _ in conditions}
    for length, depth, needle in track(grid, "retrieval: causal check"):
        key = f"causal/{_probe_id(length, depth, needle)}"
        if done.get(key, {}).get("conditions") != conditions_key:  # not run, or run with other heads
            probe = make_probe(length, depth, needle)
            cache = _prefill(model, probe)
            masks = [head_ablation(mask, masked, rows=[row], positions=slice(probe.prompt_len, None))
                     for row, (_, _, masked) in enumerate(conditions)]
            with model.intervene(*masks):
                gen = _decode(model, probe, cache, n_new, rows=len(conditions))
            texts = [model.tokenizer.decode(ids, skip_special_tokens=True) for ids in gen.new_ids]
            answered_now = [rouge1_recall(needle.answer, text) >= ANSWERED for text in texts]
            done[key] = {"conditions": conditions_key, "answered": answered_now}
            if results is not None:
                results.save_progress("retrieval", key, done[key])
        for (condition, draw, _), ok in zip(conditions, done[key]["answered"]):
            answered[condition, draw] += ok
    for condition, draw, masked in conditions:
        rows.append({"condition": condition, "k": k, "draw": draw, "accuracy": answered[condition, draw] / len(grid),
                     "heads": head_names(masked)})
    return pd.DataFrame(rows)


def headline(tables: dict[str, pd.DataFrame]) -> list[str]:
    """What `interp scan` prints and the report lists: the top heads, how many score above
    THRESHOLD, the probes answered, and the causal check."""
    heads, probes, causal = tables["heads"], tables.get("probes"), tables.get("causal")
    above = int((heads["score"] > THRESHOLD).sum())
    lines = [f"{MEASURE} (copies of the needle's answer per answered probe): top {top_text(heads)}",
             f"{above} of {len(heads)} heads ({above / len(heads):.1%}) score above {THRESHOLD} (retrieval heads)"
             + (f"; {int(probes['answered'].sum())} of {len(probes)} probes answered" if probes is not None else "")]
    if causal is not None and (causal["condition"] == "top").any():
        accuracy = lambda condition: causal.loc[causal["condition"] == condition, "accuracy"]
        k, random = int(causal["k"].max()), accuracy("random")
        lines.append(f"causal check: needle accuracy {accuracy('top').iloc[0]:.2f} with the top {k} heads masked, "
                     f"{accuracy('baseline').iloc[0]:.2f} unmasked, {random.mean():.2f} +- {random.std(ddof=0):.2f} "
                     f"with {k} random non-retrieval heads ({len(random)} draws)")
    return lines
