"""Retrieval heads: a hand-built model with one known copy head, resume, and the bundled model.

The hand-built model (2 layers x 4 query heads, 2 KV heads, word-level tokens w0..w61)
answers needle questions through exactly one head, layer 1 head 2:
- the residual stream holds the current token one-hot in dims [0, 64) and the next-token
  prediction in dims [64, 128); the unembedding reads only the latter;
- every token's embedding predicts the filler word w0 a little (a wrong default answer);
- answers are three tokens from three word classes A, B, C. Head 1.2's query at the
  question's last word looks for class A, at an A token for class B, at a B token for C;
  its value/output write the attended token into the prediction dims, so it copies the
  answer token by token. A C token predicts <eos>.
- head 1.3 shares 1.2's keys but attends to the needle's marker word (inside the needle,
  outside the answer): it must score 0. The other heads have random weights and write
  only into spare dims, so they do not change the output.
Masking 1.2 during decoding leaves the first answer word (produced by the prefill) and then
the default w0: ROUGE recall 1/3, not answered.
"""

import random

import pandas as pd
import pytest
import torch
import transformers as tf

import interp
from interp import InterpError, InterpModel
from interp.analyses import retrieval
from interp.data import Needle, load_needles, load_texts
from interp.run.results import ResultsDir
from tests.tiny import tiny_tokenizer

V = 64  # vocabulary: <unk>=0, <eos>=1, w{i} = i + 2
PREDICT = V  # dims [V, 2V) of the residual: next-token prediction
D_MODEL, HEAD_DIM = 2 * V + 32, 32  # dims [2V, D_MODEL): spare, written by the decoy heads
FILLER, MARKER, QUESTION_END = range(0, 20), 21, 50
CLASSES = {"A": range(30, 36), "B": range(36, 42), "C": range(42, 48)}
COPY_HEAD, MARKER_HEAD = (1, 2), (1, 3)
FEATURE = {"A": 12, "B": 13, "C": 14, "marker": 15}  # head dims that RoPE barely rotates at these lengths


def tok(word_index: int) -> int:
    return word_index + 2


def build_copy_model(seed: int = 0) -> InterpModel:
    torch.manual_seed(seed)
    config = tf.LlamaConfig(vocab_size=V, hidden_size=D_MODEL, intermediate_size=8, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=HEAD_DIM,
                            max_position_embeddings=256, bos_token_id=None, eos_token_id=1, pad_token_id=1)
    hf = tf.LlamaForCausalLM(config).eval()
    answer_tokens = [tok(w) for c in CLASSES.values() for w in c]
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 2:
                p.zero_()
        emb = hf.model.embed_tokens.weight  # [V, D_MODEL]
        emb[:, :V] = torch.eye(V)
        emb[:, PREDICT + tok(0)] = 3.0  # default (wrong) answer: w0
        for w in CLASSES["C"]:
            emb[tok(w), PREDICT + 1] = 6.0  # after the last answer word: <eos>
        hf.lm_head.weight[:, PREDICT:PREDICT + V] = torch.eye(V)

        # Decoys: random attention everywhere, outputs only into the spare dims.
        for layer in hf.model.layers:
            attn = layer.self_attn
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
                proj.weight.normal_(0, 0.5)[:, V:] = 0
            attn.o_proj.weight[2 * V:] = 0.005 * torch.randn(D_MODEL - 2 * V, attn.o_proj.weight.shape[1])

        attn = hf.model.layers[COPY_HEAD[0]].self_attn
        rows = lambda head: slice(HEAD_DIM * head, HEAD_DIM * (head + 1))  # a head's rows of q/k/v
        row = lambda head, dim: HEAD_DIM * head + dim
        kv = COPY_HEAD[1] // 2  # the KV head that query heads 2 and 3 share (GQA)
        for head in (COPY_HEAD[1], MARKER_HEAD[1]):
            attn.q_proj.weight[rows(head)] = 0
            attn.o_proj.weight[:, rows(head)] = 0
        attn.k_proj.weight[rows(kv)] = 0
        attn.v_proj.weight[rows(kv)] = 0
        for name, words in CLASSES.items():  # keys: which class a token belongs to
            attn.k_proj.weight[row(kv, FEATURE[name]), [tok(w) for w in words]] = 4.0
        attn.k_proj.weight[row(kv, FEATURE["marker"]), tok(MARKER)] = 4.0
        # copy head: the question's end asks for A, an A token for B, a B token for C
        attn.q_proj.weight[row(COPY_HEAD[1], FEATURE["A"]), tok(QUESTION_END)] = 4.0
        attn.q_proj.weight[row(COPY_HEAD[1], FEATURE["B"]), [tok(w) for w in CLASSES["A"]]] = 4.0
        attn.q_proj.weight[row(COPY_HEAD[1], FEATURE["C"]), [tok(w) for w in CLASSES["B"]]] = 4.0
        for j, t in enumerate(answer_tokens):  # value = which answer token; output = predict it
            attn.v_proj.weight[row(kv, j), t] = 1.0
            attn.o_proj.weight[PREDICT + t, row(COPY_HEAD[1], j)] = 4.0
        # marker head: always looks at the needle's marker word; writes into spare dims
        attn.q_proj.weight[row(MARKER_HEAD[1], FEATURE["marker"]), :V] = 4.0
        attn.o_proj.weight[2 * V:, rows(MARKER_HEAD[1])] = 0.005
    return InterpModel(hf, tiny_tokenizer(V), source="hand-built-copy")


def tiny_material(n_needles: int = 3, seed: int = 0):
    rng = random.Random(seed)
    sentences = [" ".join(f"w{rng.choice(FILLER)}" for _ in range(6)) + "." for _ in range(12)]
    needles = []
    for i in range(n_needles):
        a, b, c = (f"w{CLASSES[name][i]}" for name in "ABC")
        needles.append(Needle(f"n{i}", f"w20 w{MARKER} {a} {b} {c}.", f"w22 w23 w{QUESTION_END}", f"{a} {b} {c}"))
    return needles, [" ".join(sentences)]


@pytest.fixture(autouse=True)
def one_thread():
    """Decoding small models is many tiny ops: on a shared 2-core machine, 2 OpenMP threads
    spin against each other and the other jobs (bundled grid: 25-50 s vs 6-8 s measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def copy_model():
    return build_copy_model()


@pytest.fixture(scope="module")
def material():
    return tiny_material()


def run_tiny(model, material, **kw):
    needles, texts = material
    kw = {"lengths": [48, 160], "depths": [0.0, 0.5, 1.0], **kw}
    return retrieval.scan(model, needles=needles, haystack=texts, **kw)


def test_planted_copy_head_ranks_first_and_masking_it_alone_breaks_retrieval(copy_model, material):
    out = run_tiny(copy_model, material, causal_draws=3)
    probes, heads, causal = out["probes"], out["heads"], out["causal"]
    assert len(probes) == 18 and probes["answered"].all() and heads.attrs["answered_fraction"] == 1.0
    assert (probes["generated"] == [n.answer for _ in range(6) for n in material[0]]).all()  # needle varies fastest
    ranked = heads.sort_values("score", ascending=False)
    assert tuple(ranked[["layer", "head"]].iloc[0]) == COPY_HEAD
    planted = ranked.iloc[0]
    assert planted["score"] == pytest.approx(1.0) and planted["copies"] == 18 * 3 and planted["is_retrieval"]
    others = ranked.iloc[1:]
    assert others["score"].max() < 0.1 and not others["is_retrieval"].any()  # random heads: chance copies only
    assert heads.set_index(["layer", "head"]).loc[MARKER_HEAD, "score"] == 0  # in the needle, not the answer
    assert (heads["n_probes"] == 18).all()

    by = causal.set_index(["condition", "draw"])["accuracy"]
    assert by["baseline", 0] == 1.0 and by["top", 0] == 0.0
    random_rows = causal[causal["condition"] == "random"]
    assert len(random_rows) == 3 and (random_rows["accuracy"] == 1.0).all() and (random_rows["k"] == 1).all()
    assert causal.loc[causal["condition"] == "top", "heads"].item() == "1.2"
    assert not random_rows["heads"].str.contains("1.2").any()


def test_zero_ablation_mask_also_breaks_retrieval_only_for_the_planted_head(copy_model, material):
    causal = run_tiny(copy_model, material, lengths=[64], mask="zero", causal_draws=2)["causal"]
    assert causal["accuracy"].tolist() == [1.0, 0.0, 1.0, 1.0] and causal["heads"].iloc[1] == "1.2"


def test_unanswered_probes_leave_scores_undefined(copy_model, material):
    unanswerable = [Needle(n.id, n.needle, "w22 w23", n.answer) for n in material[0]]  # no question end: w0 w0 ...
    out = run_tiny(copy_model, (unanswerable, material[1]), samples=2)
    assert not out["probes"]["answered"].any() and out["heads"]["score"].isna().all()
    assert out["causal"]["accuracy"].tolist() == [0.0]  # masking cannot lower 0: only the baseline


def test_samples_caps_the_grid_and_scores_stay_known(copy_model, material):
    out = run_tiny(copy_model, material, samples=5, causal_k=0)
    assert len(out["probes"]) == 5 and list(out["causal"]["condition"]) == ["baseline"]
    assert out["heads"].sort_values("score").iloc[-1][["layer", "head"]].tolist() == list(COPY_HEAD)


def test_answer_span_from_offsets_and_from_prefix_counts():
    tokenizer = tiny_tokenizer(V)
    prompt = "w3 w4. w20 w21 w30 w36 w42. w5"
    start = prompt.index("w30")
    ids, span = retrieval._tokenize_with_span(tokenizer, prompt, True, start, start + len("w30 w36 w42"))
    assert tokenizer.decode(ids[0, span[0]:span[1]]) == "w30 w36 w42"

    class NoOffsets:  # a slow tokenizer: no offset mapping
        def __call__(self, text, return_offsets_mapping=False, **kw):
            if return_offsets_mapping:
                raise NotImplementedError
            return tokenizer(text, **kw)

    assert retrieval._tokenize_with_span(NoOffsets(), prompt, True, start, start + len("w30 w36 w42"))[1] == span


def test_rouge1_recall():
    assert retrieval.rouge1_recall("purple walrus under lantern light", "It is Purple walrus, under a lamp.") == 0.6
    assert retrieval.rouge1_recall("a b", "") == 0.0


def test_bad_input_gives_one_line_errors(copy_model, material):
    with pytest.raises(InterpError, match="at most"):
        run_tiny(copy_model, material, lengths=[400])
    with pytest.raises(InterpError, match="no room for a haystack"):
        run_tiny(copy_model, material, lengths=[10])
    with pytest.raises(InterpError, match="mask must be"):
        run_tiny(copy_model, material, mask="mean")
    with pytest.raises(InterpError, match="depths"):
        run_tiny(copy_model, material, depths=[1.5])
    with pytest.raises(InterpError, match="causal_k"):
        run_tiny(copy_model, material, samples=2, causal_k=5)


def test_resume_skips_finished_probes(copy_model, material, tmp_path, monkeypatch):
    calls, stop_after = [], 4
    real_generate = copy_model.generate

    def counting_generate(*args, **kwargs):
        if len(calls) == stop_after:
            raise KeyboardInterrupt("interrupted")
        calls.append(1)
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(copy_model, "generate", counting_generate)
    kw = dict(lengths=[48], depths=[0.0, 1.0], causal_draws=2)  # 6 probes
    results = ResultsDir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(copy_model, material, results=results, **kw)
    assert len(results.load_progress("retrieval")) == 4

    calls.clear()
    stop_after = None
    resumed = run_tiny(copy_model, material, results=results, **kw)
    assert len(calls) == (6 - 4) + 2  # the causal check's 2 probes (a third), conditions batched in one call

    calls.clear()
    again = run_tiny(copy_model, material, results=results, **kw)
    assert len(calls) == 0  # every probe and every causal run is saved
    fresh = run_tiny(copy_model, material, **kw)
    for name in ("heads", "probes", "causal"):
        pd.testing.assert_frame_equal(resumed[name], fresh[name])
        pd.testing.assert_frame_equal(again[name], fresh[name])


@pytest.mark.bundled
def test_bundled_model_small_grid():
    model = interp.load_model()
    needle = load_needles()[0]
    probe = retrieval._make_probe(model, 160, 0.5, needle, load_texts(), {})
    start, end = probe.answer_span  # the span decodes to the answer, inside the chat template
    assert model.tokenizer.decode(probe.input_ids[0, start:end]).strip() == needle.answer

    out = retrieval.scan(model, lengths=[160], depths=[0.5], samples=2, max_new_tokens=24, causal_k=2, causal_draws=1)
    heads, probes, causal = out["heads"], out["probes"], out["causal"]
    assert len(heads) == 270 and heads[["layer", "head"]].drop_duplicates().shape[0] == 270
    assert len(probes) == 2 and probes["prompt_tokens"].between(100, 160).all()
    # Known answer: SmolLM2 (greedy) answers both probes of this grid word for word, so every head's score is
    # defined and the causal check runs; the full grid's findings (notes/retrieval.md) hold on these two.
    assert probes["answered"].all() and (probes["rouge"] == 1).all() and heads.attrs["answered_fraction"] == 1
    assert heads["score"].between(0, 1).all() and (heads["n_probes"] == 2).all()
    assert heads["is_retrieval"].equals(heads["score"] > 0.1)
    ranked = heads.sort_values(["score", "layer", "head"], ascending=[False, True, True])
    top = [f"{layer}.{head}" for layer, head in zip(ranked["layer"], ranked["head"])][:2]
    assert top[0] in {"23.2", "18.6", "17.3", "23.7", "20.6", "18.7", "17.4"}  # the full grid's strongest 7
    assert ranked["score"].iloc[0] > 0.5
    assert list(causal["condition"]) == ["baseline", "top", "random"] and causal["accuracy"].between(0, 1).all()
    assert causal["heads"].iloc[1] == ",".join(top)  # the top condition masks the two best heads
    assert not set(causal["heads"].iloc[2].split(",")) & set(top)
    assert causal["accuracy"].iloc[0] == probes["answered"].mean() == 1
    assert causal["accuracy"].iloc[1] < causal["accuracy"].iloc[0]  # masking them breaks retrieval
    with pytest.raises(InterpError, match="at most"):
        retrieval.scan(model, lengths=[9000])
