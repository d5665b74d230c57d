"""Classic head types on the bundled SmolLM2-135M-Instruct: time and peak memory at growing length,
side by side in one process.

  (a) forward - the base model's forward through SDPA, nothing captured (what running it costs anyway)
  (b) heads   - heads.sequence_scores: previous-token, duplicate-token, induction and first-token
                masses of all 270 heads and every query (6 key_match pairs), no [N, N] matrix
  (c) pattern - the [heads, N, N] way: the dense attention pattern of every layer captured
                (what TransformerLens' detector caches), up to --pattern-max tokens

Sequences are [BOS] + r + r (r uniform random tokens); 8,191 tokens is the longest that fits the
model's 8,192 positions. Peak memory is the process's resident high-water mark during the call
(VmHWM, reset before each call), model weights included.

    python benchmarks/heads_bundled.py --lengths 1024,4096,8191 --pattern-max 1024
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _markdown import markdown  # noqa: E402
from attention_stats import PeakMemory  # noqa: E402

import interp  # noqa: E402
from interp.analyses import heads  # noqa: E402


def measure(run) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS GiB) of one call."""
    with PeakMemory(cuda=False) as peak:
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, peak.peak


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="1024,4096,8191", help="sequence lengths in tokens (odd: [BOS] + r + r)")
    parser.add_argument("--pattern-max", type=int, default=1024, help="longest length to capture dense patterns at")
    args = parser.parse_args()
    model = interp.load_model()
    model.hf.base_model(input_ids=torch.tensor([[1, 2, 3]]))  # warm-up
    rows = []
    for n in [int(x) for x in args.lengths.split(",")]:
        ids = heads.repeated_tokens(model, (n - 1) // 2, [0])
        row = {"tokens": ids.shape[1]}
        row["forward s"], row["forward cpu s"], row["forward GiB"] = measure(lambda: model.hf.base_model(input_ids=ids))
        scores = {}
        row["heads s"], row["heads cpu s"], row["heads GiB"] = measure(lambda: scores.update(heads.sequence_scores(model, ids)))
        if n <= args.pattern_max:
            def dense():
                with model.capture(pattern=True) as cap:
                    model.hf.base_model(input_ids=ids)
                cap.pattern  # noqa: B018 - the [1, 30, 9, N, N] tensor, as a cache holds it
            row["pattern s"], row["pattern cpu s"], row["pattern GiB"] = measure(dense)
        row["best induction"] = float(scores["induction"][0].max())
        rows.append(row)
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table["heads / forward (time)"] = table["heads s"] / table["forward s"]
    print()
    print(markdown(table, float_format="{:.3g}"))
    print(f"\n{model}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"statistics impl: chunked (CPU). Timings on a shared, loaded machine: compare within a row.")


if __name__ == "__main__":
    main()
