"""Retrieval heads of the bundled SmolLM2-135M-Instruct at the issue's acceptance size:
3 needles x 5 depths x 3 context lengths (512, 1024, 2048 tokens), with the causal check.

    python benchmarks/retrieval_bundled.py [--out DIR] [--lengths 512 1024 2048] [--threads 2]

Saves every finished probe under DIR (a killed run resumes where it stopped), writes the
tables there as Parquet, and prints the figures for notes/retrieval.md as Markdown.
"""

import argparse
import time
from pathlib import Path

import torch

import interp
from interp.analyses import retrieval
from interp.runtime.models import cache_dir
from interp.run.results import ResultsDir

from _markdown import markdown  # benchmarks/ is on sys.path when a script here runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=cache_dir() / "bench" / "retrieval")
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--depths", type=float, nargs="+", default=list(retrieval.DEPTHS))
    parser.add_argument("--causal-k", type=int, default=None)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--mask", default="uniform")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = interp.load_model()
    params = dict(lengths=args.lengths, depths=args.depths, causal_k=args.causal_k, causal_draws=args.draws,
                  mask=args.mask)
    results = ResultsDir(args.out)
    results.set_model(model.source, model.file_hash, model.layout.as_dict())
    results.start_analysis("retrieval", params)
    start = time.perf_counter()
    tables = retrieval.scan(model, results=results, **params)
    wall = time.perf_counter() - start
    results.write_tables("retrieval", tables)
    results.finish_analysis("retrieval")

    heads, probes, causal = tables["heads"], tables["probes"], tables["causal"]
    print(f"## Bundled run: {model}\n")
    print(f"{len(probes)} probes ({len(args.lengths)} lengths x {len(args.depths)} depths x "
          f"{probes['needle'].nunique()} needles), wall time {wall / 60:.1f} min "
          f"({torch.get_num_threads()} threads; resumed runs count only the part they ran)\n")
    print(f"answered fraction: {probes['answered'].mean():.3f}")
    print(f"heads above 0.1: {int(heads['is_retrieval'].sum())} / {len(heads)} = {heads['is_retrieval'].mean():.3f}\n")
    print("### Answered fraction by length and depth\n")
    print(markdown(probes.pivot_table(index="length", columns="depth", values="answered", aggfunc="mean"), True, "{:.3f}"))
    print("\n### Top 10 heads\n")
    top = heads.sort_values("score", ascending=False).head(10)
    print(markdown(top, float_format="{:.3f}"))
    print("\n### Causal check (needle accuracy)\n")
    print(markdown(causal, float_format="{:.3f}"))
    rand = causal.loc[causal["condition"] == "random", "accuracy"]
    if len(rand):
        print(f"\nrandom-k mean {rand.mean():.3f} +- {rand.std(ddof=0):.3f} (std over {len(rand)} draws)")
    print("\n### Probes\n")
    print(markdown(probes[["probe", "prompt_tokens", "answered", "rouge", "generated"]], float_format="{:.3f}"))


if __name__ == "__main__":
    main()
