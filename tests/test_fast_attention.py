"""The fused output-and-lse path (interp.runtime.fast_attention) against the plain path and transformers' eager
attention, on every tiny architecture: same outputs, same statistics, with the lse given or found."""

import pytest
import torch

import interp.runtime.fast_attention as fast_attention
from interp import StatsRequest
from interp.runtime.fast_attention import attention_with_lse
from tests.tiny import ARCHS, outputs, pair, random_ids

TOL = 1e-4
ALL = StatsRequest(lse=True, argmax=True, entropy=True, spans=((0, 1), (2, 6)), pooled=(3, 4), key_mass=True)


@pytest.fixture(scope="module", params=ARCHS)
def models(request):
    return pair(request.param)


def _capture(model, ids, mask, fused: bool, monkeypatch):
    """Outputs and statistics of one forward with the fused path on or off, and how often it ran."""
    calls = []
    real = fast_attention.attention_with_lse

    def counting(*args):
        result = real(*args)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(fast_attention, "ENABLED", fused)
    monkeypatch.setattr("interp.runtime.attention.attention_with_lse", counting)
    with torch.no_grad(), model.capture(stats=ALL) as cap:
        out = outputs(model, ids, mask)
    return out, {name: cap.get(name) for name in cap.names()}, sum(calls)


@pytest.mark.parametrize("padded", [False, True])
def test_fused_and_plain_paths_agree(models, padded, monkeypatch):
    eager, model = models
    ids = random_ids()
    mask = torch.ones_like(ids)
    if padded:
        mask[0, :3] = 0  # left padding: the first queries of row 0 see no key
    with torch.no_grad():
        reference = outputs(eager, ids, mask)
    out_fused, stats_fused, n_fused = _capture(model, ids, mask, True, monkeypatch)
    out_plain, stats_plain, n_plain = _capture(model, ids, mask, False, monkeypatch)
    real = mask.bool()
    assert (out_fused - reference)[real].abs().max() <= TOL
    assert (out_plain - reference)[real].abs().max() <= TOL
    assert n_plain == 0
    softcapped = getattr(model.hf.config, "attn_logit_softcapping", None)
    assert n_fused == (0 if softcapped else model.layout.n_layers)  # the fused call ran wherever it can
    assert set(stats_fused) == set(stats_plain)
    for name in stats_fused:
        if name == "argmax":
            assert torch.equal(stats_fused[name], stats_plain[name])
        else:
            torch.testing.assert_close(stats_fused[name], stats_plain[name], atol=1e-5, rtol=1e-5)


def test_fused_path_with_kv_cache(monkeypatch):
    """A decoding step (queries after cached keys) gets the same statistics from both paths."""
    _, model = pair("llama")
    ids = random_ids(length=10)
    results = []
    for fused in (True, False):
        monkeypatch.setattr(fast_attention, "ENABLED", fused)
        with torch.no_grad():
            first = model.hf(input_ids=ids[:, :7], use_cache=True)
            with model.capture(stats=ALL) as cap:
                model.hf(input_ids=ids[:, 7:], cache=first.cache, use_cache=True)
        results.append({name: cap.get(name) for name in cap.names()})
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], atol=1e-5, rtol=1e-5)


def test_attention_with_lse_against_dense():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 9, 6, 8, generator=g).transpose(1, 2)  # [B, Hq=6, N=9, D], a transposed view
    k, v = torch.randn(2, 2, 9, 8, generator=g), torch.randn(2, 2, 9, 8, generator=g)  # GQA: 2 KV heads
    mask = torch.rand(2, 1, 9, 9, generator=g) > 0.3
    mask[1, 0, 4] = False  # a query that sees nothing
    for m, causal in ((None, True), (None, False), (mask, True)):
        output, lse = attention_with_lse(q, k, v, m, 0.3, causal)
        kk, vv = k.repeat_interleave(3, 1), v.repeat_interleave(3, 1)
        logits = q @ kk.transpose(-1, -2) * 0.3
        if m is not None:
            logits = logits.masked_fill(~m, float("-inf"))
        elif causal:
            logits = logits.masked_fill(torch.ones(9, 9, dtype=torch.bool).triu(1), float("-inf"))
        expected_lse = torch.logsumexp(logits, -1)
        torch.testing.assert_close(lse, expected_lse, atol=1e-5, rtol=1e-5)
        seen = expected_lse > float("-inf")
        dense = (logits - expected_lse[..., None]).exp().nan_to_num(0.0) @ vv
        torch.testing.assert_close(output.transpose(1, 2)[seen], dense[seen], atol=1e-5, rtol=1e-5)


def test_attention_with_lse_declines():
    q = torch.randn(1, 2, 3, 8)
    k = torch.randn(1, 2, 5, 8)
    assert attention_with_lse(q, k, k, None, 0.3, True) is None  # causal with cached keys needs a mask
    assert attention_with_lse(q.to("meta"), k.to("meta"), k.to("meta"), None, 0.3, False) is None  # other device
