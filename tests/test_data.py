import json
import re

import pandas as pd
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

import interp.data.probes as data
from interp.data import Needle, insert_needle, load_needles, load_prompts, load_texts, make_haystack
from interp.base.errors import InterpError


def word_tokenizer():
    """Word-level tokenizer over the bundled haystack's words; unknown words map to [UNK]."""
    words = sorted({w for text in load_texts() for w in re.findall(r"\w+|[^\w\s]", text)})
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")


def bpe_tokenizer():
    """A small byte-level BPE trained on the haystack: token counts change at sentence seams, as in real models."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.train_from_iterator(load_texts(), trainers.BpeTrainer(vocab_size=400, show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=core)


def n_tokens(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# ---- bundled data -----------------------------------------------------------------------------


def test_bundled_needles_are_valid_and_distinct():
    needles = load_needles()
    assert len(needles) >= 6
    assert len({n.id for n in needles}) == len(needles)
    for n in needles:
        assert n.answer in n.needle and 3 <= len(n.answer.split()) <= 8
        assert n.question.endswith("?")


def test_bundled_haystack_and_prompts():
    paragraphs = load_texts()
    words = sum(len(p.split()) for p in paragraphs)
    assert 2500 <= words <= 4000
    assert all(p.endswith(".") for p in paragraphs)
    prompts = load_prompts()
    assert len(prompts) >= 40 and len(set(prompts)) == len(prompts)
    assert all(60 <= len(p.split()) <= 90 for p in prompts)


# ---- needles from user files ------------------------------------------------------------------


def write(path, text):
    path.write_text(text)
    return path


def test_load_needles_from_json_and_jsonl(tmp_path):
    record = {"id": 1, "needle": "The code is blue fox.", "question": "What is the code?", "answer": "blue fox"}
    from_json = load_needles(write(tmp_path / "n.json", json.dumps([record])))
    from_jsonl = load_needles(write(tmp_path / "n.jsonl", json.dumps(record) + "\n\n"))
    expected = [Needle(id="1", needle="The code is blue fox.", question="What is the code?", answer="blue fox")]
    assert from_json == from_jsonl == expected


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("n.json", "", "is empty"),
        ("n.json", "[{\"id\": 1,", r"not valid JSON \(line 1"),
        ("n.jsonl", '{"id": "a"}\n{oops\n', r"not valid JSON \(line 2"),
        ("n.json", "[]", "holds no needles"),
        ("n.json", '{"id": "a"}', "must hold a list"),
        ("n.json", json.dumps([{"id": "a", "needle": "x is y.", "answer": "y"}]), "record 0 .* missing 'question'"),
        (
            "n.json",
            json.dumps([{"id": "a", "needle": "The sky is green.", "question": "q?", "answer": "blue"}]),
            "answer 'blue' does not appear verbatim",
        ),
        (
            "n.json",
            json.dumps([{"id": "a", "needle": "A b.", "question": "q?", "answer": "b"}] * 2),
            "repeats needle id",
        ),
    ],
)
def test_load_needles_errors(tmp_path, name, text, message):
    with pytest.raises(InterpError, match=message):
        load_needles(write(tmp_path / name, text))


def test_load_needles_missing_file(tmp_path):
    with pytest.raises(InterpError, match="does not exist"):
        load_needles(tmp_path / "nope.json")


# ---- texts ------------------------------------------------------------------------------------


def test_load_texts_txt_paragraphs(tmp_path):
    path = write(tmp_path / "t.txt", "First line\nwrapped here.\n\n\n  Second paragraph.  \n")
    assert load_texts(path) == ["First line wrapped here.", "Second paragraph."]


def test_load_texts_structured_files(tmp_path):
    rows = [{"body": "One.", "n": 1}, {"body": "Two.", "n": 2}]
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    write(tmp_path / "t.jsonl", "\n".join(json.dumps(r) for r in rows))
    for name in ("t.parquet", "t.csv", "t.jsonl"):
        assert load_texts(tmp_path / name, column="body") == ["One.", "Two."]


def test_load_texts_errors(tmp_path):
    with pytest.raises(InterpError, match="does not exist"):
        load_texts(tmp_path / "missing.txt")
    with pytest.raises(InterpError, match="is empty"):
        load_texts(write(tmp_path / "empty.jsonl", ""))
    with pytest.raises(InterpError, match="is empty"):
        load_texts(write(tmp_path / "blank.txt", "\n \n"))
    write(tmp_path / "t.jsonl", json.dumps({"body": "x", "title": "y"}))
    with pytest.raises(InterpError, match="no column 'text'; available columns: body, title"):
        load_texts(tmp_path / "t.jsonl")
    with pytest.raises(InterpError, match="could not read"):
        load_texts(write(tmp_path / "bad.jsonl", "{not json\n"))
    with pytest.raises(InterpError, match="unsupported file type .tsv"):
        load_texts(write(tmp_path / "t.tsv", "a\tb\n"))


def test_load_texts_dataset_name_goes_to_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return datasets.Dataset.from_dict({"text": ["Hello there.", "", None]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_texts("someone/some-corpus", split="validation") == ["Hello there."]
    assert calls == [("someone/some-corpus", "validation")]


def test_load_prompts_from_json_list_and_txt(tmp_path):
    assert load_prompts(write(tmp_path / "p.json", json.dumps(["A.", " B. "]))) == ["A.", "B."]
    assert load_prompts(write(tmp_path / "p.txt", "A.\n\nB.")) == ["A.", "B."]


# ---- haystacks and needles --------------------------------------------------------------------


@pytest.mark.parametrize("make_tokenizer", [word_tokenizer, bpe_tokenizer])
@pytest.mark.parametrize("length", [50, 300, 6000])
def test_make_haystack_fits_budget_and_ends_a_sentence(make_tokenizer, length):
    tokenizer = make_tokenizer()
    haystack = make_haystack(tokenizer, length)
    count = n_tokens(tokenizer, haystack)
    # "About" n_tokens: under by less than two of the haystack's longest sentences.
    assert length - 120 < count <= length
    assert haystack.endswith(".") and haystack[0].isupper()


def test_make_haystack_cycles_short_texts():
    tokenizer = word_tokenizer()
    haystack = make_haystack(tokenizer, 40, texts=["The river is wide. The bread is warm."])
    assert haystack.count("The river is wide.") >= 4
    assert n_tokens(tokenizer, haystack) <= 40


def test_make_haystack_errors():
    tokenizer = word_tokenizer()
    with pytest.raises(InterpError, match="positive"):
        make_haystack(tokenizer, 0)
    with pytest.raises(InterpError, match="shorter than one sentence"):
        make_haystack(tokenizer, 3, texts=["A sentence that is much longer than three tokens."])


HAYSTACK = "One fish swims. Two birds fly. Three cats sleep."
NEEDLE = "The code is blue fox."


@pytest.mark.parametrize("depth", [0.0, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0])
def test_insert_needle_span_is_exact_and_at_a_sentence_boundary(depth):
    text, start, end = insert_needle(HAYSTACK, NEEDLE, depth)
    assert text[start:end] == NEEDLE
    # Removing the needle and its one separating space gives back the haystack.
    without = text[: start - 1] if end == len(text) else text[:start] + text[end + 1 :]
    assert without == HAYSTACK
    assert start == 0 or text[start - 2 : start] == ". "
    assert end == len(text) or text[end] == " "
    assert start <= depth * len(HAYSTACK) + 1  # moved back, never forward


def test_insert_needle_depth_0_and_1():
    assert insert_needle(HAYSTACK, NEEDLE, 0.0) == (f"{NEEDLE} {HAYSTACK}", 0, len(NEEDLE))
    start = len(HAYSTACK) + 1
    assert insert_needle(HAYSTACK, NEEDLE, 1.0) == (f"{HAYSTACK} {NEEDLE}", start, start + len(NEEDLE))


def test_insert_needle_moves_back_to_preceding_sentence_end():
    # 0.5 of the haystack falls inside "Two birds fly."; the needle goes before it.
    text, start, _ = insert_needle(HAYSTACK, NEEDLE, 0.5)
    assert text == f"One fish swims. {NEEDLE} Two birds fly. Three cats sleep."
    assert start == len("One fish swims. ")


def test_insert_needle_rejects_bad_depth():
    with pytest.raises(InterpError, match="between 0 and 1"):
        insert_needle(HAYSTACK, NEEDLE, 1.5)


def test_haystack_with_needle_round_trip():
    tokenizer = bpe_tokenizer()
    needle = load_needles()[0]
    haystack = make_haystack(tokenizer, 500)
    text, start, end = insert_needle(haystack, needle.needle, 0.5)
    answer_start = text.index(needle.answer, start)
    assert start <= answer_start < end
    assert text.replace(needle.needle + " ", "", 1) == haystack


def test_module_has_no_module_level_datasets_import():
    # datasets is slow to import; the CLI imports interp.data on every command.
    assert "datasets" not in vars(data)
