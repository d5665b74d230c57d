"""The one place of each concept the analyses share, with known answers: head ablation by name
(interp.runtime.ablation), seeded subsets (interp.data.probes), the per-head table, the heads
of a causal check and overlap statistics (interp.analyses.head_sets), the forward without the
LM head and the KV cache without transformers' FutureWarning (InterpModel), and what every
analysis's score is (MEASURE)."""

import random
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import transformers as tf

from interp import InterpError, InterpModel, MeanAblation, PatchHead, ScaleHead, UniformAttention, ZeroAblation
from interp import analyses
from interp.analyses import head_sets
from interp.data.probes import seeded_subset
from interp.runtime.ablation import Mode, head_ablation, make_intervention
from tests.tiny import SMALL, tiny_tokenizer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    hf = tf.AutoModelForCausalLM.from_config(tf.LlamaConfig(**{**SMALL, "num_key_value_heads": 2})).eval()
    return InterpModel(hf, tiny_tokenizer(), source="tiny-llama")


# ---- head ablation by name -------------------------------------------------------------------------


def test_head_ablation_by_name():
    where = dict(rows=[1], positions=slice(3, None))
    zero = head_ablation("zero", "1.2", **where)
    assert type(zero) is ZeroAblation and zero.heads == ((1, 2),) and zero.rows == [1] and zero.positions == slice(3, None)
    uniform = head_ablation("uniform", [(0, 1)], eps=0.25)
    assert type(uniform) is UniformAttention and uniform.eps == 0.25 and uniform.rows is None
    assert head_ablation("uniform", [(0, 1)]).eps == 1e-5  # the retrieval mask and the Ships ablation
    scale = head_ablation("scale", [(0, 1)], factor=3.0, eps=0.5)
    assert type(scale) is ScaleHead and scale.factor == 3.0  # eps is the query's scale, not the output's
    means = torch.ones(2, 4, 16)
    mean = head_ablation("mean", [(0, 1)], means=means)
    assert type(mean) is MeanAblation and mean.means is means
    values, mask = torch.zeros(1, 2, 4, 5, 16), torch.zeros(3, 2, 4, dtype=torch.bool)
    mask[:, 0, 1] = True
    patch = head_ablation("patch", [(0, 1)], values=values, source=torch.zeros(3, dtype=torch.long), mask=mask)
    assert type(patch) is PatchHead and patch.values is values and patch.mask is mask
    with pytest.raises(InterpError, match="unknown ablation 'melt'"):
        head_ablation("melt", [(0, 1)])
    with pytest.raises(InterpError, match="mean ablation needs the mean head outputs"):
        head_ablation("mean", [(0, 1)])


def test_make_intervention_checks_heads_against_the_model(model):
    iv = make_intervention(model, "1.3", Mode.parse("scale=2"))
    assert type(iv) is ScaleHead and iv.factor == 2.0 and iv.heads == ((1, 3),)
    with pytest.raises(InterpError):
        make_intervention(model, "5.0", Mode.parse("zero"))  # the tiny model has 2 layers


# ---- seeded subsets -------------------------------------------------------------------------------------


def test_seeded_subset():
    items = list("abcdefghij")
    assert seeded_subset(items, None, 0) == items and seeded_subset(items, 10, 5) == items and seeded_subset(items, 99, 5) == items
    assert seeded_subset(items, 4, 7) == ["c", "f", "g", "j"]  # random.Random(7).sample, kept in order
    rng = random.Random(3)  # one generator for several subsets in a row (as the safety scan draws)
    assert (seeded_subset(items, 3, rng), seeded_subset(items, 3, rng)) == (["c", "d", "i"], ["b", "f", "h"])
    assert seeded_subset(iter(items), 4, 7) == ["c", "f", "g", "j"]  # any iterable
    with pytest.raises(InterpError, match="samples must be at least 1, got 0"):
        seeded_subset(items, 0, 0)


# ---- the per-head table, the heads of a causal check ------------------------------------------------------


def test_head_table_is_layer_major_with_scalars_and_samples():
    layout = SimpleNamespace(n_layers=2, n_heads=3)
    score = torch.arange(6.0).view(2, 3)
    table = head_sets.head_table(layout, {"score": score, "n": 4, "top": score > 3})
    assert list(table.columns) == ["layer", "head", "score", "n", "top"]
    assert table["layer"].tolist() == [0, 0, 0, 1, 1, 1] and table["head"].tolist() == [0, 1, 2, 0, 1, 2]
    assert table["score"].tolist() == [0, 1, 2, 3, 4, 5] and (table["n"] == 4).all() and table["top"].sum() == 2
    assert table["score"].dtype == np.float32 and table["layer"].dtype == np.int64
    per_sample = head_sets.head_table(layout, {"score": torch.arange(12.0).view(2, 2, 3)}, samples=["a", "b"])
    assert per_sample["sample"].tolist() == ["a"] * 6 + ["b"] * 6
    assert per_sample["layer"].tolist() == [0, 0, 0, 1, 1, 1] * 2 and per_sample["score"].tolist() == list(range(12))


def heads_frame(scores, n_heads=2) -> pd.DataFrame:
    return pd.DataFrame({"layer": [i // n_heads for i in range(len(scores))], "head": [i % n_heads for i in range(len(scores))],
                         "score": scores})


def test_top_heads_break_ties_by_layer_then_head():
    table = heads_frame([0.5, 0.9, 0.9, 0.1, 0.5, 0.2])  # heads 0.0 0.1 1.0 1.1 2.0 2.1
    assert head_sets.top_heads(table, 4) == [(0, 1), (1, 0), (0, 0), (2, 0)]
    assert head_sets.head_names(head_sets.top_heads(table, 2)) == "0.1,1.0"


def test_random_head_sets_and_causal_heads():
    pool = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    assert head_sets.random_head_sets(pool, 2, 3, 5) == [[(1, 0), (2, 0)], [(0, 0), (1, 0)], [(0, 1), (1, 1)]]
    table = heads_frame([0.5, 0.9, 0.9, 0.1, 0.5, 0.2])
    top, randoms = head_sets.causal_heads(table, 2, 20, seed=0)
    assert top == [(0, 1), (1, 0)] and len(randoms) == 20
    assert all(len(r) == 2 and r == sorted(r) and not set(r) & set(top) for r in randoms)
    # from the preferred heads when there are k of them ...
    prefer = pd.Series([False, False, False, True, False, True])
    _, randoms = head_sets.causal_heads(table, 2, 5, seed=0, prefer=prefer)
    assert all(r == [(1, 1), (2, 1)] for r in randoms)
    # ... else from every head outside the top k
    top, randoms = head_sets.causal_heads(table, 3, 5, seed=0, prefer=prefer)
    assert top == [(0, 1), (1, 0), (0, 0)] and all(r == [(1, 1), (2, 0), (2, 1)] for r in randoms)


# ---- overlap statistics -------------------------------------------------------------------------------


def test_overlap_statistics_known_answers():
    # two 2-sets among 4 heads: they share 0, 1 or 2 heads with probability 1/6, 4/6, 1/6
    assert head_sets.overlap_p_value(1, 2, 2, 4) == pytest.approx(5 / 6)
    assert head_sets.overlap_p_value(0, 2, 2, 4) == 1.0 and head_sets.overlap_p_value(3, 2, 2, 4) == 0.0
    assert head_sets.chance_shared(2, 2, 4) == 1.0
    assert head_sets.chance_jaccard(2, 2, 4) == pytest.approx(1 / 3)  # 1 shared of 3 expected in the union
    assert head_sets.expected_jaccard(2, 2, 4) == pytest.approx(4 / 6 * 1 / 3 + 1 / 6 * 1)  # 7 / 18
    got = head_sets.overlap({(0, 0), (0, 1)}, {(0, 1), (1, 0)}, 4)
    assert got == {"size_a": 2, "size_b": 2, "intersection": 1, "iou": 1 / 3, "containment_a": 0.5, "containment_b": 0.5,
                   "chance_intersection": 1.0, "chance_iou": pytest.approx(7 / 18), "p_value": pytest.approx(5 / 6)}
    empty = head_sets.overlap(set(), set(), 4)
    assert np.isnan(empty["iou"]) and empty["chance_iou"] == 0.0 and empty["p_value"] == 1.0


def test_the_reports_pair_overlap_is_its_overlap_tables_row():
    from interp import report

    up = np.arange(16, dtype=float)
    measures = report.measures_from_tables({"up": heads_frame(up, 4), "shuffled": heads_frame(np.random.default_rng(0).permutation(up), 4)})
    pair = report.pair_overlap(measures, "up", "shuffled", 4)
    pd.testing.assert_frame_equal(pd.DataFrame([pair]), report.overlap_table(measures, k=4))
    assert pair["shared"] == len(set(measures.top("up", 4)) & set(measures.top("shuffled", 4)))
    assert report.chance_note(measures, 4).startswith("Chance for two random sets of 4 of 16 heads: 1.00 shared, Jaccard 0.143")


# ---- InterpModel: the forward without the LM head, the KV cache -----------------------------------------


def test_base_forward_is_the_model_without_its_lm_head(model):
    ids = model.tokenize("w1 w2 w3 w4")["input_ids"]
    with torch.no_grad():
        hidden = model.base_forward({"input_ids": ids}).last_hidden_state
        full = model.hf(input_ids=ids, output_hidden_states=True)
    assert hidden.shape == (1, 4, 64) and torch.allclose(hidden, full.hidden_states[-1], atol=1e-6)
    assert torch.allclose(model.hf.lm_head(hidden), full.logits, atol=1e-5)
    with pytest.raises(InterpError, match="the prompt is 200 tokens but the model allows 128"):
        model.base_forward({"input_ids": torch.zeros(1, 200, dtype=torch.long)})


def test_generate_and_a_kv_cached_forward_raise_no_future_warning(model):
    """transformers 5.24 renamed past_key_values to cache; the old name warns at every scan."""
    ids = model.tokenize("w1 w2 w3 w4 w5")["input_ids"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        plain = model.generate({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, max_new_tokens=4)
        cached = model.generate({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, max_new_tokens=4,
                                cache=model.prefill(ids[:, :-1]))
        with torch.no_grad():
            last = model({"input_ids": ids[:, -1:]}, cache=model.prefill(ids[:, :-1])).logits[0, -1]
            whole = model({"input_ids": ids}).logits[0, -1]
    assert torch.equal(plain.new_ids, cached.new_ids)  # decoding from the prefilled cache is the same greedy answer
    assert torch.allclose(last, whole, atol=1e-5)


# ---- what every analysis's score is -------------------------------------------------------------------


def test_every_analysis_says_what_its_score_is():
    measures = {name: analyses.get(name).MEASURE for name in analyses.ANALYSES}
    assert all(isinstance(m, str) and m for m in measures.values())
    assert measures["heads"] == "induction score" and measures["retrieval"] == "retrieval score"
    assert measures["sinks"] == "sink importance" and measures["safety"] == "Ships"
    assert measures["context"] == "context divergence (CD)" and measures["vhd"] == "vision-aware head divergence (VHD)"
