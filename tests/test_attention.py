"""interp's attention, captures and interventions against transformers' eager attention,
on tiny random models of every supported architecture."""

import pytest
import torch

from interp import (
    InterpError, MeanAblation, Redistribute, ScaleAttention, ScaleHead, StatsRequest, UniformAttention, ZeroAblation,
    move_attention,
)
from tests.tiny import ARCHS, outputs, pair, random_ids

TOL = 1e-4


@pytest.fixture(scope="module", params=ARCHS)
def models(request):
    return pair(request.param)


def test_idle_attention_matches_eager(models):
    eager, model = models
    ids = random_ids()
    with torch.no_grad():
        assert (outputs(model, ids) - outputs(eager, ids)).abs().max() <= TOL


def test_padded_batch_matches_eager(models):
    eager, model = models
    ids = random_ids()
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding in row 0
    with torch.no_grad():
        diff = (outputs(model, ids, mask) - outputs(eager, ids, mask))[mask.bool()]
    assert diff.abs().max() <= TOL


def test_captured_pattern_matches_eager_and_output_unchanged(models):
    eager, model = models
    ids = random_ids()
    with torch.no_grad():
        reference = eager(input_ids=ids, output_attentions=True)
        with model.capture(pattern=True) as cap:
            out = outputs(model, ids)
    ref_out = reference.logits if hasattr(reference, "logits") and reference.logits is not None else reference.last_hidden_state
    assert (out - ref_out).abs().max() <= TOL
    eager_pattern = torch.stack(reference.attentions, dim=1)  # [B, L, H, Nq, Nk]
    assert cap.pattern.shape == eager_pattern.shape
    assert (cap.pattern - eager_pattern).abs().max() <= 1e-5
    assert torch.equal(cap["blocks.1.attn.hook_pattern"], cap.pattern[:, 1])


def _projection_io(model, layer):
    """The input and output of layer's output projection, recorded by our own hooks."""
    seen = {}
    proj = model.sites[layer].output_projection
    h1 = proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("input", a[0].detach().clone()))
    h2 = proj.register_forward_hook(lambda m, a, o: seen.__setitem__("output", o.detach().clone()))
    return seen, (h1, h2)


def test_z_is_output_projection_input_and_resid_sums_to_block_output(models):
    _, model = models
    L = model.layout
    ids = random_ids()
    seen, handles = _projection_io(model, 1)
    try:
        with torch.no_grad(), model.capture(z=True, resid=True) as cap:
            outputs(model, ids)
    finally:
        [h.remove() for h in handles]
    z = cap.z[:, 1]  # [B, H, P, D]
    assert torch.allclose(z.transpose(1, 2).reshape(seen["input"].shape), seen["input"], atol=1e-6)
    assert torch.equal(cap["blocks.1.attn.hook_z"], z.transpose(1, 2))
    bias = model.sites[1].output_bias()
    total = cap.resid[:, 1].sum(dim=1) + (bias if bias is not None else 0)  # sum over heads
    assert (total - seen["output"]).abs().max() <= 1e-5
    assert cap.resid.shape == (ids.shape[0], L.n_layers, L.n_heads, ids.shape[1], L.d_model)


def test_zero_ablation_equals_zeroing_columns_by_hand(models):
    _, model = models
    L = model.layout
    ids = random_ids()
    layer, head = 1, 2
    cols = slice(head * L.head_dim, (head + 1) * L.head_dim)

    def zero_columns(module, args):
        z = args[0].clone()
        z[..., cols] = 0
        return (z,)

    with torch.no_grad():
        handle = model.sites[layer].output_projection.register_forward_pre_hook(zero_columns)
        by_hand = outputs(model, ids)
        handle.remove()
        with model.intervene(ZeroAblation((layer, head))):
            ablated = outputs(model, ids)
        clean = outputs(model, ids)
    assert torch.equal(ablated, by_hand)
    assert not torch.allclose(ablated, clean)


def test_per_row_batched_ablation_equals_separate_runs(models):
    _, model = models
    ids = random_ids(batch=3)
    heads = [(0, 1), (1, 3), (1, 0)]
    with torch.no_grad():
        with model.intervene(*[ZeroAblation(h, rows=[i]) for i, h in enumerate(heads)]):
            batched = outputs(model, ids)
        for i, h in enumerate(heads):
            with model.intervene(ZeroAblation(h)):
                single = outputs(model, ids[i : i + 1])
            assert (batched[i] - single[0]).abs().max() <= 1e-5


@pytest.mark.parametrize("make", [
    lambda: ZeroAblation("0.1"),
    lambda: UniformAttention("1.2"),
    lambda: ScaleAttention("0.0", key_spans=[(0, 2)], factor=3.0),
])
def test_outputs_identical_after_a_context_that_raised(models, make):
    _, model = models
    ids = random_ids()
    with torch.no_grad():
        before = outputs(model, ids)
        with pytest.raises(RuntimeError, match="boom"):
            with model.intervene(make()), model.capture(z=True, pattern=True):
                outputs(model, ids)
                raise RuntimeError("boom")
        after = outputs(model, ids)
    assert torch.equal(before, after)
    assert model.runtime.idle and not model.runtime._hook_handles


def test_uniform_attention_is_uniform_over_visible_keys(models):
    _, model = models
    ids = random_ids(batch=1)
    with torch.no_grad(), model.intervene(UniformAttention("1.1", eps=0.0)), model.capture(pattern=True, layers=[1]) as cap:
        outputs(model, ids)
    rows = cap.pattern[0, 0, 1]  # [Nq, Nk]
    visible = rows > 0
    counts = visible.sum(-1, keepdim=True)
    assert torch.allclose(rows[visible], (1.0 / counts.expand_as(rows))[visible], atol=1e-6)


def test_scale_head_and_mean_ablation_change_z_as_stated(models):
    _, model = models
    ids = random_ids(batch=1)
    means = torch.randn(model.layout.n_layers, model.layout.n_heads, model.layout.head_dim)
    with torch.no_grad():
        with model.capture(z=True, layers=[0]) as clean:
            outputs(model, ids)
        with model.intervene(ScaleHead("0.2", factor=2.0), MeanAblation("0.3", means=means)), model.capture(z=True, layers=[0]) as cap:
            outputs(model, ids)
    assert torch.allclose(cap.z[0, 0, 2], 2 * clean.z[0, 0, 2], atol=1e-6)
    assert torch.allclose(cap.z[0, 0, 3], means[0, 3].expand_as(cap.z[0, 0, 3]))
    assert torch.equal(cap.z[0, 0, 0], clean.z[0, 0, 0])


def test_redistribution_keeps_rows_normalised_and_moves_the_stated_mass(models):
    _, model = models
    ids = random_ids(batch=1)
    with torch.no_grad():
        with model.capture(pattern=True, layers=[1]) as clean:
            outputs(model, ids)
        rule = move_attention(from_keys=[0], to_keys=[3, 4, 5], fraction=0.5)
        with model.intervene(Redistribute("1.2", rule=rule)), model.capture(pattern=True, layers=[1]) as cap:
            outputs(model, ids)
    before, after = clean.pattern[0, 0, 2], cap.pattern[0, 0, 2]  # [Nq, Nk]
    assert torch.allclose(after.sum(-1), torch.ones(after.shape[0]), atol=1e-5)
    can_receive = before[:, 3:6].sum(-1) > 0  # queries that see at least one receiving key
    assert can_receive.any()
    assert torch.allclose(after[can_receive, 0], 0.5 * before[can_receive, 0], atol=1e-6)
    received = (after[:, 3:6] - before[:, 3:6]).sum(-1)
    assert torch.allclose(received[can_receive], 0.5 * before[can_receive, 0], atol=1e-5)
    assert torch.equal(after[~can_receive], before[~can_receive])  # nothing moves into the future
    assert torch.equal(cap.pattern[0, 0, 1], clean.pattern[0, 0, 1])  # other heads untouched


def test_stats_capture_agrees_with_pattern(models):
    _, model = models
    ids = random_ids()
    request = StatsRequest(argmax=True, entropy=True, spans=((0, 1), (2, 5)))
    with torch.no_grad(), model.capture(pattern=True, stats=request, positions="last") as cap:
        outputs(model, ids)
    pattern = cap.pattern[..., 0, :]  # [B, L, H, Nk] of the last query
    assert torch.equal(cap.argmax[..., 0], pattern.argmax(-1))  # statistics read like patterns, same axes
    entropy = -(pattern * pattern.clamp_min(1e-30).log()).sum(-1)
    assert torch.allclose(cap.entropy[..., 0], entropy, atol=1e-5)
    spans = cap.span_mass[..., 0, :]
    assert torch.allclose(spans[..., 0], pattern[..., 0], atol=1e-5)
    assert torch.allclose(spans[..., 1], pattern[..., 2:5].sum(-1), atol=1e-5)


def test_a_statistic_not_asked_for_says_what_was_captured():
    _, model = pair("llama")
    with torch.no_grad(), model.capture(stats=StatsRequest(argmax=True)) as cap:
        outputs(model, random_ids())
    assert torch.equal(cap.argmax, cap.get("argmax"))
    with pytest.raises(InterpError, match="'entropy' was not captured; captured: argmax"):
        cap.entropy
    with pytest.raises(AttributeError):
        cap.no_such_thing


def test_gradients_flow_through_captures_and_interventions(models):
    _, model = models
    ids = random_ids(batch=1)
    readout = torch.randn_like(outputs(model, ids))
    metric = lambda: (outputs(model, ids) * readout).sum()
    with model.intervene(ScaleHead("1.1", factor=1.5)), model.capture(z=True, layers=[0], detach=False) as cap:
        loss = metric()
    (z0,) = cap.graph_z(0)
    (grad,) = torch.autograd.grad(loss, z0)
    assert grad.shape == z0.shape and grad.abs().sum() > 0
    # first-order check: the gradient predicts the effect of a small change of head 0.2's output
    delta = torch.zeros_like(z0)
    delta[:, :, 2] = 1e-4 * torch.randn_like(delta[:, :, 2])
    with torch.no_grad(), model.intervene(ScaleHead("1.1", factor=1.5)):
        base = metric()
        handle = model.sites[0].output_projection.register_forward_pre_hook(lambda m, a: (a[0] + delta.reshape(a[0].shape),))
        moved = metric()
        handle.remove()
    assert torch.allclose(moved - base, (grad * delta).sum(), rtol=0.05, atol=1e-6)


def test_bad_heads_give_one_line_errors(models):
    _, model = models
    with pytest.raises(InterpError, match="out of range"):
        model.intervene(ZeroAblation((model.layout.n_layers, 0)))
    with pytest.raises(InterpError, match="LAYER.HEAD"):
        ZeroAblation("twelve")
    with pytest.raises(InterpError, match="out of range"):
        model.capture(z=True, heads=[model.layout.n_heads])


def test_key_match_capture_agrees_with_pattern_and_kv_cache(models):
    """key_match labels over absolute positions, per batch row: the mass equals the pattern's mass on the
    matching keys, and a KV-cache continuation (queries after an offset) reads the same labels."""
    _, model = models
    ids = random_ids(length=12, vocab=5)  # a small vocabulary so that tokens repeat
    n = ids.shape[1]
    previous = torch.cat([torch.full((ids.shape[0], 1), -1), ids[:, :-1]], dim=1)
    pairs = ((torch.arange(n) - 1, torch.arange(n)), (ids, ids), (ids, previous))  # previous, duplicate, induction
    request = StatsRequest(key_match=pairs)
    with torch.no_grad(), model.capture(pattern=True, stats=request) as cap:
        outputs(model, ids)
    pattern, mass = cap.pattern, cap.match_mass  # [B, L, H, Nq, Nk], [B, L, H, Nq, 3]
    for m, (query_labels, key_labels) in enumerate(pairs):
        ql, kl = query_labels.expand(ids.shape), key_labels.expand(ids.shape)
        same = (kl[:, None, :] == ql[:, :, None]) & (ql[:, :, None] >= 0)  # [B, Nq, Nk]
        assert torch.allclose(mass[..., m], (pattern * same[:, None, None]).sum(-1), atol=1e-5)

    with torch.no_grad():
        first = model.hf(input_ids=ids[:, :8], use_cache=True)
    if getattr(first, "cache", None) is None:
        return  # an encoder has no KV cache
    with torch.no_grad(), model.capture(stats=request) as cached:
        model.hf(input_ids=ids[:, :8], use_cache=True)
        model.hf(input_ids=ids[:, 8:], cache=first.cache, use_cache=True)
    assert cached.n_steps == 2
    assert torch.allclose(cached.get("match_mass"), mass, atol=1e-5)
    short = StatsRequest(key_match=((ids[:, :8], ids[:, :8]),))
    with torch.no_grad(), pytest.raises(InterpError, match="every position"), model.capture(stats=short):
        outputs(model, ids)
