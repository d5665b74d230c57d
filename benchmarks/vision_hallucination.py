"""Does reinforcing vision-aware heads (VHR, He et al. 2025) reduce hallucination on the vision
organism, more than reinforcing random heads? (issue 24, experiment 4)

On held-out "seen"-pair scenes (interp.data.scenes, seed 1: scenes the organism never saw), greedy
captions of "Describe the image." under:
- none: no intervention;
- VHR: the paper's rule (analyses.divergence.reinforce_pairs: per scene, layer by layer, the heads
  above their layer's median filtered VHD, in default_layers, scaled by alpha = 2 at every position);
- random: per scene and seed, the same number of heads in each of the same layers, drawn at random;
- bottom: the heads below the layer median (pick="bottom");
- VHR unfiltered: VHR without the outlier filter;
- VAR: only where the organism has visual sink tokens (analyses.sinks.sink_tokens); else "not applicable".
CHAIR_i, CHAIR_s and recall (interp.data.scenes.caption_scores) with 95% bootstrap intervals over
scenes, and the objects named per caption (a caption that names nothing has CHAIR 0: read CHAIR with it); POPE (random / adversarial negatives) on fewer scenes; and the Spearman correlation over
heads between VHD and the head's attention mass on the image tokens (last prompt position).

Each scene's heads are scaled only in its own batch row (ScaleHead(rows=[i])), so all scenes of a
condition are captioned in one batched generate; every prompt has the same length (16 image tokens
and the same text), so no padding is involved and each row is what generate_vhr would give alone
(checked on the first scenes with --check).

    flock /tmp/interp-heavy.lock python benchmarks/vision_hallucination.py --scenes 60 --seeds 10 --alphas 2,1.5,1.25
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).parent))
from _markdown import show  # noqa: E402

from interp.analyses import divergence as dv  # noqa: E402
from interp.analyses import sinks  # noqa: E402
from interp.data import scenes as scene_data  # noqa: E402
from interp.kernels import StatsRequest  # noqa: E402
from interp.organisms import vision  # noqa: E402
from interp.runtime.interventions import ScaleHead  # noqa: E402
from interp.runtime.models import load_model  # noqa: E402

PROMPT = vision.CAPTION_PROMPT
CHUNK = 16  # pairs per VHR selection forward


def batch_inputs(model, images, prompt: str) -> dict:
    """One batch of same-length image prompts (no padding needed: same text, 16 image tokens each)."""
    rows = [sinks.image_inputs(model, image, prompt) for image in images]
    widths = {r["input_ids"].shape[1] for r in rows}
    assert len(widths) == 1, "prompts differ in length"
    return {k: torch.cat([r[k] for r in rows]) for k in rows[0]}


def generate(model, inputs: dict, heads_per_row: list, alpha: float, max_new_tokens: int) -> list[str]:
    """Greedy answers of a batch, row i with heads_per_row[i] scaled by alpha (none: no change)."""
    end = model.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    rows_of = {}  # one ScaleHead per head, acting on the rows that chose it (fewer interventions to run)
    for row, heads in enumerate(heads_per_row):
        for head in heads:
            rows_of.setdefault(head, []).append(row)
    scale = [ScaleHead([head], rows=rows, factor=alpha) for head, rows in rows_of.items()]
    with model.intervene(*scale):
        gen = model.generate(inputs, max_new_tokens=max_new_tokens, eos_token_id=end)
    return model.processor.tokenizer.batch_decode(gen.new_ids, skip_special_tokens=True)


def chosen_heads(model, singles: list[dict], **options) -> torch.Tensor:
    """VHR's head choice per prompt, bool [B, layer, head] (reinforce_pairs, CHUNK pairs a forward)."""
    parts = [dv.reinforce_pairs(model, [(x, None) for x in singles[i : i + CHUNK]], **options).chosen
             for i in range(0, len(singles), CHUNK)]
    return torch.cat(parts)


def as_heads(mask: torch.Tensor) -> list[tuple[int, int]]:
    return [(int(l), int(h)) for l, h in mask.nonzero().tolist()]


def random_like(mask: torch.Tensor, rng: random.Random) -> list[tuple[int, int]]:
    """As many heads in each layer as `mask` [layer, head] has there, drawn at random in that layer."""
    n_heads = mask.shape[1]
    return [(layer, h) for layer, count in enumerate(mask.sum(1).tolist()) if count
            for h in rng.sample(range(n_heads), int(count))]


def per_scene(captions: list[str], scene_list) -> pd.DataFrame:
    """Counts per scene, so that bootstrap resamples can pool them (CHAIR_i is a ratio of sums)."""
    rows = []
    for caption, scene in zip(captions, scene_list):
        s = scene_data.caption_scores([caption], [scene])
        rows.append({"named": s["objects_named"], "wrong": round(s["chair_i"] * s["objects_named"]),
                     "bad": s["chair_s"], "recalled": round(s["recall"] * len(scene.things)), "objects": len(scene.things)})
    return pd.DataFrame(rows)


def metrics(counts: pd.DataFrame) -> dict:
    """CHAIR_i, CHAIR_s, recall of pooled per-scene counts (rows: scenes, possibly several seeds)."""
    return {"chair_i": counts["wrong"].sum() / max(counts["named"].sum(), 1), "chair_s": counts["bad"].mean(),
            "recall": counts["recalled"].sum() / counts["objects"].sum()}


def bootstrap(counts_by_seed: list[pd.DataFrame], n_boot: int, rng: np.random.Generator) -> dict:
    """Point value and 95% interval of each metric, resampling scenes (the same scenes in every seed)."""
    n = len(counts_by_seed[0])
    point = metrics(pd.concat(counts_by_seed))
    samples = []
    for _ in range(n_boot):
        pick = rng.integers(0, n, n)
        samples.append(metrics(pd.concat([c.iloc[pick] for c in counts_by_seed])))
    out = {}
    for key, value in point.items():
        low, high = np.percentile([s[key] for s in samples], [2.5, 97.5])
        out[key] = f"{value:.3f} [{low:.3f}, {high:.3f}]"
    return out


def image_attention_correlation(model, singles: list[dict]) -> pd.DataFrame:
    """Spearman over heads of mean VHD (and filtered VHD) against mean attention mass on the image
    tokens, both at the last prompt position; overall and the mean of the within-layer values."""
    d = dv.divergence(model, [(x, None) for x in singles])
    masses = []
    for x in singles:
        image = sinks.image_positions(model, x)
        with torch.no_grad(), model.capture(stats=StatsRequest(spans=((min(image), max(image) + 1),)), positions="last") as cap:
            model.base_forward(x)
        masses.append(cap.span_mass[0, :, :, -1, 0].float())  # [L, H]
    mass = torch.stack(masses).mean(0)
    rows = []
    for name, score in (("VHD", d.l2.mean(0)), ("VHD filtered", d.filtered.mean(0))):
        within = [spearmanr(score[l], mass[l]).statistic for l in range(mass.shape[0])]
        top = score.flatten().topk(20).indices
        rest = torch.ones(score.numel(), dtype=torch.bool)
        rest[top] = False
        rows.append({"score": name, "spearman (all heads)": spearmanr(score.flatten(), mass.flatten()).statistic,
                     "mean within-layer spearman": float(np.nanmean(within)),
                     "image mass, top-20 heads": float(mass.flatten()[top].mean()),
                     "image mass, other heads": float(mass.flatten()[rest].mean())})
    return pd.DataFrame(rows)


def visual_sink_count(model, singles: list[dict]) -> int:
    """Image positions among the sink tokens of any layer, summed over the prompts (sinks analysis, tau 20)."""
    dims = sinks.massive_dims(model)
    total = 0
    for x in singles:
        image = set(sinks.image_positions(model, x))
        layer_sinks = sinks.sink_tokens(model, x, dims)
        total += len(image & {p for ps in layer_sinks.values() for p in ps})
    return total


def pope(model, scene_list, heads_of, alpha: float, conditions: dict, rng_seed: int = 1) -> pd.DataFrame:
    """POPE accuracy / F1 / yes-ratio per condition (random and adversarial negatives). heads_of(condition,
    singles) gives each probe's heads (VHR's choice is made on the probe's own prompt)."""
    rng = random.Random(rng_seed)
    rows = []
    for kind in ("random", "adversarial"):
        probes = [(s, p) for s in scene_list for p in scene_data.pope_questions(s, rng, kind)]
        singles = [sinks.image_inputs(model, s.image(), p["question"]) for s, p in probes]
        truths = [p["answer"] for _, p in probes]
        for name in conditions:
            replies = []
            for start in range(0, len(singles), 32):
                part = singles[start : start + 32]
                batch = {k: torch.cat([x[k] for x in part]) for k in part[0]}
                replies += generate(model, batch, heads_of(name, part), alpha, max_new_tokens=3)
            s = scene_data.yes_no_scores(replies, truths)
            rows.append({"condition": name, "negatives": kind, "probes": len(truths), "accuracy": s["accuracy"],
                         "f1": s["f1"], "yes_ratio": s["yes_ratio"]})
    return pd.DataFrame(rows)


def paired(counts: dict, a: str, b: str, n_boot: int, rng: np.random.Generator) -> dict:
    """a - b of each metric, with a 95% bootstrap interval over the same scenes."""
    n = len(counts[a][0])
    deltas = []
    for _ in range(n_boot):
        pick = rng.integers(0, n, n)
        ma = metrics(pd.concat([c.iloc[pick] for c in counts[a]]))
        mb = metrics(pd.concat([c.iloc[pick] for c in counts[b]]))
        deltas.append({k: ma[k] - mb[k] for k in ma})
    point_a, point_b = metrics(pd.concat(counts[a])), metrics(pd.concat(counts[b]))
    row = {"difference": f"{a} - {b}"}
    for key in ("chair_i", "chair_s", "recall"):
        low, high = np.percentile([d[key] for d in deltas], [2.5, 97.5])
        row[key] = f"{point_a[key] - point_b[key]:+.3f} [{low:+.3f}, {high:+.3f}]"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=10, help="random-head seeds")
    parser.add_argument("--alphas", default="2.0,1.25", help="VHR factors: the paper's 2 first, then gentler ones")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--pope-scenes", type=int, default=0,
                        help="scenes of POPE probes (slow: about 45 s a scene on 2 cores; the organism's yes/no is at chance)")
    parser.add_argument("--pope-seeds", type=int, default=2)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--check", type=int, default=1, help="scenes checked against generate_vhr one by one")
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.time()
    model = load_model("vision")
    size = model.processor.image_processor.crop_size["height"]
    scene_list = scene_data.scenes(args.scenes, seed=1, split="seen", size=size)
    images = [s.image() for s in scene_list]
    singles = [sinks.image_inputs(model, image, PROMPT) for image in images]
    batch = batch_inputs(model, images, PROMPT)
    alphas = [float(a) for a in args.alphas.split(",")]
    layers = dv.default_layers(model.layout.n_layers)
    print(f"vision organism {model.file_hash}; {len(scene_list)} held-out seen scenes; VHR layers {layers}; "
          f"alphas {alphas}", flush=True)

    counts, captions, timing, n_heads = {}, {}, {}, {}

    def run(name, heads, alpha):
        t = time.time()
        captions[name] = generate(model, batch, heads, alpha, args.max_new_tokens)
        counts.setdefault(name, []).append(per_scene(captions[name], scene_list))
        timing[name] = timing.get(name, 0) + time.time() - t
        n_heads[name] = float(np.mean([len(h) for h in heads]))
        print(f"{name}: {time.time() - t:.1f} s {metrics(counts[name][-1])}; {captions[name][0]!r}", flush=True)

    run("none", [()] * len(singles), 1.0)
    for alpha in alphas:
        t = time.time()
        choice = {"VHR": chosen_heads(model, singles, alpha=alpha),
                  "bottom-VHD": chosen_heads(model, singles, alpha=alpha, pick="bottom"),
                  "VHR unfiltered": chosen_heads(model, singles, alpha=alpha, filtered=False)}
        print(f"head choice at alpha {alpha}: {time.time() - t:.1f} s", flush=True)
        if alpha == alphas[0]:
            for i in range(min(args.check, len(singles))):  # a batched row equals generate_vhr's caption of its scene
                gen, r = dv.generate_vhr(model, singles[i], max_new_tokens=args.max_new_tokens, alpha=alpha)
                ours = generate(model, batch, [as_heads(choice["VHR"][i]) if j == i else () for j in range(len(singles))],
                                alpha, args.max_new_tokens)[i]
                text = model.processor.tokenizer.decode(gen.new_ids[0], skip_special_tokens=True)
                print(f"check scene {i}: same heads {set(r.heads()) == set(as_heads(choice['VHR'][i]))}, "
                      f"same caption {text.strip() == ours.strip()}", flush=True)
        for name, mask in choice.items():
            run(f"{name} a={alpha:g}", [as_heads(m) for m in mask], alpha)
        for seed in range(args.seeds):
            rng = random.Random(seed)
            run(f"random a={alpha:g}", [random_like(m, rng) for m in choice["VHR"]], alpha)

    n_visual_sinks = visual_sink_count(model, singles[:8])
    rng = np.random.default_rng(0)
    rows = []
    for name in counts:
        seeds = len(counts[name])
        rows.append({"condition": name + (f" ({seeds} seeds)" if seeds > 1 else ""), "heads/scene": round(n_heads[name], 1),
                     "named/caption": round(float(pd.concat(counts[name])["named"].mean()), 2),
                     **bootstrap(counts[name], args.boot, rng), "seconds": round(timing[name], 1)})
    reason = f"no visual sink tokens ({n_visual_sinks} image positions among the sinks of 8 scenes, tau 20)"
    rows.append({"condition": "VAR", "heads/scene": "-", "named/caption": "-", "chair_i": "not applicable" if n_visual_sinks == 0 else "not run",
                 "chair_s": reason, "recall": "-", "seconds": "-"})
    show(f"Captions on {len(scene_list)} held-out seen scenes (95% bootstrap over scenes, {args.boot} resamples)",
         pd.DataFrame(rows))
    for alpha in alphas:
        seed_means = pd.DataFrame([metrics(c) for c in counts[f"random a={alpha:g}"]])
        show(f"Random heads at alpha {alpha:g}: spread over seeds", seed_means.describe().loc[["mean", "std", "min", "max"]]
             .reset_index())
    show("Paired differences (95% bootstrap over scenes)",
         pd.DataFrame([paired(counts, a, b, args.boot, rng) for a, b in _pairs(alphas)]))

    t = time.time()
    show("VHD vs attention mass on the image tokens (last prompt position, over heads)",
         image_attention_correlation(model, singles[: min(32, len(singles))]))
    print(f"correlation: {time.time() - t:.1f} s")

    if args.pope_scenes:
        t = time.time()
        alpha = alphas[0]

        def heads_of(name, part):
            if name == "none":
                return [()] * len(part)
            if name.startswith("random"):
                rng = random.Random(int(name.split()[-1]))
                return [random_like(m, rng) for m in chosen_heads(model, part, alpha=alpha)]
            options = {"VHR": {}, "bottom-VHD": {"pick": "bottom"}, "VHR unfiltered": {"filtered": False}}[name]
            return [as_heads(m) for m in chosen_heads(model, part, alpha=alpha, **options)]

        conditions = ["none", "VHR", "bottom-VHD", "VHR unfiltered", *[f"random seed {s}" for s in range(args.pope_seeds)]]
        show(f"POPE on {args.pope_scenes} scenes, alpha {alpha:g} (yes/no is at chance on this organism: read with care)",
             pope(model, scene_list[: args.pope_scenes], heads_of, alpha, conditions))
        print(f"POPE: {time.time() - t:.1f} s")
    print(f"\ntotal {time.time() - started:.0f} s")
    show("Caption samples (the last run of each condition)",
         pd.DataFrame({"scene": [s.caption() for s in scene_list[:4]], **{k: v[:4] for k, v in captions.items()}}).T
         .reset_index())


def _pairs(alphas: list[float]) -> list[tuple[str, str]]:
    """The comparisons the question asks for, at each alpha."""
    out = []
    for a in alphas:
        vhr, rand, bottom = f"VHR a={a:g}", f"random a={a:g}", f"bottom-VHD a={a:g}"
        out += [(vhr, "none"), (vhr, rand), (rand, "none"), (bottom, "none")]
    return out


if __name__ == "__main__":
    main()
