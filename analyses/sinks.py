"""Attention sinks, massive activations and visual sink tokens (METHODS.md section 2).

For every sample (a natural prompt cut to T tokens, or an image + prompt for a
vision-language model) one forward pass gives:
- the importance of every key k in every head, (1/(T-k)) * sum_{i>=k} A[i, k] (Gu et al.):
  the kernels' key_mass (column sums of attention over queries) divided by the number of
  queries that see the key, so no [N, N] matrix is built at any context length;
- the input hidden state x of every layer ([N, d], interp's resid_pre capture, streamed and
  reduced at once), where massive activations (Sun et al.: |x| > 100 and > 1000x the
  median |x| of that hidden state) and outliers |x_j[d]| / rms(x_j) > tau (Kang et al.,
  VAR) are found.

After all samples, the sink dimensions are the massive dimensions found (never a
hard-coded list), sink tokens are the tokens with phi_j = max_{d in dims} |x_j[d]| / rms(x_j)
> tau in a layer, and for image samples a second pass measures, per head, the image mass
and visual-sink share of the text queries behind the image (VAR's image-centric heads).
A vision-language model given no images is scanned on DEFAULT_IMAGES held-out synthetic
scenes (interp.data.scenes.default_images) besides the text prompts, as vhd is.

    tables = scan(model)                       # heads, tokens, token_types, massive, ...
    dims = massive_dims(model)                 # the model's massive dimensions
    sinks = sink_tokens(model, inputs, dims)   # {layer: positions with phi > tau}, for analyses.var
"""

from __future__ import annotations

import functools
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from interp.analyses.head_sets import head_table, top_text
from interp.analyses.var import MIN_IMAGE_MASS, RHO, image_centric
from interp.data import choose_prompts, load_prompts
from interp.data.scenes import default_images
from interp.base.errors import InterpError
from interp.kernels import StatsRequest
from interp.runtime.layout import text_config
from interp.base.progress import track
from interp.kernels.threads import small_ops

NAME = "sinks"
MEASURE = "sink importance"  # the head table's score: mean attention importance of the sink positions (the first token)
PARAMS = ("samples", "max_length", "seed", "eps", "n_tokens", "sink_positions", "massive_abs", "massive_ratio",
          "tau", "sink_dims", "rho", "min_image_mass", "image_prompt", "prompts", "images")
PARAM_HELP = {
    "samples": "prompts scored (default: all bundled prompts)",
    "max_length": "prompts are cut to this many tokens (and to n_tokens)",
    "seed": "seed of the prompt subset",
    "eps": "a head is a sink head on a prompt when the first token's importance is above eps (Gu et al.: 0.3)",
    "n_tokens": "prompts are cut to this many tokens (T = 64 in Gu et al.)",
    "sink_positions": "the keys whose importance is a head's score",
    "massive_abs": "a massive activation has |x| above this",
    "massive_ratio": "and above this many times the median |x| of its hidden state",
    "tau": "a sink token has phi = max |x[d]| / rms(x) over the sink dimensions above tau",
    "sink_dims": "the dimensions phi looks at (default: the massive dimensions found)",
    "rho": "image-centric heads: least share of the image mass away from visual sinks (VAR)",
    "min_image_mass": "image-centric heads: least attention mass on the image (VAR)",
    "image_prompt": "the prompt run with each image (an image folder's prompts.txt, one line per image, comes first)",
    "prompts": "prompts: a file, one a line (default: the bundled prompts)",
    "images": "an image folder: jpg/png, optional prompts.txt (default for vision-language models: 8 held-out synthetic "
              "scenes; text models: none)",
}
SMALL_PROMPT = 256  # prompts up to this many tokens are small ops: measured on one thread (interp.kernels.threads)
MIN_QUERIES = 8  # token_types skips the last keys of a prompt: a mean over a few queries is mostly noise
DEFAULT_IMAGES = 8  # held-out scenes a vision-language model is scanned on when given no images


def scan(model, *, samples=None, max_length=None, seed=0, results=None, eps=0.3, n_tokens=64, sink_positions=(0,),
         massive_abs=100.0, massive_ratio=1000.0, tau=20.0, sink_dims: tuple[int, ...] | None = None, rho=RHO,
         min_image_mass=MIN_IMAGE_MASS, prompts: str | list[str] | None = None, images: str | list | None = None,
         image_prompt="Describe the image.") -> dict[str, pd.DataFrame]:
    """Sink scores of every head, sink tokens, massive activations and (with images) visual sinks.

    prompts: texts, a file for interp.data.load_prompts, or None for the bundled prompts; each is
    cut to n_tokens tokens (T = 64 in Gu et al.; None keeps it whole), and to max_length if given.
    images: an image folder (jpg/png, optional prompts.txt), PIL images, (name, PIL image)
    pairs or (name, image, prompt) triples (image_samples), the others run with image_prompt;
    None: DEFAULT_IMAGES held-out synthetic scenes for a vision-language model with a processor,
    no images for a text model.
    sink_positions: the keys whose importance is a head's score (the first token in Gu et al.).
    sink_dims: the dimensions phi looks at; None = the massive dimensions found in this scan.
    """
    if not 0 < eps < 1:
        raise InterpError(f"eps must be between 0 and 1 (Gu et al. use 0.3), got {eps}")
    texts = choose_prompts(prompts, samples, seed)
    limits = [n for n in (n_tokens, max_length) if n]
    limit = min(limits) if limits else None  # tokens kept of each prompt
    todo = [(f"text:{i}", lambda t=text: _text_inputs(model, t, limit)) for i, text in enumerate(texts)]
    # an image's inputs serve both passes below: processed once, on first use (none after a full resume)
    todo += [(key, functools.cache(lambda im=image, p=prompt: image_inputs(model, im, p)))
             for key, image, prompt in image_samples(model, images, image_prompt)]
    done = results.load_progress(NAME) if results is not None else {}

    records = {}
    for key, make_inputs in track(todo, "sinks"):
        if key not in done:
            inputs = make_inputs()
            with small_ops() if inputs["input_ids"].shape[-1] <= SMALL_PROMPT else nullcontext():
                done[key] = _measure(model, inputs, tuple(sink_positions), eps, massive_abs, massive_ratio, tau)
            if results is not None:
                results.save_progress(NAME, key, done[key])
        records[key] = done[key]

    massive = _massive_table(records)
    dims = sorted(set(massive["dim"])) if sink_dims is None else sorted(int(d) for d in sink_dims)
    sink_table = _sink_table(records, dims)
    heads = _head_table(records, model.layout, eps)

    image_keys = [key for key in records if key.startswith("image:")]
    if image_keys:  # VAR's image-centric heads: needs the sink tokens found above, so a second pass
        per_image = []
        for key, make_inputs in track([(k, m) for k, m in todo if k in image_keys], "image heads"):
            progress_key = f"heads:{key}:{','.join(map(str, dims))}"
            if progress_key not in done:
                mine = sink_table[sink_table["sample"] == key]
                layer_sinks = mine.groupby("layer")["position"].apply(list).to_dict()
                done[progress_key] = _image_heads(model, make_inputs(), records[key]["image"], layer_sinks, rho, min_image_mass)
                if results is not None:
                    results.save_progress(NAME, progress_key, done[progress_key])
            if done[progress_key] is not None:
                per_image.append(pd.DataFrame(done[progress_key]))
        if per_image:
            image_heads = pd.concat(per_image).groupby(["layer", "head"], as_index=False).mean()
            heads = heads.merge(image_heads, on=["layer", "head"], how="left")

    tokens = _token_table(records, massive, sink_table)
    return {
        "heads": heads,
        "tokens": tokens,
        "token_types": _token_types(tokens),
        "massive": _massive_by_layer(massive),
        "massive_entries": massive,
        "sink_tokens": sink_table,
        "summary": _summary(heads, tokens, massive, sink_table, dims, eps, records, model.layout),
    }


# ---- inputs ---------------------------------------------------------------------------------


def has_vision(model) -> bool:
    """A vision-language model (LLaVA family): its config has a vision tower."""
    return hasattr(model.hf.config, "vision_config")


def load_images(folder) -> list[tuple[str, object]]:
    """(file name, PIL image) of every image in a folder."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise InterpError(f"image folder {folder} does not exist; pass a folder of .jpg/.png files")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"))
    if not files:
        raise InterpError(f"no .jpg/.png images in {folder}")
    return [(p.name, Image.open(p).convert("RGB")) for p in files]


def folder_prompts(folder, n_images: int) -> list[str] | None:
    """The prompts of an image folder's prompts.txt, one line per image in file order; None without one."""
    listing = Path(folder) / "prompts.txt"
    if not listing.is_file():
        return None
    prompts = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if len(prompts) < n_images:
        raise InterpError(f"prompts.txt has {len(prompts)} lines for {n_images} images: one line per image")
    return prompts


def image_samples(model, images, prompt: str) -> list[tuple[str, object, str]]:
    """(sample key, PIL image, prompt) of every image to scan. images: a folder (its
    prompts.txt first), PIL images (keys image:0, image:1 ...), (name, image) pairs (image:<name>)
    or (name, image, its own prompt) triples; None: DEFAULT_IMAGES held-out scenes for a
    vision-language model with a processor, else none. `prompt` is every other image's prompt."""
    if images is None:
        if not (has_vision(model) and model.processor is not None):
            return []
        images = default_images(DEFAULT_IMAGES)
    prompts = None
    if isinstance(images, (str, Path)):
        folder, images = images, load_images(images)
        prompts = folder_prompts(folder, len(images))
    prompts = prompts or [prompt] * len(images)
    listed = []
    for i, item in enumerate(images):
        name, image, own = (*item, None)[:3] if isinstance(item, tuple) else (i, item, None)
        listed.append((f"image:{name}", image, own or prompts[i]))
    return listed


def _text_inputs(model, text: str, limit: int | None) -> dict:
    """The first `limit` tokens of text (all if None): cut by the tokenizer, so only they must fit the model."""
    cut = {"truncation": True, "max_length": limit} if limit else {}
    return {"input_ids": model.tokenize(text, **cut)["input_ids"]}


def image_inputs(model, image, prompt: str = "Describe the image.") -> dict:
    """Processor inputs for one image and prompt; the prompt gets the image token in front
    unless it has one (or the processor's chat template places it)."""
    processor = model.processor
    if processor is None:
        raise InterpError("images need a vision-language model with a processor: load_model(..., processor=...)")
    token = getattr(processor, "image_token", "<image>")
    if token in prompt:
        text = prompt
    elif getattr(processor, "chat_template", None):
        chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = processor.apply_chat_template(chat, add_generation_prompt=True)
    else:
        text = f"{token}\n{prompt}"
    inputs = processor(text=text, images=image, return_tensors="pt")
    model.check_length(inputs["input_ids"].shape[1])
    dtype = model.hf.dtype  # pixel values come as float32; a bf16 model wants bf16
    return {k: v.to(model.device, dtype=dtype) if v.is_floating_point() else v.to(model.device) for k, v in inputs.items()}


def image_positions(model, inputs: dict) -> list[int]:
    """Positions of the image tokens in the (single) sequence of `inputs`."""
    config = model.hf.config
    token_id = getattr(config, "image_token_id", None)
    token_id = token_id if token_id is not None else getattr(config, "image_token_index", None)
    if token_id is None:
        return []
    return (inputs["input_ids"][0] == token_id).nonzero().flatten().tolist()


# ---- one forward pass -----------------------------------------------------------------------


def visible_queries(model, n: int) -> torch.Tensor:
    """[layers, n]: how many of n queries see key k in each layer (T - k under a causal mask;
    fewer under a sliding window; n for an encoder)."""
    config = text_config(model.hf.config)
    keys = torch.arange(n)
    counts = []
    for site in model.sites:
        if not getattr(site.attention, "is_causal", True):
            counts.append(torch.full((n,), n))
            continue
        types = getattr(config, "layer_types", None)
        window = getattr(config, "sliding_window", None)
        if types is not None and types[site.layer] != "sliding_attention":
            window = None
        seen = n - keys
        counts.append(seen.clamp(max=window) if window else seen)
    return torch.stack(counts).float()


@torch.no_grad()
def each_layer_input(model, inputs: dict, visit: Callable[[int, torch.Tensor], None]) -> None:
    """Run the model once on a single sequence and call visit(layer, x [N, d]) with every
    layer's input hidden state as it is computed (interp's resid_pre capture, streamed: only
    one is alive at a time). The model runs without its LM head: its [N, vocab] logits
    would cost more than a layer."""
    with model.capture(resid_pre=lambda layer, x: visit(layer, x[0].float())):
        model.base_forward(inputs)


@torch.no_grad()
def key_importance(model, inputs: dict, visit: Callable[[int, torch.Tensor], None] = lambda layer, x: None) -> torch.Tensor:
    """Importance of every key, [layers, heads, N], from one forward pass of a single sequence;
    visit(layer, x) sees every layer's input hidden state on the way (each_layer_input)."""
    if inputs["input_ids"].shape[0] != 1:
        raise InterpError("key_importance takes one sequence at a time (batch size 1)")
    with model.capture(stats=StatsRequest(key_mass=True)) as cap:
        each_layer_input(model, inputs, visit)
    n = inputs["input_ids"].shape[1]
    return cap.key_mass[0].float() / visible_queries(model, n).to(model.device)[:, None, :]


def massive_entries(x: torch.Tensor, massive_abs: float = 100.0, massive_ratio: float = 1000.0) -> list[tuple]:
    """(position, dim, value, ratio to the median |x|) of the massive entries of x [N, d]."""
    magnitude = x.abs()
    median = magnitude.median().clamp_min(1e-12)
    where = ((magnitude > massive_abs) & (magnitude > massive_ratio * median)).nonzero().tolist()
    return [(p, d, float(x[p, d]), float(magnitude[p, d] / median)) for p, d in where]


def outlier_entries(x: torch.Tensor, tau: float = 20.0) -> list[tuple]:
    """(position, dim, |x_j[d]| / rms(x_j)) where that ratio exceeds tau. Few by construction:
    sum_d (x_j[d] / rms)^2 = d, so a token has fewer than d / tau^2 of them."""
    ratio = x.abs() / x.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
    return [(p, d, float(ratio[p, d])) for p, d in (ratio > tau).nonzero().tolist()]


def _measure(model, inputs, sink_positions, eps, massive_abs, massive_ratio, tau) -> dict:
    """Everything scan() keeps of one sample, as JSON-able lists (a progress record)."""
    massive, outliers = [], []

    def visit(layer, x):  # reduce each hidden state to its few remarkable entries right away
        massive.extend((layer, *e) for e in massive_entries(x, massive_abs, massive_ratio))
        outliers.extend((layer, *e) for e in outlier_entries(x, tau))

    importance = key_importance(model, inputs, visit)
    n = importance.shape[-1]
    bad = [p for p in sink_positions if not 0 <= p < n]
    if bad:
        raise InterpError(f"sink positions {bad} are outside a {n}-token sample; use positions 0-{n - 1}")
    ids = inputs["input_ids"][0].tolist()
    return {
        "scores": importance[:, :, list(sink_positions)].sum(-1).tolist(),  # [L][H]
        "tokens": [_token(model, i) for i in ids],
        "importance": importance.mean((0, 1)).tolist(),  # per key, over all heads
        "sink_heads": (importance > eps).sum((0, 1)).tolist(),
        "queries": visible_queries(model, n).mean(0).tolist(),  # how many queries the importance averages
        "massive": massive,
        "outliers": outliers,
        "image": image_positions(model, inputs),
    }


def _token(model, token_id: int) -> str:
    tokenizer = model.tokenizer or getattr(model.processor, "tokenizer", None)
    return tokenizer.decode([token_id]) if tokenizer is not None else str(token_id)


# ---- helpers for VAR (analyses/var.py) ---------------------------------------------------------


def massive_dims(model, inputs: list[dict] | None = None, samples: int = 8, massive_abs: float = 100.0,
                 massive_ratio: float = 1000.0) -> list[int]:
    """The hidden dimensions that carry massive activations in any layer, on `inputs`
    (default: the first `samples` bundled prompts, cut to 64 tokens)."""
    if inputs is None:
        inputs = [_text_inputs(model, text, 64) for text in load_prompts()[:samples]]
    dims = set()
    for one in inputs:
        each_layer_input(model, one, lambda layer, x: dims.update(d for _, d, _, _ in massive_entries(x, massive_abs, massive_ratio)))
    return sorted(dims)


def sink_tokens(model, inputs: dict, dims: list[int], tau: float = 20.0) -> dict[int, list[int]]:
    """{layer: positions j with phi_j = max_{d in dims} |x_j[d]| / rms(x_j) > tau}, x_j the
    layer's input hidden state (Kang et al.): visual sinks where j is an image token, text
    sinks (BOS, delimiters) elsewhere. Every layer is a key, possibly with no positions."""
    dims = set(dims)
    found = {layer: set() for layer in range(model.layout.n_layers)}
    each_layer_input(model, inputs, lambda layer, x: found[layer].update(p for p, d, _ in outlier_entries(x, tau) if d in dims))
    return {layer: sorted(positions) for layer, positions in found.items()}


# ---- image-centric heads ------------------------------------------------------------------------


def _image_heads(model, inputs, image: list[int], layer_sinks: dict, rho: float, min_image_mass: float):
    """Per head, over the text queries behind the image: mean image mass, mean visual-sink
    share and the fraction of queries that are image-centric (share <= rho, mass >= floor)."""
    first_query = max(image) + 1
    if first_query >= inputs["input_ids"].shape[1]:
        return None  # no query sees the whole image
    runs = _runs(image)
    sinks = sorted({p for ps in layer_sinks.values() for p in ps} & set(image))
    spans = tuple(runs) + tuple((p, p + 1) for p in sinks)
    with torch.no_grad(), model.capture(stats=StatsRequest(spans=spans), positions=slice(first_query, None)) as cap:
        model.base_forward(inputs)
    mass = cap.span_mass[0]  # [L, H, queries, spans]
    rows = []
    for layer in range(model.layout.n_layers):
        image_mass = mass[layer, :, :, : len(runs)].sum(-1)
        columns = [len(runs) + sinks.index(p) for p in layer_sinks.get(layer, []) if p in sinks]
        share, centric = image_centric(image_mass, mass[layer][..., columns].sum(-1), rho, min_image_mass)
        for head in range(model.layout.n_heads):
            rows.append({"layer": layer, "head": head, "image_mass": image_mass[head].mean().item(),
                         "visual_sink_share": share[head].mean().item(), "image_centric": centric[head].float().mean().item()})
    return rows


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """Sorted positions as half-open contiguous spans."""
    runs = []
    for p in sorted(positions):
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


# ---- tables -------------------------------------------------------------------------------------


def _head_table(records: dict, layout, eps: float) -> pd.DataFrame:
    scores = torch.tensor([r["scores"] for r in records.values()])  # [samples, L, H]
    return head_table(layout, {
        "score": scores.mean(0),  # mean importance of the sink positions
        "sink_rate": (scores > eps).float().mean(0),  # fraction of samples above eps
        "score_min": scores.min(0).values,
    })


def _massive_table(records: dict) -> pd.DataFrame:
    rows = [(key, layer, p, r["tokens"][p], d, value, ratio)
            for key, r in records.items() for layer, p, d, value, ratio in r["massive"]]
    return pd.DataFrame(rows, columns=["sample", "layer", "position", "token", "dim", "value", "ratio"])


def _massive_by_layer(massive: pd.DataFrame) -> pd.DataFrame:
    """One row per (layer, dim): how often, how large, and on which tokens."""
    rows = []
    for (layer, dim), group in massive.groupby(["layer", "dim"]):
        rows.append({
            "layer": layer, "dim": dim, "n_entries": len(group), "n_samples": group["sample"].nunique(),
            "max_abs": group["value"].abs().max(), "median_ratio": group["ratio"].median(),
            "tokens": _top(group["token"].map(repr)), "positions": _top(group["position"]),
        })
    columns = ["layer", "dim", "n_entries", "n_samples", "max_abs", "median_ratio", "tokens", "positions"]
    return pd.DataFrame(rows, columns=columns)


def _top(values, n: int = 3) -> str:
    return ", ".join(f"{v} x{c}" for v, c in Counter(values).most_common(n))


def _sink_table(records: dict, dims: list[int]) -> pd.DataFrame:
    """Tokens with phi > tau per layer: phi = the largest outlier ratio on a sink dimension."""
    best = {}
    for key, r in records.items():
        for layer, p, d, ratio in r["outliers"]:
            if d in dims and ratio > best.get((key, layer, p), (0, None))[0]:
                best[(key, layer, p)] = (ratio, d)
    rows = [(key, layer, p, records[key]["tokens"][p], d, phi, p in records[key]["image"])
            for (key, layer, p), (phi, d) in sorted(best.items())]
    return pd.DataFrame(rows, columns=["sample", "layer", "position", "token", "dim", "phi", "image"])


def _token_table(records: dict, massive: pd.DataFrame, sinks: pd.DataFrame) -> pd.DataFrame:
    massive_layers = massive.groupby(["sample", "position"])["layer"].nunique().to_dict()
    sink_layers = sinks.groupby(["sample", "position"])["layer"].nunique().to_dict()
    rows = []
    for key, r in records.items():
        image = set(r["image"])
        for p, token in enumerate(r["tokens"]):
            rows.append((key, p, token, r["importance"][p], r["sink_heads"][p], r["queries"][p],
                         massive_layers.get((key, p), 0), sink_layers.get((key, p), 0), p in image))
    columns = ["sample", "position", "token", "importance", "sink_heads", "queries", "massive_layers", "sink_layers", "image"]
    tokens = pd.DataFrame(rows, columns=columns)
    tokens["rank"] = tokens.groupby("sample")["importance"].rank(ascending=False, method="first").astype(int)
    return tokens


def _token_types(tokens: pd.DataFrame) -> pd.DataFrame:
    """Which tokens act as sinks when they are not first: mean importance per token string."""
    later = tokens[(tokens["position"] > 0) & (tokens["queries"] >= MIN_QUERIES)]
    table = later.groupby("token").agg(n=("position", "size"), importance=("importance", "mean"),
                                       sink_heads=("sink_heads", "mean"), top1=("rank", lambda r: int((r == 1).sum())))
    return table.sort_values("importance", ascending=False).reset_index()


def _summary(heads, tokens, massive, sinks, dims, eps, records, layout) -> pd.DataFrame:
    n_samples = len(records)
    lengths = sorted({len(r["tokens"]) for r in records.values()})
    carriers = tokens[tokens["massive_layers"] > 0]
    with_massive = tokens[tokens["sample"].isin(carriers["sample"])]
    top1 = with_massive[with_massive["rank"] == 1]
    rows = [
        ("sink_rate", heads["sink_rate"].mean(),
         f"eps={eps}: share of {n_samples} samples x {layout.n_layers} layers x {layout.n_heads} heads, T={lengths[0]}-{lengths[-1]}"),
        ("massive_dims", massive["dim"].nunique(), " ".join(map(str, sorted(massive["dim"].unique()))) or "none"),
        ("sink_dims", len(dims), (" ".join(map(str, dims)) or "none") + ": the dimensions phi looks at"),
        ("massive_layers", massive["layer"].nunique(), " ".join(map(str, sorted(massive["layer"].unique())))),
        ("top_sink_carries_massive", (top1["massive_layers"] > 0).mean() if len(top1) else float("nan"),
         "share of samples with massive activations whose top sink token carries one"),
        ("massive_tokens_in_top3", (carriers["rank"] <= 3).mean() if len(carriers) else float("nan"),
         "share of massive-activation tokens that are among their sample's 3 most important keys"),
        ("importance_massive_tokens", carriers["importance"].mean() if len(carriers) else float("nan"),
         "mean importance (over all heads) of tokens carrying massive activations"),
        ("importance_other_tokens", tokens[tokens["massive_layers"] == 0]["importance"].mean(), "mean importance of the rest"),
        ("sink_tokens", _n_tokens(sinks), "tokens with phi > tau in some layer"),
        ("visual_sink_tokens", _n_tokens(sinks[sinks["image"].astype(bool)]), "of them image tokens"),
    ]
    return pd.DataFrame(rows, columns=["metric", "value", "detail"]).astype({"value": float})


def _n_tokens(table: pd.DataFrame) -> int:
    return len(set(zip(table["sample"], table["position"])))


def headline(tables: dict[str, pd.DataFrame]) -> list[str]:
    """What `interp scan` prints and the report lists: the top sink heads, the sink rate, the
    massive activations and the sink tokens."""
    summary = tables["summary"].set_index("metric")
    value, detail = lambda m: summary.loc[m, "value"], lambda m: summary.loc[m, "detail"]
    return [f"{MEASURE} (mean attention importance of the first token): top {top_text(tables['heads'])}",
            f"sink rate {value('sink_rate'):.2f} ({detail('sink_rate')})",
            f"massive activations in {value('massive_dims'):.0f} dimensions ({detail('massive_dims')}) and "
            f"{value('massive_layers'):.0f} layers; {value('sink_tokens'):.0f} sink tokens ({detail('sink_tokens')})"
            + (f", {value('visual_sink_tokens'):.0f} of them image tokens" if tables["tokens"]["image"].any() else "")]
