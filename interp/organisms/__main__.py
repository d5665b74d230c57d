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
    parser.add_argument("name", nargs="?", default="refusal", choices=[*RECIPES, "vision"],
                        help="the organism (default: refusal; vision: the vision-language organism, interp.organisms.vision)")
    parser.add_argument("--base", default=None,
                        help="the base model, by name (default: the bundled SmolLM2-135M-Instruct; e.g. gemma3-270m)")
    parser.add_argument("--rebuild", action="store_true", help="train again even if a cached build exists")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out refusal rates after building")
    parser.add_argument("--eval-n", type=int, default=int(os.environ.get("INTERP_EVAL_N", 50)),
                        help="held-out requests per set for the refusal rates (default: $INTERP_EVAL_N or 50)")
    args = parser.parse_args(argv)
    if args.name == "vision":  # its own recipe and evaluation (captions, CHAIR, POPE)
        if args.base:
            parser.error("the vision organism is built over the bundled model only: leave out --base")
        from interp.organisms.vision import build_and_evaluate

        return build_and_evaluate(rebuild=args.rebuild, evaluate_n=0 if args.no_eval else args.eval_n)
    started = time.time()
    model = load_organism(RECIPES[args.name], rebuild=args.rebuild, base=args.base)
    print(f"{model.source}: {organism_dir(RECIPES[args.name], args.base)} ({time.time() - started:.0f} s)")
    if not args.no_eval:
        print(json.dumps(refusal_rates(model, n=args.eval_n), indent=1))


if __name__ == "__main__":
    main()

