"""The resid_pre capture (the residual stream entering each layer) against transformers'
output_hidden_states, on tiny random models of every supported architecture."""

import pytest
import torch

from interp import InterpError, InterpModel
from tests.tiny import ARCHS, build_hf, outputs, pair, random_ids


@pytest.fixture(scope="module", params=ARCHS)
def models(request):
    return pair(request.param)


def reported_inputs(eager, ids):
    """hidden_states[l] of output_hidden_states is the input of layer l (the last entry is
    the final output, after the last norm in most models)."""
    base = eager.base_model if eager.base_model is not eager else eager
    with torch.no_grad():
        return base(input_ids=ids, output_hidden_states=True).hidden_states


def test_resid_pre_equals_output_hidden_states(models):
    eager, model = models
    ids = random_ids()
    with torch.no_grad(), model.capture(resid_pre=True) as cap:
        outputs(model, ids)
    reported = reported_inputs(eager, ids)
    n_layers = model.layout.n_layers
    assert cap.resid_pre.shape == (2, n_layers, ids.shape[1], model.layout.d_model)
    for layer in range(n_layers):
        assert (cap.resid_pre[:, layer] - reported[layer]).abs().max() <= 1e-5
        assert torch.equal(cap[f"blocks.{layer}.hook_resid_pre"], cap.resid_pre[:, layer])


def test_resid_pre_streams_to_a_function_and_keeps_nothing(models):
    eager, model = models
    ids = random_ids(batch=1)
    seen = {}
    with torch.no_grad(), model.capture(resid_pre=lambda layer, x: seen.__setitem__(layer, x.clone()), layers=[1]) as cap:
        outputs(model, ids)
    assert list(seen) == [1] and cap.names() == []
    assert (seen[1] - reported_inputs(eager, ids)[1]).abs().max() <= 1e-5


def test_resid_pre_of_decoding_steps_joins_positions_and_honours_positions():
    eager, model = pair("llama")
    ids = random_ids(batch=1, length=10)
    with torch.no_grad():
        prefix = model.hf(input_ids=ids[:, :-2], use_cache=True)
        cache = prefix.cache
        with model.capture(resid_pre=True, positions=[7, 9]) as cap:
            for step in range(8, 10):  # two decoding steps: positions 8 and 9
                model.hf(input_ids=ids[:, step : step + 1], cache=cache, use_cache=True)
    reported = reported_inputs(eager, ids)
    assert cap.resid_pre.shape[2] == 1  # position 7 came before the capture; 8 is not selected
    assert (cap.resid_pre[0, :, 0] - torch.stack([h[0, 9] for h in reported[:2]])).abs().max() <= 1e-5


def test_no_leak_after_a_resid_pre_capture_that_raised(models):
    _, model = models
    ids = random_ids()
    with torch.no_grad():
        before = outputs(model, ids)
        with pytest.raises(RuntimeError, match="boom"):
            with model.capture(resid_pre=True):
                outputs(model, ids)
                raise RuntimeError("boom")
        after = outputs(model, ids)
    assert torch.equal(before, after)
    assert model.runtime.idle and not model.runtime._hook_handles
    assert all(not site.block._forward_pre_hooks for site in model.sites if site.block is not None)


def test_resid_pre_needs_the_blocks():
    model = InterpModel(build_hf("llama"), source="tiny")
    model.sites[0].block = None
    with pytest.raises(InterpError, match="resid_pre"):
        model.capture(resid_pre=True)
