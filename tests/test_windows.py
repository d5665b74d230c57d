"""Sliding-window layers address keys by position. A window layer's KV cache drops its first keys while
decoding, so the keys of a call start at key_start > 0; every capture addressed by key (argmax, spans,
pooled maps, per-key mass, key_match, pattern columns) and every key-addressed intervention (key spans,
redistribution rules) must still mean key positions. Checked on a tiny random Gemma 3 (two window layers
around a global one, QK-norm, one KV head, a window of 8 keys) against transformers' eager attention of
the whole sequence, whose rows are the reference at absolute positions."""

import copy

import pytest
import torch
import transformers as tf

from interp import InterpModel, Redistribute, ScaleAttention, StatsRequest, move_attention
from interp.runtime.interventions import AttentionContext
from tests.tiny import SMALL, random_ids

WINDOW, PROMPT, LENGTH = 8, 10, 20  # the prompt already exceeds the window; decoding goes far past it
SPANS = ((0, 1), (2, 6), (5, 9), (8, PROMPT))  # positions (within the prompt: spans must lie within the keys seen)
POOLED = (2, 5)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    config = tf.Gemma3TextConfig(**{**SMALL, "num_hidden_layers": 3, "num_key_value_heads": 1, "head_dim": 32,
                                    "query_pre_attn_scalar": 24, "sliding_window": WINDOW,
                                    "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]})
    eager = tf.AutoModelForCausalLM.from_config(config)
    eager.set_attn_implementation("eager")
    eager.eval()
    return eager, InterpModel(copy.deepcopy(eager), source="tiny-gemma3-window")


@pytest.fixture(scope="module")
def ids():
    return random_ids(batch=2, length=LENGTH, vocab=6)  # a small vocabulary so that tokens repeat (key_match)


def eager_patterns(eager, ids):
    """[B, L, H, N, N]: eager attention of the whole sequence, rows = query positions, columns = key positions."""
    with torch.no_grad():
        return torch.stack(eager(input_ids=ids, output_attentions=True).attentions, dim=1)


def statistics(rows: torch.Tensor, labels, first: int) -> dict[str, torch.Tensor]:
    """Every statistic of a block of rows [B, L, H, q, n] (queries at positions first.., keys 0..n-1)."""
    n_query, n_key = rows.shape[-2:]
    key_bin = torch.arange(n_key) * POOLED[1] // n_key
    query_bin = torch.arange(n_query) * POOLED[0] // n_query
    pooled = torch.zeros(*rows.shape[:3], *POOLED)
    for i in range(n_query):
        for j in range(n_key):
            pooled[..., query_bin[i], key_bin[j]] += rows[..., i, j]
    query_labels, key_labels = labels
    same = (key_labels[:, None, :n_key] == query_labels[:, first : first + n_query, None])[:, None, None]  # [B, 1, 1, q, n]
    return {
        "argmax": rows.argmax(-1), "entropy": -(rows * rows.clamp_min(1e-30).log()).sum(-1),
        "span_mass": torch.stack([rows[..., a:min(b, n_key)].sum(-1) for a, b in SPANS], dim=-1),
        "pooled": pooled, "key_mass": rows.sum(-2), "match_mass": (rows * same).sum(-1, keepdim=True),
    }


def request(labels) -> StatsRequest:
    return StatsRequest(argmax=True, entropy=True, spans=SPANS, pooled=POOLED, key_mass=True, key_match=(labels,))


def check(cap, labels, step, reference, first, last):
    """Captured step `step` (queries first..last-1) against the reference rows at the same positions."""
    rows = reference[..., first:last, :last]
    assert torch.equal(cap.get("positions", step=step)[0, 0, 0], torch.arange(first, last))
    assert torch.allclose(cap.get("pattern", step=step), rows, atol=1e-5)
    for name, value in statistics(rows, labels, first).items():
        got = cap.get(name, step=step)
        if name == "argmax":
            assert torch.equal(got, value), name
        else:
            assert got.shape == value.shape and torch.allclose(got, value, atol=1e-5), name


def test_window_layers_really_drop_keys_while_decoding(models, ids):
    """The premise: after the prompt, the window layers' cache holds fewer keys than positions."""
    _, model = models
    with torch.no_grad():
        cache = model.hf(input_ids=ids[:, :PROMPT], use_cache=True).cache
    assert cache.get_seq_length(0) == PROMPT
    assert [cache.layers[layer].keys.shape[2] for layer in range(3)] == [WINDOW - 1, PROMPT, WINDOW - 1]


@pytest.mark.parametrize("chunks", [(PROMPT, 4, 1, 1, 1, 1, 1, 1), (LENGTH,)], ids=["decoding", "prefill"])
def test_every_statistic_and_the_pattern_read_key_positions(models, ids, chunks):
    """Prefill, then a 4-query continuation (several queries past the window) and single-token steps,
    from the KV cache: each step equals the eager rows of the whole sequence at the same positions."""
    eager, model = models
    reference = eager_patterns(eager, ids)
    labels = (ids, ids)  # duplicate-token heads: mass on earlier keys with the query's token
    with torch.no_grad(), model.capture(pattern=True, stats=request(labels)) as cap:
        cache, first = None, 0
        for size in chunks:
            out = model.hf(input_ids=ids[:, first : first + size], cache=cache, use_cache=True)
            cache, first = out.cache, first + size
    assert cap.n_steps == len(chunks)
    first = 0
    for step, size in enumerate(chunks):
        check(cap, labels, step, reference, first, first + size)
        first += size
    joined = cap.argmax  # per-query statistics join over steps: positions of the whole sequence
    assert torch.equal(joined, reference.argmax(-1)) and int(joined[:, 0].min()) >= 0


def test_generate_past_the_window_reports_argmax_positions(models, ids):
    """What retrieval reads: the argmax key of every decoding step's query, as a position."""
    eager, model = models
    prompt = ids[:1, :PROMPT]
    with torch.no_grad(), model.capture(stats=StatsRequest(argmax=True), positions="last") as cap:
        gen = model.generate({"input_ids": prompt, "attention_mask": torch.ones_like(prompt)}, max_new_tokens=8)
    full = torch.cat([prompt, gen.new_ids], dim=1)[:, :-1]  # the sequence the queries saw
    reference = eager_patterns(eager, full)[..., PROMPT - 1 :, :]
    assert torch.equal(cap.positions, torch.arange(PROMPT - 1, full.shape[1]))
    assert torch.equal(cap.argmax, reference.argmax(-1))
    window = cap.argmax[:, [0, 2]]  # a window head's argmax is a position inside its window
    assert ((cap.positions - window) < WINDOW).all() and (window <= cap.positions).all()


def _interventions(seen):
    def rule(probs, ctx: AttentionContext):
        seen.append((probs.shape[-1], ctx.n_keys, ctx.key_start, probs[..., : ctx.key_start].abs().sum().item()))
        return move_attention(from_keys=[13, 14], to_keys=[3, 11, 12], fraction=0.5)(probs, ctx)

    return [ScaleAttention("0.1,2.3", key_spans=[(2, 6), (11, 13)], factor=3.0, target="logits"),
            ScaleAttention("2.1", key_spans=[(12, 14)], factor=0.25, target="probs"),
            Redistribute("0.2,2.2", rule=rule)]


def test_key_addressed_interventions_act_on_positions_while_decoding(models, ids):
    """Key spans and redistribution rules given as positions: decoding from a cache that dropped keys gives
    the patterns and logits of the same interventions on the whole sequence at once (no cache: all keys
    held); rules see rows over positions with zeros where keys were dropped; nothing leaks afterwards."""
    eager, model = models
    seen = []
    with torch.no_grad():
        with model.intervene(*_interventions([])), model.capture(pattern=True) as whole:
            expected = model.hf(input_ids=ids).logits
        with model.intervene(*_interventions(seen)), model.capture(pattern=True) as stepped:
            out = model.hf(input_ids=ids[:, :PROMPT], use_cache=True)
            logits = [out.logits]
            for position in range(PROMPT, LENGTH):
                out = model.hf(input_ids=ids[:, position : position + 1], cache=out.cache, use_cache=True)
                logits.append(out.logits)
        after = model.hf(input_ids=ids).logits
    assert torch.allclose(torch.cat(logits, dim=1), expected, atol=1e-4)
    for step, position in enumerate(range(PROMPT, LENGTH), start=1):
        assert torch.allclose(stepped.get("pattern", step=step), whole.pattern[..., position : position + 1, : position + 1], atol=1e-5)
    clean = eager_patterns(eager, ids)
    assert not torch.allclose(whole.pattern, clean, atol=1e-3)  # the interventions did something
    changed = (whole.pattern - clean).abs().amax(dim=(0, 3, 4))  # [layer, head]
    assert changed[0, 1] > 1e-3 and changed[2, 3] > 1e-3 and changed[2, 1] > 1e-3 and changed[0, 0] == 0
    decoding = [s for s in seen if s[2] > 0]  # window layers past the window: rows over every position
    assert decoding and all(width == n_keys and dropped == 0 for width, n_keys, _, dropped in decoding)
    assert torch.allclose(after, eager(input_ids=ids).logits, atol=1e-4)  # restored: no leak
