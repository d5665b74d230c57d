"""The retrieval causal check on the default subset (a seeded third of the grid) with the heads of the full
grid's run (notes/retrieval.md: top 8 and three random draws of 8), to compare its drop with the full grid's.

    python benchmarks/retrieval_causal_subset.py

Every probe of the subset is prefilled once and decoded as one batch of 5 rows: unmasked, top 8 masked and
the 3 random draws masked (uniform attention during decoding, as the scan does).
"""

from __future__ import annotations

from itertools import product

import interp
from interp.analyses import retrieval
from interp.data import load_texts

# notes/retrieval.md, bundled SmolLM2-135M-Instruct, 45 probes (3 lengths x 5 depths x 3 needles)
FULL_GRID = {"baseline": 0.844, "top": 0.022, "random 0": 0.822, "random 1": 0.822, "random 2": 0.800}
HEADS = {
    "top": "23.2,18.6,17.3,23.7,20.6,18.7,17.4,23.1",
    "random 0": "1.1,7.3,10.8,11.8,23.4,26.4,27.6,29.8",
    "random 1": "8.5,11.4,13.7,14.4,24.6,26.0,28.5,29.8",
    "random 2": "3.8,6.1,10.1,13.5,14.3,16.5,27.7,28.2",
}


def main():
    model = interp.load_model()
    needles, texts = retrieval._needles(None), load_texts(None)
    n_new = retrieval.decode_steps(model, needles)
    lengths = retrieval._lengths(model, None, None, n_new)
    grid = list(product(lengths, retrieval.DEPTHS, needles))
    subset = retrieval._causal_grid(grid, None, seed=0)
    haystacks = {}
    conditions = ["baseline", *HEADS]
    answered = {c: 0 for c in conditions}
    for length, depth, needle in subset:
        probe = retrieval._make_probe(model, length, depth, needle, texts, haystacks)
        cache = retrieval._prefill(model, probe)
        masks = [retrieval.UniformAttention(HEADS[c], rows=[row], positions=slice(probe.prompt_len, None))
                 for row, c in enumerate(conditions) if c in HEADS]
        with model.intervene(*masks):
            gen = retrieval._decode(model, probe, cache, n_new, rows=len(conditions))
        texts_out = [model.tokenizer.decode(ids, skip_special_tokens=True) for ids in gen.new_ids]
        hits = {c: retrieval.rouge1_recall(needle.answer, t) >= retrieval.ANSWERED for c, t in zip(conditions, texts_out)}
        for c in conditions:
            answered[c] += hits[c]
        print(f"{probe.id}: " + " ".join(f"{c}={int(hit)}" for c, hit in hits.items()), flush=True)
    print(f"\ncausal check on {len(subset)} of {len(grid)} probes: {', '.join(retrieval._probe_id(*p) for p in subset)}\n")
    print("| condition | heads masked | subset accuracy | full grid accuracy |\n|---|---|---|---|")
    for c in conditions:
        print(f"| {c} | {HEADS.get(c, '')} | {answered[c] / len(subset):.3f} | {FULL_GRID[c]:.3f} |")


if __name__ == "__main__":
    main()
