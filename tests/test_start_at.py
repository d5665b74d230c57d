"""model.start_at: skipping the layers below L and feeding a clean run's resid_pre at L
gives the clean run's outputs, also with interventions on layers >= L; it never leaks."""

import pytest
import torch

from interp import InterpError, ScaleHead, UniformAttention
from tests.tiny import ARCHS, outputs, pair, random_ids

DECODERS = [a for a in ARCHS if a != "bert"]


@pytest.fixture(scope="module", params=ARCHS)
def models(request):
    return pair(request.param)


def clean_resid(model, ids):
    with torch.no_grad(), model.capture(resid_pre=True) as cap:
        logits = outputs(model, ids)
    return logits, cap.resid_pre


def test_starting_at_a_layer_with_its_clean_input_equals_the_full_forward(models):
    eager, model = models
    ids = random_ids()
    clean, resid = clean_resid(model, ids)
    assert (clean - outputs(eager, ids)).abs().max() <= 1e-4
    for layer in range(model.layout.n_layers):
        with torch.no_grad(), model.start_at(layer, resid[:, layer]):
            started = outputs(model, ids)
        assert (started - clean).abs().max() <= 1e-5, layer


def test_the_skipped_layers_do_not_run(models):
    _, model = models
    ids = random_ids()
    _, resid = clean_resid(model, ids)
    last = model.layout.n_layers - 1
    calls = []
    handles = [site.attention.register_forward_pre_hook(lambda m, a, layer=site.layer: calls.append(layer)) for site in model.sites]
    try:
        with torch.no_grad(), model.capture(resid_pre=True) as cap, model.start_at(last, resid[:, last]):
            outputs(model, ids)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == [last]  # only the last layer's attention ran
    assert torch.equal(cap.resid_pre[:, last], resid[:, last])  # captures see what was fed


def test_an_ablation_at_the_start_layer_equals_the_full_ablated_forward(models):
    _, model = models
    ids = random_ids()
    _, resid = clean_resid(model, ids)
    layer = model.layout.n_layers - 1
    for iv in (UniformAttention([(layer, 1)], eps=1e-5), ScaleHead([(layer, 2)], factor=0.0)):
        with torch.no_grad(), model.intervene(iv):
            full = outputs(model, ids)
            with model.start_at(layer, resid[:, layer]):
                started = outputs(model, ids)
        assert (started - full).abs().max() <= 1e-5


def test_rows_start_from_their_own_inputs():
    _, model = pair("llama")
    ids = random_ids(batch=2)
    clean, resid = clean_resid(model, ids)
    with torch.no_grad(), model.start_at(1, resid[:, 1].flip(0)):
        flipped = outputs(model, ids.flip(0))
    assert (flipped - clean.flip(0)).abs().max() <= 1e-5


def test_no_leak_after_start_at_normally_or_by_exception(models):
    _, model = models
    ids = random_ids()
    with torch.no_grad():
        before = outputs(model, ids)
        junk = torch.randn(ids.shape[0], ids.shape[1], model.layout.d_model)
        with model.start_at(1, junk):
            assert not torch.equal(outputs(model, ids), before)
        with pytest.raises(RuntimeError, match="boom"):
            with model.start_at(1, junk):
                raise RuntimeError("boom")
        after = outputs(model, ids)
    assert torch.equal(before, after)
    assert all("forward" not in site.block.__dict__ and not site.block._forward_pre_hooks for site in model.sites)


def test_bad_start_gets_a_clear_error():
    _, model = pair("llama")
    ids = random_ids()
    with pytest.raises(InterpError, match="in range"):
        with model.start_at(5, torch.zeros(1)):
            pass
    with pytest.raises(InterpError, match="hidden states are"):
        with torch.no_grad(), model.start_at(1, torch.zeros(1, 3, model.layout.d_model)):
            outputs(model, ids)
