"""Tasks for circuit analysis, as data: clean prompts, corrupted prompts of the same token
length, the correct and the counterfactual answer token, and the metric (logit difference
logit(answer) - logit(counterfactual) at the last position).

Generators (word lists and templates written for this project; every word is kept only if
it is one token of the tokenizer at hand, with its leading space):
- `ioi`: indirect object identification, "When Mary and John went to the store, John gave
  a drink to" -> " Mary"; corruption "abc" (the second subject becomes a third name, so
  both names are equally likely) or "s2_swap" (the second subject becomes the indirect
  object, so the answer flips);
- `colored_objects`: "pencil: yellow, ring: blue, book: gold\\nring:" -> " blue" (form
  "list", the default), or the paper's form "Q: On the table, I see a blue pencil, ...
  What color is the pencil?\\nA:" (form "paper"); 1-shot by default; the corruption asks
  for another object of the same list, whose colour is the counterfactual;
- `induction`: a list of words, then its start again: "... cloud river ... cloud" ->
  " river"; the corruption changes the word after the repeated one in the first half.
A user's task: `load_task(path)` reads a JSONL or CSV with columns clean, corrupt,
answer, counterfactual.

Position roles: the generators know where each role's token lies in every clean prompt, and
`batches()` gives them as token positions (TaskBatch.roles: role -> LongTensor[B]):
- ioi: S1 (the subject's first mention), S1+1 (the token after it), IO (the indirect
  object's mention), S2 (the subject's second mention), END (the last token, " to");
- colored_objects: object (the asked object's mention in the last list or question),
  object+1 (the token after it), colour (that object's colour: the answer's mention),
  query (the asked object at the end: " ring" before ":" / "pencil" in "the pencil?"), END;
- induction: first (the first occurrence of the word repeated last), first+1 (the word
  after it, the answer's mention), END;
- a user's task file: END only.
A role is stored per prompt as the character offset where its word ends (ROLE+1: the token
after ROLE); the token position is the last token of the prompt's text up to that offset.

    task = make_task("ioi", model.tokenizer, n=32)
    for batch in task.batches(model.tokenizer): ...   # same-length groups, no padding
"""

from __future__ import annotations

import csv
import json
import random
import string
from dataclasses import dataclass, field
from pathlib import Path

import torch

from interp.data import count_tokens
from interp.base.errors import InterpError

NAMES = ("Mary John Alice Bob Sarah Tom James Emma David Anna Paul Kate Mark Lisa Peter Laura Mike Jane Chris Amy "
         "Daniel Rachel Eric Helen Steve Linda Kevin Susan Brian Karen Jack Maria Ryan Nancy Adam Lucy Sam Grace "
         "Frank Julia").split()
PLACES = "store park school office garden beach library station market restaurant hospital museum".split()
GIFTS = "drink book ball letter key bag ring pen cup gift hat phone".split()
COLOURS = "red blue green yellow black white brown pink purple orange gray gold silver".split()
OBJECTS = ("pencil ring book cup hat key phone ball box bag pen lamp clock chair plate spoon shoe coin "
           "bottle card shirt watch knife brush").split()
WORDS = ("apple river cloud stone garden window music paper silver forest candle bridge tiger ocean planet "
         "coffee marble castle rabbit engine violin desert pocket ladder mirror harbor carpet meadow rocket "
         "jacket lemon anchor camera pillow").split()

IOI_TEMPLATES = (
    "When {A} and {B} went to the {place}, {S} gave a {gift} to",
    "After {A} and {B} arrived at the {place}, {S} handed a {gift} to",
    "While {A} and {B} were at the {place}, {S} passed the {gift} to",
    "Then {A} and {B} walked into the {place}, and {S} offered a {gift} to",
)
IOI_CORRUPTIONS = ("abc", "s2_swap")
IOI_ROLES = ("S1", "S1+1", "IO", "S2", "END")
COLORED_ROLES = ("object", "object+1", "colour", "query", "END")
INDUCTION_ROLES = ("first", "first+1", "END")
COLORED_FORMS = ("list", "paper")
GENERATORS = ("ioi", "colored_objects", "induction")


@dataclass
class TaskBatch:
    """Prompts of one token length: clean and corrupt ids [B, N], answers [B], row indices, and
    the token position of each role in each prompt (role -> [B]; "END" always)."""

    clean: torch.Tensor
    corrupt: torch.Tensor
    answer: torch.Tensor
    counterfactual: torch.Tensor
    index: list[int]
    roles: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if "END" not in self.roles:
            self.roles = {**self.roles, "END": torch.full((self.clean.shape[0],), self.clean.shape[1] - 1)}

    def to(self, device) -> "TaskBatch":
        return TaskBatch(self.clean.to(device), self.corrupt.to(device), self.answer.to(device),
                         self.counterfactual.to(device), self.index, {k: v.to(device) for k, v in self.roles.items()})


@dataclass
class Task:
    name: str
    clean: list[str]
    corrupt: list[str]
    answer: list[str]  # one token each, leading space included (" Mary")
    counterfactual: list[str]
    description: str = ""
    params: dict = field(default_factory=dict)
    roles: list[dict[str, int]] | None = None  # per prompt: role -> character offset where its word ends

    def __post_init__(self):
        n = len(self.clean)
        if n == 0:
            raise InterpError(f"task '{self.name}' has no prompts")
        if not len(self.corrupt) == len(self.answer) == len(self.counterfactual) == n:
            raise InterpError(f"task '{self.name}': clean, corrupt, answer and counterfactual must have one entry per prompt")
        if self.roles is not None and len(self.roles) != n:
            raise InterpError(f"task '{self.name}': roles must have one entry per prompt")

    @property
    def role_names(self) -> list[str]:
        """The task's roles in prompt order of the first prompt, END last."""
        named = list(self.roles[0]) if self.roles else []
        return [r for r in named if r != "END"] + ["END"]

    def __len__(self) -> int:
        return len(self.clean)

    def batches(self, tokenizer, max_length: int | None = None) -> list[TaskBatch]:
        """The prompts tokenized and grouped by length (so no padding moves the last position)."""
        groups: dict[int, list[tuple]] = {}
        for i in range(len(self)):
            clean, corrupt = _ids(tokenizer, self.clean[i]), _ids(tokenizer, self.corrupt[i])
            if len(clean) != len(corrupt):
                raise InterpError(f"task '{self.name}' row {i}: the clean prompt is {len(clean)} tokens and the corrupt "
                                  f"one {len(corrupt)}; they must have the same token length")
            if max_length is not None and len(clean) > max_length:
                raise InterpError(f"task '{self.name}' row {i} is {len(clean)} tokens, more than max_length {max_length}")
            answer = single_token(tokenizer, self.answer[i], f"task '{self.name}' row {i} answer")
            counter = single_token(tokenizer, self.counterfactual[i], f"task '{self.name}' row {i} counterfactual")
            if answer == counter:
                raise InterpError(f"task '{self.name}' row {i}: answer and counterfactual are the same token")
            roles = self.token_roles(tokenizer, i, clean)
            groups.setdefault(len(clean), []).append((clean, corrupt, answer, counter, i, roles))
        return [TaskBatch(torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows]),
                          torch.tensor([r[2] for r in rows]), torch.tensor([r[3] for r in rows]), [r[4] for r in rows],
                          {role: torch.tensor([r[5][role] for r in rows]) for role in rows[0][5]})
                for _, rows in sorted(groups.items())]

    def token_roles(self, tokenizer, i: int, clean_ids: list[int]) -> dict[str, int]:
        """Role -> token position in prompt i (ROLE+1: the token after ROLE; END: the last)."""
        positions = {}
        for role, end in (self.roles[i] if self.roles else {}).items():
            if role.endswith("+1"):
                continue
            prefix = _ids(tokenizer, self.clean[i][:end])
            if prefix != clean_ids[: len(prefix)]:  # the word's end splits a token of the whole prompt
                raise InterpError(f"task '{self.name}' row {i}: role {role} does not end on a token boundary")
            positions[role] = len(prefix) - 1
        for role in self.roles[i] if self.roles else {}:
            if role.endswith("+1"):
                positions[role] = positions[role[:-2]] + 1
        positions["END"] = len(clean_ids) - 1
        return {role: positions[role] for role in [*(self.roles[i] if self.roles else {}), "END"]}


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text)["input_ids"]


def _fill(template: str, **words) -> tuple[str, dict[str, int]]:
    """template.format(**words) and, per field, the character offset where its word ends."""
    text, ends = "", {}
    for literal, field_name, _, _ in string.Formatter().parse(template):
        text += literal
        if field_name is not None:
            text += words[field_name]
            ends[field_name] = len(text)
    return text, ends


def single_token(tokenizer, text: str, what: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise InterpError(f"{what} {text!r} is {len(ids)} tokens, not one: choose a word the tokenizer keeps whole")
    return ids[0]


def one_token_words(tokenizer, words, need: int, what: str, bare: bool = False) -> list[str]:
    """The words that are one token with a leading space (and without one if bare=True)."""
    def whole(text):
        return count_tokens(tokenizer, text) == 1

    kept = [w for w in words if whole(" " + w) and (not bare or whole(w))]
    if len(kept) < need:
        raise InterpError(f"only {len(kept)} {what} are single tokens of this tokenizer (need {need}): "
                          "use a user task file (interp.data.tasks.load_task)")
    return kept


# ---- generators ------------------------------------------------------------------------------


def make_task(name: str, tokenizer, n: int = 32, seed: int = 0, **options) -> Task:
    """A bundled task by name: ioi, colored_objects or induction (or a path to a task file)."""
    if name in GENERATORS:
        return globals()[name](tokenizer, n=n, seed=seed, **options)
    if Path(name).suffix.lower() in (".jsonl", ".csv"):
        return load_task(name)
    raise InterpError(f"unknown task '{name}': choose from {', '.join(GENERATORS)} or give a .jsonl/.csv task file")


def ioi(tokenizer, n: int = 32, seed: int = 0, corruption: str = "abc") -> Task:
    if corruption not in IOI_CORRUPTIONS:
        raise InterpError(f"unknown IOI corruption '{corruption}': choose from {', '.join(IOI_CORRUPTIONS)}")
    rng = random.Random(seed)
    names = one_token_words(tokenizer, NAMES, 3, "names")
    places = one_token_words(tokenizer, PLACES, 1, "places")
    gifts = one_token_words(tokenizer, GIFTS, 1, "objects")
    rows = []
    for i in range(n):
        template = IOI_TEMPLATES[i % len(IOI_TEMPLATES)]
        io, s, other = rng.sample(names, 3)
        first, second = (io, s) if rng.random() < 0.5 else (s, io)  # ABBA and BABA orders
        words = dict(A=first, B=second, place=rng.choice(places), gift=rng.choice(gifts))
        clean, ends = _fill(template, S=s, **words)
        corrupt = template.format(S=other if corruption == "abc" else io, **words)
        s1, io_end = (ends["A"], ends["B"]) if first == s else (ends["B"], ends["A"])
        roles = {"S1": s1, "S1+1": s1, "IO": io_end, "S2": ends["S"], "END": len(clean)}
        rows.append((clean, corrupt, " " + io, " " + s, roles))
    return _task("ioi", rows, f"indirect object identification, corruption {corruption}", dict(corruption=corruption))


def colored_objects(tokenizer, n: int = 32, seed: int = 0, form: str = "list", shots: int = 1, n_objects: int = 3) -> Task:
    if form not in COLORED_FORMS:
        raise InterpError(f"unknown Colored Objects form '{form}': choose from {', '.join(COLORED_FORMS)}")
    rng = random.Random(seed)
    objects = one_token_words(tokenizer, OBJECTS, n_objects, "objects", bare=True)
    colours = one_token_words(tokenizer, COLOURS, n_objects, "colours")
    render = _colour_list if form == "list" else _colour_question
    rows = []
    for _ in range(n):
        examples = []
        for _ in range(shots):
            items = list(zip(rng.sample(objects, n_objects), rng.sample(colours, n_objects)))
            obj, colour = rng.choice(items)
            examples.append(render(items, obj)[0] + " " + colour)
        items = list(zip(rng.sample(objects, n_objects), rng.sample(colours, n_objects)))
        (obj, colour), (other, other_colour) = rng.sample(items, 2)
        prefix = "".join(e + "\n\n" for e in examples)
        clean, ends = render(items, obj)
        ends.update({"object+1": ends["object"], "END": len(clean)})
        roles = {role: len(prefix) + ends[role] for role in COLORED_ROLES}
        rows.append((prefix + clean, prefix + render(items, other)[0], " " + colour, " " + other_colour, roles))
    return _task("colored_objects", rows, f"Colored Objects, {form} form, {shots}-shot", dict(form=form, shots=shots))


def _colour_list(items, asked) -> tuple[str, dict[str, int]]:
    """The list and the question, with the ends of the asked object's mention, its colour and the query."""
    text, ends = "", {}
    for k, (o, c) in enumerate(items):
        text += (", " if k else "") + o
        if o == asked:
            ends["object"] = len(text)
        text += ": " + c
        if o == asked:
            ends["colour"] = len(text)
    text += "\n" + asked
    ends["query"] = len(text)
    return text + ":", ends


def _colour_question(items, asked) -> tuple[str, dict[str, int]]:
    article = lambda colour: "an" if colour[0] in "aeiou" else "a"
    text, ends = "Q: On the table, I see ", {}
    for k, (o, c) in enumerate(items):
        text += (", " if 0 < k < len(items) - 1 else ", and " if k else "") + f"{article(c)} {c}"
        if o == asked:
            ends["colour"] = len(text)
        text += " " + o
        if o == asked:
            ends["object"] = len(text)
    text += ". What color is the " + asked
    ends["query"] = len(text)
    return text + "?\nA:", ends


def induction(tokenizer, n: int = 32, seed: int = 0, length: int = 8) -> Task:
    """Copying a repeated sequence: the answer is the word that followed the repeated word."""
    rng = random.Random(seed)
    words = one_token_words(tokenizer, WORDS, length + 1, "words")
    rows = []
    for _ in range(n):
        seq = rng.sample(words, length + 1)
        spare, seq = seq[-1], seq[:-1]
        cut = rng.randrange(1, length - 1)  # the prompt repeats seq[:cut + 1]; the answer is seq[cut + 1]
        corrupt_seq = seq[: cut + 1] + [spare] + seq[cut + 2 :]
        repeat = " ".join(seq[: cut + 1])
        first = len(" ".join(seq[: cut + 1]))  # the end of seq[cut], the word repeated last
        clean = " ".join(seq) + ". " + repeat
        rows.append((clean, " ".join(corrupt_seq) + ". " + repeat, " " + seq[cut + 1], " " + spare,
                     {"first": first, "first+1": first, "END": len(clean)}))
    return _task("induction", rows, "induction: copy the word that followed last time", dict(length=length))


def _task(name, rows, description, params) -> Task:
    clean, corrupt, answer, counter, roles = (list(x) for x in zip(*rows))
    return Task(name, clean, corrupt, answer, counter, description, params, roles)


# ---- a user's task ---------------------------------------------------------------------------

TASK_COLUMNS = ("clean", "corrupt", "answer", "counterfactual")


def load_task(path, name: str | None = None) -> Task:
    """A task from a JSONL (one object per line) or CSV file with clean, corrupt, answer and
    counterfactual; answers are single tokens written with their leading space (" Paris")."""
    path = Path(path)
    if not path.is_file():
        raise InterpError(f"task file {path} does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise InterpError(f"task file {path} must be .jsonl or .csv, with columns {', '.join(TASK_COLUMNS)}")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise InterpError(f"task file {path} is empty; write one row per prompt with {', '.join(TASK_COLUMNS)}")
    rows = _read_jsonl(path, text) if suffix == ".jsonl" else _read_csv(path, text)
    for i, row in enumerate(rows, start=1):
        missing = [c for c in TASK_COLUMNS if not isinstance(row.get(c), str) or not row.get(c)]
        if missing:
            raise InterpError(f"{path} row {i} lacks {', '.join(missing)}: every row needs text in {', '.join(TASK_COLUMNS)}")
    columns = {c: [row[c] for row in rows] for c in TASK_COLUMNS}
    return Task(name or _safe_name(path.stem), **columns, description=f"user task from {path.name}")


def _read_jsonl(path: Path, text: str) -> list[dict]:
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InterpError(f"{path} line {i} is not JSON ({e.msg}); write one object per line") from None
        if not isinstance(row, dict):
            raise InterpError(f"{path} line {i} is not a JSON object; write {{\"clean\": ..., \"corrupt\": ...}} per line")
        rows.append(row)
    return rows


def _read_csv(path: Path, text: str) -> list[dict]:
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in TASK_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InterpError(f"{path} has no column {', '.join(missing)}; its header must name {', '.join(TASK_COLUMNS)}")
    rows = list(reader)
    if not rows:
        raise InterpError(f"{path} has a header but no rows")
    return rows


def _safe_name(stem: str) -> str:
    """Task names become table names (letters, digits, '_' and '-')."""
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in stem) or "task"
