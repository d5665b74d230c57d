"""Tiny random models of every supported architecture, built from configs (no downloads), and the
helpers that several test modules share (test modules import from here, never from each other):
tiny models saved to disk, a small fake analysis with resume, a tiny LLaVA with planted sinks and a real
photo, the circuits tests' tiny model, the head explorer under AppTest, and headless Chromium's flags."""

import copy
import functools
import sys
import types
from pathlib import Path

import pandas as pd
import torch
import transformers as tf

from interp import InterpModel
from interp.base.progress import track

REPO = Path(__file__).resolve().parent.parent

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
    # Gemma 3 270M in small: QK-norm, one KV head, head_dim != hidden / heads, a global layer and a window
    # layer whose window (4) the 12-token test sequences exceed
    "gemma3": lambda: tf.Gemma3TextConfig(**{**SMALL, "num_key_value_heads": 1, "head_dim": 32, "query_pre_attn_scalar": 24,
                                              "sliding_window": 4, "layer_types": ["full_attention", "sliding_attention"]}),
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


def save_tiny_model(directory: Path) -> Path:
    """build_hf("llama") (128 positions) and tiny_tokenizer saved to `directory`."""
    build_hf("llama").save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory


def save_tiny_long_model(directory: Path) -> Path:
    """A tiny random llama with 1024 positions: room for retrieval's haystacks."""
    return save_tiny_llama(directory, max_position_embeddings=1024)


# ---- a small, real analysis with resume (stands in for an analysis in CLI and app tests) ------------


def tiny_prompts(samples: int, max_length: int, seed: int) -> list[str]:
    """Prompts in the tiny tokenizer's made-up words w0..w87."""
    import random

    rng = random.Random(seed)
    return [" ".join(f"w{rng.randrange(88)}" for _ in range(rng.randint(max_length // 2, max_length))) for _ in range(samples)]


def make_analysis(name: str, key: str, calls: list, interrupt_after: int | None = None, fail: bool = False):
    """An analysis module scoring each head by the mean attention of the last query to the
    first key (key="first") or to the key before it (key="previous")."""

    def scan(model, *, samples=None, max_length=None, seed=0, results=None, **options):
        if fail:
            raise RuntimeError("this analysis always fails")
        done = results.load_progress(name) if results is not None else {}
        rows = []
        for index, text in enumerate(track(tiny_prompts(samples or 6, max_length or 16, seed), name)):
            if index not in done:
                with model.capture(pattern=True, positions="last") as cap:
                    model(text)
                pattern = cap.pattern[0, :, :, 0]  # [layer, head, key]
                column = 0 if key == "first" else pattern.shape[-1] - 2
                done[index] = {"scores": pattern[..., column].tolist()}
                calls.append(index)
                if results is not None:
                    results.save_progress(name, index, done[index])
                if interrupt_after is not None and len(calls) >= interrupt_after:
                    raise KeyboardInterrupt
            for layer, per_head in enumerate(done[index]["scores"]):
                rows += [dict(sample=index, layer=layer, head=head, score=s) for head, s in enumerate(per_head)]
        per_sample = pd.DataFrame(rows)
        heads = per_sample.groupby(["layer", "head"], as_index=False)["score"].mean()
        return {"heads": heads, "samples": per_sample}

    module = types.ModuleType(f"fake_analysis_{name}")
    module.scan, module.PARAMS = scan, ("samples", "max_length", "seed")
    return module


# ---- a tiny LLaVA with planted text and visual sinks, fed a real photo --------------------------------

DIM = 7  # the hidden dimension that carries a planted massive activation
MASSIVE = 300.0
IMAGE_TOKEN_ID = 95  # CONFIGS["llava"] image_token_index
VISUAL_SINK_PATCHES = (2, 7)  # image tokens made visual sinks by plant_visual_sinks
IMAGE_PROMPT = "w0 <image> w5 w6 w7 w8"


def plant_massive(embedding: torch.nn.Embedding, token_id: int, dim: int = DIM, value: float = MASSIVE):
    """Only `token_id` has hidden dimension `dim`, and a huge value there."""
    with torch.no_grad():
        embedding.weight[:, dim] = 0
        embedding.weight[token_id, dim] = value


def llava_tokenizer():
    """tiny_tokenizer's words plus "<image>" at the config's image token id."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(IMAGE_TOKEN_ID - 2)}, "<image>": IMAGE_TOKEN_ID}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>",
                                           extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})  # never split "<image>"
    return tokenizer


def llava_processor(config):
    vision = config.vision_config
    # The PIL image processor is CLIPImageProcessor without its torchvision backend (not installed here).
    processor_class = tf.CLIPImageProcessorPil if hasattr(tf, "CLIPImageProcessorPil") else tf.CLIPImageProcessor
    image_processor = processor_class(
        size={"shortest_edge": vision.image_size}, crop_size={"height": vision.image_size, "width": vision.image_size})
    return tf.LlavaProcessor(image_processor=image_processor, tokenizer=llava_tokenizer(), patch_size=vision.patch_size,
                             vision_feature_select_strategy=config.vision_feature_select_strategy, num_additional_image_tokens=1)


def photo():
    from PIL import Image
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image("china.jpg"))


def plant_visual_sinks(hf, patches=VISUAL_SINK_PATCHES, dim: int = DIM, vision_dim: int = 5, value: float = MASSIVE):
    """The image tokens of `patches` (whatever the photo) get a massive activation in the
    language model's dimension `dim`: their CLIP position embeddings alone carry vision
    dimension `vision_dim`, and one projector unit, thresholded, copies it into `dim`."""
    vision, projector = hf.model.vision_tower, hf.model.multi_modal_projector
    with torch.no_grad():
        vision.embeddings.patch_embedding.weight[vision_dim] = 0
        vision.embeddings.position_embedding.weight[:, vision_dim] = 0
        for patch in patches:
            vision.embeddings.position_embedding.weight[1 + patch, vision_dim] = 50.0  # row 0 is the CLS token
        unit = 0
        projector.linear_1.weight[unit] = 0
        projector.linear_1.weight[unit, vision_dim] = 10.0
        projector.linear_1.bias[unit] = -30.0  # fires only where vision_dim is ~sqrt(32) after LayerNorm, not ~0
        projector.linear_2.weight[dim] = 0
        projector.linear_2.weight[dim, unit] = value / 25.0
        projector.linear_2.bias[dim] = 0


def tiny_llava() -> InterpModel:
    """The tiny random LLaVA: a planted text sink ("w0", the first word) and visual sinks."""
    hf = build_hf("llava")
    processor = llava_processor(hf.config)
    plant_massive(hf.model.language_model.embed_tokens, processor.tokenizer.convert_tokens_to_ids("w0"))
    plant_visual_sinks(hf)
    return InterpModel(hf, processor.tokenizer, processor, source="tiny-llava")


# ---- circuits: a 3-layer model whose tokenizer knows every task word ---------------------------------

CIRCUIT_HEADS = [(0, 1), (1, 3), (2, 0), (2, 2)]  # with circuits_model(only=CIRCUIT_HEADS), the heads that write


@functools.cache
def word_tokenizer():
    """Whole words (and punctuation) of every bundled task are single tokens."""
    import re

    from tokenizers import Tokenizer, models, pre_tokenizers

    from interp.data import tasks

    text = " ".join(tasks.IOI_TEMPLATES) + " Q On the table I see a an What color is A"
    words = set(re.findall(r"\w+|[^\w\s]", text)) - {"A", "B", "S", "place", "gift"} | {"A"}
    words |= set(tasks.NAMES + tasks.PLACES + tasks.GIFTS + tasks.COLOURS + tasks.OBJECTS + tasks.WORDS)
    vocab = {"<unk>": 0, "<eos>": 1, **{w: i + 2 for i, w in enumerate(sorted(words))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")


def circuits_model(only=None, seed=0, dtype=torch.float64, arch="llama") -> InterpModel:
    """A 3-layer llama (4 heads, 2 KV heads) or gpt2 over word_tokenizer(); with `only`, the other
    heads' output-projection columns are zero, so they write nothing."""
    tokenizer = word_tokenizer()
    torch.manual_seed(seed)
    if arch == "llama":
        config = tf.LlamaConfig(**{**SMALL, "num_key_value_heads": 2, "num_hidden_layers": 3, "vocab_size": len(tokenizer)})
    else:  # its layer norms keep float64 (llama's RMSNorm computes in float32)
        config = tf.GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=3, n_head=4, n_positions=128, attn_pdrop=0.0,
                               resid_pdrop=0.0, embd_pdrop=0.0, bos_token_id=1, eos_token_id=1)
    hf = tf.AutoModelForCausalLM.from_config(config).to(dtype).eval()
    with torch.no_grad():
        for module in hf.modules():  # larger weights: logit differences well above rounding
            if isinstance(getattr(module, "weight", None), torch.Tensor) and module.weight.dim() == 2:
                module.weight.mul_(4)
    model = InterpModel(hf, tokenizer, source="tiny-circuits")
    if only is not None:
        d = model.layout.head_dim
        with torch.no_grad():
            for layer, site in enumerate(model.sites):
                for head in range(model.layout.n_heads):
                    if (layer, head) not in only:
                        site.output_projection.weight[:, head * d : (head + 1) * d] = 0
    return model


# ---- the head explorer (apps/head_explorer.py) under streamlit's AppTest ------------------------------

APP = REPO / "apps" / "head_explorer.py"
FAKE_ANALYSES = {"first_token": "first", "previous_token": "previous"}  # make_analysis keys


def make_results(root: Path) -> Path:
    """root/results: first_token and previous_token of root/tiny, as `interp scan` writes them."""
    import pytest
    from typer.testing import CliRunner

    import interp.analyses
    import interp.cli

    tiny = save_tiny_model(root / "tiny")
    with pytest.MonkeyPatch.context() as mp:
        for name, key in FAKE_ANALYSES.items():
            module = make_analysis(name, key, calls=[])
            mp.setitem(sys.modules, module.__name__, module)
            mp.setitem(interp.analyses.ANALYSES, name, module.__name__)
        result = CliRunner().invoke(interp.cli.app, ["scan", "--model", str(tiny), "--analyses", ",".join(FAKE_ANALYSES),
                                                     "--samples", "6", "--out", str(root / "results")])
    assert result.exit_code == 0, result.output
    return root / "results"


def app_on(directory, monkeypatch):
    """The app as `streamlit run apps/head_explorer.py -- DIR` starts it (a streamlit AppTest, run once)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(sys, "argv", [str(APP)] + ([str(directory)] if directory else []))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def charts(at) -> list[dict]:
    """The plotly figures an AppTest shows, as JSON."""
    import json

    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def values(array):
    """A plotly JSON array as a numpy array: a list, or plotly's base64 form {"bdata", "dtype", "shape"}."""
    import base64

    import numpy as np

    if isinstance(array, dict):
        shape = [int(n) for n in str(array.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).reshape(shape)
    return np.asarray(array)


# ---- Debian's headless Chromium (never `playwright install`) ----------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
