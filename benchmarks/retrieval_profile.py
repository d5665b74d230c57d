"""Where one retrieval probe's time goes on the bundled model: prefill, decoding with and without the
argmax statistics, and the causal check's masked batch (CPU seconds and wall seconds, one thread).

    python benchmarks/retrieval_profile.py --lengths 2048 512
"""

from __future__ import annotations

import argparse
import time

import torch

import interp
from interp.analyses import retrieval
from interp.data import load_texts


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self):
        return f"{self.cpu:.1f} CPU s ({self.wall:.1f} s wall)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 512])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = interp.load_model()
    needles, texts = retrieval._needles(None), load_texts(None)
    n_new = retrieval.decode_steps(model, needles)
    haystacks = {}
    for length in args.lengths:
        probe = retrieval._make_probe(model, length, 0.5, needles[0], texts, haystacks)
        with Timer() as prefill:
            retrieval._prefill(model, probe)
        with Timer() as score:  # prefill + decoding with the argmax statistics
            record = retrieval._score_probe(model, probe, n_new)
        cache = retrieval._prefill(model, probe)
        with Timer() as plain:
            retrieval._decode(model, probe, cache, n_new)
        cache = retrieval._prefill(model, probe)
        masks = [retrieval.UniformAttention("23.2,18.6", rows=[row], positions=slice(probe.prompt_len, None))
                 for row in range(4)]
        with Timer() as causal, model.intervene(*masks):
            retrieval._decode(model, probe, cache, n_new, rows=4)
        print(f"{length} tokens, {record['n_tokens']} generated, {args.threads} thread(s): prefill {prefill} | "
              f"prefill + decoding with statistics {score} | decoding alone {plain} | 4 masked rows {causal}", flush=True)


if __name__ == "__main__":
    main()
