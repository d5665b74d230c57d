"""analyses.var: VAR attention redistribution against a direct computation, on hand-made
attention rows and on a tiny LLaVA with a real photo; move_attention away from the first
token of a text model."""

import pytest
import torch

from interp import InterpError, InterpModel, Redistribute, move_attention
from interp.analyses import sinks, var
from tests.tiny import IMAGE_PROMPT, build_hf, photo, random_ids, tiny_llava, tiny_tokenizer

P = 0.6


def direct_var(row: torch.Tensor, image: list[int], sinks_: list[int], p=P, rho=0.5, floor=0.2) -> torch.Tensor:
    """VAR on one attention row, written out as in the paper, one key at a time."""
    image_mass = sum(row[j] for j in image)
    visual_sink_mass = sum(row[j] for j in image if j in sinks_)
    if image_mass < floor or visual_sink_mass / image_mass > rho:
        return row.clone()
    new = row.clone()
    omega = sum((1 - p) * row[j] for j in sinks_)
    receivers = [j for j in image if j not in sinks_]
    receiver_mass = sum(row[j] for j in receivers)
    for j in sinks_:
        new[j] = p * row[j]
    for j in receivers:
        new[j] = row[j] + omega * row[j] / receiver_mass
    return new


# keys: 0 = BOS (a text sink), 1-2 text, 3-10 image with visual sinks 4 and 8, 11-12 text
IMAGE, SINKS = list(range(3, 11)), [0, 4, 8]


def rows_of_three_kinds() -> torch.Tensor:
    """[1, 1, 3, 13]: an image-centric row, a row dominated by visual sinks, a row with
    little image mass."""
    g = torch.Generator().manual_seed(0)
    rows = torch.rand(3, 13, generator=g) * 0.1 + 0.01
    rows[1, [4, 8]] = 3.0  # visual-sink share > 0.5
    rows[2, 3:11] = 0.001  # image mass < 0.2
    rows[0, 0] = 1.0  # a strong BOS sink in the image-centric row (image mass stays ~0.3)
    return (rows / rows.sum(-1, keepdim=True))[None, None]


def test_var_rule_matches_the_direct_computation_and_moves_exactly_the_freed_mass():
    probs = rows_of_three_kinds()
    ctx = None  # the rule does not need the context
    out = var.var_rule(IMAGE, SINKS, p=P)(probs, ctx)
    for i in range(3):
        assert torch.allclose(out[0, 0, i], direct_var(probs[0, 0, i], IMAGE, SINKS), atol=1e-7)
    assert torch.allclose(out.sum(-1), torch.ones(1, 1, 3), atol=1e-6)
    before, after = probs[0, 0, 0], out[0, 0, 0]
    assert before[IMAGE].sum() >= 0.2 and before[[4, 8]].sum() / before[IMAGE].sum() <= 0.5  # image-centric
    omega = (1 - P) * before[SINKS].sum()
    receivers = [j for j in IMAGE if j not in SINKS]
    assert torch.allclose(after[SINKS], P * before[SINKS])
    assert torch.allclose((after[receivers] - before[receivers]).sum(), omega, atol=1e-7)
    assert torch.equal(after[[1, 2, 11, 12]], before[[1, 2, 11, 12]])  # text non-sinks untouched
    assert torch.equal(out[0, 0, 1:], probs[0, 0, 1:])  # sink-dominated and image-poor rows untouched


@pytest.fixture(scope="module")
def llava():
    model = tiny_llava()
    inputs = sinks.image_inputs(model, photo(), IMAGE_PROMPT)
    return model, inputs


def test_var_on_tiny_llava_keeps_rows_normalised_and_matches_the_direct_computation(llava):
    model, inputs = llava
    image = sinks.image_positions(model, inputs)
    layer_sinks = sinks.sink_tokens(model, inputs, sinks.massive_dims(model, [inputs]), tau=4)
    assert 0 in layer_sinks[0] and set(layer_sinks[0]) & set(image)  # BOS and visual sinks
    interventions = var.var_interventions(model, image, layer_sinks)
    assert {layer for iv in interventions for layer, _ in iv.heads} == {0}  # never the last layer
    with torch.no_grad():
        with model.capture(pattern=True, layers=[0]) as clean:
            model.hf(**inputs)
        with model.intervene(*interventions), model.capture(pattern=True, layers=[0]) as edited:
            model.hf(**inputs)
    before, after = clean.pattern[0, 0], edited.pattern[0, 0]  # [H, N, N]
    assert torch.allclose(after.sum(-1), torch.ones(after.shape[:2]), atol=1e-5)
    changed = 0
    for head in range(model.layout.n_heads):
        for query in range(before.shape[1]):
            expected = direct_var(before[head, query].double(), image, layer_sinks[0])
            assert torch.allclose(after[head, query].double(), expected, atol=1e-6)
            changed += not torch.equal(after[head, query], before[head, query])
    assert changed > 0  # some queries were image-centric


def test_var_interventions_take_one_sink_list_for_every_layer_and_refuse_bad_input(llava):
    model, inputs = llava
    image = sinks.image_positions(model, inputs)
    (only,) = var.var_interventions(model, image, [0, image[2]])
    assert isinstance(only, Redistribute) and only.heads == tuple((0, h) for h in range(model.layout.n_heads))
    with pytest.raises(InterpError, match="between 0 and 1"):
        var.var_interventions(model, image, [0], p=1.5)
    with pytest.raises(InterpError, match="image token positions"):
        var.var_interventions(model, [], [0])


def _first_token_moved(positions=None):
    """Layer-0 patterns of a tiny llama before and after moving 75% of every head's
    first-token attention to the other keys ([H, N, N] each)."""
    model = InterpModel(build_hf("llama"), tiny_tokenizer(), source="tiny-llama")
    ids = random_ids(batch=1, length=16)
    rule = move_attention([0], list(range(1, ids.shape[1])), fraction=0.75)
    away = Redistribute([(0, h) for h in range(4)], positions=positions, rule=rule)
    with torch.no_grad():
        with model.capture(pattern=True, layers=[0]) as clean:
            model.hf(input_ids=ids)
        with model.intervene(away), model.capture(pattern=True, layers=[0]) as moved:
            model.hf(input_ids=ids)
    return clean.pattern[0, 0], moved.pattern[0, 0]


def test_move_attention_away_from_the_first_token_of_a_text_model():
    before, after = _first_token_moved(positions=slice(1, None))  # query 0 sees key 0 only: see below
    assert torch.allclose(after[:, 1:, 0], 0.25 * before[:, 1:, 0], atol=1e-6)
    gained = (after[:, 1:, 1:] - before[:, 1:, 1:]).sum(-1)
    assert torch.allclose(gained, 0.75 * before[:, 1:, 0], atol=1e-6)
    assert torch.allclose(after.sum(-1), torch.ones(after.shape[:2]), atol=1e-5)
    assert torch.equal(after.triu(1), torch.zeros_like(after))  # still causal


def test_move_attention_never_attends_to_masked_keys():
    before, after = _first_token_moved()
    assert torch.equal(after.triu(1), torch.zeros_like(after))
    assert torch.equal(after[:, 0], before[:, 0])  # query 0 has no visible key to move to
