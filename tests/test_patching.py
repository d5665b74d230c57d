"""PatchHead (activation patching from another run) against eager transformers models
patched by hand, per row and per position, and the model restored afterwards."""

import pytest
import torch

from interp import InterpError, PatchHead
from tests.tiny import outputs, pair, random_ids

TOL = 1e-4


@pytest.fixture(scope="module", params=["llama", "gpt2", "qwen2"])
def models(request):
    return pair(request.param)


def z_of(model, ids):
    with torch.no_grad(), model.capture(z=True) as cap:
        model.hf(input_ids=ids)
    return cap.z  # [batch, layers, heads, pos, d_head]


def eager_patched(eager, model, ids, edits):
    """The eager model with z[row, pos, head] of a layer overwritten by hand: edits maps
    layer -> list of (row, pos, head, value [d_head])."""
    handles = []
    d_head = model.layout.head_dim
    for layer, items in edits.items():
        def pre(module, args, items=items):
            z = args[0].clone()
            for row, pos, head, value in items:
                z[row, pos, head * d_head : (head + 1) * d_head] = value
            return (z,) + args[1:]
        handles.append(_proj(eager, layer).register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            return outputs(eager, ids)
    finally:
        for h in handles:
            h.remove()


def _proj(eager, layer):
    from interp.runtime.layout import find_attention_sites

    return find_attention_sites(eager)[layer].output_projection


def test_patch_from_another_run_equals_eager_patched_by_hand(models):
    eager, model = models
    clean, corrupt = random_ids(seed=1), random_ids(seed=2)
    values = z_of(model, corrupt)
    patch = PatchHead([(1, 2), (0, 1)], values=values, rows=[1], positions=[3, 7])
    with torch.no_grad(), model.intervene(patch):
        ours = outputs(model, clean)
    edits = {layer: [(1, pos, head, values[1, layer, head, pos]) for pos in (3, 7)] for layer, head in [(1, 2), (0, 1)]}
    assert (ours - eager_patched(eager, model, clean, edits)).abs().max() <= TOL


def test_one_head_per_row_with_sources_equals_eager(models):
    eager, model = models
    clean, corrupt = random_ids(batch=3, seed=1), random_ids(batch=2, seed=2)
    values = z_of(model, corrupt)
    n_layers, n_heads = model.layout.n_layers, model.layout.n_heads
    mask = torch.zeros(3, n_layers, n_heads, dtype=torch.bool)
    plan = [(0, 1), (1, 3), (1, 0)]  # row r patches head plan[r] from source row r % 2
    for row, (layer, head) in enumerate(plan):
        mask[row, layer, head] = True
    source = torch.tensor([0, 1, 0])
    with torch.no_grad(), model.intervene(PatchHead(plan, values=values, source=source, mask=mask)):
        ours = outputs(model, clean)
    edits = {}
    for row, (layer, head) in enumerate(plan):
        for pos in range(clean.shape[1]):
            edits.setdefault(layer, []).append((row, pos, head, values[int(source[row]), layer, head, pos]))
    assert (ours - eager_patched(eager, model, clean, edits)).abs().max() <= TOL


def test_patching_own_values_changes_nothing_and_one_source_broadcasts(models):
    _, model = models
    ids = random_ids(seed=4)
    own = z_of(model, ids)
    heads = [(l, h) for l in range(model.layout.n_layers) for h in range(model.layout.n_heads)]
    with torch.no_grad():
        before = outputs(model, ids)
        with model.intervene(PatchHead(heads, values=own)):
            assert (outputs(model, ids) - before).abs().max() <= TOL
        with model.intervene(PatchHead(heads, values=own[:1])):  # row 0's values in every row
            broadcast = outputs(model, ids)
        with model.intervene(PatchHead(heads, values=own, source=torch.tensor([0, 0]))):
            from_row_0 = outputs(model, ids)
    assert (broadcast[0] - before[0]).abs().max() <= TOL
    assert torch.equal(broadcast, from_row_0) and not torch.allclose(broadcast[1], before[1])


def test_no_leak_after_normal_exit_and_exception(models):
    _, model = models
    ids = random_ids(seed=5)
    values = z_of(model, random_ids(seed=6))
    with torch.no_grad():
        before = outputs(model, ids)
        with model.intervene(PatchHead("0.0,1.1", values=values)):
            assert not torch.equal(outputs(model, ids), before)
        assert torch.equal(outputs(model, ids), before)
        with pytest.raises(RuntimeError):
            with model.intervene(PatchHead("0.0,1.1", values=values)):
                raise RuntimeError("boom")
        assert torch.equal(outputs(model, ids), before)
    assert model.runtime.idle and not model.runtime._hook_handles


def test_bad_patch_inputs_give_one_line_errors(models):
    _, model = models
    values = z_of(model, random_ids(seed=7))
    with pytest.raises(InterpError, match="values"):
        PatchHead("0.0")
    with pytest.raises(InterpError, match="positions"):
        with torch.no_grad(), model.intervene(PatchHead("0.0", values=values[:, :, :, :5])):
            outputs(model, random_ids(seed=7))
    mask = torch.zeros(2, model.layout.n_layers, model.layout.n_heads, dtype=torch.bool)
    mask[0, 1, 1] = True
    with pytest.raises(InterpError, match="mask"):
        PatchHead("0.0", values=values, mask=mask)
