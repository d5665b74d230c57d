"""Head divergence (VHD / context divergence), T-VHD, the outlier filter and VHR, with known
answers on a tiny random LLaVA fed a real photo through a real processor, and on a tiny llama."""

import json

import numpy as np
import pytest
import torch
import transformers as tf
from typer.testing import CliRunner

from interp import InterpError, InterpModel, LayerEdit, ScaleHead
from interp.analyses import divergence as dv
from interp.analyses.sinks import image_inputs
from interp.data.probes import seeded_subset
from interp.data.scenes import default_images
from tests.tiny import SMALL, llava_processor, photo, tiny_tokenizer

SUBSPACE = list(range(56, 64))  # residual dimensions only the context (image tokens / span words) carries
VISION_HEAD = (1, 1)  # reads SUBSPACE through a large W_V
SURGE_HEAD = (2, 3)  # huge output with and without the image: an outlier
HEAD_DIM = 16


def _text_config(layers: int):
    return tf.LlamaConfig(**{**SMALL, "num_hidden_layers": layers, "num_key_value_heads": 4})


def _plant_reader(hf_layers, layer: int, head: int, weight: float = 10.0):
    """Head `head` of `layer` reads only SUBSPACE (its value rows), and the layers before it
    write nothing into SUBSPACE, so what it sees there comes from the context alone."""
    for early in hf_layers[:layer]:
        early.self_attn.o_proj.weight[SUBSPACE] = 0
        early.mlp.down_proj.weight[SUBSPACE] = 0
    rows = hf_layers[layer].self_attn.v_proj.weight[head * HEAD_DIM : (head + 1) * HEAD_DIM]
    rows.zero_()
    for i, dim in enumerate(SUBSPACE):
        rows[i, dim] = weight


@pytest.fixture(scope="module")
def llava():
    torch.manual_seed(0)
    vision = tf.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 image_size=32, patch_size=8)
    config = tf.LlavaConfig(text_config=_text_config(3), vision_config=vision, image_token_index=95,
                            projector_hidden_act="gelu", vision_feature_layer=-1)
    hf = tf.LlavaForConditionalGeneration(config).eval()
    lm = hf.model.language_model
    with torch.no_grad():
        lm.embed_tokens.weight[:, SUBSPACE] = 0  # text tokens never carry SUBSPACE
        projector = hf.model.multi_modal_projector.linear_2
        projector.weight[SUBSPACE] = 0
        projector.bias[SUBSPACE] = 3.0  # every image token does
        _plant_reader(lm.layers, *VISION_HEAD)
        layer, head = SURGE_HEAD
        lm.layers[layer].self_attn.v_proj.weight[head * HEAD_DIM : (head + 1) * HEAD_DIM] *= 300
    processor = llava_processor(config)
    return InterpModel(hf, processor.tokenizer, processor, source="tiny-llava-planted")


def inputs_for(model, prompt):
    return image_inputs(model, photo(), prompt)


def separate_runs(model, inputs, span=None):
    """VHD computed the plain way: two unbatched forwards, z at each one's last position."""
    z = []
    for one in (inputs, dv.without_span(model, inputs, dv.span_positions(model, inputs, span))):
        with torch.no_grad(), model.capture(z=True, positions="last") as cap:
            model.hf(**one)
        z.append(cap.z[0, :, :, -1])
    return (z[0] - z[1]).norm(dim=-1)


@pytest.mark.parametrize("prompt", ["<image> w5 w6 w7", "w0 w1 <image> w5 w6", "w0 w1 w2 <image>"])
def test_vision_head_ranks_first_wherever_the_image_is(llava, prompt):
    inputs = inputs_for(llava, prompt)
    d = dv.vhd(llava, inputs)
    assert torch.allclose(d.l2, separate_runs(llava, inputs), rtol=1e-4, atol=1e-5)  # padding and batching change nothing
    layer, head = VISION_HEAD
    assert int(d.l2[layer].argmax()) == head
    assert d.norm_sq[layer, head] == 0 and d.filtered[layer, head] == d.l2[layer, head]  # no output without the image
    assert torch.allclose(d.ratio, d.l2 / d.norm_sq.sqrt().clamp_min(1e-12))
    assert ((d.cosine >= -1e-6) & (d.cosine <= 2 + 1e-6)).all()


def test_surge_head_is_zeroed_by_the_filter_and_vhr_picks_the_vision_head(llava):
    inputs = inputs_for(llava, "w0 <image> w5 w6 w7")
    d = dv.vhd(llava, inputs)
    layer, head = SURGE_HEAD
    assert int(d.l2[layer].argmax()) == head and int(d.norm_sq[layer].argmax()) == head
    assert d.filtered[layer, head] == 0
    others = [h for h in range(4) if h != head]
    assert torch.equal(d.filtered[layer, others], d.l2[layer, others])

    assert dv.default_layers(3) == [1, 2] and dv.default_layers(32) == [1, *range(18, 32)]
    with_filter = dv.vhr(llava, inputs).heads()
    without = dv.vhr(llava, inputs, filtered=False).heads()
    assert VISION_HEAD in with_filter and VISION_HEAD in without
    assert SURGE_HEAD not in with_filter and SURGE_HEAD in without
    assert all(layer in (1, 2) for layer, _ in with_filter)
    assert sum(1 for l, _ in with_filter if l == 1) == 2  # above the median of 4 heads


def test_reinforcing_an_early_layer_changes_a_later_layers_vhd(llava):
    inputs = inputs_for(llava, "w0 <image> w5 w6 w7")
    plain = dv.vhd(llava, inputs).filtered
    alone = dv.vhr(llava, inputs, layers=[2])  # layer 2 first: it sees the plain model
    assert torch.allclose(alone.scores[0, 2], plain[2], rtol=1e-4, atol=1e-5)
    both = dv.vhr(llava, inputs, layers=[1, 2])  # layer 2 after layer 1's heads were doubled
    assert torch.allclose(both.scores[0, 1], plain[1], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(both.scores[0, 2], plain[2], rtol=1e-2)
    # the one pass equals a fixed ScaleHead run with the heads it chose
    with torch.no_grad(), llava.intervene(ScaleHead(both.heads(), factor=2.0)):
        fixed = llava.hf(**inputs).logits[0, -1]
    assert torch.allclose(both.logits[0], fixed, atol=1e-4)


def test_generation_with_vhr_equals_a_scalehead_run_and_nothing_leaks(llava):
    inputs = inputs_for(llava, "w0 <image> w5 w6 w7")
    with torch.no_grad():
        before = llava.hf(**inputs).logits
    gen, r = dv.generate_vhr(llava, inputs, max_new_tokens=6)
    assert r.heads() and llava.runtime.idle and not llava.runtime._hook_handles
    with llava.intervene(ScaleHead(r.heads(), factor=2.0)):
        manual = llava.generate(inputs, max_new_tokens=6, output_logits=True)
    assert torch.equal(gen.new_ids, manual.new_ids)
    assert torch.allclose(gen.first_logits, manual.first_logits, atol=1e-5)
    assert torch.allclose(r.logits[0], manual.first_logits[0], atol=1e-4)  # the selection pass was the same prefill
    with pytest.raises(RuntimeError, match="boom"):
        with llava.intervene(LayerEdit(layers=[1], edit=lambda layer, z, offset: z * 5)):
            raise RuntimeError("boom")
    with torch.no_grad():
        after = llava.hf(**inputs).logits
    assert torch.equal(before, after) and llava.runtime.idle


def test_t_vhd_is_the_sum_of_per_layer_top_k_at_every_generated_token(llava):
    inputs = inputs_for(llava, "w0 <image> w5 w6")
    new = torch.tensor([[7, 30, 12, 44]])
    table = dv.t_vhd(llava, inputs, new, k=2)
    for t in range(new.shape[1]):
        prefix = dict(inputs, input_ids=torch.cat([inputs["input_ids"], new[:, :t]], dim=1))
        prefix["attention_mask"] = torch.ones_like(prefix["input_ids"])
        scores = dv.vhd(llava, prefix).filtered
        expected = sum(scores[layer].topk(2).values.sum() for layer in range(3))
        assert table["t_vhd"][t] == pytest.approx(float(expected), rel=1e-4)
    assert list(table["token_id"]) == new[0].tolist()


def test_layer_edit_equals_editing_z_by_hand_on_eager_attention():
    torch.manual_seed(1)
    eager = tf.AutoModelForCausalLM.from_config(_text_config(2)).eval()
    eager.set_attn_implementation("eager")
    model = InterpModel(tf.AutoModelForCausalLM.from_config(_text_config(2)).eval(), source="tiny")
    model.hf.load_state_dict(eager.state_dict())
    ids = torch.randint(0, 90, (2, 9))

    def by_hand(module, args):
        z = args[0].clone()
        z[..., 2 * HEAD_DIM : 3 * HEAD_DIM] *= 3
        return (z,)

    handle = eager.model.layers[1].self_attn.o_proj.register_forward_pre_hook(by_hand)
    with torch.no_grad():
        expected = eager(input_ids=ids).logits
        handle.remove()
        clean = eager(input_ids=ids).logits

        def triple_head_2(layer, z, offset):
            return torch.cat([z[:, :, :2], z[:, :, 2:3] * 3, z[:, :, 3:]], dim=2)

        with model.intervene(LayerEdit(layers=[1], edit=triple_head_2)):
            edited = model.hf(input_ids=ids).logits
        after = model.hf(input_ids=ids).logits
    assert (edited - expected).abs().max() <= 1e-4
    assert (after - clean).abs().max() <= 1e-4 and not torch.allclose(edited, clean)
    with pytest.raises(InterpError, match="LayerEdit needs"):
        LayerEdit(layers=[], edit=triple_head_2)


def test_context_divergence_of_a_planted_reader_on_a_tiny_llama():
    torch.manual_seed(2)
    hf = tf.AutoModelForCausalLM.from_config(_text_config(2)).eval()
    tokenizer = tiny_tokenizer()
    context_ids = tokenizer.convert_tokens_to_ids([f"w{i}" for i in range(40, 50)])
    with torch.no_grad():
        hf.model.embed_tokens.weight[:, SUBSPACE] = 0
        hf.model.embed_tokens.weight[torch.tensor(context_ids)[:, None], torch.tensor(SUBSPACE)] = 1.0
        _plant_reader(hf.model.layers, 1, 2)
    model = InterpModel(hf, tokenizer, source="tiny-llama-planted")
    ids = tokenizer("w1 w2 w40 w41 w42 w43 w3 w4 w5", return_tensors="pt")["input_ids"]
    d = dv.vhd(model, {"input_ids": ids}, (2, 6))
    assert torch.allclose(d.l2, separate_runs(model, {"input_ids": ids}, (2, 6)), rtol=1e-4, atol=1e-5)
    assert int(d.l2.flatten().argmax()) == 1 * 4 + 2
    # two spans at once, and batches of pairs of different lengths agree with one pair at a time
    other = tokenizer("w7 w44 w45 w8 w46 w9", return_tensors="pt")["input_ids"]
    batch = dv.divergence(model, [({"input_ids": ids}, (2, 6)), ({"input_ids": other}, [(1, 3), (4, 5)])])
    assert torch.allclose(batch.l2[1], dv.vhd(model, {"input_ids": other}, [(1, 3), (4, 5)]).l2, rtol=1e-4, atol=1e-5)
    assert int(batch.l2[1].flatten().argmax()) == 6
    with pytest.raises(InterpError, match="outside"):
        dv.vhd(model, {"input_ids": ids}, (5, 40))
    with pytest.raises(InterpError, match="no vision tower"):
        dv.scan_vhd(model, images="anywhere")


def test_context_samples_are_keyed_by_the_items_ids(tmp_path):
    torch.manual_seed(0)
    model = InterpModel(tf.AutoModelForCausalLM.from_config(_text_config(2)).eval(), tiny_tokenizer())
    item = lambda i: {"context": f"w{40 + i} w{50 + i}", "question": f"w{i} w{i + 1}", "stem": f"w{20 + i}"}
    items = [{"id": f"q{i}", **item(i)} for i in range(6)]
    samples = dv.scan_context(model, items=items, samples=3, seed=1)["samples"]
    assert list(dict.fromkeys(samples["sample"])) == [it["id"] for it in seeded_subset(items, 3, 1)]
    for key, rows in samples.groupby("sample"):  # each key's scores are its own item's
        expected = dv.vhd(model, *dv.context_prompt(model, items[int(key[1:])])).l2
        assert rows.sort_values(["layer", "head"])["score"].tolist() == pytest.approx(expected.flatten().tolist(), rel=1e-4, abs=1e-5)
    # a file without ids: each item's line, counted past a blank line and an item the model does not know
    lines = [json.dumps(item(0)), "", json.dumps({**item(1), "known": False}), json.dumps(item(2))]
    (tmp_path / "items.jsonl").write_text("\n".join(lines))
    assert set(dv.scan_context(model, items=tmp_path / "items.jsonl")["samples"]["sample"]) == {"line:1", "line:4"}
    # a list without ids: each item's place in the list; one id twice is refused
    assert set(dv.scan_context(model, items=[item(0), item(1)])["samples"]["sample"]) == {"item:0", "item:1"}
    with pytest.raises(InterpError, match="share an id"):
        dv.scan_context(model, items=[items[0], items[0]])


@pytest.mark.bundled
def test_scan_context_on_the_bundled_model_writes_270_heads(tmp_path):
    from interp.cli import app
    from interp.run.results import open_results

    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["scan", "--analyses", "context", "--samples", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = open_results(out)
    heads, samples = results.read_table("context"), results.read_table("context", "samples")
    assert len(heads) == 270 and set(heads.columns) >= {"layer", "head", "score", "filtered", "cosine", "ratio"}
    assert (heads["filtered"] <= heads["score"] + 1e-6).all()
    items = {item["id"]: item for item in dv.load_counterfactual()}
    assert len(items) == 176
    keys = sorted(set(samples["sample"]))
    assert len(keys) == 4 and len(samples) == 4 * 270 and set(keys) <= set(items)  # keyed by the items' ids

    # Known answer: a head's score is the mean over the prompts of ||z with the context - z without it||
    # at the last position. Here one prompt at a time, unpadded, the context cut out by hand and z read
    # off the input of o_proj by a hook of the test's own, for the top head and for head 0.0.
    import interp

    model = interp.load_model()
    d = model.layout.head_dim

    def last_z(ids, layer, head):
        seen = []
        hook = model.hf.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
        try:
            with torch.no_grad():
                model.hf(input_ids=ids)
        finally:
            hook.remove()
        return seen[0][0, -1, head * d : (head + 1) * d].float()

    best = heads.loc[heads["score"].idxmax()]
    for layer, head in [(int(best["layer"]), int(best["head"])), (0, 0)]:
        expected = []
        for key in keys:
            inputs, (start, end) = dv.context_prompt(model, items[key])
            ids = inputs["input_ids"]
            without = torch.cat([ids[:, :start], ids[:, end:]], dim=1)
            expected.append(float((last_z(ids, layer, head) - last_z(without, layer, head)).norm()))
        rows = samples[(samples["layer"] == layer) & (samples["head"] == head)].set_index("sample")["score"]
        assert rows[keys].tolist() == pytest.approx(expected, rel=1e-4, abs=1e-5)  # agree to ~1e-5 (batched, padded)
        assert heads.query(f"layer == {layer} and head == {head}")["score"].item() == pytest.approx(sum(expected) / 4, rel=1e-4)
    assert best["score"] > 1  # the top head moves: the context changes what it writes


def test_vhd_scan_of_an_image_folder_and_the_explorer_shows_its_tables(llava, tmp_path, monkeypatch):
    from interp.run.results import ResultsDir
    from tests.tiny import app_on, charts

    folder = tmp_path / "images"
    folder.mkdir()
    photo().save(folder / "china.png")
    photo().rotate(90).save(folder / "turned.jpg")
    (folder / "prompts.txt").write_text("w0 <image> w5 w6\nw1 w2 <image> w7\n")
    tables = dv.scan_vhd(llava, images=folder, max_new_tokens=3)
    heads = tables["heads"]
    assert len(heads) == 3 * 4 and set(tables["samples"]["sample"]) == {"image:china.png", "image:turned.jpg"}
    best = heads[heads["layer"] == VISION_HEAD[0]].sort_values("score").iloc[-1]
    assert (int(best["layer"]), int(best["head"])) == VISION_HEAD
    surge = heads[(heads["layer"] == SURGE_HEAD[0]) & (heads["head"] == SURGE_HEAD[1])].iloc[0]
    assert surge["filtered"] == 0 and surge["outlier_rate"] == 1
    assert len(tables["tokens"]) == 6 and (tables["tokens"]["t_vhd"] > 0).all()
    with pytest.raises(InterpError, match="one line per image"):
        (folder / "prompts.txt").write_text("w0 <image>\n")
        dv.scan_vhd(llava, images=folder)

    results = ResultsDir(tmp_path / "results")
    results.set_model("tiny-llava-planted", None, llava.layout.as_dict())
    results.start_analysis("vhd")
    results.write_tables("vhd", tables)
    results.finish_analysis("vhd")
    at = app_on(results.path, monkeypatch)
    heatmap = next(c for c in charts(at) if c["data"][0]["type"] == "heatmap")
    assert heatmap["layout"]["xaxis"]["range"] == [-0.5, 2.5]
    assert any("over 2 rows of vhd.samples" in c["layout"].get("title", {}).get("text", "") for c in charts(at))

    # the Image view: the chosen head's attention over the grid of a held-out scene, drawn over it
    from interp.runtime import models
    from tests.tiny import values

    assert not [c for c in charts(at) if c["data"][0]["type"] == "image"]  # nothing runs before the toggle
    monkeypatch.setattr(models, "load_model", lambda source, **kw: llava)
    at.selectbox(key="layer").set_value(VISION_HEAD[0]).run()
    at.selectbox(key="head").set_value(VISION_HEAD[1]).run()
    at.toggle(key="image_on").set_value(True).run()
    assert not at.exception, at.exception
    (figure,) = [c for c in charts(at) if c["data"][0]["type"] == "image"]
    key = at.selectbox(key="image_scene").value
    scene = dict(default_images(dv.DEFAULT_SCENES))[key]
    expected = dv.image_attention(llava, image_inputs(llava, scene, "Describe the image."), *VISION_HEAD)
    shown = values(figure["data"][1]["z"]).astype(float)
    assert shown.shape == (4, 4) and torch.allclose(torch.tensor(shown), expected.double(), atol=1e-6)
    assert f"head {VISION_HEAD[0]}.{VISION_HEAD[1]} on {key}" in figure["layout"]["title"]["text"]

    # or a real photo (interp.data.scenes.photos), drawn as the processor crops it
    from interp.data.scenes import photos

    at.selectbox(key="image_scene").set_value("chelsea").run()
    assert not at.exception, at.exception
    (figure,) = [c for c in charts(at) if c["data"][0]["type"] == "image"]
    cat = dict(photos())["chelsea"]
    expected = dv.image_attention(llava, image_inputs(llava, cat, "Describe the image."), *VISION_HEAD)
    shown = values(figure["data"][1]["z"]).astype(float)
    assert torch.allclose(torch.tensor(shown), expected.double(), atol=1e-6)
    assert figure["layout"]["title"]["text"] == f"head {VISION_HEAD[0]}.{VISION_HEAD[1]} on chelsea"


def test_cli_vhd_on_a_text_model_fails_in_one_line_and_neither_is_in_the_default_scan(tmp_path):
    from interp.cli import app
    from interp.run.runner import analysis_modules
    from tests.tiny import save_tiny_model

    assert not {"context", "vhd"} & set(analysis_modules(None))
    assert "images" in analysis_modules("context,vhd")["vhd"].PARAMS
    tiny = save_tiny_model(tmp_path / "tiny")
    result = CliRunner().invoke(app, ["scan", "--model", str(tiny), "--analyses", "vhd", "--images", str(tmp_path),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "vhd failed: vhd needs a vision-language model" in " ".join(result.output.split())


def test_image_attention_is_the_heads_attention_row_on_the_image_tokens_in_grid_order(llava):
    inputs = inputs_for(llava, "w0 <image> w5 w6 w7")
    image = dv.image_positions(llava, inputs)
    grid = dv.image_attention(llava, inputs, *VISION_HEAD)
    # transformers' own attention weights of the eager implementation, read without interp
    own = llava.hf.config._attn_implementation  # interp's, put back after
    llava.hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            attentions = llava.hf(**inputs, output_attentions=True).attentions
    finally:
        llava.hf.set_attn_implementation(own)
    layer, head = VISION_HEAD
    expected = attentions[layer][0, head, -1, image].float()
    assert grid.shape == (4, 4) and len(image) == 16
    assert torch.allclose(grid.flatten(), expected, atol=1e-6)  # row by row: token k at (k // 4, k % 4)
    assert 0 < grid.sum() <= 1 + 1e-6
    first = dv.image_attention(llava, inputs, *VISION_HEAD, position=image[-1] + 1)  # another query, another row
    assert not torch.allclose(first, grid)
    with pytest.raises(InterpError, match="out of range"):
        dv.image_attention(llava, inputs, 9, 0)
    with pytest.raises(InterpError, match="no image tokens"):
        dv.image_attention(llava, {"input_ids": inputs["input_ids"][:, :1]}, *VISION_HEAD)


def test_image_as_seen_is_the_encoders_input_before_normalization(llava):
    wide = photo()  # 640 x 427: the processor resizes the short side and keeps the centre square
    seen = dv.image_as_seen(llava, wide)
    processor = llava.processor.image_processor
    pixels = image_inputs(llava, wide, "w0 <image> w5")["pixel_values"][0].float()  # [3, 32, 32], normalized
    mean, std = torch.tensor(processor.image_mean)[:, None, None], torch.tensor(processor.image_std)[:, None, None]
    assert seen.size == (32, 32) and seen.mode == "RGB"
    drawn = torch.tensor(np.asarray(seen), dtype=torch.float32).permute(2, 0, 1)
    assert (drawn - (pixels * std + mean) * 255).abs().max() < 0.01  # the pixels the grid covers
    squashed = torch.tensor(np.asarray(wide.resize((32, 32))), dtype=torch.float32).permute(2, 0, 1)
    assert (drawn - squashed).abs().mean() > 5  # not the whole photo squeezed: the sides are cut
