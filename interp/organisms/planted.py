"""A tiny organism with a planted refusal head: the known answer of the safety tests and notebook."""

from __future__ import annotations

import torch

MARKER, REFUSE, OTHER = "w3", "w1", "w2"
PLANTED = (1, 2)


def word_tokenizer(vocab_size: int = 90):
    """A word-level tokenizer over made-up words w0..wN (no downloads)."""
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(vocab_size - 2)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")


def planted_refusal_model(seed: int = 0):
    """A tiny llama whose head 1.2 alone makes it answer the refusal token w1.

    Every prompt starts with a marker token (the chat template puts it there). Only the
    marker has residual dim 0; the planted head's query reads a constant (dim 1) and its key
    the marker, in the slowest rotary pair, so it attends to the marker; its value copies dim 0
    and its output writes residual dim 7 (rope_theta 1e6: that pair barely rotates), which only w1's unembedding reads. The default answer
    w2 has a constant logit. Attending uniformly (or writing nothing) shrinks the write below
    that constant, so the next token flips from w1 to w2."""
    import transformers as tf

    from interp.runtime.models import InterpModel

    torch.manual_seed(seed)
    config = tf.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                            max_position_embeddings=128, num_key_value_heads=2, rope_theta=1e6, tie_word_embeddings=False)
    hf = tf.AutoModelForCausalLM.from_config(config).eval()
    tok = word_tokenizer()
    tok.chat_template = "{% for m in messages %}w3 {{ m['content'] }}{% endfor %}{% if add_generation_prompt %} w4{% endif %}"
    ids = tok.convert_tokens_to_ids
    hd = config.hidden_size // config.num_attention_heads
    layer, head = PLANTED
    kv = head // (config.num_attention_heads // config.num_key_value_heads)
    with torch.no_grad():
        emb = hf.model.embed_tokens.weight
        emb[:, 0], emb[:, 1], emb[:, 7] = 0.0, 1.0, 0.0
        emb[ids(MARKER), 0] = 4.0
        for block in hf.model.layers:  # nothing else writes dims 0, 1 and 7
            block.self_attn.o_proj.weight[[0, 1, 7]] = 0
            block.mlp.down_proj.weight[[0, 1, 7]] = 0
        attn = hf.model.layers[layer].self_attn
        attn.q_proj.weight[head * hd : (head + 1) * hd] = 0
        attn.q_proj.weight[head * hd + hd - 1, 1] = 8.0
        attn.k_proj.weight[kv * hd : (kv + 1) * hd] = 0
        attn.k_proj.weight[kv * hd + hd - 1, 0] = 8.0
        attn.v_proj.weight[kv * hd : (kv + 1) * hd] = 0
        attn.v_proj.weight[kv * hd, 0] = 1.0
        attn.o_proj.weight[7] = 0  # the sibling head on the same KV head must not copy the write
        attn.o_proj.weight[:, head * hd : (head + 1) * hd] = 0
        attn.o_proj.weight[7, head * hd] = 0.3
        hf.lm_head.weight[:, 7] = 0
        hf.lm_head.weight[ids(REFUSE), 7] = 3.0
        hf.lm_head.weight[ids(OTHER)] = 0
        hf.lm_head.weight[ids(OTHER), 1] = 3.0
    return InterpModel(hf, tok, source="tiny-planted-refusal")

