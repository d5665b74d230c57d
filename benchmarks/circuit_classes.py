"""The IOI circuit's head classes (Wang et al. 2022) on the bundled SmolLM2-135M-Instruct, and
the same classes on Colored Objects: one circuits scan with positions="roles", exact patching
of every head and classes=True (what `interp scan --analyses circuits --set exact=all --set
positions=roles` runs), then the tables notes/circuits.md quotes: the head x role table for
IOI (the heads with the largest effect at a role other than END first), each class with its
heads and evidence, the class edges, the class circuit's faithfulness (rest mean-ablated)
beside the greedy circuit's size, and the per-class overlap of the two tasks against chance.

    flock /tmp/interp-heavy.lock python benchmarks/circuit_classes.py --samples 32 --out /tmp/circuit-classes
    ... --redo-classes    # the classes again from the saved scan (after a change to analyses/circuit_classes.py)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import interp
from interp.analyses import circuit_classes, circuits
from interp.data import tasks
from interp.run.results import ResultsDir

from _markdown import show  # benchmarks/ is on sys.path when a script here runs

SUMMARY = ["task", "prompts", "clean_logit_diff", "corrupt_logit_diff", "circuit_size", "faithfulness",
           "class_circuit_size", "class_circuit_faithfulness", "greedy_size", "greedy_faithfulness",
           "greedy_same_size_faithfulness"]


def role_view(positions: pd.DataFrame, k: int) -> pd.DataFrame:
    """Heads as rows, roles as columns (exact patching), the heads with the largest |effect| at
    any role first; the heads with the largest effect away from END are kept too."""
    wide = positions.pivot_table(index=["layer", "head"], columns="role", values="exact", sort=False) + 0.0  # no -0
    wide = wide[[r for r in positions["role"].unique()]]
    off_end = wide.drop(columns="END").abs().max(axis=1)
    keep = wide.abs().max(axis=1).nlargest(k).index.union(off_end.nlargest(k).index)
    view = wide.loc[keep].assign(order=wide.loc[keep].abs().max(axis=1)).sort_values("order", ascending=False).drop(columns="order")
    return view.reset_index().assign(head=lambda t: t["layer"].astype(str) + "." + t["head"].astype(str)).drop(columns="layer")


def redo_classes(model, results: ResultsDir, samples: int) -> None:
    """The classes of a finished scan's tasks again, from its saved importance (same prompts)."""
    done = results.load_progress("circuits")
    for name in ("ioi", "colored_objects"):
        record = done[name]
        prepared = circuits.prepare(model, tasks.make_task(name, model.tokenizer, n=samples, seed=0))
        summary = record["summary"][0]
        found = circuit_classes.find_classes(model, prepared, pd.DataFrame(record["heads"]), summary["target"])
        for kind, table in (("classes", found.classes), ("class_edges", found.edges), ("class_evidence", found.evidence)):
            record[kind] = table.assign(task=name).to_dict("records")
        summary.update(found.summary)
        results.save_progress("circuits", name, record)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("/tmp/circuit-classes"), help="results directory (resumes)")
    parser.add_argument("--ig-steps", type=int, default=5)
    parser.add_argument("--redo-classes", action="store_true", help="recompute the classes of the saved scan")
    args = parser.parse_args()

    start = time.time()
    model = interp.load_model()
    results = ResultsDir(args.out)
    if args.redo_classes:
        redo_classes(model, results, args.samples)
    tables = circuits.scan(model, samples=args.samples, tasks="ioi,colored_objects", exact="all", positions="roles",
                           classes=True, ig_steps=args.ig_steps, results=results)
    results.write_tables("circuits", tables)
    print(f"scan: {time.time() - start:.0f} s, {args.samples} prompts per task", flush=True)

    for task in ("ioi", "colored_objects"):
        show(f"{task}: exact patching per head and role (normalised)", role_view(tables[f"{task}_positions"], 10))
        head = tables[f"{task}_positions"]
        show(f"{task}: head 17.4 by role", head[(head.layer == 17) & (head["head"] == 4)])
        show(f"{task}: head classes and their evidence", tables[f"{task}_classes"].drop(columns="task"))
        show(f"{task}: class edges (sum of the sending heads' path effects)", tables[f"{task}_class_edges"].drop(columns="task"))
        evidence = tables[f"{task}_class_evidence"]
        show(f"{task}: candidates by |direct effect|", evidence.dropna(subset=["direct"]).assign(
            size=lambda t: t["direct"].abs()).nlargest(15, "size").drop(columns=["size", "task"]))
    show("class circuits (rest mean-ablated) beside the greedy circuit", tables["summary"][SUMMARY])
    show("per-class overlap of IOI and Colored Objects", tables["class_overlap"])
    print("\n" + "\n".join(circuits.headline(tables)))
    print(f"\ntotal {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
