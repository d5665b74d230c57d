"""One attention layer of the bundled model's shape (9 query heads, 3 KV heads, head dim 64, causal):
SDPA against every statistic, with the LSE found or given, and the chunk loop on torch's threads or on
the worker pool. Random q, k, v; the sides take turns in every round; medians are printed.

    python benchmarks/attention_stats_layer.py --length 4096 --rounds 3 [--busy]

--busy runs one competing busy process (one core taken, as on a shared machine) for the whole run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

import interp.kernels.chunked as chunked
from interp.kernels import StatsRequest, attention_stats

ALL_STATS = StatsRequest(lse=True, argmax=True, entropy=True, spans=((0, 1), (16, 64)), pooled=(64, 64), key_mass=True)


def sides(n: int) -> dict:
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(1, 9, n, 64, generator=g), torch.randn(1, 3, n, 64, generator=g), torch.randn(1, 3, n, 64, generator=g)
    fused = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    lse = fused(q, k, v, 0.0, True, scale=0.125)[1]
    stats = lambda **kw: attention_stats(q, k, requests=ALL_STATS, scale=0.125, **kw)  # noqa: E731

    def on_torch_threads():  # the chunk loop with torch's intra-op threads (before the worker pool)
        workers = chunked._workers
        chunked._workers = lambda device, n_chunks: 1
        try:
            stats(lse=lse)
        finally:
            chunked._workers = workers

    return {
        "SDPA": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.125,
                                                                         enable_gqa=True),
        "fused SDPA + LSE": lambda: fused(q, k, v, 0.0, True, scale=0.125),
        "stats, LSE found (two passes)": lambda: stats(),
        "stats, LSE given (worker pool)": lambda: stats(lse=lse),
        "stats, LSE given, torch threads": on_torch_threads,
        "LSE only (two passes)": lambda: attention_stats(q, k, requests=StatsRequest(lse=True), scale=0.125),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="one competing busy process during the run")
    args = parser.parse_args()
    from attention_stats import competing_process  # benchmarks/ is on sys.path when a script here runs

    runs = sides(args.length)
    times = {name: [] for name in runs}
    context = competing_process() if args.busy else nullcontext()
    with context:
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    print(f"N={args.length}, torch threads {torch.get_num_threads()}, {args.rounds} rounds"
          f"{', one competing busy process' if args.busy else ''}\n")
    print("| side | median s | rounds |\n|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.3f} | {' '.join(f'{x:.2f}' for x in t)} |")


if __name__ == "__main__":
    main()
