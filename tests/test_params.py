"""Analysis parameters as text (interp/run/params.py): `--set KEY=VALUE` typed from scan()'s
signature, routed to the chosen analyses, and one-line errors for what is no setting of theirs."""

from __future__ import annotations

import types

import pytest

import interp.analyses as registry
from interp import InterpError
from interp.run import params
from interp.runtime.interventions import HeadsLike


def fake(name: str, **help_lines):
    """An analysis module whose scan() has a keyword of every kind."""

    def scan(model, *, samples=None, max_length=None, seed=0, results=None, eps=0.5, steps=3, greedy=False, mode="a",
             lengths=(64, 256), depths: tuple[float, ...] | None = None, layer: int | None = None,
             groups: dict[str, HeadsLike] | None = None, judge=None):
        return {}

    module = types.ModuleType(name)
    module.scan = scan
    module.PARAMS = ("samples", "max_length", "seed", "eps", "steps", "greedy", "mode", "lengths", "depths", "layer",
                     "groups", "judge")
    module.PARAM_HELP = help_lines
    return module


def test_types_come_from_annotations_and_defaults():
    found = params.parameters(fake("a", eps="the factor"))
    kinds = {name: p.kind.name if p.kind else None for name, p in found.items()}
    assert kinds == {"samples": "integer", "max_length": "integer", "seed": "integer", "eps": "number", "steps": "integer",
                     "greedy": "true/false", "mode": "text", "lengths": "integers, comma-separated",
                     "depths": "numbers, comma-separated", "layer": "integer",
                     "groups": "head groups NAME:HEADS, e.g. trained:15.1+15.7", "judge": None}
    assert found["eps"].help == "the factor" and found["lengths"].default == (64, 256) and found["layer"].default is None
    assert params.shown(found["lengths"].default) == "64,256" and params.shown(None) == "-"


def test_values_are_read_as_their_type():
    chosen = {"a": fake("a")}
    texts = ["eps=0.25", "steps=7", "greedy=yes", "mode=b", "lengths=32, 48", "depths=0,0.5", "layer=3", "samples=4"]
    assert params.read_settings(chosen, texts) == {"a": {"eps": 0.25, "steps": 7, "greedy": True, "mode": "b", "lengths": (32, 48),
                                                    "depths": (0.0, 0.5), "layer": 3, "samples": 4}}
    assert params.read_settings(chosen, ["greedy=false"])["a"]["greedy"] is False


@pytest.mark.parametrize("text, groups", [
    ("trained:15.1+15.7", {"trained": ((15, 1), (15, 7))}),
    ("trained:15.1,15.7", {"trained": ((15, 1), (15, 7))}),
    ("trained:15.1+15.7,upstream:8.1,14.3", {"trained": ((15, 1), (15, 7)), "upstream": ((8, 1), (14, 3))}),
    ("one:2:3", {"one": ((2, 3),)}),  # LAYER:HEAD works as in --heads; a group name starts with a letter
])
def test_head_groups(text, groups):
    assert params.read_settings({"a": fake("a")}, [f"groups={text}"])["a"]["groups"] == groups


@pytest.mark.parametrize("text, says", [
    ("eps=much", "--set eps=much: a's eps takes number (default 0.5)"),
    ("steps=2.5", "a's steps takes integer (default 3)"),
    ("greedy=maybe", "a's greedy takes true/false (default False)"),
    ("groups=15.1+15.7", "has no group name: write NAME:HEADS"),
    ("groups=trained:15-1", "cannot read head '15-1'"),
    ("judge=strict", "a's judge cannot be set as text; pass it from Python"),
    ("nonsense=1", "unknown --set key 'nonsense': valid keys are a: samples, max_length, seed, eps,"),
    ("b.eps=1", "--set b.eps: b is not among the chosen analyses (a)"),
    ("eps", "cannot read --set 'eps': write KEY=VALUE"),
    ("=1", "cannot read --set '=1'"),
])
def test_bad_settings_say_what_is_wrong_in_one_line(text, says):
    with pytest.raises(InterpError) as raised:
        params.read_settings({"a": fake("a")}, [text])
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_a_key_goes_to_every_analysis_that_takes_it_unless_one_is_named():
    plain = types.ModuleType("plain")
    plain.scan = lambda model, *, samples=None, max_length=None, seed=0, results=None, eps=1: {}  # an int here
    plain.PARAMS = ("samples", "max_length", "seed", "eps")
    chosen = {"a": fake("a"), "plain": plain}
    assert params.read_settings(chosen, ["eps=2", "steps=4"]) == {"a": {"eps": 2.0, "steps": 4}, "plain": {"eps": 2}}
    assert params.read_settings(chosen, ["plain.eps=5", "seed=1"]) == {"a": {"seed": 1}, "plain": {"eps": 5, "seed": 1}}
    with pytest.raises(InterpError, match=r"unknown --set key 'plain.steps': valid keys are plain: samples, max_length, seed, eps \("):
        params.read_settings(chosen, ["plain.steps=4"])
    with pytest.raises(InterpError, match="plain's eps takes integer"):
        params.read_settings(chosen, ["eps=0.5"])


def test_every_parameter_of_every_analysis_is_typed_and_described():
    for name in registry.ANALYSES:
        for param in params.parameters(registry.get(name)).values():
            assert param.kind is not None, f"{name}.{param.name}: annotate it in scan() or give it a default"
            assert param.help, f"{name}.{param.name}: add a line to PARAM_HELP"
