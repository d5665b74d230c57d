"""Models split over devices through accelerate (load_model(device_map=...)): with half the
layers of a tiny llama offloaded to disk, captures and ablation effects equal the plain model's."""

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from interp import InterpError, ScaleAttention, StatsRequest, ZeroAblation, load_model
from interp.runtime.ablation import Mode, ablation_effect, make_intervention
from interp.cli import app
from interp.run.results import open_results
from tests.tiny import save_tiny_llama

TOL = 1e-5
PROMPT = "w3 w14 w15 w9 w26 w5 w35 w8 w9 w7 w9 w32"
# layers 2 and 3 live on disk: accelerate loads each one's weights only while it runs
HALF_ON_DISK = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu", "model.layers.1": "cpu",
                "model.layers.2": "disk", "model.layers.3": "disk", "model.norm": "cpu", "lm_head": "cpu"}


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama-4"), num_hidden_layers=4)


@pytest.fixture(scope="module")
def models(directory):
    plain = load_model(str(directory))
    split = load_model(str(directory), device_map=HALF_ON_DISK, offload_folder=str(directory / "offload"))
    offloaded = [site.layer for site in split.sites if site.output_projection.weight.device.type == "meta"]
    assert offloaded == [2, 3]  # the split model really keeps those layers off-device
    return plain, split


def run_capture(model, **spec):
    with torch.no_grad(), model.capture(**spec) as cap:
        logits = model(PROMPT).logits
    return cap, logits


def test_captures_equal_the_plain_model(models):
    plain, split = models
    spec = dict(z=True, resid=True, pattern=True, resid_pre=True, stats=StatsRequest(key_mass=True, argmax=True, entropy=True))
    (a, logits_a), (b, logits_b) = run_capture(plain, **spec), run_capture(split, **spec)
    assert (logits_a - logits_b).abs().max() <= TOL
    assert a.names() == b.names() and "resid" in a.names()
    for name in a.names():
        assert a.get(name).shape == b.get(name).shape
        assert (a.get(name).float() - b.get(name).float()).abs().max() <= TOL, name


@pytest.mark.parametrize("mode", ["zero", "mean", "uniform", "scale=3"])
def test_ablation_effects_equal_the_plain_model(models, mode):
    plain, split = models
    heads = "1.2,2.1,3.0,3.3"  # on both sides of the split
    means = [m.head_means([PROMPT, "w40 w41 w42 w43 w44"]) for m in models]  # a few prompts: the bundled 43 are slow here
    assert (means[0] - means[1]).abs().max() <= TOL
    effects = [ablation_effect(m, make_intervention(m, heads, Mode.parse(mode), means=mu), PROMPT, max_new_tokens=4)
               for m, mu in zip(models, means)]
    moved = (effects[0].top_tokens["p_clean"] - effects[0].top_tokens["p_ablated"]).abs().max()
    assert moved > 1e-6  # the heads change the output, so equal effects mean something
    assert abs(effects[0].kl - effects[1].kl) <= TOL
    assert effects[0].clean_text == effects[1].clean_text and effects[0].ablated_text == effects[1].ablated_text
    for column in ("p_clean", "p_ablated"):
        assert (effects[0].top_tokens[column] - effects[1].top_tokens[column]).abs().max() <= TOL


def test_probability_edits_and_batched_rows_on_offloaded_layers(models):
    plain, split = models
    edits = [ScaleAttention("3.1", key_spans=[(0, 2)], factor=4.0), ZeroAblation("2.0", rows=[1])]
    outputs = []
    for model in (plain, split):
        with torch.no_grad(), model.intervene(*edits):
            outputs.append(model([PROMPT, PROMPT]).logits)
    assert (outputs[0] - outputs[1]).abs().max() <= TOL
    assert (outputs[0][0] - outputs[0][1]).abs().max() > 1e-4  # row 1 was ablated, row 0 not


def test_start_at_skips_offloaded_layers_and_puts_accelerate_back(models):
    plain, split = models
    wrappers = [site.block.__dict__.get("forward") for site in split.sites]
    assert wrappers[2] is not None  # accelerate's wrapper of a layer on disk
    _, before = run_capture(split)
    cap, _ = run_capture(plain, resid_pre=True)
    for model in (plain, split):
        with torch.no_grad(), model.start_at(3, cap.resid_pre[:, 3]):
            started = model(PROMPT).logits
        assert (started - before).abs().max() <= TOL
    assert [site.block.__dict__.get("forward") for site in split.sites] == wrappers
    assert torch.equal(run_capture(split)[1], before)


def test_device_map_errors_are_one_line():
    with pytest.raises(InterpError, match="either device or device_map"):
        load_model("some/dir", device="cpu", device_map="auto")
    with pytest.raises(InterpError, match="unknown device_map"):
        load_model("some/dir", device_map="everywhere")
    with pytest.raises(InterpError, match="need a device_map"):
        load_model("some/dir", max_memory={"cpu": "1GiB"})


def test_scan_with_device_map_auto_offloading_to_disk_equals_the_plain_scan(directory, tmp_path):
    tables = {}
    for name, extra in {"plain": [], "split": ["--device-map", "auto", "--max-memory", "cpu=100KiB"]}.items():
        args = ["scan", "--model", str(directory), "--analyses", "sinks", "--samples", "3", "--out", str(tmp_path / name), *extra]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        tables[name] = open_results(tmp_path / name)
    for table in ("heads", "tokens"):
        name = None if table == "heads" else table
        pd.testing.assert_frame_equal(tables["plain"].read_table("sinks", name), tables["split"].read_table("sinks", name), atol=TOL)


@pytest.mark.parametrize("args, expected", [
    (["--device-map", "everywhere"], "unknown device_map 'everywhere'"),
    (["--device-map", "auto", "--max-memory", "lots"], "cannot read --max-memory 'lots'"),
    (["--max-memory", "cpu=1GiB"], "need a device_map"),
    (["--device-map", "auto", "--device", "cpu"], "either device or device_map"),
])
def test_bad_device_map_options_give_one_line_errors(directory, tmp_path, args, expected):
    result = CliRunner().invoke(app, ["scan", "--model", str(directory), "--analyses", "sinks", "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
