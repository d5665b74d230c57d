"""Synthetic scenes for vision-language probes: images with a known scene graph, the captions and
questions that follow from it, and the hallucination scores of a model's answers.

A scene is 1-4 flat objects (shape x colour, at a position, of a size) on a plain light
background, drawn with PIL. Everything is seeded: `scenes(n, seed, split)` gives the same scenes
on every machine. Colour-shape pairs in HELD_OUT never occur in the "train" split; the
"seen" split is new scenes of the training pairs, the "compositional" split has at least one
held-out pair in every scene.

From a scene's graph:
- caption():            "A red circle, a blue square and a green star." (objects left to right)
- pope_questions():     POPE-style yes/no probes, "Is there a red circle in the image?": every
                        object present (yes) and as many absent pairs (no), drawn at random,
                        from the most frequent pairs (popular) or sharing a shape or colour with
                        an object present (adversarial: a binding error)
- attribute_questions():"What colour is the circle?" / "What shape is the red object?"
- conflict_prompts():   the prompt asserts an absent object ("There is a red star in this image.
                        Is there a red star in the image?"): does the model follow the text?

Scoring: parse_caption() finds the objects a caption names (with their colour when it says
one); caption_scores() gives CHAIR_s / CHAIR_i (an object or attribute named that is not in
the scene), recall and precision; yes_no_scores() gives POPE's accuracy, F1 and yes-ratio.

    train = scenes(3000, seed=0, split="train")
    image, caption = train[0].image(), train[0].caption()
    scores = caption_scores(model_captions, scenes(200, seed=0, split="seen"))
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from itertools import product

from interp.base.errors import InterpError

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = {"red": (215, 40, 40), "green": (35, 160, 55), "blue": (40, 80, 220), "yellow": (235, 200, 30),
           "purple": (140, 55, 175)}
PAIRS = tuple(product(COLOURS, SHAPES))  # (colour, shape)
# never in training: each colour and each shape at most once, so every held-out pair's colour and
# shape are both seen in training, only never together
HELD_OUT = (("red", "triangle"), ("green", "star"), ("blue", "circle"), ("yellow", "square"))
SEEN = tuple(p for p in PAIRS if p not in HELD_OUT)
SPLITS = ("train", "seen", "compositional")
IMAGE_SIZE = 128  # pixels a side (the vision organism's input: a 4 x 4 grid of image tokens)
MAX_OBJECTS = 4
# an object's radius as a share of the image side; centres keep a margin so objects stay whole
MIN_RADIUS, MAX_RADIUS = 0.09, 0.15
POPE_KINDS = ("random", "popular", "adversarial")


@dataclass(frozen=True)
class Thing:
    """One object of a scene: centre (x, y) and radius as shares of the image side."""

    shape: str
    colour: str
    x: float
    y: float
    radius: float

    @property
    def pair(self) -> tuple[str, str]:
        return self.colour, self.shape

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def position(self) -> str:
        """Where it is, in words: 'top left', 'middle', 'bottom right', ..."""
        row = "top" if self.y < 1 / 3 else "bottom" if self.y > 2 / 3 else ""
        column = "left" if self.x < 1 / 3 else "right" if self.x > 2 / 3 else ""
        return " ".join(w for w in (row, column) if w) or "middle"


@dataclass(frozen=True)
class Scene:
    things: tuple[Thing, ...]  # left to right
    background: tuple[int, int, int]
    size: int = IMAGE_SIZE
    key: str = ""  # "<split>:<seed>:<index>", what results record

    @property
    def pairs(self) -> set[tuple[str, str]]:
        return {t.pair for t in self.things}

    def graph(self) -> dict:
        """The scene graph as plain data: objects with attributes and position, and left-of relations."""
        objects = [{"shape": t.shape, "colour": t.colour, "position": t.position, "x": round(t.x, 3), "y": round(t.y, 3),
                    "size": round(t.radius, 3)} for t in self.things]
        left_of = [(a.name, b.name) for i, a in enumerate(self.things) for b in self.things[i + 1:]]
        return {"objects": objects, "left_of": left_of}

    def caption(self) -> str:
        return caption_of([t.pair for t in self.things])

    def image(self):
        """The scene drawn with PIL (RGB, size x size), antialiased by drawing at 4x and shrinking."""
        from PIL import Image, ImageDraw

        scale = 4
        side = self.size * scale
        canvas = Image.new("RGB", (side, side), self.background)
        draw = ImageDraw.Draw(canvas)
        for t in self.things:
            _draw(draw, t.shape, t.x * side, t.y * side, t.radius * side, COLOURS[t.colour])
        return canvas.resize((self.size, self.size), Image.Resampling.LANCZOS)


def caption_of(pairs: list[tuple[str, str]]) -> str:
    names = [f"a {colour} {shape}" for colour, shape in pairs]
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return text[0].upper() + text[1:] + "."


def _draw(draw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        half = r * 0.85  # about the circle's area
        draw.rectangle([cx - half, cy - half, cx + half, cy + half], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx + r * math.cos(a), cy - r * math.sin(a)) for a in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)], fill=fill)
    elif shape == "star":
        points = []
        for i in range(10):  # outer and inner corners by turns
            radius = r if i % 2 == 0 else r * 0.45
            angle = math.pi / 2 + i * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy - radius * math.sin(angle)))
        draw.polygon(points, fill=fill)
    else:
        raise InterpError(f"unknown shape '{shape}': use one of {', '.join(SHAPES)}")


# ---- generating scenes ---------------------------------------------------------------------------


def make_scene(rng: random.Random, pairs=SEEN, n_objects: int | None = None, must_have=(), size: int = IMAGE_SIZE,
               key: str = "") -> Scene:
    """A scene of n_objects (1-4, drawn if None) distinct colour-shape pairs from `pairs` (and
    `must_have`), placed without overlap, left to right in the tuple."""
    n = n_objects or rng.randint(1, MAX_OBJECTS)
    if not 1 <= n <= MAX_OBJECTS:
        raise InterpError(f"a scene has 1 to {MAX_OBJECTS} objects, not {n}")
    chosen = list(must_have)
    chosen += rng.sample([p for p in pairs if p not in chosen], n - len(chosen))
    rng.shuffle(chosen)
    for _ in range(200):  # rejection sampling of positions; 4 objects of these sizes always fit quickly
        placed = []
        for colour, shape in chosen:
            radius = rng.uniform(MIN_RADIUS, MAX_RADIUS)
            x, y = rng.uniform(radius + 0.02, 0.98 - radius), rng.uniform(radius + 0.02, 0.98 - radius)
            placed.append(Thing(shape, colour, x, y, radius))
        if all(math.dist((a.x, a.y), (b.x, b.y)) > a.radius + b.radius + 0.03
               for i, a in enumerate(placed) for b in placed[i + 1:]):
            break
    else:
        raise InterpError("could not place the objects without overlap")  # not reached with these sizes
    # a light, slightly tinted background, so no object colour is lost in it
    grey = rng.randint(185, 245)
    background = tuple(min(255, max(0, grey + rng.randint(-12, 12))) for _ in range(3))
    return Scene(tuple(sorted(placed, key=lambda t: t.x)), background, size, key)


def scenes(n: int, seed: int = 0, split: str = "train", size: int = IMAGE_SIZE) -> list[Scene]:
    """n seeded scenes of a split: "train" (no held-out pair), "seen" (new scenes, training
    pairs only) or "compositional" (every scene has a held-out pair). Each split draws from its
    own stream of the seed, so the splits never share a scene by construction of the seed."""
    if split not in SPLITS:
        raise InterpError(f"unknown scene split '{split}': use one of {', '.join(SPLITS)}")
    rng = random.Random(f"scenes:{split}:{seed}")
    out = []
    for index in range(n):
        key = f"{split}:{seed}:{index}"
        if split == "compositional":
            held = rng.choice(HELD_OUT)
            # the other objects come from seen pairs that do not repeat the held-out pair's shape or colour
            others = [p for p in SEEN if p[0] != held[0] and p[1] != held[1]]
            out.append(make_scene(rng, others + [held], must_have=[held], size=size, key=key))
        else:
            out.append(make_scene(rng, SEEN, size=size, key=key))
    return out


def default_images(n: int = 32, size: int = IMAGE_SIZE) -> list[tuple[str, object]]:
    """(scene key, PIL image) of n held-out scenes: the "seen" split, seed 1 (training
    colour-shape pairs in scenes the vision organism never saw, its evaluation seed). The
    images analyses run on when a vision-language model is given none."""
    return [(scene.key, scene.image()) for scene in scenes(n, seed=1, split="seen", size=size)]


# ---- questions -----------------------------------------------------------------------------------


def yes_no_question(pair: tuple[str, str]) -> str:
    colour, shape = pair
    return f"Is there a {colour} {shape} in the image?"


def pope_questions(scene: Scene, rng: random.Random, kind: str = "random", popularity: Counter | None = None,
                   pairs=PAIRS) -> list[dict]:
    """POPE-style probes of one scene: every object present (answer yes) and as many absent pairs
    (answer no), these drawn by `kind`: "random" (any absent pair), "popular" (the most frequent
    pairs of `popularity`, a Counter of pairs over a reference set) or "adversarial" (absent
    pairs sharing a colour or a shape with an object present: a wrong binding)."""
    if kind not in POPE_KINDS:
        raise InterpError(f"unknown POPE kind '{kind}': use one of {', '.join(POPE_KINDS)}")
    present = [t.pair for t in scene.things]
    absent = [p for p in pairs if p not in scene.pairs]
    if kind == "popular":
        if popularity is None:
            raise InterpError("popular negatives need the pairs' counts: pass popularity=pair_counts(reference scenes)")
        rng.shuffle(absent)  # ties broken at random, then the most frequent first (a stable sort)
        negatives = sorted(absent, key=lambda p: -popularity.get(p, 0))[: len(present)]
    elif kind == "adversarial":
        close = [p for p in absent if any(p[0] == c or p[1] == s for c, s in present)]
        negatives = rng.sample(close, min(len(present), len(close)))
    else:
        negatives = rng.sample(absent, min(len(present), len(absent)))
    probes = [{"question": yes_no_question(p), "answer": "yes", "pair": p, "kind": kind} for p in present]
    probes += [{"question": yes_no_question(p), "answer": "no", "pair": p, "kind": kind} for p in negatives]
    rng.shuffle(probes)
    return probes


def pair_counts(scene_list: list[Scene]) -> Counter:
    """How often each colour-shape pair occurs over scenes (POPE's "popular" objects)."""
    return Counter(p for scene in scene_list for p in scene.pairs)


def attribute_questions(scene: Scene) -> list[dict]:
    """"What colour is the circle?" for every shape that occurs once, "What shape is the red
    object?" for every colour that occurs once, with their answers."""
    shapes = Counter(t.shape for t in scene.things)
    colours = Counter(t.colour for t in scene.things)
    out = [{"question": f"What colour is the {t.shape}?", "answer": t.colour, "kind": "colour"}
           for t in scene.things if shapes[t.shape] == 1]
    out += [{"question": f"What shape is the {t.colour} object?", "answer": t.shape, "kind": "shape"}
            for t in scene.things if colours[t.colour] == 1]
    return out


def conflict_prompts(scene: Scene, rng: random.Random, pairs=PAIRS) -> list[dict]:
    """Text-prior conflict: the prompt asserts an absent object. A yes/no form (answer: no) and a
    caption form (the asserted object should not be named in the description)."""
    absent = rng.choice([p for p in pairs if p not in scene.pairs])
    claim = f"There is a {absent[0]} {absent[1]} in this image."
    return [{"question": f"{claim} {yes_no_question(absent)}", "answer": "no", "pair": absent, "kind": "conflict-yes-no"},
            {"question": f"{claim} Describe the image.", "answer": scene.caption(), "pair": absent, "kind": "conflict-caption"}]


# ---- scoring -------------------------------------------------------------------------------------

_PLURALS = {f"{s}s": s for s in SHAPES}
_WORD = re.compile(r"[a-z]+")


def parse_caption(text: str) -> list[tuple[str | None, str]]:
    """The objects a caption names, in order, without repeats: (colour, shape), colour None when
    no colour word stands right before the shape word ("a circle", "two stars")."""
    words = _WORD.findall(text.lower())
    found = []
    for i, word in enumerate(words):
        shape = _PLURALS.get(word, word if word in SHAPES else None)
        if shape is None:
            continue
        colour = words[i - 1] if i > 0 and words[i - 1] in COLOURS else None
        if (colour, shape) not in found:
            found.append((colour, shape))
    return found


def _correct(mention: tuple[str | None, str], scene: Scene) -> bool:
    colour, shape = mention
    return any(t.shape == shape and colour in (None, t.colour) for t in scene.things)


def caption_scores(captions: list[str], scene_list: list[Scene]) -> dict:
    """CHAIR and recall of captions against their scenes.
    CHAIR_i: the share of objects named (over all captions) that are not in the scene, an object
    with the wrong colour included; CHAIR_s: the share of captions naming at least one such;
    recall: the share of scene objects named with their colour; precision = 1 - CHAIR_i;
    exact: captions naming exactly the scene's pairs."""
    if len(captions) != len(scene_list) or not captions:
        raise InterpError(f"need one caption per scene, got {len(captions)} captions for {len(scene_list)} scenes")
    named = wrong = bad_captions = recalled = objects = exact = 0
    for caption, scene in zip(captions, scene_list):
        mentions = parse_caption(caption)
        errors = sum(not _correct(m, scene) for m in mentions)
        named, wrong = named + len(mentions), wrong + errors
        bad_captions += errors > 0
        recalled += len(scene.pairs & set(mentions))
        objects += len(scene.things)
        exact += set(mentions) == scene.pairs
    chair_i = wrong / named if named else 0.0
    return {"n": len(captions), "chair_s": bad_captions / len(captions), "chair_i": chair_i, "recall": recalled / objects,
            "precision": 1 - chair_i if named else 0.0, "exact": exact / len(captions), "objects_named": named}


def yes_no(answer: str) -> str | None:
    """'yes' or 'no' from an answer's first word ("Yes, there is..." -> yes), else None."""
    words = _WORD.findall(answer.lower())
    return words[0] if words and words[0] in ("yes", "no") else None


def yes_no_scores(answers: list[str], truths: list[str]) -> dict:
    """POPE's scores: accuracy, precision / recall / F1 of "yes", the yes-ratio and the share of
    answers that are neither yes nor no (these count as "no", as in POPE)."""
    if len(answers) != len(truths) or not answers:
        raise InterpError(f"need one answer per probe, got {len(answers)} answers for {len(truths)} probes")
    said = [yes_no(a) for a in answers]
    yes = [s == "yes" for s in said]
    truth = [t == "yes" for t in truths]
    tp = sum(y and t for y, t in zip(yes, truth))
    precision = tp / sum(yes) if any(yes) else 0.0
    recall = tp / sum(truth) if any(truth) else 0.0
    return {"n": len(answers), "accuracy": sum(y == t for y, t in zip(yes, truth)) / len(answers), "precision": precision,
            "recall": recall, "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "yes_ratio": sum(yes) / len(answers), "unparsed": said.count(None) / len(answers)}


# ---- real photos -----------------------------------------------------------------------------------

# scikit-image's data module ships these in its wheel (no download); each is CC0 or public domain per its
# docstring: NASA's astronaut, SpaceX's rocket, and CC0 photos of a cat, coffee, a horse and a cameraman
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "horse", "camera")


def photos(names=PHOTOS) -> list[tuple[str, object]]:
    """(name, RGB PIL image) of real photos from skimage.data, for VHD and head-on-image views."""
    import numpy as np
    import skimage.data
    from PIL import Image

    out = []
    for name in names:
        if name not in PHOTOS:
            raise InterpError(f"unknown photo '{name}': choose from {', '.join(PHOTOS)}")
        pixels = np.asarray(getattr(skimage.data, name)())
        if pixels.dtype == bool:  # the horse is a silhouette mask
            pixels = (~pixels).astype(np.uint8) * 255
        out.append((name, Image.fromarray(pixels).convert("RGB")))
    return out
