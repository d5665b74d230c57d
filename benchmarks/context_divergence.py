"""Context divergence on the bundled model: does reinforcing the heads that move most when a
context is present (the VHR rule, METHODS.md section 4) make the model follow a
counterfactual context over what it remembers?

    python benchmarks/context_divergence.py --build   # (re)write interp/data/counterfactual.jsonl
    python benchmarks/context_divergence.py           # the experiment: a Markdown table

--build writes every candidate of benchmarks/counterfactual_items.py with a counterfactual
answer and records the filter: "known" = the bundled model's greedy next token without the
context is the first token of the true answer ("model_answer" is what it said).

The experiment, on the known items, prompt "Context: <false fact>\\nQuestion: ...\\nAnswer: <stem>":
context-following = the counterfactual answer's first token outscores the true answer's;
logit difference = logit(counterfactual) - logit(true), at the last prompt position. Conditions:
none; VHR (heads above the layer median of CD scaled by alpha = 2, layer by layer, default
layers); the same number of random heads per layer (10 seeds); the heads below the median;
alpha = 0.5 on the VHR heads; each with and without the outlier filter. 95% bootstrap CIs
over items (the random condition: per-item mean over seeds, then the bootstrap).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # a shared machine

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _markdown import markdown  # noqa: E402
from counterfactual_items import candidates, with_counterfactuals  # noqa: E402

import interp  # noqa: E402
from interp import LayerEdit  # noqa: E402
from interp.analyses import divergence as dv  # noqa: E402

DATA = Path(interp.__file__).parent / "data" / "counterfactual.jsonl"
BATCH = 16


def first_token(model, text: str) -> int:
    return model.tokenizer(" " + text, add_special_tokens=False)["input_ids"][0]


@torch.no_grad()
def last_logits(model, inputs: list[dict], edit: LayerEdit | None = None) -> torch.Tensor:
    """[B, vocab] next-token logits of single sequences, BATCH per forward (left padded)."""
    out = []
    for start in range(0, len(inputs), BATCH):
        batch = dv.pad_batch(model, inputs[start : start + BATCH])
        if edit is None:
            out.append(model.hf(**batch, logits_to_keep=1).logits[:, -1].float())
        else:
            edit.rows_from = start
            with model.intervene(edit):
                out.append(model.hf(**batch, logits_to_keep=1).logits[:, -1].float())
    return torch.cat(out)


def build(model) -> None:
    items = with_counterfactuals(candidates(), lambda text: first_token(model, text))
    prompts = [dv.without_span(model, *_with_positions(model, item)) for item in items]
    logits = last_logits(model, prompts)
    for item, row in zip(items, logits):
        top = int(row.argmax())
        item["model_answer"] = model.tokenizer.decode([top])
        item["known"] = top == first_token(model, item["memory"])
    DATA.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    table = pd.DataFrame(items).groupby("kind")["known"].agg(["size", "sum"]).rename(columns={"size": "candidates", "sum": "known"})
    print(markdown(table.reset_index()))
    print(f"\n{int(table['known'].sum())} of {len(items)} candidates known without the context -> {DATA}")


def _with_positions(model, item):
    inputs, span = dv.context_prompt(model, item)
    return inputs, list(range(*span))


def scale_rows(mask: torch.Tensor, layers: list[int], alpha: float) -> LayerEdit:
    """A LayerEdit that scales the heads of mask [items, L, H] in each item's row (batched)."""
    def edit(layer, z, offset):
        rows = mask[edit_holder.rows_from : edit_holder.rows_from + z.shape[0], layer].to(z)
        return z * (1 + (alpha - 1) * rows)[:, None, :, None]

    edit_holder = LayerEdit(layers=layers, edit=edit)
    edit_holder.rows_from = 0
    return edit_holder


def vhr_all(model, pairs, **options) -> dv.Reinforcement:
    parts = [dv.reinforce_pairs(model, pairs[i : i + BATCH], **options) for i in range(0, len(pairs), BATCH)]
    return dv.Reinforcement(torch.cat([p.chosen for p in parts]), torch.cat([p.scores for p in parts]),
                            torch.cat([p.logits for p in parts]), parts[0].alpha)


def random_like(chosen: torch.Tensor, layers: list[int], seed: int) -> torch.Tensor:
    """Per item and layer, as many random heads as `chosen` has there."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros_like(chosen)
    for i in range(chosen.shape[0]):
        for layer in layers:
            n = int(chosen[i, layer].sum())
            out[i, layer, torch.randperm(chosen.shape[2], generator=g)[:n]] = True
    return out


def bootstrap(values: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n, len(values)))].mean(1)
    return float(values.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def fmt(triple, digits=2, percent=False) -> str:
    m, lo, hi = (100 * x for x in triple) if percent else triple
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def experiment(model, limit: int | None, suppression_control: bool = False) -> None:
    items = dv.load_counterfactual()[:limit]
    pairs = [dv.context_prompt(model, item) for item in items]
    cf = torch.tensor([first_token(model, item["counterfactual"]) for item in items])
    mem = torch.tensor([first_token(model, item["memory"]) for item in items])
    layers = dv.default_layers(model.layout.n_layers)
    rows = torch.arange(len(items))

    def diff(logits):
        return (logits[rows, cf] - logits[rows, mem]).numpy()

    started = time.time()
    diffs = {"none": diff(last_logits(model, [inputs for inputs, _ in pairs]))}
    counts = {"none": 0.0}
    for filtered in (True, False):
        tag = "filter" if filtered else "no filter"
        top = vhr_all(model, pairs, filtered=filtered)
        if suppression_control:  # only: the same number of random heads at alpha = 0.5
            name = f"random heads (same count per layer), alpha=0.5, 10 seeds ({tag})"
            diffs[name] = np.mean([diff(last_logits(model, [inputs for inputs, _ in pairs], scale_rows(
                random_like(top.chosen, layers, seed), layers, 0.5))) for seed in range(10)], axis=0)
            counts[name] = top.chosen.sum((1, 2)).float().mean().item()
            break
        diffs[f"VHR top-CD heads, alpha=2 ({tag})"] = diff(top.logits)
        counts[f"VHR top-CD heads, alpha=2 ({tag})"] = top.chosen.sum((1, 2)).float().mean().item()
        per_seed = [diff(last_logits(model, [inputs for inputs, _ in pairs], scale_rows(random_like(top.chosen, layers, seed), layers, 2.0)))
                    for seed in range(10)]
        diffs[f"random heads (same count per layer), alpha=2, 10 seeds ({tag})"] = np.mean(per_seed, axis=0)
        counts[f"random heads (same count per layer), alpha=2, 10 seeds ({tag})"] = counts[f"VHR top-CD heads, alpha=2 ({tag})"]
        seed_means = [float((d > 0).mean()) for d in per_seed]
        print(f"random ({tag}): context-following per seed {min(seed_means):.3f}-{max(seed_means):.3f}", flush=True)
        bottom = vhr_all(model, pairs, filtered=filtered, pick="bottom")
        diffs[f"bottom-CD heads, alpha=2 ({tag})"] = diff(bottom.logits)
        counts[f"bottom-CD heads, alpha=2 ({tag})"] = bottom.chosen.sum((1, 2)).float().mean().item()
        weak = vhr_all(model, pairs, filtered=filtered, alpha=0.5)
        diffs[f"VHR top-CD heads, alpha=0.5 ({tag})"] = diff(weak.logits)
        counts[f"VHR top-CD heads, alpha=0.5 ({tag})"] = weak.chosen.sum((1, 2)).float().mean().item()
        print(f"{tag}: {time.time() - started:.0f} s", flush=True)

    base = diffs["none"]
    table = []
    for name, d in diffs.items():
        follows = (d > 0).astype(float)
        table.append({
            "condition": name, "heads/item": f"{counts[name]:.1f}",
            "context-following % [95% CI]": fmt(bootstrap(follows), 1, percent=True),
            "logit diff [95% CI]": fmt(bootstrap(d)),
            "change vs none [95% CI]": "" if name == "none" else fmt(bootstrap(d - base)),
        })
    print(f"\n{len(items)} items, layers {layers}, {time.time() - started:.0f} s on a shared 2-core CPU\n")
    print(markdown(pd.DataFrame(table)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="rewrite interp/data/counterfactual.jsonl")
    parser.add_argument("--limit", type=int, default=None, help="use the first N known items")
    parser.add_argument("--suppression-control", action="store_true",
                        help="run only the random-heads control of alpha = 0.5 (with the filter)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    model = interp.load_model()
    if args.build:
        build(model)
    else:
        experiment(model, args.limit, args.suppression_control)


if __name__ == "__main__":
    main()
