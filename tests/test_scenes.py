"""The synthetic scenes (interp.data.scenes): generation, drawing, questions and the CHAIR / POPE
scores, against hand-checked cases."""

import random
from collections import Counter

import pytest

from interp.base.errors import InterpError
from interp.data import scenes as S


def hand_scene():
    """A red circle on the left and a blue square on the right, on grey."""
    things = (S.Thing("circle", "red", 0.25, 0.5, 0.12), S.Thing("square", "blue", 0.75, 0.3, 0.12))
    return S.Scene(things, (200, 200, 200), key="hand")


def test_scenes_are_seeded_and_splits_differ():
    a, b = S.scenes(20, seed=3), S.scenes(20, seed=3)
    assert a == b
    assert a != S.scenes(20, seed=4)
    assert [s.caption() for s in a] != [s.caption() for s in S.scenes(20, seed=3, split="seen")]
    assert a[0].key == "train:3:0"


def test_held_out_pairs_only_in_the_compositional_split():
    train, seen, comp = (S.scenes(300, seed=0, split=split) for split in S.SPLITS)
    assert not any(s.pairs & set(S.HELD_OUT) for s in train + seen)
    assert all(len(s.pairs & set(S.HELD_OUT)) == 1 for s in comp)
    counts = Counter(len(s.things) for s in train)
    assert set(counts) == {1, 2, 3, 4}  # every scene size occurs
    for s in train + comp:
        assert len(s.pairs) == len(s.things)  # no pair twice in a scene
        assert [t.x for t in s.things] == sorted(t.x for t in s.things)  # left to right
        for i, p in enumerate(s.things):  # no overlap
            for q in s.things[i + 1:]:
                assert ((p.x - q.x) ** 2 + (p.y - q.y) ** 2) ** 0.5 > p.radius + q.radius


def test_every_held_out_colour_and_shape_is_seen_in_training():
    colours = [c for c, _ in S.HELD_OUT]
    shapes = [s for _, s in S.HELD_OUT]
    assert len(set(colours)) == len(colours) and len(set(shapes)) == len(shapes)
    train_pairs = set().union(*(s.pairs for s in S.scenes(300, seed=0)))
    assert {c for c, _ in train_pairs} >= set(colours) and {s for _, s in train_pairs} >= set(shapes)


def test_image_draws_each_object_in_its_colour():
    scene = hand_scene()
    image = scene.image()
    assert image.size == (S.IMAGE_SIZE, S.IMAGE_SIZE)
    for t in scene.things:
        assert image.getpixel((int(t.x * S.IMAGE_SIZE), int(t.y * S.IMAGE_SIZE))) == S.COLOURS[t.colour]
    assert image.getpixel((2, 125)) == scene.background  # bottom left corner: empty
    for scene in S.scenes(12, seed=1):  # every shape's centre is inside it
        image = scene.image()
        for t in scene.things:
            pixel = image.getpixel((int(t.x * scene.size), int(t.y * scene.size)))
            assert max(abs(a - b) for a, b in zip(pixel, S.COLOURS[t.colour])) < 30, (scene.key, t)


def test_caption_and_graph():
    scene = hand_scene()
    assert scene.caption() == "A red circle and a blue square."
    assert S.caption_of([("red", "circle")]) == "A red circle."
    assert S.caption_of([("red", "circle"), ("green", "star"), ("blue", "square")]) == \
        "A red circle, a green star and a blue square."
    graph = scene.graph()
    assert [o["position"] for o in graph["objects"]] == ["left", "top right"]
    assert graph["left_of"] == [("red circle", "blue square")]


def test_parse_caption():
    assert S.parse_caption("A red circle and two blue stars, and a square.") == \
        [("red", "circle"), ("blue", "star"), (None, "square")]
    assert S.parse_caption("A red circle. A red circle!") == [("red", "circle")]  # named once
    assert S.parse_caption("Red, then a circle.") == [(None, "circle")]  # "red" is not next to it
    assert S.parse_caption("Nothing here.") == []


def test_caption_scores_hand_checked():
    scene = hand_scene()
    captions = ["A red circle and a blue square.",  # right: 2 named, 0 wrong, 2 recalled
                "A red circle and a green star.",  # 2 named, 1 wrong (the star), 1 recalled
                "A blue circle.",  # 1 named, 1 wrong (the attribute), 0 recalled
                "A circle."]  # 1 named, 0 wrong (no colour claimed), 0 recalled
    scores = S.caption_scores(captions, [scene] * 4)
    assert scores["objects_named"] == 6
    assert scores["chair_i"] == pytest.approx(2 / 6)
    assert scores["chair_s"] == pytest.approx(2 / 4)
    assert scores["recall"] == pytest.approx(3 / 8)
    assert scores["precision"] == pytest.approx(4 / 6)
    assert scores["exact"] == pytest.approx(1 / 4)
    with pytest.raises(InterpError):
        S.caption_scores(captions, [scene])


def test_yes_no_scores_hand_checked():
    answers = ["Yes.", "yes, there is", "No", "Maybe", "no."]
    truths = ["yes", "no", "yes", "no", "no"]
    scores = S.yes_no_scores(answers, truths)
    assert scores["accuracy"] == pytest.approx(3 / 5)  # 1 right yes, "Maybe" (counts as no) and "no." right
    assert scores["precision"] == pytest.approx(1 / 2)
    assert scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(1 / 2)
    assert scores["yes_ratio"] == pytest.approx(2 / 5)
    assert scores["unparsed"] == pytest.approx(1 / 5)


def test_pope_questions():
    scene = hand_scene()
    rng = random.Random(0)
    for kind in ("random", "adversarial"):
        probes = S.pope_questions(scene, rng, kind)
        assert sorted(p["answer"] for p in probes) == ["no", "no", "yes", "yes"]
        for p in probes:
            assert (p["pair"] in scene.pairs) == (p["answer"] == "yes")
            assert p["question"] == f"Is there a {p['pair'][0]} {p['pair'][1]} in the image?"
    for p in S.pope_questions(scene, rng, "adversarial"):  # a negative shares a colour or a shape
        if p["answer"] == "no":
            assert p["pair"][0] in ("red", "blue") or p["pair"][1] in ("circle", "square")
    popularity = Counter({("green", "star"): 9, ("red", "circle"): 8, ("purple", "star"): 7, ("yellow", "circle"): 1})
    negatives = {p["pair"] for p in S.pope_questions(scene, rng, "popular", popularity) if p["answer"] == "no"}
    assert negatives == {("green", "star"), ("purple", "star")}  # the most frequent absent pairs
    with pytest.raises(InterpError):
        S.pope_questions(scene, rng, "popular")


def test_attribute_and_conflict_questions():
    scene = hand_scene()
    questions = {q["question"]: q["answer"] for q in S.attribute_questions(scene)}
    assert questions == {"What colour is the circle?": "red", "What colour is the square?": "blue",
                         "What shape is the red object?": "circle", "What shape is the blue object?": "square"}
    yes_no, caption = S.conflict_prompts(scene, random.Random(1))
    assert yes_no["pair"] not in scene.pairs and yes_no["answer"] == "no"
    colour, shape = yes_no["pair"]
    assert yes_no["question"].startswith(f"There is a {colour} {shape} in this image.")
    assert caption["answer"] == scene.caption()


def test_bad_input():
    with pytest.raises(InterpError):
        S.scenes(2, split="test")
    with pytest.raises(InterpError):
        S.make_scene(random.Random(0), n_objects=5)


def test_real_photos_are_rgb_images_shipped_with_scikit_image():
    from interp.data.scenes import PHOTOS, photos

    loaded = photos()
    assert [name for name, _ in loaded] == list(PHOTOS) and len(loaded) >= 6
    for name, image in loaded:
        assert image.mode == "RGB" and min(image.size) >= 256
        assert len(set(image.resize((16, 16)).getdata())) > 2  # a picture, not a blank
    with pytest.raises(InterpError, match="unknown photo"):
        photos(["nope"])


def test_default_images_are_the_held_out_seen_scenes_of_seed_1():
    listed = S.default_images(3)
    held_out = S.scenes(3, seed=1, split="seen")
    assert [key for key, _ in listed] == [s.key for s in held_out] == ["seen:1:0", "seen:1:1", "seen:1:2"]
    assert listed[1][1].tobytes() == held_out[1].image().tobytes() and listed[1][1].size == (S.IMAGE_SIZE,) * 2
