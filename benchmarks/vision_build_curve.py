"""Held-out quality of the vision organism along its build: recall-vs-time (issue 24).

The build saves snapshots of what it trains (checkpoints/<stage>-<step>.pt: the projector, the
LoRA adapters in stage 2, and the seconds since the build started). Each snapshot is rebuilt over
the bundled model (interp.organisms.vision.snapshot) and scored on held-out "seen"-pair scenes:
caption recall / precision / CHAIR_i (interp.data.scenes.caption_scores) and POPE accuracy and
yes-ratio over random and adversarial probes.

    flock /tmp/interp-heavy.lock python benchmarks/vision_build_curve.py --scenes 50
"""

import argparse
import random
from pathlib import Path

import torch

from interp.data import scenes as scene_data
from interp.organisms import vision


def score(model, scene_list, probes) -> dict:
    captions = vision.answers(model, [s.image() for s in scene_list], [vision.CAPTION_PROMPT] * len(scene_list))
    replies = vision.answers(model, [s.image() for s, _ in probes], [p["question"] for _, p in probes], max_new_tokens=3)
    caps = scene_data.caption_scores(captions, scene_list)
    pope = scene_data.yes_no_scores(replies, [p["answer"] for _, p in probes])
    return {"recall": caps["recall"], "precision": caps["precision"], "chair_i": caps["chair_i"],
            "pope_accuracy": pope["accuracy"], "yes_ratio": pope["yes_ratio"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=50, help="held-out scenes for captions (POPE: half of them)")
    parser.add_argument("--dir", type=Path, default=None, help="a build folder (default: the cached default recipe)")
    args = parser.parse_args()
    folder = args.dir or vision.vision_dir()
    files = sorted((folder / "checkpoints").glob("*.pt"), key=lambda f: (f.stem.split("-")[0] != "projector", f.stem))
    if not files:
        raise SystemExit(f"no snapshots in {folder}/checkpoints: build the organism first ({vision.BUILD_COMMAND})")
    scene_list = scene_data.scenes(args.scenes, 1, "seen")
    rng = random.Random(1)
    probes = [(s, p) for s in scene_list[: args.scenes // 2] for kind in ("random", "adversarial")
              for p in scene_data.pope_questions(s, rng, kind)]
    print(f"{len(scene_list)} held-out scenes, {len(probes)} POPE probes\n")
    print("| snapshot | build seconds | recall | precision | CHAIR_i | POPE accuracy | yes-ratio |")
    print("|---|---|---|---|---|---|---|")
    for file in files:
        saved = torch.load(file, map_location="cpu", weights_only=True)  # read once: the weights and the build seconds
        row = score(vision.snapshot(saved), scene_list, probes)
        print(f"| {file.stem} | {saved['seconds']} | {row['recall']:.2f} | {row['precision']:.2f} | {row['chair_i']:.2f} | "
              f"{row['pope_accuracy']:.2f} | {row['yes_ratio']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
