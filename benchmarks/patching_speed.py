"""Exact activation patching of every head at the last position, IOI prompts, bundled model:
batched (one head per batch row; the clean prefix run once and reused as a KV cache, so a
row costs one token) vs one forward per head (the prompts patched with PatchHead, the
common loop), in one process, with the scores compared. A middle line shows batching
without the cache (full-length rows), to separate the two gains.

    python benchmarks/patching_speed.py                 # 8 IOI prompts, all 270 heads both ways
    python benchmarks/patching_speed.py --prompts 2 --loop-heads 30   # the loop over every 9th head only
                                                                      # (its time per head x 270 is reported)
    python benchmarks/patching_speed.py --full-rows     # also batched without the KV cache
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

import interp
from interp import PatchHead
from interp.data import tasks
from interp.analyses import circuits

from _markdown import markdown  # benchmarks/ is on sys.path when a script here runs


@torch.no_grad()
def one_forward_per_head(model, prepared, heads) -> list[float]:
    scores = []
    for head in heads:
        total, count = 0.0, 0
        for run in prepared.runs:
            n = run.batch.clean.shape[1]
            with model.intervene(PatchHead([head], values=run.corrupt_z, positions=[n - 1])):
                total += float(circuits.logit_diff(circuits.last_logits(model, run.batch.clean), run.batch).sum())
            count += run.batch.clean.shape[0]
        scores.append(float(prepared.normalise(torch.tensor(total / count, dtype=torch.float64))))
    return scores


def batched_without_cache(model, prepared, heads, chunk) -> list[float]:
    totals, count = torch.zeros(len(heads), dtype=torch.float64), 0
    for run in prepared.runs:
        B, n = run.batch.clean.shape
        prompts = [b for _ in heads for b in range(B)]
        sets = [[h] for h in heads for _ in range(B)]
        m = circuits.patched_metrics(model, run, prompts, sets, run.corrupt_z, n - 1, chunk)
        totals += m.view(len(heads), B).sum(1).cpu()
        count += B
    return prepared.normalise(totals / count).tolist()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=circuits.ROW_CHUNK, help="batch rows per forward")
    parser.add_argument("--loop-heads", type=int, default=None, help="time the per-head loop on this many evenly spaced heads")
    parser.add_argument("--full-rows", action="store_true", help="also time batching without the KV cache")
    args = parser.parse_args()
    model = interp.load_model()
    prepared = circuits.prepare(model, tasks.ioi(model.tokenizer, n=args.prompts, seed=0))
    heads = circuits.all_heads(model)
    lengths = sorted({r.batch.clean.shape[1] for r in prepared.runs})

    step = max(1, len(heads) // args.loop_heads) if args.loop_heads else 1
    looped = list(range(0, len(heads), step))  # indices of the heads the loop runs
    methods = [("batched, KV-cached prefix (exact_patching)",
                lambda: circuits.exact_patching(model, prepared, heads, "last", args.chunk)["score"].tolist())]
    if args.full_rows:
        methods.append(("batched, full-length rows", lambda: batched_without_cache(model, prepared, heads, args.chunk)))
    methods.append(("one forward per head", lambda: one_forward_per_head(model, prepared, [heads[i] for i in looped])))
    rows, scores = [], {}
    for name, run in methods:
        start = time.perf_counter()
        scores[name] = run()
        seconds = time.perf_counter() - start
        n = len(scores[name])
        rows.append({"method": name, "heads timed": n, "seconds": seconds, "seconds for 270 heads": seconds * len(heads) / n})
        print(f"{name}: {seconds:.1f} s for {n} heads", flush=True)
    table = pd.DataFrame(rows)
    table["speed-up vs one per head"] = table["seconds for 270 heads"].iloc[-1] / table["seconds for 270 heads"]
    reference = torch.tensor(scores["one forward per head"])
    table["max abs score diff"] = [float((torch.tensor(s)[looped if len(s) == len(heads) else slice(None)] - reference).abs().max())
                                   for s in scores.values()]
    print(f"\n### exact patching of {len(heads)} heads at the last position, {args.prompts} IOI prompts "
          f"({', '.join(map(str, lengths))} tokens), {torch.get_num_threads()} threads\n")
    print(markdown(table))


if __name__ == "__main__":
    main()
