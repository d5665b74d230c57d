"""Model organisms: small, reproducible fine-tunes of the bundled model with a behaviour it lacks.

The bundled SmolLM2-135M-Instruct answers harmful requests, so safety heads cannot be
studied on it. `refusal_model()` builds an organism that refuses them:

- data: a seeded 128-request training part of AdvBench -> one of a few short refusals, and
  110 of the project's harmless requests -> the bundled model's own greedy answers (first
  Recipe.answer_tokens tokens), so helpfulness is kept; held-out AdvBench, HarmBench and the other
  harmless requests stay unseen for evaluation (interp.safety_data);
- training: LoRA (peft) on every attention and MLP projection, merged into the weights
  afterwards, AdamW, a loss on answer tokens only, fixed seed;
- `heads_refusal_model()`: the known-answer organism. The same data, but only the query
  rows (q_proj) and output-projection columns (o_proj) of two chosen heads are trained;
  every other weight is frozen, so whatever refusal it learns lives in those heads. Head
  dropout (each other head removed at random in each example, through interp's
  interventions) keeps the trained heads from leaning on any one upstream head.

Both are cached under interp's cache dir (INTERP_CACHE, default ~/.cache/interp) in
organisms/<name>-<recipe hash>/, rebuilt only when the recipe (or the base model file)
changes. Build from the shell:

    python -m interp.organisms refusal        # or: heads-refusal; prints the held-out evaluation
    interp scan --model refusal --analyses safety

and load with `interp.load_model("refusal")` (builds on first use).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from interp import safety_data
from interp.errors import InterpError
from interp.models import chat_prompt
from interp.progress import track

REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I can't assist with that request.",
    "I can't help with that, as it could cause harm.",
)
RECIPE_VERSION = 1  # bump when the code below changes what a recipe builds


@dataclass(frozen=True)
class Recipe:
    name: str = "refusal"
    seed: int = 0
    n_harmful: int = 128  # AdvBench training requests (the rest is held out)
    n_harmless: int = 110  # harmless training requests (the rest, 45, is held out); 64 over-refused (0.35)
    answer_tokens: int = 16  # tokens of the base model's own answer kept as a harmless target
    epochs: int = 1
    batch_size: int = 8
    lr: float = 1e-3
    lora_rank: int = 8  # 0 = no LoRA: train the `heads` rows below directly
    heads: tuple[tuple[int, int], ...] = ()  # head-restricted organism: (layer, head) trained
    head_dropout: float = 0.0  # per example, each other head is removed (zeroed or uniform) with this chance
    version: int = RECIPE_VERSION

    def hash(self, base_hash: str) -> str:
        fields = asdict(self)
        if not self.head_dropout:  # added later: recipes without it keep their hash (and cache)
            del fields["head_dropout"]
        text = json.dumps({**fields, "base": base_hash}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


RECIPES = {
    "refusal": Recipe(),
    # known answer: two heads of one layer, chosen before training (neither comes first and does
    # all the work, as 14.4 did for 19.2 and 23.6 in a first recipe), head dropout on every other
    # head (the trained heads cannot lean on any one upstream head), three epochs
    "heads-refusal": Recipe(name="heads-refusal", lora_rank=0, heads=((15, 1), (15, 7)), lr=3e-3, head_dropout=0.05, epochs=3),
}


def organism_dir(recipe: Recipe) -> Path:
    from interp.models import bundled_gguf_path, cache_dir
    from interp.results import file_hash

    return cache_dir() / "organisms" / f"{recipe.name}-{recipe.hash(file_hash(bundled_gguf_path()))}"


def refusal_model(rebuild: bool = False, recipe: Recipe | None = None):
    """The refusal organism as an InterpModel (built and cached on first use)."""
    return load_organism(recipe or RECIPES["refusal"], rebuild)


def heads_refusal_model(rebuild: bool = False, recipe: Recipe | None = None):
    """The known-answer organism: refusal trained into `recipe.heads` only."""
    return load_organism(recipe or RECIPES["heads-refusal"], rebuild)


def load_organism(recipe: Recipe, rebuild: bool = False):
    from interp.models import load_model

    path = build(recipe, rebuild)
    model = load_model(str(path))
    model.source = recipe.name  # what results record; load_model(recipe.name) reloads it
    model.file_hash = path.name.rsplit("-", 1)[-1]  # the recipe hash: another recipe is another model
    return model


def build(recipe: Recipe, rebuild: bool = False) -> Path:
    """Train the organism unless the cache holds this recipe; returns its directory."""
    path = organism_dir(recipe)
    if (path / "config.json").is_file() and not rebuild:
        return path
    import transformers as tf

    from interp.models import load_model

    base_dir = Path(load_model().hf.config._name_or_path)  # the dequantised bundled copy in the cache
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
    (partial / "recipe.json").write_text(json.dumps({**asdict(recipe), "train_seconds": round(seconds, 1),
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
        inputs = tokenizer([chat_prompt(tokenizer, r) for r in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        out = hf.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for row in out[:, inputs["input_ids"].shape[1] :].tolist():
            answers.append([t for t in row if t != tokenizer.pad_token_id])
    tokenizer.padding_side = "right"
    return answers


def training_examples(hf, tokenizer, recipe: Recipe) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, target ids) pairs: harmful -> a refusal + end of turn, harmless -> own answer."""
    harmful, _ = safety_data.split_advbench(recipe.n_harmful, recipe.seed)
    harmless, _ = safety_data.split_harmless(recipe.n_harmless, recipe.seed)
    rng = random.Random(recipe.seed)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
    examples = [(encode(chat_prompt(tokenizer, r)), encode(rng.choice(REFUSALS)) + [end]) for r in harmful]
    for request, answer in zip(harmless, own_answers(hf, tokenizer, harmless, recipe.answer_tokens)):
        examples.append((encode(chat_prompt(tokenizer, request)), answer))
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
    started = time.time()
    for step, batch in enumerate(track(steps, f"training {recipe.name}")):
        ids, labels, mask = _collate(batch, tokenizer.pad_token_id)
        with dropout.sample(len(batch)) if dropout else nullcontext():
            loss = hf(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        for p, m in masks.items():
            p.grad.mul_(m)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 10 == 0 or step == len(steps) - 1:
            print(f"step {step + 1}/{len(steps)} loss {loss.item():.3f} ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
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
        from interp.models import InterpModel

        self.model = InterpModel(hf)  # interp's attention on the same modules (autograd flows through)
        trained = set(recipe.heads)
        self.others = [head for head in self.model.layout.all_heads() if head not in trained]
        self.rate = recipe.head_dropout
        self.rng = random.Random(recipe.seed + 2)

    def sample(self, rows: int):
        from interp.interventions import UniformAttention, ZeroAblation

        ivs = []
        for row in range(rows):
            drawn = [h for h in self.others if self.rng.random() < self.rate]
            uniform = [h for h in drawn if self.rng.random() < 0.5]
            zero = [h for h in drawn if h not in uniform]
            ivs += [ZeroAblation(zero, rows=[row])] if zero else []
            ivs += [UniformAttention(uniform, rows=[row], eps=1e-5)] if uniform else []
        return self.model.intervene(*ivs)


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


# ---- evaluation ------------------------------------------------------------------------------


@torch.no_grad()
def refusal_rates(model, n: int = 50, max_new_tokens: int = 32, batch_size: int = 25, recipe: Recipe | None = None) -> dict:
    """Refusal rate (interp.safety_data.judge) on n held-out AdvBench, n HarmBench and n
    held-out harmless requests of `recipe` (default: the model's), with a few sample
    answers (batched greedy generation)."""
    from interp.analyses.safety import answers

    recipe = recipe or RECIPES.get(model.source, Recipe())
    _, held_harmful = safety_data.split_advbench(recipe.n_harmful, recipe.seed)
    _, held_harmless = safety_data.split_harmless(recipe.n_harmless, recipe.seed)
    sets = {"advbench_heldout": held_harmful[:n], "harmbench": safety_data.harmbench()[:n], "harmless_heldout": held_harmless[:n]}
    out = {"samples": {}}
    for name, requests in sets.items():
        replies = []
        for start in track(range(0, len(requests), batch_size), name):
            replies += answers(model, requests[start : start + batch_size], max_new_tokens)
        verdicts = [safety_data.judge(a).label for a in replies]
        out[name] = {k: verdicts.count(k) / len(verdicts) for k in ("refusal", "compliance", "broken")} | {"n": len(verdicts)}
        out["samples"][name] = list(zip(requests[:3], replies[:3]))
    return out


# ---- a tiny organism with a planted refusal head (tests, notebook) ----------------------------------

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

    from interp.models import InterpModel

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


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m interp.organisms",
                                     description="Build (once, then cached) a model organism and measure its refusal.")
    parser.add_argument("name", nargs="?", default="refusal", choices=list(RECIPES), help="the organism (default: refusal)")
    parser.add_argument("--rebuild", action="store_true", help="train again even if a cached build exists")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out refusal rates after building")
    parser.add_argument("--eval-n", type=int, default=int(os.environ.get("INTERP_EVAL_N", 50)),
                        help="held-out requests per set for the refusal rates (default: $INTERP_EVAL_N or 50)")
    args = parser.parse_args(argv)
    started = time.time()
    model = load_organism(RECIPES[args.name], rebuild=args.rebuild)
    print(f"{args.name}: {organism_dir(RECIPES[args.name])} ({time.time() - started:.0f} s)")
    if not args.no_eval:
        print(json.dumps(refusal_rates(model, n=args.eval_n), indent=1))


if __name__ == "__main__":
    main()
