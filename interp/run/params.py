"""Analysis parameters as text: `interp scan --set KEY=VALUE` and `interp params ANALYSIS`.

A parameter is a scan() keyword that the analysis's PARAMS name. How its text is read comes
from scan()'s signature (the annotation where there is one, else the default's type) and what
it means from the analysis's PARAM_HELP, so a new keyword needs no CLI code: name it in PARAMS,
give it a default or an annotation and a line of PARAM_HELP.

    read_settings(modules, ["asr_samples=8", "safety.extra_groups=trained:15.1+15.7"])
    # -> {"safety": {"asr_samples": 8, "extra_groups": {"trained": ((15, 1), (15, 7))}}}
    parameters(module)   # name -> Param(name, kind, default, help), in PARAMS order

KEY goes to every chosen analysis whose PARAMS name it (typed by each), ANALYSIS.KEY to that
one alone. Values: numbers, true/false, text; lists comma-separated (--set lengths=64,256);
head groups NAME:HEADS with heads joined by + or commas (trained:15.1+15.7,upstream:8.1).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from interp.base.errors import InterpError


def _flag(text: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.lower() not in words:
        raise ValueError(text)
    return words[text.lower()]


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _groups(text: str) -> dict[str, tuple]:
    """"trained:15.1+15.7,upstream:8.1" or "trained:15.1,15.7": a piece NAME:... starts a group,
    a piece without a name adds heads to the group before it."""
    from interp.runtime.interventions import parse_heads  # torch: only when a group is read, not with the CLI

    groups: dict[str, list[str]] = {}
    name = None
    for piece in _items(text):
        named = re.fullmatch(r"([A-Za-z_][\w-]*):(.*)", piece)  # a letter first: "15:1" is a head, not a group
        if named:
            name = named.group(1)
            groups[name] = []
            piece = named.group(2)
        if name is None:
            raise InterpError(f"'{piece}' has no group name: write NAME:HEADS")
        groups[name] += [head for head in piece.split("+") if head.strip()]
    if not groups:
        raise InterpError("no group given: write NAME:HEADS")
    return {name: parse_heads(heads) for name, heads in groups.items()}


@dataclass(frozen=True)
class Kind:
    """How the text of one type of parameter is read, and how `interp params` names the type."""

    name: str
    read: Callable[[str], object]


# by annotation text (scan() annotations are strings under `from __future__ import annotations`)
KINDS = {
    "bool": Kind("true/false", _flag),
    "int": Kind("integer", int),
    "float": Kind("number", float),
    "str": Kind("text", str),
    "tuple[int, ...]": Kind("integers, comma-separated", lambda text: tuple(int(item) for item in _items(text))),
    "tuple[float, ...]": Kind("numbers, comma-separated", lambda text: tuple(float(item) for item in _items(text))),
    "tuple[str, ...]": Kind("words, comma-separated", lambda text: tuple(_items(text))),
    "dict[str, HeadsLike]": Kind("head groups NAME:HEADS, e.g. trained:15.1+15.7", _groups),
}
# the scan protocol's own keywords (analyses/__init__.py), unannotated in most scan()s
PROTOCOL = {"samples": "int", "max_length": "int", "seed": "int"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind | None  # None: not settable as text (a test keeps every real analysis's parameters typed)
    default: object
    help: str

    def read(self, text: str, analysis: str):
        """The value of `--set NAME=text`, or a one-line InterpError saying what the parameter takes."""
        if self.kind is None:
            raise InterpError(f"--set {self.name}: {analysis}'s {self.name} cannot be set as text; pass it from Python")
        wanted = f"--set {self.name}={text}: {analysis}'s {self.name} takes {self.kind.name} (default {shown(self.default)})"
        try:
            return self.kind.read(text)
        except ValueError:  # int("x") and the like: what it takes says enough
            raise InterpError(wanted) from None
        except InterpError as e:  # a head group: say what is wrong in it
            raise InterpError(f"{wanted}: {e}") from None


def shown(default) -> str:
    """A default as `interp params` and the errors write it."""
    if default is None:
        return "-"
    if isinstance(default, (tuple, list)):
        return ",".join(map(str, default))
    return str(default)


def kind_of(annotation, default) -> Kind | None:
    """The first alternative of the annotation that text can be read as, else the default's type."""
    if annotation is not inspect.Parameter.empty:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        for alternative in text.split(" | "):
            if alternative.strip() in KINDS:
                return KINDS[alternative.strip()]
    if isinstance(default, (tuple, list)):
        element = type(default[0]).__name__ if default else "str"
        return KINDS.get(f"tuple[{element}, ...]")
    return KINDS.get(type(default).__name__) if default is not None else None


def parameters(module) -> dict[str, Param]:
    """name -> Param for every name in the analysis's PARAMS, in that order."""
    signature = inspect.signature(module.scan).parameters
    notes = getattr(module, "PARAM_HELP", {})
    found = {}
    for name in getattr(module, "PARAMS", ()):
        given = signature.get(name)
        annotation = given.annotation if given is not None else inspect.Parameter.empty
        if annotation is inspect.Parameter.empty and name in PROTOCOL:
            annotation = PROTOCOL[name]
        default = given.default if given is not None and given.default is not inspect.Parameter.empty else None
        found[name] = Param(name, kind_of(annotation, default), default, notes.get(name, ""))
    return found


def read_settings(modules: dict, texts: Iterable[str]) -> dict[str, dict]:
    """analysis name -> {keyword: value} of `--set KEY=VALUE` texts, for the chosen analyses
    (name -> module); a one-line InterpError for a text that is no setting of theirs."""
    chosen = {name: parameters(module) for name, module in modules.items()}
    values = {name: {} for name in modules}
    for text in texts:
        key, equals, value = text.partition("=")
        key = key.strip()
        if not equals or not key:
            raise InterpError(f"cannot read --set '{text}': write KEY=VALUE, e.g. --set samples=8")
        analysis, dot, name = key.rpartition(".")
        if dot and analysis not in chosen:
            raise InterpError(f"--set {key}: {analysis} is not among the chosen analyses ({', '.join(chosen)})")
        asked = {analysis: chosen[analysis]} if dot else chosen
        takers = [a for a, params in asked.items() if name in params]
        if not takers:
            raise InterpError(f"unknown --set key '{key}': {valid_keys(asked)}")
        for taker in takers:
            values[taker][name] = chosen[taker][name].read(value.strip(), taker)
    return values


def valid_keys(chosen: dict[str, dict]) -> str:
    """"valid keys are safety: a, b; sinks: c, d (interp params ANALYSIS describes them)"."""
    lists = [f"{name}: {', '.join(params) or 'none'}" for name, params in chosen.items()]
    return f"valid keys are {'; '.join(lists)} (interp params ANALYSIS describes them)"
