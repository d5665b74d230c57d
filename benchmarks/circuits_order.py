"""The circuits of a finished `circuits_bundled.py --out DIR` run again, from its saved
importance scores, with the other head order (default: signed, negative heads last), and
their overlap and cross-task faithfulness. The prompts are regenerated with the same
samples and seed, so they are the prompts the scores were measured on.

    python benchmarks/circuits_order.py DIR --samples 10 [--order signed] [--ablation patch]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

import interp
from interp.data import tasks
from interp.analyses import circuits
from interp.run.results import ResultsDir

from _markdown import markdown  # benchmarks/ is on sys.path when a script here runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--order", default="signed", choices=circuits.ORDERS)
    parser.add_argument("--ablation", default="patch", choices=circuits.ABLATIONS)
    parser.add_argument("--rank-by", default="ig", choices=circuits.METHODS)
    args = parser.parse_args()
    results = ResultsDir(args.dir)
    model = interp.load_model()
    start = time.perf_counter()
    prepared, found, rows = {}, {}, []
    for name in ("ioi", "colored_objects"):
        prepared[name] = circuits.prepare(model, tasks.make_task(name, model.tokenizer, n=args.samples, seed=args.seed))
        table = results.read_table("circuits", name)
        importance = table[["layer", "head", args.rank_by]].rename(columns={args.rank_by: "score"})
        circuit = circuits.find_circuit(model, prepared[name], importance, ablation=args.ablation, order=args.order)
        found[name] = circuit
        rows.append({"task": name, "order": args.order, "size": len(circuit.heads), "faithfulness": circuit.faithfulness,
                     "cpr": circuit.cpr, "cmd": circuit.cmd, "non_monotone": circuit.non_monotone,
                     "exceeds_one": circuit.exceeds_one, "heads": " ".join(f"{l}.{h}" for l, h in circuit.heads[:12])})
        print(f"\n### {name}: faithfulness curve, order {args.order}\n\n" + markdown(circuit.curve[["k", "f", "m"]]), flush=True)
    print("\n### circuits\n\n" + markdown(pd.DataFrame(rows)))
    a, b = found["ioi"], found["colored_objects"]
    overlap = circuits.overlap(set(a.heads), set(b.heads), model.layout.n_layers * model.layout.n_heads)
    overlap["faithfulness_b_with_a"] = circuits.faithfulness_of(model, prepared["colored_objects"], a.heads, args.ablation)
    overlap["faithfulness_a_with_b"] = circuits.faithfulness_of(model, prepared["ioi"], b.heads, args.ablation)
    print("\n### overlap (a = ioi, b = colored_objects)\n\n" + markdown(pd.Series(overlap).reset_index()))
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
