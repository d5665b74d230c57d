"""Does reinforcing vision-aware heads (VHR, He et al. 2025) reduce hallucination on the vision
organism, more than reinforcing random heads? And what does VAR (Kang et al. 2025) do? (issue 24,
experiment 4)

On held-out "seen"-pair scenes (interp.data.scenes, seed 1: scenes the organism never saw), greedy
captions of "Describe the image." and greedy answers (3 tokens) to POPE probes (random, popular and
adversarial negatives, interp.data.scenes.pope_questions, popularity from 1,000 training scenes as in
interp.organisms.vision.evaluate), under:
- none: no intervention;
- VHR: the paper's rule (analyses.divergence.reinforce_pairs: per prompt, layer by layer, the heads
  above their layer's median filtered VHD, in default_layers, scaled by alpha at every position).
  The choice is made on each prompt's own input: a caption's on (image, caption prompt), a POPE
  probe's on (image, its question), as the paper does;
- random: per prompt and seed, as many heads in each layer as VHR chose there, drawn at random;
- bottom-VHD: the heads below the layer median (pick="bottom");
- VHR unfiltered: VHR without the outlier filter;
- VAR: analyses.var.var_interventions with each prompt's image positions and its sink tokens per layer
  (analyses.sinks: phi over the massive dimensions found on text, tau 20; sinks.scan on the same
  prompts). VAR as defined in analyses/var.py moves 40% of the attention on a layer's sink tokens (visual
  sinks and text sinks such as the first token) to the non-sink image tokens, in image-centric rows
  only (image mass >= 0.2 and at most rho = 0.5 of it on visual sinks). With no visual sinks every row
  with image mass >= 0.2 is image-centric and VAR moves text-sink mass to the image: the script prints
  the visual sink count and the share of image-centric rows so the table says what VAR did here.
Captions: CHAIR_i, CHAIR_s and recall (interp.data.scenes.caption_scores), and the objects named per
caption (a caption that names nothing has CHAIR 0: read CHAIR with it). POPE: accuracy, F1 and the
yes-ratio per kind of negatives. All with 95% bootstrap intervals resampling scenes (a scene's probes
stay together; random heads pool their seeds over the same scenes), and paired differences (VHR - none,
VHR - random, ...) on the same resamples. Last, the Spearman correlation over heads between VHD and the
head's attention mass on the image tokens (last prompt position).

Each prompt's heads are scaled only in its own batch row (ScaleHead(rows=...)), and VAR acts only in
its rows (Redistribute(rows=...)), so a condition runs as a few batched generates. Only prompts of the
same length share a batch (the captions all do: 16 image tokens and the same text; the POPE questions
come in a few lengths), so no padding is involved and each row is what the prompt gives alone (checked
against generate_vhr on the first scenes with --check). The tables also go to --out as Markdown.

    flock /tmp/interp-heavy.lock python benchmarks/vision_hallucination.py --scenes 60 --seeds 10 \\
        --alphas 2,1.5,1.25 --out /tmp/vision/hallucination.md

Cost on 2 free cores (a 10-scene run, 126 POPE probes): a caption condition ~3 s for 10 scenes; a POPE
condition ~0.065 s a probe (60 scenes: ~760 probes, ~50 s); VHR's per-probe head choice ~0.12 s a probe
and rule (3 rules an alpha); VAR's sink scan ~0.34 s a probe. Conditions per task: 2 + alphas x (3 + seeds).
The defaults take about an hour, most of it POPE; --pope-seeds 3 about 45 minutes.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).parent))
from _markdown import markdown, show  # noqa: E402

from interp.analyses import divergence as dv  # noqa: E402
from interp.analyses import sinks, var  # noqa: E402
from interp.data import scenes as scene_data  # noqa: E402
from interp.kernels import StatsRequest  # noqa: E402
from interp.organisms import vision  # noqa: E402
from interp.runtime.interventions import ScaleHead  # noqa: E402
from interp.runtime.models import load_model  # noqa: E402

PROMPT = vision.CAPTION_PROMPT
CHUNK = 16  # pairs per VHR selection forward
BATCH = 64  # prompts per batched generate
POPE_TOKENS = 3  # "Yes." / "No." and a little more
VHR_RULES = {"VHR": {}, "bottom-VHD": {"pick": "bottom"}, "VHR unfiltered": {"filtered": False}}
SHOWN: list[str] = []  # the Markdown of every table shown, for --out


def table(title: str, frame: pd.DataFrame, out: str | None) -> None:
    """Print a table and (re)write the --out file with every table so far (a cut-short run keeps them)."""
    show(title, frame)
    SHOWN.append(f"### {title}\n\n{markdown(frame)}\n")
    if out:
        Path(out).write_text("\n".join(SHOWN))


# ---- generating under interventions ----------------------------------------------------------------


def generate(model, inputs: dict, heads_per_row: list, alpha: float, max_new_tokens: int, extra=()) -> list[str]:
    """Greedy answers of a batch, row i with heads_per_row[i] scaled by alpha (none: no change), and
    the `extra` interventions (VAR's, restricted to their rows)."""
    end = model.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    rows_of = {}  # one ScaleHead per head, acting on the rows that chose it (fewer interventions to run)
    for row, heads in enumerate(heads_per_row):
        for head in heads:
            rows_of.setdefault(head, []).append(row)
    scale = [ScaleHead([head], rows=rows, factor=alpha) for head, rows in rows_of.items()]
    with model.intervene(*scale, *extra):
        gen = model.generate(inputs, max_new_tokens=max_new_tokens, eos_token_id=end)
    return model.processor.tokenizer.batch_decode(gen.new_ids, skip_special_tokens=True)


def same_length_batches(singles: list[dict], size: int = BATCH) -> list[list[int]]:
    """Indices of the prompts in batches of one prompt length (no padding), at most `size` each."""
    by_length = {}
    for i, x in enumerate(singles):
        by_length.setdefault(x["input_ids"].shape[1], []).append(i)
    return [idx[s : s + size] for idx in by_length.values() for s in range(0, len(idx), size)]


def var_for_rows(model, var_inputs: list[tuple]) -> list:
    """VAR's interventions for the rows of a batch, var_inputs[row] = (image positions, {layer: sink
    positions}); rows with the same positions share one set of interventions."""
    groups = {}
    for row, (image, layer_sinks) in enumerate(var_inputs):
        key = (tuple(image), tuple(sorted((layer, tuple(p)) for layer, p in layer_sinks.items())))
        groups.setdefault(key, []).append(row)
    return [i for (image, layer_sinks), rows in groups.items()
            for i in var.var_interventions(model, list(image), {layer: list(p) for layer, p in layer_sinks}, rows=rows)]


def answer(model, singles: list[dict], heads_per_row: list, alpha: float, max_new_tokens: int,
           var_inputs: list | None = None, size: int = BATCH) -> list[str]:
    """Greedy answers of single prompts (same_length_batches), prompt i with heads_per_row[i] scaled
    by alpha and, with var_inputs, VAR with var_inputs[i]; in the prompts' order."""
    out = [""] * len(singles)
    for part in same_length_batches(singles, size):
        batch = {k: torch.cat([singles[i][k] for i in part]) for k in singles[part[0]]}
        extra = var_for_rows(model, [var_inputs[i] for i in part]) if var_inputs else ()
        for i, text in zip(part, generate(model, batch, [heads_per_row[i] for i in part], alpha, max_new_tokens, extra)):
            out[i] = text
    return out


# ---- head choices --------------------------------------------------------------------------------


def chosen_heads(model, singles: list[dict], **options) -> torch.Tensor:
    """VHR's head choice per prompt on its own input, bool [B, layer, head] (reinforce_pairs, up to
    CHUNK same-length pairs a forward: no padding)."""
    out = torch.zeros(len(singles), model.layout.n_layers, model.layout.n_heads, dtype=torch.bool)
    for part in same_length_batches(singles, CHUNK):
        out[part] = dv.reinforce_pairs(model, [(singles[i], None) for i in part], **options).chosen
    return out


def as_heads(mask: torch.Tensor) -> list[tuple[int, int]]:
    return [(int(l), int(h)) for l, h in mask.nonzero().tolist()]


def random_like(mask: torch.Tensor, rng: random.Random) -> list[tuple[int, int]]:
    """As many heads in each layer as `mask` [layer, head] has there, drawn at random in that layer."""
    n_heads = mask.shape[1]
    return [(layer, h) for layer, count in enumerate(mask.sum(1).tolist()) if count
            for h in rng.sample(range(n_heads), int(count))]


def head_runs(model, singles: list[dict], alpha: float, seeds: int) -> tuple[dict, dict]:
    """(VHR-rule masks [B, layer, head] by name, and name -> runs, a run = each prompt's heads; random
    has one run per seed, drawn like VHR's choice of each prompt)."""
    masks = {name: chosen_heads(model, singles, alpha=alpha, **options) for name, options in VHR_RULES.items()}
    runs = {name: [[as_heads(m) for m in mask]] for name, mask in masks.items()}
    runs["random"] = []
    for seed in range(seeds):
        rng = random.Random(seed)
        runs["random"].append([random_like(m, rng) for m in masks["VHR"]])
    return masks, runs


# ---- VAR's inputs, from the sinks analysis --------------------------------------------------------


def var_setup(model, items: list[tuple[str, object, str]], singles: list[dict], dims: list[int]) -> tuple[list, dict]:
    """VAR's (image positions, {layer: sink positions}) of each (key, image, prompt) item, from
    sinks.scan on exactly these prompts (sink dimensions `dims`, tau 20), and what it says of them."""
    tables = sinks.scan(model, samples=1, images=items, sink_dims=dims)  # one text prompt: scan() needs one
    found = tables["sink_tokens"]
    var_inputs = []
    for (key, _, _), inputs in zip(items, singles):
        mine = found[found["sample"] == f"image:{key}"]
        layer_sinks = {layer: sorted(group["position"]) for layer, group in mine.groupby("layer")}
        var_inputs.append((sinks.image_positions(model, inputs), layer_sinks))
    heads = tables["heads"]
    heads = heads[heads["layer"] < model.layout.n_layers - 1]  # VAR leaves the last layer alone
    on_images = found[found["sample"].str.startswith("image:")]
    visual = on_images["image"].astype(bool)
    tokens = lambda rows: len(rows[["sample", "position"]].drop_duplicates())  # noqa: E731 (distinct tokens, any layer)
    facts = {
        "prompts": len(items),
        "visual sink tokens": tokens(on_images[visual]),
        "text sink tokens / prompt": tokens(on_images[~visual]) / len(items),
        "image-centric rows": float(heads["image_centric"].mean()),  # text queries behind the image, all heads
        "image mass": float(heads["image_mass"].mean()),
    }
    return var_inputs, facts


# ---- scores ----------------------------------------------------------------------------------------


def caption_counts(captions: list[str], scene_list) -> pd.DataFrame:
    """Counts per scene, so that bootstrap resamples can pool them (CHAIR_i is a ratio of sums)."""
    rows = []
    for caption, scene in zip(captions, scene_list):
        s = scene_data.caption_scores([caption], [scene])
        rows.append({"scenes": 1, "named": s["objects_named"], "wrong": round(s["chair_i"] * s["objects_named"]),
                     "bad": s["chair_s"], "recalled": round(s["recall"] * len(scene.things)), "objects": len(scene.things)})
    return pd.DataFrame(rows)


def caption_metrics(s: dict) -> dict:
    """CHAIR_i, CHAIR_s, recall of pooled per-scene counts (column sums)."""
    return {"chair_i": s["wrong"] / max(s["named"], 1), "chair_s": s["bad"] / s["scenes"], "recall": s["recalled"] / s["objects"]}


def pope_counts(replies: list[str], probes: list[tuple[int, dict]], n_scenes: int) -> pd.DataFrame:
    """Confusion counts per scene (rows: scenes 0..n-1; an unparsed reply counts as "no", as in POPE)."""
    counts = np.zeros((n_scenes, 5))
    for reply, (scene, probe) in zip(replies, probes):
        said = scene_data.yes_no(reply)
        yes, truth = said == "yes", probe["answer"] == "yes"
        counts[scene] += [yes and truth, yes and not truth, truth and not yes, not yes and not truth, said is None]
    return pd.DataFrame(counts, columns=["tp", "fp", "fn", "tn", "unparsed"])


def pope_metrics(s: dict) -> dict:
    """POPE's accuracy, F1 of "yes", yes-ratio and unparsed share of pooled counts (scene_data.yes_no_scores)."""
    n = s["tp"] + s["fp"] + s["fn"] + s["tn"]
    precision = s["tp"] / (s["tp"] + s["fp"]) if s["tp"] + s["fp"] else 0.0
    recall = s["tp"] / (s["tp"] + s["fn"]) if s["tp"] + s["fn"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (s["tp"] + s["tn"]) / n, "f1": f1, "yes_ratio": (s["tp"] + s["fp"]) / n, "unparsed": s["unparsed"] / n}


def _sums(runs: list[pd.DataFrame], pick) -> dict:
    """Column sums over the picked scenes (rows) of every run (seed)."""
    array = np.stack([r.to_numpy(float) for r in runs])[:, pick]
    return dict(zip(runs[0].columns, array.sum((0, 1))))


def bootstrap(runs: list[pd.DataFrame], metric, n_boot: int, rng: np.random.Generator) -> dict:
    """Point value and 95% interval of each metric, resampling scenes (the same scenes in every run)."""
    n = len(runs[0])
    point = metric(_sums(runs, np.arange(n)))
    samples = [metric(_sums(runs, rng.integers(0, n, n))) for _ in range(n_boot)]
    out = {}
    for key, value in point.items():
        low, high = np.percentile([s[key] for s in samples], [2.5, 97.5])
        out[key] = f"{value:.3f} [{low:.3f}, {high:.3f}]"
    return out


def paired(counts: dict, a: str, b: str, metric, n_boot: int, rng: np.random.Generator) -> dict:
    """a - b of each metric, with a 95% bootstrap interval over the same resampled scenes."""
    n = len(counts[a][0])
    point_a, point_b = metric(_sums(counts[a], np.arange(n))), metric(_sums(counts[b], np.arange(n)))
    deltas = []
    for _ in range(n_boot):
        pick = rng.integers(0, n, n)
        ma, mb = metric(_sums(counts[a], pick)), metric(_sums(counts[b], pick))
        deltas.append({k: ma[k] - mb[k] for k in ma})
    row = {"difference": f"{a} - {b}"}
    for key in point_a:
        low, high = np.percentile([d[key] for d in deltas], [2.5, 97.5])
        row[key] = f"{point_a[key] - point_b[key]:+.3f} [{low:+.3f}, {high:+.3f}]"
    return row


def _pairs(alphas: list[float], with_var: bool) -> list[tuple[str, str]]:
    """The comparisons the question asks for, at each alpha."""
    out = []
    for a in alphas:
        vhr, rand, bottom = f"VHR a={a:g}", f"random a={a:g}", f"bottom-VHD a={a:g}"
        out += [(vhr, "none"), (vhr, rand), (rand, "none"), (bottom, "none")]
    return out + ([("VAR", "none")] if with_var else [])


# ---- one task: captions or POPE answers under every condition ---------------------------------------


def run_conditions(model, singles: list[dict], alphas: list[float], seeds: int, max_new_tokens: int, score,
                   var_inputs: list, label: str) -> tuple[dict, dict, dict, dict]:
    """Answers of every prompt under every condition: name -> list of per-scene count frames (one per
    run), and the last run's answers, seconds and mean heads per prompt of each condition."""
    counts, answers, seconds, n_heads = {}, {}, {}, {}

    def run(name, heads, alpha, var_rows=None):
        t = time.time()
        answers[name] = answer(model, singles, heads, alpha, max_new_tokens, var_rows)
        counts.setdefault(name, []).append(score(answers[name]))
        seconds[name] = seconds.get(name, 0) + time.time() - t
        n_heads[name] = float(np.mean([len(h) for h in heads]))
        print(f"{label} {name}: {time.time() - t:.1f} s; {answers[name][0]!r}", flush=True)

    nothing = [()] * len(singles)
    run("none", nothing, 1.0)
    for alpha in alphas:
        t = time.time()
        _, runs = head_runs(model, singles, alpha, seeds)
        print(f"{label} head choice at alpha {alpha}: {time.time() - t:.1f} s", flush=True)
        for name, per_run in runs.items():
            for heads in per_run:
                run(f"{name} a={alpha:g}", heads, alpha)
    run("VAR", nothing, 1.0, var_inputs)
    return counts, answers, seconds, n_heads


def condition_table(counts: dict, metric, n_boot: int, rng, extra: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for name, runs in counts.items():
        label = name + (f" ({len(runs)} seeds)" if len(runs) > 1 else "")
        rows.append({"condition": label, **extra.get(name, {}), **bootstrap(runs, metric, n_boot, rng)})
    return pd.DataFrame(rows)


def var_note(facts: dict) -> str:
    return (f"VAR: {facts['visual sink tokens']} visual sink tokens over {facts['prompts']} prompts, "
            f"{facts['text sink tokens / prompt']:.1f} text sink tokens a prompt, "
            f"{facts['image-centric rows']:.2f} of the text queries' attention rows image-centric "
            f"(mean image mass {facts['image mass']:.2f})" + ("; with no visual sinks VAR only moves text-sink mass to the image"
                                                              if facts["visual sink tokens"] == 0 else ""))


# ---- other measurements ------------------------------------------------------------------------


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
        top = score.flatten().topk(min(20, score.numel() // 2)).indices
        rest = torch.ones(score.numel(), dtype=torch.bool)
        rest[top] = False
        rows.append({"score": name, "spearman (all heads)": spearmanr(score.flatten(), mass.flatten()).statistic,
                     "mean within-layer spearman": float(np.nanmean(within)),
                     "image mass, top-20 heads": float(mass.flatten()[top].mean()),
                     "image mass, other heads": float(mass.flatten()[rest].mean())})
    return pd.DataFrame(rows)


def check_rows(model, singles: list[dict], alpha: float, n: int, max_new_tokens: int) -> None:
    """A batched row equals generate_vhr's caption of its scene alone (same heads, same text)."""
    mask = chosen_heads(model, singles[:CHUNK], alpha=alpha)  # the first chunk, as the full run chooses it
    for i in range(min(n, len(singles))):
        gen, r = dv.generate_vhr(model, singles[i], max_new_tokens=max_new_tokens, alpha=alpha)
        ours = answer(model, singles, [as_heads(mask[i]) if j == i else () for j in range(len(singles))],
                      alpha, max_new_tokens)[i]
        text = model.processor.tokenizer.decode(gen.new_ids[0], skip_special_tokens=True)
        print(f"check scene {i}: same heads {set(r.heads()) == set(as_heads(mask[i]))}, "
              f"same caption {text.strip() == ours.strip()}", flush=True)


def pope_probes(scene_list, seed: int = 1) -> list[tuple[int, dict]]:
    """(scene index, probe) of every POPE probe of the scenes, all three kinds (as vision.evaluate)."""
    popularity = scene_data.pair_counts(scene_data.scenes(1000, 0, "train"))
    rng = random.Random(seed)
    return [(i, p) for kind in scene_data.POPE_KINDS for i, s in enumerate(scene_list)
            for p in scene_data.pope_questions(s, rng, kind, popularity)]


# ---- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=10, help="random-head seeds")
    parser.add_argument("--alphas", default="2,1.5,1.25", help="VHR factors: the paper's 2 first, then gentler ones")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="caption tokens")
    parser.add_argument("--pope-scenes", type=int, default=None, help="scenes of POPE probes (default: all; 0: no POPE)")
    parser.add_argument("--pope-seeds", type=int, default=None,
                        help="random-head seeds for POPE (default: --seeds; each seed of each alpha is one pass over all probes)")
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--check", type=int, default=1, help="scenes checked against generate_vhr one by one")
    parser.add_argument("--out", default="/tmp/vision-hallucination.md", help="the tables as Markdown")
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.time()
    out = args.out
    model = load_model("vision")
    size = model.processor.image_processor.crop_size["height"]
    scene_list = scene_data.scenes(args.scenes, seed=1, split="seen", size=size)
    images = [s.image() for s in scene_list]
    singles = [sinks.image_inputs(model, image, PROMPT) for image in images]
    alphas = [float(a) for a in args.alphas.split(",")]
    rng = np.random.default_rng(0)
    SHOWN.append(f"`{' '.join(sys.argv)}`: vision organism {model.file_hash}, {len(scene_list)} held-out seen scenes, "
                 f"VHR layers {dv.default_layers(model.layout.n_layers)}, alphas {alphas}, {args.seeds} random seeds, "
                 f"load average at the start {os.getloadavg()[0]:.1f}\n")
    print(SHOWN[0], flush=True)

    if args.check:
        check_rows(model, singles, alphas[0], args.check, args.max_new_tokens)

    t = time.time()
    dims = sinks.massive_dims(model)
    var_inputs, facts = var_setup(model, [(s.key, im, PROMPT) for s, im in zip(scene_list, images)], singles, dims)
    print(f"VAR setup (captions): {time.time() - t:.1f} s; massive dims {dims}; {var_note(facts)}", flush=True)

    counts, captions, seconds, n_heads = run_conditions(
        model, singles, alphas, args.seeds, args.max_new_tokens, lambda c: caption_counts(c, scene_list), var_inputs, "captions")
    extra = {name: {"heads/scene": round(n_heads[name], 1),
                    "named/caption": round(_sums(runs, np.arange(len(scene_list)))["named"] / (len(runs) * len(scene_list)), 2),
                    "seconds": round(seconds[name], 1)} for name, runs in counts.items()}
    table(f"Captions on {len(scene_list)} held-out seen scenes (95% bootstrap over scenes, {args.boot} resamples). "
          + var_note(facts), condition_table(counts, caption_metrics, args.boot, rng, extra), out)
    for alpha in alphas:
        every_scene = np.arange(len(scene_list))
        seed_means = pd.DataFrame([caption_metrics(_sums([c], every_scene)) for c in counts[f"random a={alpha:g}"]])
        table(f"Captions, random heads at alpha {alpha:g}: spread over seeds",
              seed_means.describe().loc[["mean", "std", "min", "max"]].reset_index(), out)
    table("Captions, paired differences (95% bootstrap over scenes)",
          pd.DataFrame([paired(counts, a, b, caption_metrics, args.boot, rng) for a, b in _pairs(alphas, True)]), out)

    t = time.time()
    table("VHD vs attention mass on the image tokens (last prompt position, over heads)",
          image_attention_correlation(model, singles[: min(32, len(singles))]), out)
    print(f"correlation: {time.time() - t:.1f} s", flush=True)

    n_pope = len(scene_list) if args.pope_scenes is None else min(args.pope_scenes, len(scene_list))
    if n_pope:
        t = time.time()
        probes = pope_probes(scene_list[:n_pope])
        items = [(f"{p['kind']}:{j}", images[i], p["question"]) for j, (i, p) in enumerate(probes)]
        probe_inputs = [sinks.image_inputs(model, image, question) for _, image, question in items]
        pope_var, pope_facts = var_setup(model, items, probe_inputs, dims)
        print(f"POPE: {len(probes)} probes on {n_pope} scenes; VAR setup {time.time() - t:.1f} s; {var_note(pope_facts)}",
              flush=True)
        pope_counts_of = {kind: [j for j, (_, p) in enumerate(probes) if p["kind"] == kind] for kind in scene_data.POPE_KINDS}
        runs, _, pope_seconds, pope_heads = run_conditions(
            model, probe_inputs, alphas, args.seeds if args.pope_seeds is None else args.pope_seeds, POPE_TOKENS,
            lambda replies: replies, pope_var, "POPE")
        for kind, idx in pope_counts_of.items():
            by_kind = {name: [pope_counts([r[j] for j in idx], [probes[j] for j in idx], n_pope) for r in replies]
                       for name, replies in runs.items()}
            extra = {name: {"heads/probe": round(pope_heads[name], 1)} for name in by_kind}
            table(f"POPE ({kind} negatives): {len(idx)} probes on {n_pope} scenes (95% bootstrap over scenes). "
                  + var_note(pope_facts), condition_table(by_kind, pope_metrics, args.boot, rng, extra), out)
            table(f"POPE ({kind} negatives), paired differences (95% bootstrap over scenes)",
                  pd.DataFrame([paired(by_kind, a, b, pope_metrics, args.boot, rng) for a, b in _pairs(alphas, True)]), out)
        print(f"POPE: {time.time() - t:.1f} s (generation {sum(pope_seconds.values()):.1f} s)", flush=True)

    table("Caption samples (the last run of each condition)",
          pd.DataFrame({"scene": [s.caption() for s in scene_list[:4]], **{k: v[:4] for k, v in captions.items()}}).T
          .reset_index(), out)
    total = f"total {time.time() - started:.0f} s, load average at the end {os.getloadavg()[0]:.1f}"
    print(f"\n{total}")
    SHOWN.append(total + "\n")
    Path(out).write_text("\n".join(SHOWN))


if __name__ == "__main__":
    main()
