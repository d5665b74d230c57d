"""Which heads copy the needle when it lies beyond a sliding window: a head of a layer with a window of W
keys cannot see an answer >= W tokens before the query, so on such probes only global-layer heads can copy.

Reads a results directory of `interp scan --analyses retrieval` (its probes table: needle_distance and
copying_heads per probe) and prints, for the answered probes nearer and further than the window, the
copies made by window-layer heads and the heads that copy most.

    interp scan --model gemma3-270m --analyses retrieval --max-length 2048 --out /tmp/res/gemma
    python benchmarks/retrieval_windows.py /tmp/res/gemma --window 512 --global-layers 5,11,17
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import pandas as pd


def copies(texts) -> Counter:
    """Copies per head ("L.H") summed over probes' copying_heads ("11.2:3 5.1:1")."""
    total = Counter()
    for text in texts:
        for item in text.split():
            head, count = item.split(":")
            total[head] += int(count)
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--window", type=int, default=512, help="keys a window layer sees")
    parser.add_argument("--global-layers", default="5,11,17", help="the layers without a window")
    args = parser.parse_args()
    global_layers = {int(x) for x in args.global_layers.split(",")}
    probes = pd.read_parquet(args.results / "retrieval.probes.parquet")
    answered = probes[probes["answered"]]
    print("| needle | answered probes | copies | by window-layer heads | top copying heads (copies) |\n|---|---|---|---|---|")
    for far, group in answered.groupby(answered["needle_distance"] >= args.window):
        counted = copies(group["copying_heads"])
        windowed = sum(n for head, n in counted.items() if int(head.split(".")[0]) not in global_layers)
        top = ", ".join(f"{head} ({n})" for head, n in counted.most_common(6))
        side = ">=" if far else "<"
        print(f"| {side} {args.window} tokens back | {len(group)} | {sum(counted.values())} | {windowed} | {top} |")
    print("\nwindow-layer heads that copy, per probe length and depth:")
    for (length, depth), group in answered.groupby(["length", "depth"]):
        counted = copies(group["copying_heads"])
        windowed = sorted(h for h in counted if int(h.split(".")[0]) not in global_layers)
        print(f"  {length:>5} tokens, depth {depth:<4g} (needle {group['needle_distance'].min()}-"
              f"{group['needle_distance'].max()} back): {', '.join(windowed) or '-'}")


if __name__ == "__main__":
    main()
