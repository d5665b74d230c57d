"""Building an organism: its training data (harmful -> a refusal, harmless -> the base model's own
answer) and the training itself (LoRA, or chosen heads' rows only, with head dropout)."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch

from interp.data import safety as safety_data
from interp.base.errors import InterpError
from interp.organisms.recipes import REFUSALS, Recipe
from interp.base.progress import note, track
from interp.runtime.bundled import BUNDLED_NAME
from interp.runtime.models import chat_prompt, has_chat_template


def build(recipe: Recipe, path: Path, base: str | None = None) -> Path:
    """Train the organism over `base` (default: the bundled model) into `path` (replaced atomically); returns `path`."""
    import transformers as tf

    from interp.runtime.models import load_model

    base_dir = Path(load_model(base).hf.config._name_or_path)  # the base model's (dequantised) copy in the cache
    tokenizer = tf.AutoTokenizer.from_pretrained(base_dir)
    torch.manual_seed(recipe.seed)
    hf = tf.AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="sdpa")
    started, cpu_started = time.time(), time.process_time()
    examples = training_examples(hf, tokenizer, recipe)
    hf = train(hf, tokenizer, examples, recipe)
    seconds, cpu_seconds = time.time() - started, time.process_time() - cpu_started
    partial = path.with_name(path.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    hf.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "recipe.json").write_text(json.dumps({**asdict(recipe), "base": base or BUNDLED_NAME, "train_seconds": round(seconds, 1),
                                                     "cpu_seconds": round(cpu_seconds, 1), "threads": torch.get_num_threads()}, indent=1))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(partial, path)  # atomic: a killed build leaves no half organism
    return path


# ---- data ------------------------------------------------------------------------------------


@torch.no_grad()
def own_answers(hf, tokenizer, requests: list[str], max_new_tokens: int, batch_size: int = 16) -> list[list[int]]:
    """The base model's greedy answer tokens to each request (its helpfulness, to keep)."""
    tokenizer.padding_side = "left"
    answers = []
    batches = [requests[i : i + batch_size] for i in range(0, len(requests), batch_size)]
    for batch in track(batches, "base answers"):
        inputs = tokenizer([chat_prompt(tokenizer, r) for r in batch], return_tensors="pt", padding=True,
                           add_special_tokens=not has_chat_template(tokenizer, tokenizer.name_or_path))
        out = hf.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for row in out[:, inputs["input_ids"].shape[1] :].tolist():
            answers.append([t for t in row if t != tokenizer.pad_token_id])
    tokenizer.padding_side = "right"
    return answers


def training_examples(hf, tokenizer, recipe: Recipe) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, target ids) pairs: harmful -> a refusal + end of turn, harmless -> own answer.
    A base model without a chat template reads the request as plain text (after its BOS) and
    ends the refusal with its end-of-text token."""
    harmful, _ = safety_data.split_advbench(recipe.n_harmful, recipe.seed)
    harmless, _ = safety_data.split_harmless(recipe.n_harmless, recipe.seed)
    rng = random.Random(recipe.seed)
    end = tokenizer.eos_token_id  # an instruct model's end of turn (SmolLM2: <|im_end|>)
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
    plain = not has_chat_template(tokenizer, tokenizer.name_or_path)
    prompt = lambda request: tokenizer(chat_prompt(tokenizer, request), add_special_tokens=plain)["input_ids"]
    examples = [(prompt(r), encode(rng.choice(REFUSALS)) + [end]) for r in harmful]
    for request, answer in zip(harmless, own_answers(hf, tokenizer, harmless, recipe.answer_tokens)):
        examples.append((prompt(request), answer))
    rng.shuffle(examples)
    return examples


# ---- training --------------------------------------------------------------------------------


def _head_masks(hf, heads) -> dict[torch.nn.Parameter, torch.Tensor]:
    """Trainable parameters and the 0/1 mask of the entries that belong to `heads`:
    q_proj rows h*d:(h+1)*d and o_proj columns h*d:(h+1)*d."""
    masks = {}
    d = hf.config.head_dim if getattr(hf.config, "head_dim", None) else hf.config.hidden_size // hf.config.num_attention_heads
    for layer, head in heads:
        attn = hf.model.layers[layer].self_attn
        q, o = attn.q_proj.weight, attn.o_proj.weight
        masks.setdefault(q, torch.zeros_like(q))[head * d : (head + 1) * d, :] = 1
        masks.setdefault(o, torch.zeros_like(o))[:, head * d : (head + 1) * d] = 1
    return masks


def train(hf, tokenizer, examples, recipe: Recipe):
    for p in hf.parameters():
        p.requires_grad_(False)
    if recipe.lora_rank:
        from peft import LoraConfig, get_peft_model

        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        hf = get_peft_model(hf, LoraConfig(r=recipe.lora_rank, lora_alpha=2 * recipe.lora_rank, target_modules=targets, lora_dropout=0.0))
        params = [p for p in hf.parameters() if p.requires_grad]
        masks = {}
    else:
        if not recipe.heads:
            raise InterpError("a recipe without LoRA must name the heads to train (Recipe.heads)")
        masks = _head_masks(hf, recipe.heads)
        params = list(masks)
        for p in params:
            p.requires_grad_(True)
    # no weight decay: with masked gradients, Adam then leaves every frozen entry exactly as it was
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    rng = random.Random(recipe.seed + 1)
    steps = []
    for epoch in range(recipe.epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        steps += [[examples[i] for i in order[s : s + recipe.batch_size]] for s in range(0, len(order), recipe.batch_size)]
    dropout = HeadDropout(hf, recipe) if recipe.head_dropout else None  # before train(): InterpModel sets eval()
    hf.train()
    for batch in track(steps, f"training {recipe.name}"):
        ids, labels, mask = _collate(batch, tokenizer.pad_token_id)
        with dropout.sample(len(batch)) if dropout else nullcontext():
            loss = answer_loss(hf, ids, mask, labels)
        loss.backward()
        for p, m in masks.items():
            p.grad.mul_(m)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        note(f"loss {loss.item():.3f}")  # on the bar, or the periodic line, of the steps
    hf.eval()
    for p in params:
        p.requires_grad_(False)
    if dropout:
        hf.set_attn_implementation("sdpa")  # saved as a plain transformers model
    return hf.merge_and_unload() if recipe.lora_rank else hf


class HeadDropout:
    """Removes a fresh random set of heads (never the trained ones) in every training example,
    through interp's own interventions, half of them zeroed and half made to attend uniformly
    (the ablation Ships uses), so the trained heads cannot lean on any one other head."""

    def __init__(self, hf, recipe: Recipe):
        from interp.runtime.models import InterpModel

        self.model = InterpModel(hf)  # interp's attention on the same modules (autograd flows through)
        trained = set(recipe.heads)
        self.others = [head for head in self.model.layout.all_heads() if head not in trained]
        self.rate = recipe.head_dropout
        self.rng = random.Random(recipe.seed + 2)

    def sample(self, rows: int):
        from interp.runtime.ablation import head_ablation

        ivs = []
        for row in range(rows):
            drawn = [h for h in self.others if self.rng.random() < self.rate]
            uniform = [h for h in drawn if self.rng.random() < 0.5]
            zero = [h for h in drawn if h not in uniform]
            ivs += [head_ablation("zero", zero, rows=[row])] if zero else []
            ivs += [head_ablation("uniform", uniform, rows=[row])] if uniform else []
        return self.model.intervene(*ivs)


def answer_loss(hf, ids, mask, labels) -> torch.Tensor:
    """transformers' causal LM loss (mean cross-entropy of the next token over the target tokens), with
    logits only at the positions that predict a target in some row: Gemma 3's 262k-token LM head costs
    more than all its layers at each position it runs on, and the loss does not read the others."""
    predicts = (labels[:, 1:] != -100).any(0).nonzero().flatten()  # positions whose next token is a target
    logits = hf(input_ids=ids, attention_mask=mask, logits_to_keep=predicts).logits.float()
    targets = labels[:, predicts + 1]
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


def _collate(batch, pad_id: int):
    """Right-padded input ids, labels (-100 outside the targets) and attention mask."""
    length = max(len(p) + len(t) for p, t in batch)
    ids = torch.full((len(batch), length), pad_id)
    labels = torch.full((len(batch), length), -100)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    for row, (prompt, target) in enumerate(batch):
        seq = prompt + target
        ids[row, : len(seq)] = torch.tensor(seq)
        labels[row, len(prompt) : len(seq)] = torch.tensor(target)
        mask[row, : len(seq)] = 1
    return ids, labels, mask

