"""Overlap of the two tasks' top-k heads (by |importance|) from a finished
`circuits_bundled.py --out DIR` run, for a few k, with chance and p; and the rank correlation
of signed and of absolute importance. Reads the tables only (no model).

    python benchmarks/circuits_topk.py DIR [--by ig]
"""

from __future__ import annotations

import argparse

import pandas as pd
from scipy import stats

from interp.analyses import circuits
from interp.run.results import ResultsDir

from _markdown import markdown  # benchmarks/ is on sys.path when a script here runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--by", default="ig", choices=("ig", "attribution"))
    args = parser.parse_args()
    results = ResultsDir(args.dir)
    a, b = (results.read_table("circuits", t).sort_values(["layer", "head"], ignore_index=True) for t in ("ioi", "colored_objects"))
    n = len(a)
    rows = []
    for k in (5, 10, 20, 40):
        top = [set(zip(*[t.reindex(t[args.by].abs().sort_values(ascending=False).index).head(k)[c] for c in ("layer", "head")]))
               for t in (a, b)]
        o = circuits.overlap(top[0], top[1], n)
        rows.append({"k": k, "shared": " ".join(f"{l}.{h}" for l, h in sorted(top[0] & top[1])), **{
            key: o[key] for key in ("intersection", "iou", "chance_iou", "p_value")}})
    print(f"### top-k heads by |{args.by}|: IOI vs Colored Objects ({n} heads)\n\n" + markdown(pd.DataFrame(rows)))
    signed = stats.spearmanr(a[args.by], b[args.by]).statistic
    absolute = stats.spearmanr(a[args.by].abs(), b[args.by].abs()).statistic
    print(f"\nSpearman over all heads: signed {signed:.3f}, |importance| {absolute:.3f}")


if __name__ == "__main__":
    main()
