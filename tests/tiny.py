"""Tiny random models of every supported architecture, built from configs (no downloads)."""

import copy

import torch
import transformers as tf

from interp import InterpModel

SMALL = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=128)


def _llama(**kw):
    return tf.LlamaConfig(**{**SMALL, "num_key_value_heads": 2, **kw})


CONFIGS = {
    "llama": lambda: _llama(),
    "mistral": lambda: tf.MistralConfig(**{**SMALL, "num_key_value_heads": 2, "sliding_window": 6}),
    "qwen2": lambda: tf.Qwen2Config(**{**SMALL, "num_key_value_heads": 1}),
    "gemma": lambda: tf.GemmaConfig(**{**SMALL, "num_key_value_heads": 2, "head_dim": 16}),
    "gemma2": lambda: tf.Gemma2Config(**{**SMALL, "num_key_value_heads": 2, "head_dim": 16, "sliding_window": 6,
                                          "attn_logit_softcapping": 5.0, "query_pre_attn_scalar": 16}),
    "gpt2": lambda: tf.GPT2Config(vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                                  attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0),
    "gpt_neox": lambda: tf.GPTNeoXConfig(**{**SMALL, "rotary_pct": 0.5}),
    "bert": lambda: tf.BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=96, max_position_embeddings=128,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    "llava": lambda: tf.LlavaConfig(
        text_config=_llama(),
        vision_config=tf.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                          num_attention_heads=2, image_size=32, patch_size=8),
        image_token_index=95, projector_hidden_act="gelu", vision_feature_layer=-1),
}
ARCHS = list(CONFIGS)


def build_hf(arch: str, attn: str = "eager", seed: int = 0):
    torch.manual_seed(seed)
    config = CONFIGS[arch]()
    if arch == "bert":
        model = tf.BertModel(config, add_pooling_layer=False)
    elif arch == "llava":
        model = tf.LlavaForConditionalGeneration(config)
    else:
        model = tf.AutoModelForCausalLM.from_config(config)
    model.set_attn_implementation(attn)
    return model.eval()


def pair(arch: str, seed: int = 0):
    """(eager transformers model, InterpModel with identical weights)."""
    eager = build_hf(arch, "eager", seed)
    return eager, InterpModel(copy.deepcopy(eager), source=f"tiny-{arch}")


def outputs(model, input_ids, attention_mask=None):
    """The model's main output tensor (logits, or hidden states for encoders)."""
    hf = model.hf if isinstance(model, InterpModel) else model
    out = hf(input_ids=input_ids, attention_mask=attention_mask)
    return out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state


def random_ids(batch=2, length=12, seed=1, vocab=90):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)


def tiny_tokenizer(vocab_size=90):
    """A word-level tokenizer over made-up words w0..wN (no downloads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(vocab_size - 2)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")


def save_tiny_llama(directory, seed: int = 0, **config):
    """A tiny random llama (SMALL with 2 KV heads, overridden by `config`) and its tokenizer
    saved to `directory`, for code that loads models from a path (CLI, device maps)."""
    torch.manual_seed(seed)
    tf.LlamaForCausalLM(tf.LlamaConfig(**{**SMALL, "num_key_value_heads": 2, **config})).save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory
