"""Safety heads on the refusal organisms (interp.organisms): held-out refusal rates, then the
safety scan (Ships, Sahara, ASR for none / top head / Sahara group / random groups, harmless
refusal under the same ablations, refusal-direction correlation, harmful vs harmless KL).
On the head-restricted organism, also: do its trained heads top the refusal-specific ranking,
and what happens when exactly they are ablated. Prints Markdown (notes/safety.md).

    python benchmarks/safety_organism.py refusal          # the LoRA organism
    python benchmarks/safety_organism.py heads-refusal    # the known-answer organism
    python benchmarks/safety_organism.py refusal --samples 8 --asr-samples 32 --ablations uniform,scale --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd
import torch

from interp import organisms
from interp.analyses import safety
from interp.run.results import ResultsDir

from _markdown import show  # benchmarks/ is on sys.path when a script here runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("organism", choices=list(organisms.RECIPES))
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--asr-samples", type=int, default=16)
    parser.add_argument("--eval-n", type=int, default=40)
    parser.add_argument("--skip-eval", action="store_true", help="no held-out refusal rates")
    parser.add_argument("--random-draws", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--ablations", default="uniform", help="comma-separated: uniform,scale,mean")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    recipe = organisms.RECIPES[args.organism]
    model = organisms.load_organism(recipe)
    meta = json.loads((organisms.organism_dir(recipe) / "recipe.json").read_text())
    print(f"## {args.organism}: built in {meta['train_seconds']} s on {meta['threads']} thread(s); "
          f"torch threads now {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")

    if not args.skip_eval:
        start = time.perf_counter()
        rates = organisms.refusal_rates(model, n=args.eval_n, max_new_tokens=24)
        table = pd.DataFrame([{"set": k, **v} for k, v in rates.items() if k != "samples"])
        show(f"held-out refusal rates ({time.perf_counter() - start:.0f} s)", table)
        show("sample answers", pd.DataFrame([{"set": s, "request": r[:70], "answer": a[:110]}
                                             for s, pairs in rates["samples"].items() for r, a in pairs]))

    start = time.perf_counter()
    results = ResultsDir(args.out) if args.out else None
    if results is not None:
        results.set_model(recipe.name, model.file_hash, model.layout.as_dict())
    tables = safety.scan(model, samples=args.samples, asr_samples=args.asr_samples, ablations=tuple(args.ablations.split(",")),
                         candidates=args.candidates, group_size=3, random_draws=args.random_draws,
                         max_new_tokens=args.max_new_tokens, results=results,
                         extra_groups={"trained_heads": list(recipe.heads)} if recipe.heads else None)
    if results is not None:
        results.write_tables(safety.NAME, tables)
    print(f"\nsafety scan: {time.perf_counter() - start:.0f} s (samples={args.samples}, asr_samples={args.asr_samples})")
    heads = tables["heads"].assign(head=lambda d: d["layer"].astype(str) + "." + d["head"].astype(str))
    cols = ["head", "score", "harmless_kl", "logodds_drop", "harmless_drop", "refusal_specific", "direction_write"]
    show("top 8 heads by Ships (uniform ablation, mean KL on harmful requests)", heads.sort_values("score", ascending=False)[cols].head(8))
    show("top 8 heads by the refusal-specific score (refusal log-odds drop - harmless answer log-odds drop)",
         heads.sort_values("refusal_specific", ascending=False)[cols].head(8))
    show("Sahara (greedy, dataset-level Ships in degrees)", tables["sahara"][["step", "head", "angle"]])
    asr = tables["asr"]
    show("ASR and refusal under ablations", asr)
    rnd = asr[asr["condition"] == "random"]
    print(f"\nrandom groups: ASR {rnd['asr'].mean():.3f} +- {rnd['asr'].std(ddof=0):.3f}, "
          f"broken {rnd['broken'].mean():.3f}, harmless refusal {rnd['harmless_refusal'].mean():.3f}")
    show("answers under ablation (first 4 per condition)", tables["answers"].assign(
        request=lambda d: d["request"].str[:50], answer=lambda d: d["answer"].str[:90]))
    show("summary", tables["summary"])

    if recipe.heads:
        trained = {f"{l}.{h}" for l, h in recipe.heads}
        ranked = heads.sort_values("refusal_specific", ascending=False)["head"].tolist()
        print(f"\ntrained heads {sorted(trained)}: refusal-specific ranks {sorted(ranked.index(h) + 1 for h in trained)}, "
              f"Ships ranks {sorted(heads.sort_values('score', ascending=False)['head'].tolist().index(h) + 1 for h in trained)}")
        show("answers with the trained heads ablated", tables["answers"][tables["answers"]["condition"] == "trained_heads"])


if __name__ == "__main__":
    main()
