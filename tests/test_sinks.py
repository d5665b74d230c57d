"""analyses.sinks: planted sinks and massive activations on tiny random models (known
answers), an eager cross-check of the per-token importances, a tiny LLaVA on a real
photo with planted visual sinks, and the bundled SmolLM2."""

import copy

import pandas as pd
import pytest
import torch
import transformers as tf

from interp import InterpModel
from interp.analyses import sinks
from tests.tiny import (ARCHS, CONFIGS, DIM, IMAGE_PROMPT, VISUAL_SINK_PATCHES, build_hf, photo, plant_massive, random_ids,
                        tiny_llava, tiny_tokenizer)

PLANTED_TOKEN = "w46"  # id 48 in tiny_tokenizer
PROMPT = " ".join(f"w{i}" for i in [1, 2, 3, 46, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])  # planted token at 3


def plant_sink(model: InterpModel, dim: int = DIM, key_scale: float = 2.0, query_bias: float = 4.0):
    """Every query attends to the token that has hidden dimension `dim`: in every head one
    query/key coordinate is a constant query bias times a key reading only `dim`. The slowest
    rotary pair is used, so RoPE leaves that product ~unchanged (cos of < 0.02 rad at 64 tokens)."""
    L, hd = model.layout, model.layout.head_dim
    slow = hd // 2 - 1
    with torch.no_grad():
        for site in model.sites:
            attn = site.attention
            for kv in range(L.n_kv_heads):
                attn.k_proj.weight[kv * hd + slow] = 0
                attn.k_proj.weight[kv * hd + slow, dim] = key_scale
            for h in range(L.n_heads):
                attn.q_proj.weight[h * hd + slow] = 0
                attn.q_proj.bias[h * hd + slow] = query_bias


def planted_llama(sink: bool = True) -> InterpModel:
    torch.manual_seed(0)
    config = CONFIGS["llama"]()
    config.attention_bias = True  # q_proj gets the bias that plant_sink sets
    hf = tf.LlamaForCausalLM(config).eval()
    tokenizer = tiny_tokenizer()
    model = InterpModel(hf, tokenizer, source="tiny-llama-planted")
    plant_massive(hf.model.embed_tokens, tokenizer.convert_tokens_to_ids(PLANTED_TOKEN))
    if sink:
        plant_sink(model)
    return model


def test_planted_sink_is_the_top_sink_token_in_every_head():
    model = planted_llama()
    tables = sinks.scan(model, prompts=[PROMPT], sink_positions=(3,))
    heads, tokens = tables["heads"], tables["tokens"]
    assert len(heads) == 2 * 4 and (heads["score"] > 0.99).all() and (heads["sink_rate"] == 1).all()
    top = tokens[tokens["rank"] == 1].iloc[0]
    assert (top["position"], top["token"], top["sink_heads"]) == (3, PLANTED_TOKEN, 8)
    assert top["importance"] > 0.99
    # the first token is no sink here: it only gets attention from the 3 queries before the plant
    first = sinks.scan(model, prompts=[PROMPT])["heads"]
    assert (first["score"] < 0.3).all() and (first["sink_rate"] == 0).all()
    # and the sink token is the one carrying the massive activation
    summary = tables["summary"].set_index("metric")["value"]
    assert summary["top_sink_carries_massive"] == 1.0 and summary["massive_tokens_in_top3"] == 1.0


def test_planted_massive_dimension_is_found_on_repeated_tokens():
    model = planted_llama(sink=False)
    prompt = " ".join(["w46", "w1", "w2", "w3", "w4", "w46", "w5", "w6"])  # a "BOS" and its repeat
    tables = sinks.scan(model, prompts=[prompt])
    entries = tables["massive_entries"]
    assert set(entries["dim"]) == {DIM} and set(entries["token"]) == {PLANTED_TOKEN}
    assert sorted(zip(entries["layer"], entries["position"])) == [(0, 0), (0, 5), (1, 0), (1, 5)]
    assert (entries["value"].abs() > 100).all() and (entries["ratio"] > 1000).all()
    by_layer = tables["massive"]
    assert list(by_layer["layer"]) == [0, 1] and list(by_layer["n_entries"]) == [2, 2]
    assert sinks.massive_dims(model, [model.tokenize(prompt)]) == [DIM]
    # a planted massive token is also an outlier of its own dimension: phi ~ sqrt(64) = 8
    assert sinks.sink_tokens(model, model.tokenize(prompt), [DIM], tau=4) == {0: [0, 5], 1: [0, 5]}
    assert sinks.sink_tokens(model, model.tokenize(prompt), [DIM + 1], tau=4) == {0: [], 1: []}


def close(column, tensor, atol=1e-5) -> bool:
    return torch.allclose(torch.tensor(column.to_numpy(), dtype=torch.float64), tensor.double(), atol=atol)


def test_resumed_scan_skips_saved_samples_and_tables_round_trip_through_parquet(tmp_path, monkeypatch):
    from interp.run.results import ResultsDir

    model = planted_llama()
    results = ResultsDir(tmp_path / "out")
    prompts = [PROMPT, "w46 w1 w2 w3", "w5 w6 w7 w46 w8"]
    first = sinks.scan(model, prompts=prompts, results=results)
    monkeypatch.setattr(sinks, "key_importance", lambda *a, **k: pytest.fail("a saved sample was measured again"))
    again = sinks.scan(model, prompts=prompts, results=results)
    for name, table in first.items():
        pd.testing.assert_frame_equal(table, again[name], check_dtype=False)
        if name == "heads":
            results.write_table("sinks", table)  # validated as a head table
        else:
            results.write_table("sinks", table, table=name)
        pd.testing.assert_frame_equal(results.read_table("sinks", None if name == "heads" else name), table, check_dtype=False)


def test_prompts_longer_than_the_model_are_cut_before_the_length_check():
    model = planted_llama()
    too_long = " ".join(f"w{3 + i % 80}" for i in range(model.layout.max_positions + 40))
    out = sinks.scan(model, prompts=[too_long], n_tokens=16)
    assert out["tokens"]["position"].max() == 15  # the first 16 tokens were scanned


@pytest.mark.parametrize("arch", ARCHS)
def test_layer_inputs_are_the_hidden_states_transformers_reports(arch):
    model = InterpModel(build_hf(arch), source=f"tiny-{arch}")
    ids = random_ids(batch=1)
    seen = {}
    sinks.each_layer_input(model, {"input_ids": ids}, lambda layer, x: seen.__setitem__(layer, x))
    with torch.no_grad():
        reported = model.hf.base_model(input_ids=ids, output_hidden_states=True).hidden_states
    assert sorted(seen) == list(range(model.layout.n_layers))
    for layer, x in seen.items():
        assert torch.equal(x, reported[layer][0])  # hidden_states[l] is the input of layer l


@pytest.mark.parametrize("arch", ["llama", "mistral", "gemma2"])  # causal, sliding window 6, alternating + softcap
def test_token_importance_matches_eager_attention(arch):
    eager = build_hf(arch)
    model = InterpModel(copy.deepcopy(eager), tiny_tokenizer(), source=f"tiny-{arch}")
    prompts = [" ".join(f"w{i}" for i in range(3, 17)), " ".join(f"w{i}" for i in range(40, 50))]
    eps = 0.2
    tables = sinks.scan(model, prompts=prompts, eps=eps)
    tokens = tables["tokens"]
    heads_score = []
    for sample, prompt in enumerate(prompts):
        ids = model.tokenize(prompt)["input_ids"]
        with torch.no_grad():
            attention = torch.stack(eager(input_ids=ids, output_attentions=True).attentions)[:, 0]  # [L, H, N, N]
        # Gu et al.: mean attention a key receives from the queries that see it (nonzero entries)
        importance = attention.sum(-2) / (attention > 0).sum(-2)
        rows = tokens[tokens["sample"] == f"text:{sample}"]
        assert close(rows["importance"], importance.mean((0, 1)))
        assert list(rows["sink_heads"]) == (importance > eps).sum((0, 1)).tolist()
        heads_score.append(importance[..., 0])
    assert close(tables["heads"]["score"], torch.stack(heads_score).mean(0).flatten())


# ---- a tiny LLaVA with a real photo (tests/tiny.py's tiny_llava) -------------------------------

def test_visual_sinks_of_a_real_photo_on_tiny_llava():
    model = tiny_llava()
    inputs = sinks.image_inputs(model, photo(), IMAGE_PROMPT)
    image = sinks.image_positions(model, inputs)
    assert image == list(range(1, 17))  # 32x32 pixels in 8x8 patches, CLS dropped
    expected = sorted([0] + [image[p] for p in VISUAL_SINK_PATCHES])
    # phi <= sqrt(d_model) = 8 in this 64-wide model, so tau = 20 is unreachable: use 4
    tables = sinks.scan(model, prompts=["w0 w1 w2 w3 w4 w5"], images=[photo()], image_prompt=IMAGE_PROMPT, tau=4)
    assert set(tables["massive_entries"]["dim"]) == {DIM}  # the sink dimension, found not given
    found = tables["sink_tokens"]
    on_image = found[found["sample"] == "image:0"]
    assert sorted(set(on_image["position"])) == expected and set(on_image["layer"]) == {0, 1}
    assert sorted(on_image[on_image["image"]]["position"].unique()) == [image[p] for p in VISUAL_SINK_PATCHES]
    assert sinks.sink_tokens(model, inputs, [DIM], tau=4) == {0: expected, 1: expected}
    heads = tables["heads"]
    for column in ("image_mass", "visual_sink_share", "image_centric"):
        assert heads[column].between(0, 1).all()
    assert (heads["image_mass"] > 0.2).any()  # the text queries behind 16 image tokens look at them


@pytest.mark.bundled
def test_bundled_sink_rate_massive_dims_and_their_tokens():
    import interp

    model = interp.load_model()
    tables = sinks.scan(model, samples=3)
    heads, summary = tables["heads"], tables["summary"].set_index("metric")["value"]
    assert len(heads) == 270 and 0.2 < summary["sink_rate"] < 1
    massive = tables["massive_entries"]
    assert len(massive) and (massive["position"] == 0).all()  # SmolLM2's massive activations sit on the first token
    assert summary["top_sink_carries_massive"] == 1.0  # ... which is also its top sink token
    tokens = tables["tokens"]
    assert (tokens[tokens["position"] == 0]["rank"] == 1).all()


def test_a_vision_model_given_no_images_is_scanned_on_held_out_scenes_and_a_folder_on_its_own(tmp_path):
    from interp.data.scenes import default_images
    from interp.run.runner import analysis_options

    model = tiny_llava()
    tables = sinks.scan(model, prompts=["w0 w1 w2 w3 w4 w5"], image_prompt=IMAGE_PROMPT, tau=4)
    keys = {f"image:{key}" for key, _ in default_images(sinks.DEFAULT_IMAGES)}
    tokens = tables["tokens"]
    assert set(tokens["sample"]) == {"text:0"} | keys and len(keys) == sinks.DEFAULT_IMAGES
    assert (tokens[tokens["image"]].groupby("sample").size() == 16).all()  # 16 image rows in each scene
    summary = tables["summary"].set_index("metric")["value"]
    assert summary["visual_sink_tokens"] == len(VISUAL_SINK_PATCHES) * len(keys)  # the planted ones, in every scene
    assert tables["heads"]["image_mass"].between(0, 1).all()  # the image pass ran
    assert f"{len(VISUAL_SINK_PATCHES) * len(keys)} of them image tokens" in sinks.headline(tables)[-1]

    folder = tmp_path / "images"
    folder.mkdir()
    photo().save(folder / "a.png")
    photo().rotate(90).save(folder / "b.jpg")
    (folder / "prompts.txt").write_text("w0 <image> w5 w6\nw1 w2 <image> w7\n")
    tokens = sinks.scan(model, prompts=["w0 w1 w2"], images=str(folder))["tokens"]
    first_image = tokens[tokens["image"]].groupby("sample")["position"].min().to_dict()
    assert first_image == {"image:a.png": 1, "image:b.jpg": 2}  # each image with its line of prompts.txt
    assert analysis_options({"sinks": sinks}, images=str(folder)) == {"sinks": {"images": str(folder)}}  # --images DIR


def test_a_text_model_is_scanned_on_text_alone():
    tables = sinks.scan(planted_llama(), prompts=[PROMPT])
    assert set(tables["tokens"]["sample"]) == {"text:0"} and not tables["tokens"]["image"].any()
    assert "image_mass" not in tables["heads"] and tables["summary"].set_index("metric")["value"]["visual_sink_tokens"] == 0
    assert "image tokens" not in sinks.headline(tables)[-1]
