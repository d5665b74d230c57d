"""Head divergence with and without a context (He et al., ACL 2025; METHODS.md section 4).

A head's divergence is how far its output z moves, at the last prompt position (the query
that produces the first generated token), when the context is taken out of the sequence:

    VHD(l, h) = || z[l,h](with the span) - z[l,h](span removed) ||_2

For a LLaVA-family model the span is the image: its tokens are removed and pixel_values
dropped (vision-aware head divergence). For a text model it is any marked span of tokens,
a passage or a retrieved document (context divergence, "CD": our text-only
generalisation). Next to the L2 distance we report the cosine distance and ||dz|| / ||z||
(z without the span), so one can see how much a head's norm drives its score.

- T-VHD of a generated token: the sum over layers of each layer's top-k VHD at the
  position that produced the token (k = TOP_K = 4, one in eight of LLaVA-1.5's 32 heads).
- Outlier filter: VHD -> 0 where both VHD and the span-free norm ||z||^2 exceed their
  layer's mean + std (a head that surges everywhere is not reading the context).
- VHR (reinforcement): in each selected layer the heads whose (filtered) VHD is above the
  layer's median get z <- alpha z (alpha = 2). It runs layer by layer inside one forward
  of the pair (with / without the span, batched): a layer's VHD is read after the earlier
  layers were reinforced in both rows (interp.LayerEdit). The heads are fixed after this
  first step and generation scales them at every position (ScaleHead), so the KV cache is
  the reinforced one. Default layers: layer 1 plus the last 14/32 of the depth (LLaVA-1.5:
  1 and 18-31).

    d = vhd(model, inputs, (start, end))              # Divergence: l2, cosine, ratio, norm_sq [L, H]
    r = vhr(model, inputs, (start, end))              # Reinforcement: heads, scores, logits
    gen, r = generate_vhr(model, inputs, None)        # a LLaVA caption with VHR
    tokens = t_vhd(model, inputs, gen.new_ids)        # T-VHD of every generated token
    tables = scan(model)                              # interp scan --analyses context | vhd
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd
import torch

from interp.analyses.head_sets import head_table, top_text
from interp.analyses.sinks import has_vision, image_inputs, image_positions, image_samples
from interp.base.errors import InterpError
from interp.data.probes import seeded_subset
from interp.data.scenes import default_images
from interp.runtime.interventions import LayerEdit, ScaleHead
from interp.base.progress import track

MEASURE = "head divergence"  # the head table's score: mean ||z with the span - z without it|| (CD or VHD below)
TOP_K = 4  # T-VHD: heads per layer summed
ALPHA = 2.0  # VHR's reinforcement factor (alpha = 4 degenerates in the paper)
LATE_SHARE = 14 / 32  # VHR layers: layer 1 plus this share of the last layers (LLaVA-1.5: 14 of 32)
IMAGE_KEYS = ("pixel_values", "image_sizes", "pixel_attention_mask", "image_grid_thw")
BATCH = 16  # pairs per forward in scan()


# ---- inputs: the sequence with and without the span ------------------------------------------


def span_positions(model, inputs: dict, context_span=None) -> list[int]:
    """Positions to remove: a (start, end) span, a list of spans, or None = the image tokens."""
    if context_span is None:
        positions = image_positions(model, inputs)
        if not positions:
            raise InterpError("no context span given and no image tokens found: pass context_span=(start, end)")
        return positions
    spans = [context_span] if isinstance(context_span[0], int) else list(context_span)
    n = inputs["input_ids"].shape[1]
    positions = sorted({p for start, end in spans for p in range(start, end)})
    if not positions or positions[0] < 0 or positions[-1] >= n:
        raise InterpError(f"context span {context_span} is empty or outside the {n}-token prompt")
    if len(positions) >= n - 1:
        raise InterpError("the context span covers the whole prompt: leave at least the question outside it")
    return positions


def without_span(model, inputs: dict, positions: list[int]) -> dict:
    """The same single-sequence inputs with `positions` removed; the image is dropped with its tokens."""
    if inputs["input_ids"].shape[0] != 1:
        raise InterpError("divergence takes one sequence at a time (batch size 1)")
    n = inputs["input_ids"].shape[1]
    keep = torch.ones(n, dtype=torch.bool, device=inputs["input_ids"].device)
    keep[positions] = False
    out = {"input_ids": inputs["input_ids"][:, keep]}
    if "attention_mask" in inputs:
        out["attention_mask"] = inputs["attention_mask"][:, keep]
    image = set(image_positions(model, inputs))
    removed = image & set(positions)
    if image and not removed:  # a text span of a prompt with an image: the image stays
        out.update({k: v for k, v in inputs.items() if k in IMAGE_KEYS})
    elif removed and removed != image:
        raise InterpError("the context span cuts through the image: remove all of its tokens or none")
    return out


def pad_batch(model, sequences: list[dict]) -> dict:
    """One batch from single sequences: left padding (the last positions line up), position
    ids that count real tokens only, and the images of the rows that have one, in row order."""
    pad = getattr(model.tokenizer, "pad_token_id", None) if model.tokenizer is not None else None
    pad = 0 if pad is None else pad
    width = max(s["input_ids"].shape[1] for s in sequences)
    ids, masks = [], []
    for s in sequences:
        n = s["input_ids"].shape[1]
        ids.append(torch.cat([s["input_ids"].new_full((1, width - n), pad), s["input_ids"]], dim=1))
        mask = s.get("attention_mask", torch.ones_like(s["input_ids"]))
        masks.append(torch.cat([mask.new_zeros((1, width - n)), mask], dim=1))
    mask = torch.cat(masks)
    batch = {"input_ids": torch.cat(ids), "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp_min(0)}
    for key in IMAGE_KEYS:
        parts = [s[key] for s in sequences if key in s]
        if parts:
            batch[key] = torch.cat(parts)
    return batch


def pair_batch(model, items: list[tuple[dict, object]]) -> dict:
    """Rows 0..B-1: the sequences with their span; rows B..2B-1: the same without it."""
    with_span = [inputs for inputs, _ in items]
    without = [without_span(model, inputs, span_positions(model, inputs, span)) for inputs, span in items]
    return pad_batch(model, with_span + without)


# ---- divergence --------------------------------------------------------------------------------


@dataclass
class Divergence:
    """Per head ([..., layer, head]) at the last prompt position."""

    l2: torch.Tensor  # || z_with - z_without ||: VHD / CD
    cosine: torch.Tensor  # 1 - cos(z_with, z_without)
    ratio: torch.Tensor  # || dz || / || z_without ||
    norm_sq: torch.Tensor  # || z_without ||^2, for the outlier filter

    @property
    def filtered(self) -> torch.Tensor:
        return outlier_filter(self.l2, self.norm_sq)


def measures(z_with: torch.Tensor, z_without: torch.Tensor) -> Divergence:
    """Divergence of head outputs [..., head_dim] (float32)."""
    z_with, z_without = z_with.float(), z_without.float()
    l2 = (z_with - z_without).norm(dim=-1)
    norm = z_without.norm(dim=-1)
    cosine = 1 - torch.nn.functional.cosine_similarity(z_with, z_without, dim=-1, eps=1e-12)
    return Divergence(l2, cosine, l2 / norm.clamp_min(1e-12), norm.pow(2))


def outlier_filter(l2: torch.Tensor, norm_sq: torch.Tensor) -> torch.Tensor:
    """VHD set to 0 where VHD and ||z||^2 (no span) both exceed mean + std of their layer (last dim = heads)."""
    def above(x):
        return x > x.mean(-1, keepdim=True) + x.std(-1, keepdim=True)

    return torch.where(above(l2) & above(norm_sq), torch.zeros_like(l2), l2)


@torch.no_grad()
def divergence(model, items: list[tuple[dict, object]]) -> Divergence:
    """Divergence of B (inputs, span) pairs in one forward of 2B rows: [B, layer, head]."""
    batch = pair_batch(model, items)
    with model.capture(z=True, positions="last") as cap:
        model.base_forward(batch)  # only z is read: no [tokens, vocab] logits
    z = cap.z[:, :, :, -1]  # [2B, L, H, d]
    return measures(z[: len(items)], z[len(items):])


def vhd(model, inputs: dict, context_span=None) -> Divergence:
    """VHD (image) or CD (text span) of every head for one prompt: tensors [layer, head].
    context_span: (start, end), a list of them, or None for the image tokens."""
    d = divergence(model, [(inputs, context_span)])
    return Divergence(d.l2[0], d.cosine[0], d.ratio[0], d.norm_sq[0])


def top_k_sum(scores: torch.Tensor, k: int = TOP_K) -> torch.Tensor:
    """T-VHD: sum over layers of the top-k heads of each layer, scores [..., layer, head]."""
    k = min(k, scores.shape[-1])
    return scores.topk(k, dim=-1).values.sum((-1, -2))


@torch.no_grad()
def t_vhd(model, inputs: dict, new_ids: torch.Tensor, context_span=None, k: int = TOP_K, filtered: bool = True) -> pd.DataFrame:
    """T-VHD of every generated token: prompt + new_ids [1, T] run with and without the span
    (one batched forward, teacher forcing); token t is scored at the position that produced it."""
    if new_ids.shape[1] == 0:
        raise InterpError("no generated tokens to score")
    positions = span_positions(model, inputs, context_span)
    full = dict(inputs, input_ids=torch.cat([inputs["input_ids"], new_ids], dim=1))
    if "attention_mask" in inputs:
        full["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(new_ids)], dim=1)
    batch = pad_batch(model, [full, without_span(model, full, positions)])
    width, n_new = batch["input_ids"].shape[1], new_ids.shape[1]
    with model.capture(z=True, positions=slice(width - n_new - 1, width - 1)) as cap:
        model.base_forward(batch)
    z = cap.z.permute(0, 3, 1, 2, 4)  # [2, T, L, H, d]
    d = measures(z[0], z[1])
    scores = d.filtered if filtered else d.l2  # [T, L, H]
    tokenizer = model.tokenizer or getattr(model.processor, "tokenizer", None)
    ids = new_ids[0].tolist()
    return pd.DataFrame({
        "index": range(n_new), "token_id": ids,
        "token": [tokenizer.decode([i]) if tokenizer is not None else str(i) for i in ids],
        "t_vhd": top_k_sum(scores, k).tolist(),
    })


# ---- VHR: reinforcement, layer by layer in one forward ---------------------------------------


def default_layers(n_layers: int) -> list[int]:
    """Layer 1 plus the last 14/32 of the layers (LLaVA-1.5-7B: 1 and 18-31)."""
    late = max(1, round(n_layers * LATE_SHARE))
    return sorted({min(1, n_layers - 1), *range(n_layers - late, n_layers)})


@dataclass
class Reinforcement:
    chosen: torch.Tensor  # bool [B, layer, head]: the heads scaled, per pair
    scores: torch.Tensor  # [B, layer, head]: the divergence each selected layer saw (nan elsewhere)
    logits: torch.Tensor  # [B, vocab]: next-token logits of the rows with the span, reinforced
    alpha: float

    def heads(self, row: int = 0) -> tuple[tuple[int, int], ...]:
        return tuple((int(l), int(h)) for l, h in self.chosen[row].nonzero().tolist())


class _LayerByLayer:
    """The LayerEdit rule: at a selected layer, read each pair's divergence at the last
    position, pick heads by the median rule, scale them in both
    rows of the pair, then let the forward go on to the next layer."""

    def __init__(self, n_pairs: int, shape, alpha: float, filtered: bool, pick: str):
        self.n, self.alpha, self.filtered, self.pick = n_pairs, alpha, filtered, pick
        self.chosen = torch.zeros(n_pairs, *shape, dtype=torch.bool)
        self.scores = torch.full((n_pairs, *shape), float("nan"))

    def __call__(self, layer: int, z: torch.Tensor, q_offset: int) -> torch.Tensor:
        if q_offset == 0:  # the prompt: decide (a cached decoding step would reuse the choice)
            d = measures(z[: self.n, -1], z[self.n :, -1])  # [B, H]
            score = d.filtered if self.filtered else d.l2
            self.scores[:, layer] = score.cpu()
            median = score.quantile(0.5, dim=-1, keepdim=True)
            self.chosen[:, layer] = (score > median if self.pick == "top" else score < median).cpu()
        chosen = self.chosen[:, layer].to(z.device)
        factor = 1 + (self.alpha - 1) * torch.cat([chosen, chosen]).to(z.dtype)  # both rows of a pair
        return z * factor[:, None, :, None]


@torch.no_grad()
def reinforce_pairs(model, items: list[tuple[dict, object]], layers: list[int] | None = None, alpha: float = ALPHA,
                    filtered: bool = True, pick: str = "top") -> Reinforcement:
    """VHR on B (inputs, span) pairs in one forward of 2B rows. pick="top": heads above the
    layer median (the paper's rule); "bottom": below it (a control)."""
    if pick not in ("top", "bottom"):
        raise InterpError(f"pick must be 'top' or 'bottom', not '{pick}'")
    L = model.layout
    layers = default_layers(L.n_layers) if layers is None else sorted(layers)
    for layer in layers:
        L.check_head(layer, 0)
    rule = _LayerByLayer(len(items), (L.n_layers, L.n_heads), alpha, filtered, pick)
    batch = pair_batch(model, items)
    with model.intervene(LayerEdit(layers=layers, edit=rule)):
        logits = model.hf(**batch, logits_to_keep=1).logits[: len(items), -1].float()
    return Reinforcement(rule.chosen, rule.scores, logits, alpha)


def vhr(model, inputs: dict, context_span=None, layers: list[int] | None = None, alpha: float = ALPHA,
        filtered: bool = True) -> Reinforcement:
    """The heads VHR reinforces for one prompt (r.heads()), chosen layer by layer."""
    return reinforce_pairs(model, [(inputs, context_span)], layers, alpha, filtered)


def generate_vhr(model, inputs: dict, context_span=None, max_new_tokens: int = 32, layers: list[int] | None = None,
                 alpha: float = ALPHA, filtered: bool = True):
    """Greedy generation with VHR: heads chosen on the prompt (one pass with / without the
    span), then fixed and scaled at every position of the prefill and of every decoding step."""
    r = vhr(model, inputs, context_span, layers, alpha, filtered)
    heads = r.heads()
    if not heads:
        return model.generate(inputs, max_new_tokens=max_new_tokens, output_logits=True), r
    with model.intervene(ScaleHead(heads, factor=alpha)):
        return model.generate(inputs, max_new_tokens=max_new_tokens, output_logits=True), r


# ---- where a head looks in the image ------------------------------------------------------------


@torch.no_grad()
def image_attention(model, inputs: dict, layer: int, head: int, position: int = -1) -> torch.Tensor:
    """A head's attention on each image token, [rows, cols] in the image's grid (the tokens are
    the grid flattened row by row, as LLaVA-family models with square grids lay them out), from
    the query at `position` (default the last prompt position, the one VHD reads). Sums to the
    head's image mass there (at most 1)."""
    model.layout.check_head(layer, head)
    image = image_positions(model, inputs)
    if not image:
        raise InterpError("no image tokens in these inputs: build them with analyses.sinks.image_inputs(model, image, prompt)")
    side = int(round(len(image) ** 0.5))
    if side * side != len(image):
        raise InterpError(f"{len(image)} image tokens do not form a square grid: read cap.pattern for this model instead")
    n = inputs["input_ids"].shape[1]
    query = position % n
    with model.capture(pattern=True, layers=[layer], heads=[head], positions=[query]) as cap:
        model.base_forward(inputs)
    row = cap.pattern[0, 0, 0, 0].float().cpu()  # [keys]
    return row[image].reshape(side, side)


def image_as_seen(model, image):
    """The image as the model's processor hands it to the encoder (resized and cropped, not
    normalized): the area image_attention's grid covers, for drawing the grid over it (a
    non-square photo loses its sides to a centre crop in LLaVA-family processors)."""
    from PIL import Image

    processor = getattr(model.processor, "image_processor", None)
    if processor is None:
        raise InterpError("no image processor: load a vision-language model with its processor (load_model(path))")
    pixels = processor(image.convert("RGB"), do_normalize=False, do_rescale=False, return_tensors="np")["pixel_values"][0]
    return Image.fromarray(pixels.transpose(1, 2, 0).clip(0, 255).astype("uint8"))


# ---- data: counterfactual-context questions -------------------------------------------------------


def load_counterfactual(path=None, known_only: bool = True) -> list[dict]:
    """The bundled counterfactual-context questions (interp/data/counterfactual.jsonl) or a
    JSONL file of {context, question, stem, memory, counterfactual, id}. known_only keeps the
    bundled items the bundled model answers right without the context (its recorded filter).
    An item without an id gets "line:<n>", its line number in the file (the scan's sample key)."""
    if path is None:
        text = resources.files("interp").joinpath("data", "counterfactual.jsonl").read_text(encoding="utf-8")
    else:
        path = Path(path)
        if not path.is_file() or path.stat().st_size == 0:
            raise InterpError(f"counterfactual file {path} is missing or empty; pass a JSONL file of {{context, question, stem}}")
        text = path.read_text(encoding="utf-8")
    try:
        lines = [(n, json.loads(line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    except json.JSONDecodeError as e:
        raise InterpError(f"counterfactual file is not JSONL ({e.msg} on line {e.lineno})") from None
    items = []
    for n, item in lines:
        missing = [k for k in ("context", "question", "stem") if not isinstance(item, dict) or k not in item]
        if missing:
            raise InterpError(f"counterfactual item on line {n} lacks {', '.join(missing)}")
        items.append({"id": f"line:{n}", **item})
    return [item for item in items if not known_only or item.get("known", True)]


def context_prompt(model, item: dict) -> tuple[dict, tuple[int, int]]:
    """Token ids of "Context: ...\\nQuestion: ...\\nAnswer: <stem>" and the context's span,
    built from separately tokenized pieces so the span is exact."""
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise InterpError("context divergence needs a tokenizer")
    pieces = [f"Context: {item['context']}\n", f"Question: {item['question']}\nAnswer: {item['stem']}"]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in pieces]
    prefix = tokenizer("", add_special_tokens=True)["input_ids"]  # BOS if the tokenizer adds one
    all_ids = prefix + ids[0] + ids[1]
    model.check_length(len(all_ids))
    span = (len(prefix), len(prefix) + len(ids[0]))
    return {"input_ids": torch.tensor([all_ids], device=model.device)}, span


# ---- scan -------------------------------------------------------------------------------------------


def _head_rows(d: Divergence, layout) -> pd.DataFrame:
    """Mean over samples of [B, L, H] divergences -> one row per head."""
    filtered = d.filtered
    median = d.l2.quantile(0.5, dim=-1, keepdim=True)
    return head_table(layout, {
        "score": d.l2.mean(0),  # mean VHD / CD
        "filtered": filtered.mean(0),  # mean after the outlier filter
        "cosine": d.cosine.mean(0),
        "ratio": d.ratio.mean(0),
        "norm_sq": d.norm_sq.mean(0),
        "outlier_rate": ((filtered == 0) & (d.l2 > 0)).float().mean(0),
        "above_median": (d.l2 > median).float().mean(0),  # how often VHR's rule would pick it
    })


def _sample_rows(d: Divergence, keys: list[str], layout) -> pd.DataFrame:
    """One row per (sample, layer, head): the explorer shows a head's spread over samples."""
    return head_table(layout, {"score": d.l2, "filtered": d.filtered, "cosine": d.cosine, "ratio": d.ratio}, samples=keys)


def _run(model, name: str, samples: list[tuple[str, callable]], results) -> Divergence:
    """Divergence of every sample, BATCH pairs per forward, resumable per batch."""
    done = results.load_progress(name) if results is not None else {}
    batches = [samples[i : i + BATCH] for i in range(0, len(samples), BATCH)]
    parts = []
    for batch in track(batches, name):
        key = ",".join(k for k, _ in batch)
        if key not in done:
            d = divergence(model, [make() for _, make in batch])
            done[key] = {f: getattr(d, f).tolist() for f in ("l2", "cosine", "ratio", "norm_sq")}
            if results is not None:
                results.save_progress(name, key, done[key])
        parts.append(done[key])
    return Divergence(*(torch.tensor([x for p in parts for x in p[f]]) for f in ("l2", "cosine", "ratio", "norm_sq")))


def scan_context(model, *, samples=None, max_length=None, seed=0, results=None,
                 items: str | list | None = None) -> dict[str, pd.DataFrame]:
    """Context divergence (CD) of every head over counterfactual-context questions
    (the bundled ones, or items=a JSONL path / list of {context, question, stem}). Samples are
    keyed by the items' ids; an item of a list without one by "item:<its place in the list>"."""
    items = load_counterfactual(items) if items is None or isinstance(items, (str, Path)) else list(items)
    if not items:
        raise InterpError("no counterfactual items to scan")
    keys = [str(item.get("id", f"item:{i}")) for i, item in enumerate(items)]
    if len(set(keys)) < len(keys):
        raise InterpError("counterfactual items share an id: give every item its own (the key of its samples)")
    chosen = seeded_subset(zip(keys, items), samples, seed)
    todo = [(key, lambda item=item: context_prompt(model, item)) for key, item in chosen]
    if max_length:
        todo = [(k, make) for k, make in todo if make()[0]["input_ids"].shape[1] <= max_length]
        if not todo:
            raise InterpError(f"every prompt is longer than --max-length {max_length}")
    d = _run(model, "context", todo, results)
    summary = pd.DataFrame({"metric": ["samples"], "value": [float(len(todo))], "detail": ["counterfactual-context prompts"]})
    return {"heads": _head_rows(d, model.layout), "samples": _sample_rows(d, [k for k, _ in todo], model.layout),
            "summary": summary}


DEFAULT_SCENES = 32  # scenes vhd runs on without --images


def default_scenes() -> list[tuple[str, object]]:
    """(key, PIL image) of the DEFAULT_SCENES held-out scenes vhd runs on (interp.data.scenes.default_images)."""
    return default_images(DEFAULT_SCENES)


def scan_vhd(model, *, samples=None, max_length=None, seed=0, results=None, images: str | list | None = None,
             prompt="Describe the image.", max_new_tokens: int = 16, k: int = TOP_K) -> dict[str, pd.DataFrame]:
    """VHD of every head over a user's images (a folder, or (name, PIL image) pairs; default:
    held-out synthetic scenes, default_scenes()), each with `prompt` (or a prompts.txt in the
    folder: one line per image, in file order), and T-VHD of the tokens of each image's greedy caption."""
    if not has_vision(model):
        raise InterpError(f"vhd needs a vision-language model (LLaVA family); {model.source or 'this model'} has no "
                          "vision tower: use --analyses context for text models")
    # default: held-out synthetic scenes (interp.data.scenes), with a known scene graph
    listed = image_samples(model, default_scenes() if images is None else images, prompt)
    chosen = [listed[i] for i in seeded_subset(range(len(listed)), samples, seed)]
    todo = [(key, lambda im=image, p=text: (image_inputs(model, im, p), None)) for key, image, text in chosen]
    d = _run(model, "vhd", todo, results)
    tokens = []
    for key, make in track(todo, "t-vhd"):
        inputs, _ = make()
        gen = model.generate(inputs, max_new_tokens=max_new_tokens)
        if gen.new_ids.shape[1]:
            tokens.append(t_vhd(model, inputs, gen.new_ids, k=k).assign(sample=key))
    summary = pd.DataFrame({"metric": ["samples"], "value": [float(len(todo))], "detail": ["images"]})
    out = {"heads": _head_rows(d, model.layout), "samples": _sample_rows(d, [k for k, _ in todo], model.layout),
           "summary": summary}
    if tokens:
        out["tokens"] = pd.concat(tokens, ignore_index=True)
    return out


class Analysis:
    """What the registry and `interp scan` use: a scan(), the PARAMS that identify a run (described
    by PARAM_HELP), the MEASURE its score is and its headline."""

    def __init__(self, name: str, scan, params: dict[str, str], measure: str):
        self.NAME, self.scan, self.PARAMS = name, scan, tuple(params)  # `interp scan --images DIR` passes images= (in PARAMS)
        self.PARAM_HELP = params
        self.MEASURE = measure  # what the head table's score is

    def headline(self, tables: dict[str, pd.DataFrame]) -> list[str]:
        """What `interp scan` prints and the report lists: the top heads, and over how many samples."""
        samples = tables["summary"].set_index("metric").loc["samples"]
        return [f"{self.MEASURE}: top {top_text(tables['heads'])} (over {samples['value']:.0f} {samples['detail']})"]


CONTEXT = Analysis("context", scan_context, {
    "samples": "questions scored (default: all bundled ones)",
    "max_length": "prompts with more tokens are left out",
    "seed": "seed of the question subset",
    "items": "a JSONL file of {context, question, stem} (default: the bundled counterfactual questions)",
}, "context divergence (CD)")
VHD = Analysis("vhd", scan_vhd, {
    "samples": "images scored (default: all)",
    "max_length": "not used by vhd",
    "seed": "seed of the image subset",
    "images": "an image folder: jpg/png, optional prompts.txt with one line per image (default: 32 held-out synthetic scenes)",
    "prompt": "the prompt of every image when there is no prompts.txt",
    "max_new_tokens": "tokens of each caption scored by T-VHD",
    "k": "T-VHD: top heads per layer summed",
}, "vision-aware head divergence (VHD)")


def scan(model, **options) -> dict[str, pd.DataFrame]:
    """VHD over images for a vision-language model given images=..., else context divergence."""
    if has_vision(model) and options.get("images") is not None:
        return scan_vhd(model, **options)
    return scan_context(model, **options)
