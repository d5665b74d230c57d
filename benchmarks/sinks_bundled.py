"""Attention sinks on the bundled SmolLM2-135M-Instruct: sink rate at eps = 0.3 over the
bundled prompts cut to 64 tokens (Gu et al.'s setting), the massive activations per layer
and the tokens carrying them, then one long prompt through the kernels (statistics, no
[N, N] pattern) with its wall time and peak RSS. Prints markdown tables (notes/sinks.md).

    python benchmarks/sinks_bundled.py                  # both parts; the long one in a fresh process
    python benchmarks/sinks_bundled.py --long 4096      # only the long prompt (this process)
    python benchmarks/sinks_bundled.py --out DIR        # also write every table as parquet
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

import interp
from interp.analyses import sinks
from interp.data import make_haystack

from _markdown import show  # benchmarks/ is on sys.path when a script here runs


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def short_prompts(model, out: Path | None) -> None:
    start = time.perf_counter()
    tables = sinks.scan(model, eps=0.3, n_tokens=64)
    print(f"\nscan of {tables['tokens']['sample'].nunique()} prompts x 64 tokens: {time.perf_counter() - start:.1f} s")
    heads = tables["heads"]
    show("summary", tables["summary"])
    per_layer = heads.groupby("layer").agg(sink_rate=("sink_rate", "mean"), mean_score=("score", "mean"),
                                           max_score=("score", "max")).reset_index()
    show("sink rate per layer (eps = 0.3, first token)", per_layer)
    show("top 10 sink heads", heads.sort_values("score", ascending=False).head(10))
    show("massive activations per layer", tables["massive"])
    show("non-first tokens that act as sinks (top 10 by mean importance, >= 3 occurrences)",
         tables["token_types"].query("n >= 3").head(10))
    top = tables["tokens"].query(f"position > 0 and queries >= {sinks.MIN_QUERIES}")
    top = top.sort_values("importance", ascending=False).head(10)
    show(f"most important non-first keys (seen by >= {sinks.MIN_QUERIES} queries)",
         top[["sample", "position", "token", "importance", "sink_heads", "massive_layers", "sink_layers"]])
    found = tables["sink_tokens"].query("position > 0")
    by_token = found.groupby("token").agg(n=("position", "size"), samples=("sample", "nunique"), first_layer=("layer", "min"),
                                          last_layer=("layer", "max"), dim=("dim", lambda d: " ".join(map(str, sorted(set(d))))),
                                          phi=("phi", "median"))
    show("non-first sink tokens by phi > 20 on the massive dims (token x layer entries)",
         by_token.sort_values("n", ascending=False).head(8).reset_index())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            table.to_parquet(out / f"sinks.{name}.parquet", index=False)


def long_prompt(model, n_tokens: int) -> None:
    text = make_haystack(model.tokenizer, n_tokens)
    n = model.tokenize(text)["input_ids"].shape[1]
    sinks.key_importance(model, model.tokenize("A short warm-up touches every weight page."))  # weights are mmapped
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    tables = sinks.scan(model, prompts=[text], n_tokens=None)
    wall, rss_scan = time.perf_counter() - start, peak_rss_mb()
    start = time.perf_counter()
    with torch.no_grad():  # the same forward without statistics or hidden states, for comparison
        model.hf.base_model(**model.tokenize(text))
    plain = time.perf_counter() - start
    heads, summary = tables["heads"], tables["summary"].set_index("metric")
    pattern_gb = model.layout.n_layers * model.layout.n_heads * n * n * 4 / 1e9
    print(f"\n### one {n}-token prompt through the kernels\n")
    print(f"- wall time: {wall:.1f} s for the scan (one forward with key-mass statistics of all "
          f"{model.layout.n_total_heads} heads + hidden states); a plain forward: {plain:.1f} s; "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"- peak RSS: {rss_scan:.0f} MB (after loading the model and a warm-up forward: {rss_before:.0f} MB); "
          f"a full fp32 pattern capture would hold {pattern_gb:.1f} GB")
    print(f"- sink rate (eps = 0.3, first token): {heads['sink_rate'].mean():.3f}; mean first-token importance "
          f"{heads['score'].mean():.3f}")
    print(f"- massive dims: {summary.loc['massive_dims', 'detail']} in layers {summary.loc['massive_layers', 'detail']}")
    top = tables["tokens"].query(f"queries >= {sinks.MIN_QUERIES}").sort_values("importance", ascending=False).head(8)
    show(f"most important keys of the long prompt (seen by >= {sinks.MIN_QUERIES} queries)",
         top[["position", "token", "importance", "sink_heads", "queries", "massive_layers", "sink_layers"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", type=int, default=None, help="only the long prompt, of this many tokens")
    parser.add_argument("--long-tokens", type=int, default=4096, help="length of the long prompt in the full run")
    parser.add_argument("--out", type=Path, default=None, help="write the short-prompt tables here")
    args = parser.parse_args()

    start = time.perf_counter()
    model = interp.load_model()
    print(f"{model}; loaded in {time.perf_counter() - start:.1f} s")
    if args.long is not None:
        long_prompt(model, args.long)
        return
    short_prompts(model, args.out)
    sys.stdout.flush()
    # A fresh process, so that its peak RSS is that of the long prompt alone.
    subprocess.run([sys.executable, __file__, "--long", str(args.long_tokens)], check=True)


if __name__ == "__main__":
    main()
