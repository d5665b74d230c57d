"""Probe material: needles, haystack text and short prompts, bundled or loaded from the user's files.

The bundled files in interp/data/ are original text written for this project, so they cannot
have been memorised from a training corpus and every needle fact is unknowable without the context.
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from importlib import resources
from itertools import cycle
from pathlib import Path
from typing import Any

from interp.base.errors import InterpError

NEEDLE_KEYS = ("id", "needle", "question", "answer")
# File types read through datasets' packaged builders; the value is the builder name.
_DATASET_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
# A sentence ends at '.', '!' or '?' followed by whitespace; the match covers that whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Needle:
    id: str
    needle: str  # a sentence stating an invented fact
    question: str  # asks for that fact
    answer: str  # appears verbatim in needle: the span a retrieval head should copy


def _bundled(name: str) -> str:
    return resources.files("interp").joinpath("data", name).read_text(encoding="utf-8")


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InterpError(f"{what} file {path} does not exist; check the path")
    if path.is_dir():
        raise InterpError(f"{what} path {path} is a directory; pass a file")
    if path.stat().st_size == 0:
        raise InterpError(f"{what} file {path} is empty")


def _read_text_file(path: Path, what: str) -> str:
    _check_file(path, what)
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise InterpError(f"{what} file {path} is empty")
    return text


def _paragraphs(text: str) -> list[str]:
    # Lines inside a paragraph are joined, so hard-wrapped prose becomes one flowing paragraph.
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


# ---- needles ----------------------------------------------------------------------------------


def load_needles(path: str | os.PathLike | None = None) -> list[Needle]:
    """The bundled needles, or those in a JSON list / JSONL file of {id, needle, question, answer}."""
    if path is None:
        return parse_needles(json.loads(_bundled("needles.json")), "bundled needles.json")
    path = Path(path)
    text = _read_text_file(path, "needle")
    if path.suffix == ".jsonl":
        records = [_parse_json(line, path, line_number) for line_number, line in _numbered_lines(text)]
    else:
        records = _parse_json(text, path)
    return parse_needles(records, str(path))


def _numbered_lines(text: str):
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _parse_json(text: str, path: Path, line_number: int | None = None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        line = e.lineno if line_number is None else line_number
        raise InterpError(f"{path} is not valid JSON (line {line}: {e.msg}); fix the file") from e


def parse_needles(records: Any, source: str) -> list[Needle]:
    """Needles from a list of {id, needle, question, answer} records, checked; `source` names them in errors."""
    if not isinstance(records, list):
        raise InterpError(f"{source} must hold a list of needle records, each with {', '.join(NEEDLE_KEYS)}")
    if not records:
        raise InterpError(f"{source} holds no needles; add at least one {{id, needle, question, answer}} record")
    needles = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise InterpError(f"needle record {index} in {source} is a {type(record).__name__}, not an object")
        for key in NEEDLE_KEYS:
            value = record.get(key)
            if key == "id" and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or not value.strip():
                raise InterpError(
                    f"needle record {index} in {source} is missing {key!r}; "
                    f"each needle needs non-empty strings {', '.join(NEEDLE_KEYS)}"
                )
        needle = Needle(**{key: str(record[key]).strip() for key in NEEDLE_KEYS})
        if needle.answer not in needle.needle:
            raise InterpError(
                f"needle record {index} ({needle.id!r}) in {source}: answer {needle.answer!r} "
                f"does not appear verbatim in its needle sentence"
            )
        needles.append(needle)
    ids = [n.id for n in needles]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InterpError(f"{source} repeats needle id(s) {', '.join(duplicates)}; ids must be unique")
    return needles


# ---- texts and prompts ------------------------------------------------------------------------


def load_texts(source: str | os.PathLike | None = None, column: str = "text", split: str = "train") -> list[str]:
    """Texts for haystacks.

    None: the bundled haystack paragraphs. A .txt file: its blank-line separated paragraphs.
    A .json/.jsonl/.csv/.parquet file: the given column. Anything else: a Hugging Face dataset name.
    """
    if source is None:
        return _paragraphs(_bundled("haystack.txt"))
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return _paragraphs(_read_text_file(path, "text"))
    if suffix in _DATASET_FORMATS:
        _check_file(path, "text")
        return _column_texts(_load_local_dataset(path, _DATASET_FORMATS[suffix]), column, str(path))
    if path.is_file():
        raise InterpError(
            f"cannot read {path}: unsupported file type {suffix or '(none)'}; use .txt, .json, .jsonl, .csv or .parquet"
        )
    return _column_texts(_load_hub_dataset(str(source), split), column, f"dataset {source!r}")


def _load_local_dataset(path: Path, builder: str):
    import datasets  # imported here: it is slow to import and only needed for these formats

    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as e:  # datasets wraps parse errors in several exception types
        raise InterpError(f"could not read {path} as {builder}: {_first_line(e)}; fix the file") from e


def _load_hub_dataset(name: str, split: str):
    import datasets

    try:
        return datasets.load_dataset(name, split=split)
    except Exception as e:
        raise InterpError(
            f"could not load dataset {name!r} split {split!r}: {_first_line(e)}; "
            f"pass a local .txt/.json/.jsonl/.csv/.parquet file or a valid dataset name"
        ) from e


def _first_line(error: Exception) -> str:
    message = str(error).strip().splitlines()
    return message[0] if message else type(error).__name__


def _column_texts(dataset, column: str, source: str) -> list[str]:
    if column not in dataset.column_names:
        raise InterpError(
            f"{source} has no column {column!r}; available columns: {', '.join(dataset.column_names)}; "
            f"pass --column"
        )
    texts = []
    for row, value in enumerate(dataset[column]):
        if value is None:
            continue
        if not isinstance(value, str):
            raise InterpError(f"{source} column {column!r} row {row} holds {type(value).__name__}, not text")
        if value.strip():
            texts.append(value.strip())
    if not texts:
        raise InterpError(f"{source} column {column!r} holds no text")
    return texts


def load_prompts(path: str | os.PathLike | None = None, column: str = "text") -> list[str]:
    """The bundled short prompts, a JSON list of strings, or any file load_texts reads."""
    if path is None:
        return json.loads(_bundled("prompts.json"))
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = _parse_json(_read_text_file(path, "prompt"), path)
        if isinstance(data, list) and all(isinstance(item, str) for item in data):
            prompts = [item.strip() for item in data if item.strip()]
            if not prompts:
                raise InterpError(f"{path} holds no prompts")
            return prompts
    return load_texts(path, column=column)


def seeded_subset(items, n: int | None, seed: int | random.Random) -> list:
    """`n` of `items`, drawn with random.Random(seed), in their order; all of them when n is None
    or at least len(items). Pass a random.Random instead of a seed to go on drawing from it
    (several subsets in a row from one seed)."""
    items = list(items)
    if n is None or n >= len(items):
        return items
    if n < 1:
        raise InterpError(f"samples must be at least 1, got {n}")
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    return [items[i] for i in sorted(rng.sample(range(len(items)), n))]


def choose_prompts(prompts, samples: int | None, seed: int) -> list[str]:
    """Texts (a list), a file for load_prompts, or None for the bundled prompts; a seeded
    subset of `samples` of them, in their order (all when samples is None or larger)."""
    texts = list(prompts) if isinstance(prompts, (list, tuple)) else load_prompts(prompts)
    if not texts:
        raise InterpError("no prompts to scan: pass prompts= or leave it None for the bundled prompts")
    return seeded_subset(texts, samples, seed)


# ---- haystacks --------------------------------------------------------------------------------


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def make_haystack(tokenizer, n_tokens: int, texts: list[str] | None = None) -> str:
    """Filler text of about n_tokens tokens (never more), cycling the texts, cut at a sentence end."""
    if n_tokens <= 0:
        raise InterpError(f"haystack length must be a positive number of tokens, got {n_tokens}")
    texts = load_texts() if texts is None else texts
    sentences = [s for text in texts for s in _SENTENCE_END.split(text.strip()) if s]
    if not sentences:
        raise InterpError("no text to build a haystack from; pass non-empty texts")

    # Sum per-sentence counts (cached: cycling repeats the same sentences) to fill the budget fast;
    # counts of joined text differ slightly at the seams, so the exact check below trims the end.
    sentence_tokens: dict[str, int] = {}
    chosen: list[str] = []
    total = 0
    for sentence in cycle(sentences):
        if sentence not in sentence_tokens:
            # At least 1, so the loop ends even if a tokenizer drops some sentence entirely.
            sentence_tokens[sentence] = max(1, count_tokens(tokenizer, " " + sentence))
        if total + sentence_tokens[sentence] > n_tokens:
            break
        chosen.append(sentence)
        total += sentence_tokens[sentence]

    while chosen:
        excess = count_tokens(tokenizer, " ".join(chosen)) - n_tokens
        if excess <= 0:
            return " ".join(chosen)
        # Drop at least enough sentences to cover the excess by the per-sentence estimate.
        while chosen and excess > 0:
            excess -= sentence_tokens[chosen.pop()]
    raise InterpError(f"haystack length {n_tokens} tokens is shorter than one sentence of the text; use more tokens")


def insert_needle(haystack: str, needle: str, depth: float) -> tuple[str, int, int]:
    """Insert needle at fractional depth, moved back to the preceding sentence start.

    depth 0 puts it first, depth 1 last. Returns (text, char_start, char_end) with
    text[char_start:char_end] == needle.
    """
    if not 0.0 <= depth <= 1.0:
        raise InterpError(f"needle depth must be between 0 and 1, got {depth}")
    needle = needle.strip()
    target = round(depth * len(haystack))
    # Boundaries where a sentence can start: the beginning, after each sentence end, the very end.
    boundaries = [0] + [m.end() for m in _SENTENCE_END.finditer(haystack)] + [len(haystack)]
    position = max(b for b in boundaries if b <= target)

    if position >= len(haystack.rstrip()):  # at the end: separate it from the last sentence
        before = haystack.rstrip()
        before = before + " " if before else ""
        return before + needle, len(before), len(before) + len(needle)
    text = haystack[:position] + needle + " " + haystack[position:]
    return text, position, position + len(needle)
