"""Circuits on the bundled SmolLM2-135M-Instruct: IOI and Colored Objects (list form), the
task metrics clean vs corrupted, attribution vs exact patching on the verified heads, each
task's circuit (ranked by integrated gradients, the rest patched from the corrupted run),
the overlap of the two circuits vs chance, cross-task faithfulness, and one path-patching
check. Also the accuracy of the other task variants (IOI S2 swap, Colored Objects in the
paper's form). Prints markdown tables (notes/circuits.md).

    python benchmarks/circuits_bundled.py                    # 24 prompts per task
    python benchmarks/circuits_bundled.py --samples 10 --ig-steps 3 --verify 10 --skip-variants   # a loaded machine
    python benchmarks/circuits_bundled.py --samples 32 --out results/circuits-bundled
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

import interp
from interp.data import tasks
from interp.analyses import circuits
from interp.run.results import ResultsDir

from _markdown import show  # benchmarks/ is on sys.path when a script here runs


def variants(model, n: int) -> pd.DataFrame:
    rows = []
    for name, options in [("ioi", {"corruption": "abc"}), ("ioi", {"corruption": "s2_swap"}),
                          ("colored_objects", {"form": "list"}), ("colored_objects", {"form": "paper"}),
                          ("induction", {})]:
        prepared = circuits.prepare(model, tasks.make_task(name, model.tokenizer, n=n, **options))
        runs = prepared.runs
        rows.append({"task": name, **options, "prompts": n,
                     "clean_accuracy": float(torch.cat([r.clean_correct for r in runs]).float().mean()),
                     "clean_ld": prepared.m_clean, "corrupt_ld": prepared.m_corrupt,
                     "corrupt_accuracy": float(torch.cat([r.corrupt_correct for r in runs]).float().mean())})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--out", type=Path, default=None, help="results directory (resumes a killed run)")
    parser.add_argument("--ablation", default="patch", choices=circuits.ABLATIONS)
    parser.add_argument("--ig-steps", type=int, default=5)
    parser.add_argument("--verify", type=int, default=20, help="top heads by attribution (and as many random) to patch exactly")
    parser.add_argument("--skip-variants", action="store_true")
    args = parser.parse_args()
    model = interp.load_model()

    if not args.skip_variants:
        start = time.perf_counter()
        show(f"task variants ({args.samples} prompts each): accuracy = answer is the top token, ld = mean logit difference",
             variants(model, args.samples))
        print(f"\nvariants: {time.perf_counter() - start:.0f} s")

    start = time.perf_counter()
    results = ResultsDir(args.out) if args.out else None
    if results is not None:  # a results directory the explorer can open: interp explore DIR
        results.set_model(model.source, model.file_hash, model.layout.as_dict())
        results.start_analysis("circuits", {"samples": args.samples, "ablation": args.ablation})
    tables = circuits.scan(model, samples=args.samples, tasks=("ioi", "colored_objects"), ablation=args.ablation,
                           results=results, ig_steps=args.ig_steps, verify_top=args.verify, verify_random=args.verify)
    if results is not None:
        results.write_tables("circuits", tables)
        results.finish_analysis("circuits")
    print(f"\nscan: {time.perf_counter() - start:.0f} s")
    summary = tables["summary"].drop(columns=["description"])
    show("summary per task", summary.T.reset_index().rename(columns={"index": "field"}))
    for name in ("ioi", "colored_objects"):
        heads = tables[name].sort_values("rank")
        show(f"{name}: top 15 heads by |ig| (scores normalised: 1 = the whole clean-corrupt gap)",
             heads.head(15)[["layer", "head", "ig", "attribution", "exact", "in_circuit"]])
        verification = tables["verification"].query("task == @name")
        show(f"{name}: verified heads (exact patching), top 10 by |exact|",
             verification.reindex(verification["exact"].abs().sort_values(ascending=False).index).head(10)
             [["layer", "head", "kind", "attribution", "exact", "false_negative"]])
        curve = tables["faithfulness"].query("task == @name")
        show(f"{name}: faithfulness curve ({args.ablation} ablation)", curve[["k", "f", "m"]])
    show("overlap of the circuits", tables["overlap"].T.reset_index().rename(columns={"index": "field", 0: "value"}))

    start = time.perf_counter()
    ioi = tables["ioi"].sort_values("rank")
    circuit = [(int(r.layer), int(r.head)) for r in ioi[ioi.in_circuit].itertuples()]
    sender = min(circuit[:5], key=lambda h: h[0])
    receivers = [h for h in circuit if h[0] > sender[0]]
    if receivers:
        prepared = circuits.prepare(model, tasks.ioi(model.tokenizer, n=args.samples, seed=0))
        effect = circuits.path_patching(model, prepared, sender, receivers)
        alone = circuits.exact_patching(model, prepared, [sender], positions="all")["score"].iloc[0]
        print(f"\npath patching IOI {sender[0]}.{sender[1]} -> {len(receivers)} later circuit heads: {effect:.3f} "
              f"(the sender patched at all positions, every path: {alone:.3f}); {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
