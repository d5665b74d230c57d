"""`python -m interp.organisms NAME`: build an organism (once, then cached) and measure its refusal."""

from __future__ import annotations

import json
import os
import time

from interp.organisms import RECIPES, load_organism, organism_dir
from interp.organisms.evaluate import refusal_rates


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m interp.organisms",
                                     description="Build (once, then cached) a model organism and measure its refusal.")
    parser.add_argument("name", nargs="?", default="refusal", choices=list(RECIPES), help="the organism (default: refusal)")
    parser.add_argument("--rebuild", action="store_true", help="train again even if a cached build exists")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out refusal rates after building")
    parser.add_argument("--eval-n", type=int, default=int(os.environ.get("INTERP_EVAL_N", 50)),
                        help="held-out requests per set for the refusal rates (default: $INTERP_EVAL_N or 50)")
    args = parser.parse_args(argv)
    started = time.time()
    model = load_organism(RECIPES[args.name], rebuild=args.rebuild)
    print(f"{args.name}: {organism_dir(RECIPES[args.name])} ({time.time() - started:.0f} s)")
    if not args.no_eval:
        print(json.dumps(refusal_rates(model, n=args.eval_n), indent=1))


if __name__ == "__main__":
    main()

