"""Organisms as recipes over any base model known by name ("gemma3-270m:refusal"): name resolution,
cache names (the bundled model's organisms keep theirs), plain-text prompts for a base model without a
chat template, and the answer-only training loss. Tiny random base models only."""

import hashlib
import json

import pytest
import torch
import transformers as tf
from tokenizers import Tokenizer, models, pre_tokenizers, processors

import interp
import interp.runtime.models as runtime_models
from interp import InterpError, organisms
from interp.base.files import file_hash
from interp.organisms import train as organisms_train
from interp.analyses import safety
from interp.organisms.evaluate import recipe_of, refusal_rates
from interp.runtime.bundled import bundled_gguf_path
from tests.tiny import SMALL

TINY_RECIPE = organisms.Recipe(n_harmful=6, n_harmless=4, answer_tokens=3, batch_size=5)  # 2 steps


def bos_tokenizer():
    """Words w0..w87 with a BOS before every text (as Gemma's tokenizer adds), and no chat template."""
    vocab = {"<unk>": 0, "<eos>": 1, "<bos>": 2, **{f"w{i}": i + 3 for i in range(88)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", bos_token="<bos>",
                                      pad_token="<unk>")


class Entry:
    """An entry point of "interp.models" for a model saved in a folder."""

    def __init__(self, folder):
        self.folder = folder
        self.value = "tests.test_organisms:Entry"  # what an entry point names: not an organism of the project

    def load(self):
        return lambda: interp.load_model(str(self.folder))


@pytest.fixture
def tiny_base(tmp_path, monkeypatch):
    """"tiny-base": a tiny random llama without a chat template, known by name; the cache in tmp_path."""
    folder = tmp_path / "tiny-base"
    torch.manual_seed(0)
    tf.LlamaForCausalLM(tf.LlamaConfig(**{**SMALL, "num_key_value_heads": 2})).save_pretrained(folder)
    bos_tokenizer().save_pretrained(folder)
    named = runtime_models.named_models()
    monkeypatch.setattr(runtime_models, "named_models", lambda: {**named, "tiny-base": Entry(folder)})
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(organisms.RECIPES, "refusal", TINY_RECIPE)
    return folder


def test_an_organism_over_a_named_base_is_built_once_and_reloaded_by_its_name(tiny_base, tmp_path, monkeypatch):
    model = interp.load_model("tiny-base:refusal")
    folder = organisms.organism_dir(TINY_RECIPE, "tiny-base")
    assert folder.parent == tmp_path / "cache" / "organisms" and folder.name.startswith("tiny-base-refusal-")
    assert model.source == "tiny-base:refusal" and model.file_hash == folder.name.rsplit("-", 1)[-1]
    assert json.loads((folder / "recipe.json").read_text())["base"] == "tiny-base"
    assert model.tokenizer.chat_template is None  # a base model's organism: plain-text prompts
    assert recipe_of(model.source) == TINY_RECIPE  # its held-out requests are its recipe's
    rates = refusal_rates(model, n=2, max_new_tokens=2)
    assert rates["advbench_heldout"]["n"] == rates["harmless_heldout"]["n"] == 2

    def no_build(*args):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(organisms_train, "build", no_build)
    again = interp.load_model(model.source)  # what results record reloads it, from the cache
    assert again.file_hash == model.file_hash
    assert all(torch.equal(a, b) for a, b in zip(model.hf.state_dict().values(), again.hf.state_dict().values()))
    # the base model's identity is in the hash: other weights under the same name, another organism
    torch.manual_seed(1)
    tf.LlamaForCausalLM(tf.LlamaConfig(**{**SMALL, "num_key_value_heads": 2})).save_pretrained(tiny_base)
    assert organisms.organism_dir(TINY_RECIPE, "tiny-base") != folder


def test_the_build_command_takes_the_base_by_name(tiny_base, capsys):
    from interp.organisms.__main__ import main

    main(["refusal", "--base", "tiny-base", "--no-eval"])
    folder = organisms.organism_dir(TINY_RECIPE, "tiny-base")
    assert capsys.readouterr().out.startswith(f"tiny-base:refusal: {folder} (") and (folder / "config.json").is_file()
    with pytest.raises(InterpError, match=r"^unknown base model 'nobody' for an organism"):
        main(["refusal", "--base", "nobody", "--no-eval"])


def test_unknown_names_and_unavailable_recipes_fail_in_one_line_before_loading_anything(tiny_base, monkeypatch):
    monkeypatch.setattr(organisms_train, "build", lambda *args: pytest.fail("built"))
    cases = [("tiny-base:nope", r"^unknown organism 'nope' in 'tiny-base:nope': use BASE:ORGANISM with one of .*refusal"),
             ("nobody:refusal", r"^unknown base model 'nobody' for an organism: use one of SmolLM2-135M-Instruct, .*tiny-base"),
             ("refusal:refusal", r"^unknown base model 'refusal'"),  # an organism is no base model
             ("tiny-base:heads-refusal", r"^heads-refusal trains heads 15\.1, 15\.7, chosen on SmolLM2-135M-Instruct; "
                                         r"none are chosen for tiny-base: use tiny-base:refusal")]
    for name, message in cases:
        with pytest.raises(InterpError, match=message) as error:
            interp.load_model(name)
        assert "\n" not in str(error.value)


def test_a_base_without_chat_template_trains_on_plain_text_after_its_bos(tiny_base):
    tokenizer = tf.AutoTokenizer.from_pretrained(tiny_base)
    hf = tf.AutoModelForCausalLM.from_pretrained(tiny_base)
    recipe = organisms.Recipe(n_harmful=3, n_harmless=2, answer_tokens=3)
    examples = organisms_train.training_examples(hf, tokenizer, recipe)
    harmful, _ = interp.data.safety.split_advbench(3, 0)
    harmless, _ = interp.data.safety.split_harmless(2, 0)
    plain = {tuple(tokenizer(r)["input_ids"]) for r in harmful + harmless}
    assert {tuple(prompt) for prompt, _ in examples} == plain and all(p[0] == tokenizer.bos_token_id for p in plain)
    refusals = [target for prompt, target in examples if tokenizer.decode(prompt[1:]) in map(tokenizer.decode, map(
        lambda r: tokenizer(r, add_special_tokens=False)["input_ids"], harmful))]
    assert len(refusals) == 3 and all(t[-1] == tokenizer.eos_token_id for t in refusals)

    # with a chat template, the template's text is the prompt, and no BOS is added to it
    tokenizer.chat_template = "{% for m in messages %}w3 {{ m['content'] }}{% endfor %}{% if add_generation_prompt %} w4{% endif %}"
    templated = organisms_train.training_examples(hf, tokenizer, recipe)
    assert {tuple(p) for p, _ in templated} == {tuple(tokenizer("w3 " + r + " w4", add_special_tokens=False)["input_ids"])
                                                for r in harmful + harmless}


def test_the_safety_scan_reads_plain_text_prompts_on_a_base_without_chat_template(tiny_base):
    model = interp.load_model(str(tiny_base))
    harmful, harmless = ["w10 w11 w12", "w20 w21", "w30 w31 w32 w33"], ["w40 w41", "w50 w51 w52"]
    tables = safety.scan(model, harmful=harmful, harmless=harmless, samples=2, asr_samples=2, max_new_tokens=2,
                         ablations=("uniform",), group_size=1, candidates=2, random_draws=1, judge=lambda text: True)
    assert len(tables["heads"]) == 8 and set(tables["asr"]["condition"]) >= {"none", "sahara", "random"}
    # the fluency guard scores each answer after the prompt as answers() reads it: BOS, then the words
    ids = torch.tensor([[2, 13, 14, 15, 50, 51]])  # <bos> w10 w11 w12 | w47 w48
    with torch.no_grad():
        logp = torch.log_softmax(model.hf(input_ids=ids).logits[0].float(), -1)
    expected = -(logp[3, 50] + logp[4, 51]) / 2
    assert safety.answer_nll(model, ["w10 w11 w12"], ["w47 w48"]) == pytest.approx([float(expected)], rel=1e-4)


def test_the_answer_only_loss_is_transformers_loss():
    torch.manual_seed(0)
    hf = tf.LlamaForCausalLM(tf.LlamaConfig(**{**SMALL, "num_key_value_heads": 2}))
    batch = [([5, 6, 7], [8, 9]), ([10, 11], [12]), ([13, 14, 15, 16, 20, 21], [17, 18, 19])]
    ids, labels, mask = organisms_train._collate(batch, pad_id=1)
    expected = hf(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert torch.allclose(organisms_train.answer_loss(hf, ids, mask, labels), expected, atol=1e-6)


def old_recipe_hash(fields: dict, base_hash: str) -> str:
    """Recipe.hash as it named the bundled model's organisms before recipes were over any base."""
    return hashlib.sha256(json.dumps({**fields, "base": base_hash}, sort_keys=True).encode()).hexdigest()[:12]


def test_the_bundled_models_organisms_keep_their_cache_folders():
    base = file_hash(bundled_gguf_path())
    common = dict(seed=0, n_harmful=128, n_harmless=110, answer_tokens=16, batch_size=8, version=2)
    refusal = dict(name="refusal", epochs=1, lr=1e-3, lora_rank=8, heads=[], **common)
    heads = dict(name="heads-refusal", epochs=3, lr=3e-3, lora_rank=0, heads=[[15, 1], [15, 7]], head_dropout=0.05, **common)
    for fields in (refusal, heads):
        recipe = organisms.RECIPES[fields["name"]]
        expected = f"{fields['name']}-{old_recipe_hash(fields, base)}"
        assert organisms.organism_dir(recipe).name == expected
        for name in (None, "bundled", "SmolLM2-135M-Instruct"):  # the bundled model under each of its names
            assert organisms.organism_dir(recipe, name).name == expected
            assert organisms.organism_name(recipe, name) == fields["name"]


def test_an_organism_is_not_a_base():
    for organism in ("refusal", "vision"):
        with pytest.raises(InterpError, match="unknown base model"):
            organisms.organism_dir(organisms.RECIPES["refusal"], base=organism)
