"""Loading from every kind of source, generation with per-step capture, input errors."""

import pytest
import torch

import interp
from interp import InterpError, StatsRequest, UniformAttention
from tests.tiny import build_hf, outputs, random_ids, tiny_tokenizer


@pytest.fixture(scope="module")
def llama():
    return interp.load_model(build_hf("llama"))


def test_load_from_local_directory_and_errors(tmp_path):
    hf = build_hf("qwen2")
    hf.save_pretrained(tmp_path / "tiny")
    with pytest.raises(InterpError, match="cannot load model"):
        interp.load_model(str(tmp_path / "nowhere"))  # no tokenizer/config there: clear error
    from transformers import AutoConfig
    assert AutoConfig.from_pretrained(tmp_path / "tiny").model_type == "qwen2"
    with pytest.raises(InterpError, match="no such GGUF file"):
        interp.load_model(tmp_path / "missing.gguf")
    with pytest.raises(InterpError, match="unknown dtype"):
        interp.load_model(hf, dtype="float8")


def test_layout_counts_query_and_kv_heads(llama):
    L = llama.layout
    assert (L.n_layers, L.n_heads, L.n_kv_heads, L.head_dim, L.max_positions) == (2, 4, 2, 16, 128)


def test_wraps_nnsight_model():
    from nnsight.modeling.transformers import TransformersModel  # nnsight's successor of LanguageModel

    hf = build_hf("llama")
    wrapped = interp.load_model(TransformersModel(hf, task="text-generation", tokenizer=tiny_tokenizer()))
    assert wrapped.hf is hf and wrapped.layout.n_layers == 2
    assert wrapped.tokenize("w3 w4 w5")["input_ids"].tolist() == [[5, 6, 7]]


def test_generation_captures_every_step_with_cache(llama):
    ids = random_ids(batch=1, length=7)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with llama.capture(pattern=True, stats=StatsRequest(argmax=True), positions="last") as cap:
        gen = llama.generate(inputs, max_new_tokens=5)
    assert cap.n_steps == 5
    assert cap.positions.tolist() == [6, 7, 8, 9, 10]
    # every decoding step agrees with a cache-free forward over the whole sequence
    full = torch.cat([ids, gen.new_ids], dim=1)
    with torch.no_grad(), llama.capture(pattern=True) as ref:
        outputs(llama, full)
    for step in range(5):
        pos = 6 + step
        assert torch.allclose(cap.get("pattern", step=step)[..., 0, :], ref.pattern[..., pos, : pos + 1], atol=1e-5)
    assert torch.equal(cap.argmax[0, :, :, 0], ref.pattern[0, :, :, 6].argmax(-1))


def test_decode_only_intervention_leaves_prefill_alone(llama):
    ids = random_ids(batch=1, length=7)
    with torch.no_grad():
        clean = outputs(llama, ids)
        with llama.intervene(UniformAttention("1.0", positions=slice(7, None), eps=0.0)):
            prefill = outputs(llama, ids)
            with llama.capture(pattern=True, layers=[1], heads=[0], positions="last") as cap:
                llama.generate({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, max_new_tokens=3)
    assert torch.equal(clean, prefill)
    decode_rows = [cap.get("pattern", step=s)[0, 0, 0, 0] for s in (1, 2)]
    for row in decode_rows:
        assert torch.allclose(row, torch.full_like(row, 1 / len(row)), atol=1e-6)


def test_prompt_longer_than_the_model_allows(llama):
    with pytest.raises(InterpError, match="allows 128"):
        llama({"input_ids": torch.zeros(1, 200, dtype=torch.long)})


@pytest.mark.parametrize("make", [
    lambda tf: tf.BloomForCausalLM(tf.BloomConfig(vocab_size=64, hidden_size=32, n_layer=2, n_head=4)),
    lambda tf: tf.MambaForCausalLM(tf.MambaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, state_size=4)),
])
def test_unsupported_architectures_get_a_clear_error(make):
    import transformers as tf

    with pytest.raises(InterpError, match="interp cannot"):
        interp.load_model(make(tf))
