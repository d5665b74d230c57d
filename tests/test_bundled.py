"""The bundled SmolLM2-135M-Instruct: loading, generation, full-model capture, and a
cross-check against TransformerLens' TransformerBridge."""

import pytest
import torch
import transformers as tf

import interp

pytestmark = pytest.mark.bundled


@pytest.fixture(scope="module")
def smol():
    return interp.load_model()


def test_second_load_uses_the_dequantised_cache(smol):
    again = interp.load_model()
    cached = again.hf.config._name_or_path
    assert "SmolLM2-135M-Instruct" in cached and (interp.runtime.models.cache_dir() / "models") in __import__("pathlib").Path(cached).parents
    assert smol.file_hash == again.file_hash and len(smol.file_hash) == 64
    L = again.layout
    assert (L.n_layers, L.n_heads, L.n_kv_heads, L.head_dim, L.max_positions) == (30, 9, 3, 64, 8192)


def test_answers_a_simple_question(smol):
    assert "Paris" in smol.generate("What is the capital of France?", max_new_tokens=16).text


def test_last_token_pattern_of_all_270_heads_matches_eager(smol):
    inputs = smol.tokenize("What is the capital of France?", chat=True)
    eager = tf.AutoModelForCausalLM.from_pretrained(smol.hf.config._name_or_path, attn_implementation="eager")
    with torch.no_grad():
        reference = torch.stack(eager(**inputs, output_attentions=True).attentions, dim=1)[..., -1:, :]
        with smol.capture(pattern=True, positions="last") as cap:
            smol.hf(**inputs)
    assert cap.pattern.shape == (1, 30, 9, 1, inputs["input_ids"].shape[1])
    assert (cap.pattern - reference).abs().max() <= 1e-4
    first_token = cap.pattern[0, :, :, 0, 0]
    assert (first_token > 0.5).sum() > 0  # SmolLM2 has attention-sink heads


def test_matches_transformerlens_bridge(smol):
    from transformer_lens.model_bridge import TransformerBridge

    path = smol.hf.config._name_or_path
    eager = tf.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    bridge = TransformerBridge.boot_transformers(path, hf_model=eager, tokenizer=smol.tokenizer, device="cpu")
    ids = smol.tokenize("The quick brown fox jumps over the lazy dog because")["input_ids"]
    _, cache = bridge.run_with_cache(ids)
    with torch.no_grad(), smol.capture(z=True, pattern=True) as cap:
        smol.hf(input_ids=ids)
    for layer in range(30):
        assert (cache[f"blocks.{layer}.attn.hook_z"] - cap[f"blocks.{layer}.attn.hook_z"]).abs().max() <= 1e-4
        assert (cache[f"blocks.{layer}.attn.hook_pattern"] - cap[f"blocks.{layer}.attn.hook_pattern"]).abs().max() <= 1e-4
    assert interp.load_model(bridge).layout.n_layers == 30  # a bridge is accepted as a source too
