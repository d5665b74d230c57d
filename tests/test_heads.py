"""Classic head types (analyses/heads.py): a hand-built two-layer induction circuit, the
kernel masses against the dense pattern, TransformerLens' detector conventions, the scan."""

import pytest
import torch
import transformers as tf
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from interp import InterpModel, StatsRequest
from interp.analyses import heads
from interp.base.errors import InterpError
from interp.run.results import ResultsDir
from tests.tiny import pair, tiny_tokenizer

# ---- a planted model -------------------------------------------------------------------------------

V, D, N_HEADS, HEAD_DIM = 32, 96, 4, 64
TOK, PREV, CONST = 0, V, 2 * V  # residual layout: token one-hot, previous-token one-hot, a constant 1
FAST = range(0, 8)  # RoPE pairs that turn fast (rope_theta 1e6): the position code of the previous-token head
SLOW = range(16, 32)  # pairs that turn < 0.001 rad per position: content matching, 32 dims


def planted_model() -> InterpModel:
    """A 2-layer llama built by hand (random other heads, zero MLPs):
    0.0 previous-token head: q = u, k = R(1) u from the constant dim, so q_i . k_j = sum_f cos((j - i + 1) theta_f)
        peaks at j = i - 1; it copies the previous token's one-hot into the PREV dims;
    1.0 induction head: q = token of i, k = previous token of j (PREV dims), in the slow RoPE dims;
    0.1 first-token head: k = "is BOS", q = the constant dim.
    The other heads keep small random weights and write nothing (o_proj zero)."""
    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=V, hidden_size=D, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=N_HEADS, num_key_value_heads=N_HEADS, head_dim=HEAD_DIM,
                            max_position_embeddings=256, rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    hf = tf.LlamaForCausalLM(config).eval()
    tokenizer = tiny_tokenizer(V)
    bos = tokenizer.eos_token_id  # no BOS token: heads.repeated_tokens starts with EOS
    slow_dims = [d for f in SLOW for d in (f, f + HEAD_DIM // 2)]  # rotate_half pairs dim f with f + HEAD_DIM / 2
    head = lambda h: slice(h * HEAD_DIM, (h + 1) * HEAD_DIM)
    with torch.no_grad():
        hf.model.embed_tokens.weight.copy_(torch.cat([torch.eye(V), torch.zeros(V, V), torch.ones(V, 1), torch.zeros(V, D - 2 * V - 1)], 1))
        for layer in hf.model.layers:
            layer.mlp.down_proj.weight.zero_()
            layer.self_attn.o_proj.weight.zero_()
        zero = lambda *ws: [w[head(h)].zero_() for w, h in ws]
        a0, a1 = hf.model.layers[0].self_attn, hf.model.layers[1].self_attn
        zero((a0.q_proj.weight, 0), (a0.k_proj.weight, 0), (a0.v_proj.weight, 0), (a0.q_proj.weight, 1),
             (a0.k_proj.weight, 1), (a1.q_proj.weight, 0), (a1.k_proj.weight, 0))
        # 0.0 previous token
        u = torch.zeros(HEAD_DIM)
        u[list(FAST)] = 1.0
        cos, sin = hf.model.rotary_emb(u[None, None], torch.tensor([[1]]))
        u_turned = apply_rotary_pos_emb(u[None, None, None], u[None, None, None], cos, sin)[1].flatten()  # R(1) u
        a0.q_proj.weight[head(0), CONST] = 4 * u
        a0.k_proj.weight[head(0), CONST] = 4 * u_turned
        a0.v_proj.weight[head(0).start + torch.arange(V), TOK + torch.arange(V)] = 1.0
        a0.o_proj.weight[PREV + torch.arange(V), head(0).start + torch.arange(V)] = 1.0
        # 0.1 first token
        a0.q_proj.weight[head(1).start + slow_dims[0], CONST] = 4.0
        a0.k_proj.weight[head(1).start + slow_dims[0], TOK + bos] = 4.0
        # 1.0 induction
        for t in range(V):
            a1.q_proj.weight[head(0).start + slow_dims[t], TOK + t] = 8.0
            a1.k_proj.weight[head(0).start + slow_dims[t], PREV + t] = 8.0
    return InterpModel(hf, tokenizer, source="planted")


@pytest.fixture(scope="module")
def planted():
    return planted_model()


# ---- a dense reference of the key_match statistic ----------------------------------------------------


def dense_pair_masses(model, ids) -> dict[str, torch.Tensor]:
    """heads.pair_masses from the full captured pattern: sum_j A[i, j] [key_labels[j] == query_labels[i] >= 0]."""
    with torch.no_grad(), model.capture(pattern=True) as cap:
        model.hf(input_ids=ids)
    pattern = cap.pattern.double()  # [B, L, H, N, N]
    out = {}
    for name, (q, k) in zip(heads.PAIRS, heads.key_match_pairs(ids)):
        match = (q[:, :, None] == k[:, None, :]) & (q[:, :, None] >= 0)  # [B, N, N]
        out[name] = (pattern * match[:, None, None]).sum(-1).float()
    return out


# ---- tests ---------------------------------------------------------------------------------------------


def test_planted_previous_token_first_token_and_induction_heads_are_found_first(planted):
    tables = heads.scan(planted, prompts=["w20 w3 w4 w5 w3 w4 w5 w3 w4"], lengths=(20, 50), seeds=3, causal_k=0)
    table = tables["heads"]
    best = {column: table.nlargest(1, column).iloc[0] for column in
            ("score", "score.previous_token", "score.first_token", "score.text_previous_token", "score.text_induction")}
    for column, where in [("score", (1, 0)), ("score.previous_token", (0, 0)), ("score.first_token", (0, 1)),
                          ("score.text_previous_token", (0, 0)), ("score.text_induction", (1, 0))]:
        row = best[column]
        assert (row["layer"], row["head"]) == where, column
        assert row[column] > 0.9, column
    others = table[(table.layer != 1) | (table["head"] != 0)]
    assert others["score"].max() < 0.5  # the runner-up is far behind
    assert tables["causal"].empty


def test_kernel_masses_equal_the_dense_pattern_in_a_batch(planted):
    ids = torch.stack([heads.repeated_tokens(planted, 12, [s])[0] for s in (1, 2)])
    ids[1, 5] = ids[1, 3]  # an adjacent-copy case and different labels per row
    ids[1, 6] = ids[1, 5]
    got, want = heads.pair_masses(planted, ids), dense_pair_masses(planted, ids)
    # The planted heads' logits reach ~770, where float32 values lie 6e-5 apart: the fused
    # attention's log-sum-exp and the eager pattern round them differently by a few spacings,
    # and p = exp(s - lse) inherits that. Allow 8 spacings of the largest log-sum-exp.
    with torch.no_grad(), planted.capture(stats=StatsRequest(lse=True)) as cap:
        planted.hf(input_ids=ids)
    tolerance = max(1e-5, 8 * torch.finfo(torch.float32).eps * cap["lse"].abs().max().item())
    for name in heads.PAIRS:
        assert (got[name] - want[name]).abs().max() <= tolerance, name


def test_kernel_masses_on_a_random_gqa_model():
    _, model = pair("llama")  # 2 KV heads for 4 query heads
    ids = torch.randint(0, 8, (2, 40), generator=torch.Generator().manual_seed(3))  # few symbols: many copies
    got, want = heads.pair_masses(model, ids), dense_pair_masses(model, ids)
    for name in heads.PAIRS:
        assert (got[name] - want[name]).abs().max() <= 1e-5, name


@pytest.mark.parametrize("exclude_bos", [False, True])
@pytest.mark.parametrize("exclude_current_token", [False, True])
def test_detector_convention_equals_transformerlens_on_the_same_patterns(exclude_bos, exclude_current_token):
    from transformer_lens import head_detector as hd

    _, model = pair("llama")
    ids = torch.cat([torch.tensor([1]), torch.randint(2, 9, (30,), generator=torch.Generator().manual_seed(4))])[None]
    ids[0, 7] = ids[0, 6]  # a repeated neighbour puts a 1 on the induction pattern's diagonal
    ids[0, 9] = 1  # and the first token recurs
    ours = heads.detector_scores(model, ids, exclude_bos=exclude_bos, exclude_current_token=exclude_current_token)
    with torch.no_grad(), model.capture(pattern=True) as cap:
        model.hf(input_ids=ids)
    for name in ("previous_token", "duplicate_token", "induction"):
        detection = getattr(hd, f"get_{name}_head_detection_pattern")(ids.cpu())
        for layer in range(2):
            for head in range(4):
                theirs = hd.compute_head_attention_similarity_score(
                    cap.pattern[0, layer, head], detection, exclude_bos=exclude_bos,
                    exclude_current_token=exclude_current_token, error_measure="mul")
                assert ours[name][0, layer, head].item() == pytest.approx(theirs, abs=1e-5), (name, layer, head)


def test_eligible_queries_and_earlier_copies():
    ids = torch.tensor([[5, 6, 5, 7, 6, 5]])
    assert heads.has_earlier_copy(ids).tolist() == [[False, False, True, False, True, True]]
    eligible = heads.eligible_queries(ids)
    assert eligible["previous_token"].tolist() == [[False] + [True] * 5]


def test_scan_tables_causal_check_and_resume(planted, tmp_path):
    results = ResultsDir(tmp_path / "out")
    tables = heads.scan(planted, prompts=["w3 w4 w5 w3 w4", "w9 w8 w9"], lengths=(10,), seeds=2, causal_k=2,
                        causal_draws=2, results=results)
    table, causal = tables["heads"], tables["causal"]
    assert len(table) == 8 and {"score", "score.previous_token", "score.duplicate_token", "score.first_token",
                                "score.text_induction", "score.text_first_token"} <= set(table.columns)
    assert set(tables["samples"]["sample"]) == {"repeated:10:0", "repeated:10:1", "text:0", "text:1"}
    assert list(causal["condition"]) == ["clean", "top induction", "random", "random"]
    top = table.nlargest(2, "score")
    assert causal["heads"][1] == ",".join(f"{l}.{h}" for l, h in sorted(zip(top.layer, top["head"]),
                                                                        key=lambda lh: -table.set_index(["layer", "head"]).loc[lh, "score"]))
    assert not set(causal["heads"][2].split(",")) & set(causal["heads"][1].split(","))  # random heads exclude the top
    clean = heads.repeated_half_loss(planted, heads.repeated_tokens(planted, 10, [0, 1]))[0].mean().item()
    assert causal["loss_repeated_half"][0] == pytest.approx(clean, abs=1e-5)

    saved = results.load_progress("heads")
    assert {"repeated:10", "text:0", "text:1", "causal:clean:0", "causal:random:1"} <= set(saved)
    calls = []
    real = heads.sequence_scores
    heads.sequence_scores = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        again = heads.scan(planted, prompts=["w3 w4 w5 w3 w4", "w9 w8 w9"], lengths=(10,), seeds=2, causal_k=2,
                           causal_draws=2, results=results)
    finally:
        heads.sequence_scores = real
    assert calls == [] and again["heads"].equals(table)  # everything came from the saved progress


def test_bad_input_is_a_clear_error(planted):
    with pytest.raises(InterpError, match="unknown ablation"):
        heads.scan(planted, prompts=["w1"], ablation="melt")
    with pytest.raises(InterpError, match="leaves no room"):
        heads.scan(planted, prompts=["w1"], max_length=3)
    with pytest.raises(InterpError, match="causal_k"):
        heads.scan(planted, prompts=["w1 w2"], lengths=(5,), seeds=1, causal_k=7)


# ---- the bundled model against TransformerLens --------------------------------------------------------


@pytest.mark.bundled
def test_bundled_scores_equal_transformerlens_head_detector():
    """TransformerLens' detect_head on a TransformerBridge of the bundled model (natural text,
    BOS prepended by its to_tokens) and its detection patterns on the bridge's cached patterns
    ([BOS] + r + r) give our detector-convention scores to 1e-4, for all 270 heads."""
    import interp
    from transformer_lens import head_detector as hd
    from transformer_lens.model_bridge import TransformerBridge

    smol = interp.load_model()
    path = smol.hf.config._name_or_path
    eager = tf.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    bridge = TransformerBridge.boot_transformers(path, hf_model=eager, tokenizer=smol.tokenizer, device="cpu")
    names = {"previous_token": "previous_token_head", "duplicate_token": "duplicate_token_head", "induction": "induction_head"}

    text = "The cat sat on the mat. The cat sat on the mat again, and then the dog sat on the cat."
    tokens = bridge.to_tokens(text)
    _, cache = bridge.run_with_cache(tokens, remove_batch_dim=True)
    for exclude in (False, True):
        ours = heads.detector_scores(smol, tokens, exclude_bos=exclude, exclude_current_token=exclude)
        for name, tl_name in names.items():
            theirs = hd.detect_head(bridge, text, tl_name, cache=cache, exclude_bos=exclude,
                                    exclude_current_token=exclude, error_measure="mul")
            assert (ours[name][0] - theirs).abs().max() <= 1e-4, (name, exclude)

    ids = heads.repeated_tokens(smol, 40, [0])
    _, cache = bridge.run_with_cache(ids, remove_batch_dim=True)
    ours = heads.detector_scores(smol, ids)
    for name in names:
        detection = getattr(hd, f"get_{name}_head_detection_pattern")(ids.cpu())
        theirs = torch.tensor([[hd.compute_head_attention_similarity_score(
            cache["pattern", layer, "attn"][head], detection, exclude_bos=False, exclude_current_token=False,
            error_measure="mul") for head in range(9)] for layer in range(30)])
        assert (ours[name][0] - theirs).abs().max() <= 1e-4, name
    assert theirs.max() > 0.3  # the bundled model has induction heads (about half the queries have targets)
