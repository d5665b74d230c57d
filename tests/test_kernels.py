"""Tests for interp.kernels.attention_stats against a dense float64 eager reference.

The same cases run for impl="chunked" (here) and impl="triton". Triton reads TRITON_INTERPRET when its
kernels are decorated, so without CUDA the triton cases run in a child pytest with TRITON_INTERPRET=1
(test_triton_interpreter); in this process they are skipped unless CUDA or the interpreter is available.
"""
import os
import subprocess
import sys
import zlib

import pytest
import torch

from interp.kernels import StatsRequest, attention_stats

try:
    import triton  # noqa: F401

    HAVE_TRITON = True
except ImportError:
    HAVE_TRITON = False
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
TRITON_DEVICE = "cpu" if INTERPRET else ("cuda" if torch.cuda.is_available() else None)
NEG_INF = float("-inf")


# --------------------------------------------------------------------------------------------- reference
def reference(q, k, *, spans, pooled, key_match=(), scale=None, causal=True, q_offset=None, key_padding=None,
              mask=None, sliding_window=None, softcap=None):
    """Every statistic from the full [B, Hq, Nq, Nk] attention matrix, in float64."""
    B, Hq, Nq, D = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    scale = D**-0.5 if scale is None else scale
    q_offset = Nk - Nq if q_offset is None else q_offset
    kk = k.double().repeat_interleave(Hq // Hkv, dim=1)
    s = torch.einsum("bhid,bhjd->bhij", q.double(), kk) * scale
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    qpos = torch.arange(Nq)[:, None] + q_offset
    kpos = torch.arange(Nk)[None, :]
    visible = torch.ones(B, Hq, Nq, Nk, dtype=torch.bool)
    if causal:
        visible &= kpos <= qpos
    if sliding_window is not None:
        visible &= qpos - kpos < sliding_window
    if key_padding is not None:
        visible &= key_padding[:, None, None, :].cpu()
    if mask is not None:
        if mask.dtype == torch.bool:
            visible &= mask.cpu()
        else:
            s = s + mask.cpu().double()
    s = s.masked_fill(~visible, NEG_INF)
    lse = torch.logsumexp(s, -1)
    dead = lse == NEG_INF
    A = torch.exp(s - lse.masked_fill(dead, 0)[..., None])
    arg = s.argmax(-1).masked_fill(dead, -1)
    out = {
        "lse": lse,
        "argmax": arg,
        "argmax_prob": A.gather(-1, arg.clamp_min(0)[..., None])[..., 0].masked_fill(dead, 0),
        "entropy": -torch.special.xlogy(A, A).sum(-1),
        "key_mass": A.sum(-2),
        "logits": s,
    }
    sp = spans if isinstance(spans, torch.Tensor) else torch.tensor(spans, dtype=torch.long).reshape(-1, 2)
    sp = sp.cpu().expand(B, -1, -1) if sp.dim() == 3 else sp.expand(B, -1, -1)
    out["span_mass"] = torch.zeros(B, Hq, Nq, sp.shape[1], dtype=torch.float64)
    for b in range(B):
        for i, (a, e) in enumerate(sp[b].tolist()):
            out["span_mass"][b, ..., i] = A[b, ..., a:e].sum(-1)
    qb, kb = pooled
    Pq = torch.nn.functional.one_hot(torch.arange(Nq) * qb // Nq, qb).double()  # [Nq, qb]
    Pk = torch.nn.functional.one_hot(torch.arange(Nk) * kb // Nk, kb).double()  # [Nk, kb]
    out["pooled"] = Pq.T @ A @ Pk
    out["match_mass"] = torch.zeros(B, Hq, Nq, len(key_match), dtype=torch.float64)
    for m, (ql, kl) in enumerate(key_match):
        ql, kl = ql.cpu().expand(B, Nq), kl.cpu().expand(B, Nk)
        same = (kl[:, None, :] == ql[:, :, None]) & (ql[:, :, None] >= 0)  # [B, Nq, Nk]
        out["match_mass"][..., m] = (A * same[:, None]).sum(-1)
    return out


# --------------------------------------------------------------------------------------------- cases
# name -> (B, Hq, Hkv, Nq, Nk, D), extra kwargs. Shapes stay tiny: the Triton interpreter is slow.
CASES = {
    "causal": ((2, 4, 4, 19, 19, 16), {}),
    "noncausal": ((2, 4, 4, 19, 23, 16), {"causal": False}),
    "gqa": ((2, 6, 2, 19, 19, 16), {}),
    "decode": ((2, 6, 2, 5, 29, 16), {}),  # Nq < Nk, q_offset defaults to Nk - Nq
    "decode1": ((1, 4, 1, 1, 33, 16), {}),
    "q_offset": ((1, 4, 2, 10, 25, 16), {"q_offset": 3}),
    "padding": ((2, 6, 2, 17, 21, 16), {"key_padding": "pad"}),
    # long enough that the Triton kernels skip whole key tiles left of the window
    "window": ((1, 4, 2, 40, 40, 16), {"sliding_window": 5}),
    "window_noncausal": ((1, 2, 1, 36, 40, 16), {"sliding_window": 6, "causal": False}),
    "softcap": ((2, 4, 2, 17, 17, 16), {"softcap": 2.0, "q_mult": 4.0}),
    "mask_bool": ((2, 4, 2, 13, 17, 16), {"mask": "bool"}),
    "mask_float": ((2, 4, 2, 13, 17, 16), {"mask": "float"}),
    "dead_rows": ((2, 4, 2, 12, 20, 16), {"q_offset": -5, "key_padding": "dead"}),
    "odd_d": ((1, 3, 3, 17, 18, 24), {"scale": 0.3}),
    "small_d": ((1, 2, 1, 17, 18, 8), {}),
    "batch_spans": ((2, 4, 2, 15, 20, 16), {"batch_spans": True}),
    "many_bins": ((1, 2, 1, 9, 11, 16), {"pooled": (12, 15)}),  # more bins than queries / keys: empty bins
}
HALF_CASES = ["causal", "gqa", "padding", "window", "softcap"]
# Wider cases for the chunked path only (the Triton interpreter is too slow for them): several 64-key argmax
# blocks plus a short tail, windows far from key 0, and more spans than are summed by slicing.
LONG_CASES = {
    "long_causal": ((1, 4, 2, 150, 300, 16), {}),
    "long_window": ((1, 2, 1, 200, 200, 8), {"sliding_window": 70}),
    "long_padding": ((2, 4, 2, 130, 130, 8), {"key_padding": "pad", "causal": False}),
    "many_spans": ((2, 2, 1, 20, 90, 8), {"many_spans": True}),
}


def make_case(name, dtype=torch.float32, device="cpu"):
    (B, Hq, Hkv, Nq, Nk, D), extra = CASES[name] if name in CASES else LONG_CASES[name]
    extra = dict(extra)
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    q = torch.randn(B, Hq, Nq, D, generator=g) * extra.pop("q_mult", 1.0)
    k = torch.randn(B, Hkv, Nk, D, generator=g)
    kw = {}
    kp = extra.pop("key_padding", None)
    if kp == "pad":  # random holes, and batch row 1 left-padded so its first queries see nothing
        kw["key_padding"] = torch.rand(B, Nk, generator=g) > 0.3
        kw["key_padding"][1, :9] = False
    elif kp == "dead":  # batch row 1 has no real key at all
        kw["key_padding"] = torch.ones(B, Nk, dtype=torch.bool)
        kw["key_padding"][1] = False
    m = extra.pop("mask", None)
    if m == "bool":
        kw["mask"] = torch.rand(B, 1, Nq, Nk, generator=g) > 0.4
        kw["mask"][0, 0, 3] = False  # a fully masked query row
    elif m == "float":
        kw["mask"] = torch.randn(1, Hq, Nq, Nk, generator=g)
        kw["mask"][torch.rand(1, Hq, Nq, Nk, generator=g) > 0.6] = NEG_INF
    pooled = extra.pop("pooled", (3, 5))
    spans = [(0, 0), (0, 1), (2, 9), (Nk - 1, Nk), (0, Nk), (5, 5)]  # empty spans and both edges
    if extra.pop("many_spans", False):
        spans = [(i, i + 7) for i in range(0, Nk - 7, 4)] + [(0, Nk), (Nk, Nk)]
    if extra.pop("batch_spans", False):
        spans = torch.tensor([[(0, 4), (4, Nk), (3, 3)], [(1, 2), (0, Nk), (Nk, Nk)]], dtype=torch.long)
    kw.update(extra)
    q, k = q.to(device=device, dtype=dtype), k.to(device=device, dtype=dtype)
    kw = {n: v.to(device) if isinstance(v, torch.Tensor) else v for n, v in kw.items()}
    return q, k, kw, spans, pooled


def key_match_for(q, k, q_offset=None, seed=0):
    """The head-type pairs of KEY_MATCH: previous token, first token, duplicate and induction over random
    tokens from a small vocabulary (so tokens repeat), with some labels -1; shared and per-batch labels."""
    B, Nq, Nk = q.shape[0], q.shape[2], k.shape[2]
    q_offset = Nk - Nq if q_offset is None else q_offset
    g = torch.Generator().manual_seed(seed)
    pos = torch.arange(Nq) + q_offset  # absolute query positions (negative ones see nothing)
    toks = torch.randint(0, 4, (B, max(Nk, int(pos.max()) + 1)), generator=g)
    toks[:, 2] = -1  # a position with no label
    query_toks = toks[:, pos.clamp_min(0)]
    prev_key_toks = torch.cat([torch.full((B, 1), -1), toks[:, : Nk - 1]], dim=1)
    pairs = [
        (pos - 1, torch.arange(Nk)),  # previous token (-1 for position 0)
        (torch.zeros(Nq, dtype=torch.long), torch.arange(Nk)),  # first token
        (query_toks, toks[:, :Nk]),  # duplicate token (the query itself counts)
        (query_toks.int(), prev_key_toks[0]),  # induction on batch row 0's keys, int32 query labels
    ]
    return tuple((ql.to(q.device), kl.to(q.device)) for ql, kl in pairs)


def check(out, ref, tol):
    assert set(out) == {"lse", "argmax", "argmax_prob", "entropy", "span_mass", "pooled", "key_mass", "match_mass"}
    for name, t in out.items():
        t = t.cpu()
        assert t.shape == ref[name].shape, name
        assert not t.isnan().any(), f"NaN in {name}"
        if name == "argmax":
            assert t.dtype == torch.int64
            dead = ref["lse"] == NEG_INF
            assert torch.equal(t[dead], ref["argmax"][dead])
            # the chosen key must be a maximum of the reference logits (robust to near-ties)
            s = ref["logits"]
            chosen = s.gather(-1, t.clamp_min(0)[..., None])[..., 0]
            assert (chosen[~dead] >= s.amax(-1)[~dead] - tol).all()
        else:
            assert t.dtype == torch.float32, name
            torch.testing.assert_close(t.double(), ref[name], atol=tol, rtol=tol, msg=lambda m: f"{name}: {m}")


def run_case(name, dtype, impl, device, **options):
    q, k, kw, spans, pooled = make_case(name, dtype, device)
    key_match = key_match_for(q, k, kw.get("q_offset"))
    req = StatsRequest(lse=True, argmax=True, entropy=True, spans=spans, pooled=pooled, key_mass=True,
                       key_match=key_match)
    ref = reference(q.cpu(), k.cpu(), spans=spans, pooled=pooled, key_match=key_match, **kw)
    if options.pop("given_lse", False):  # the one-sweep path: the exact lse handed in
        options["lse"] = ref["lse"].float().to(device)
    out = attention_stats(q, k, requests=req, impl=impl, **kw, **options)
    check(out, ref, 1e-5 if dtype == torch.float32 else 2e-3)


PARAMS = [(n, torch.float32) for n in CASES] + [(n, torch.float16) for n in HALF_CASES]
IDS = [f"{n}-{str(d)[6:]}" for n, d in PARAMS]


# --------------------------------------------------------------------------------------------- chunked
@pytest.mark.parametrize("name,dtype", PARAMS, ids=IDS)
def test_chunked(name, dtype):
    run_case(name, dtype, "chunked", "cpu")


@pytest.mark.parametrize("chunk_size", [None, 17])
@pytest.mark.parametrize("name", LONG_CASES)
def test_chunked_long(name, chunk_size, monkeypatch):
    import interp.kernels.chunked as chunked

    monkeypatch.setattr(chunked, "SMALL_ARGMAX", 0)  # the block search even on these small inputs
    run_case(name, torch.float32, "chunked", "cpu", chunk_size=chunk_size)


@pytest.mark.parametrize("small_argmax", [0, None])
@pytest.mark.parametrize("causal", [True, False])
def test_chunked_ties_across_argmax_blocks(causal, small_argmax, monkeypatch):
    """Integer logits tie across many 64-key blocks and inside them: the smallest maximal key must win,
    in the block search (small_argmax=0) and in the plain max of small inputs."""
    import interp.kernels.chunked as chunked

    if small_argmax is not None:
        monkeypatch.setattr(chunked, "SMALL_ARGMAX", small_argmax)
    g = torch.Generator().manual_seed(2)
    q = torch.randint(-1, 2, (1, 4, 40, 4), generator=g).float()
    k = torch.randint(-1, 2, (1, 2, 300, 4), generator=g).float()
    k[:, :, :200] = k[:, :, :200].clamp_max(0)  # the first maxima sit beyond the first three blocks
    out = attention_stats(q, k, requests=StatsRequest(argmax=True), scale=1.0, causal=causal, impl="chunked")
    ref = reference(q, k, spans=[], pooled=(1, 1), scale=1.0, causal=causal)
    assert (ref["argmax"] >= 64).any() and torch.equal(out["argmax"], ref["argmax"])


GIVEN_LSE_CASES = ["causal", "noncausal", "gqa", "decode", "q_offset", "padding", "window", "softcap", "mask_float",
                   "dead_rows", "batch_spans"]


@pytest.mark.parametrize("name", GIVEN_LSE_CASES + list(LONG_CASES))
@pytest.mark.parametrize("chunk_size", [None, 7])
def test_chunked_given_lse(name, chunk_size):
    """With the lse handed in, one sweep gives the same statistics as the two passes."""
    run_case(name, torch.float32, "chunked", "cpu", given_lse=True, chunk_size=chunk_size)


@pytest.mark.parametrize("given_lse", [False, True])
def test_chunked_worker_pool(monkeypatch, given_lse):
    """Chunks shared by a pool of worker threads give the reference numbers, and torch's thread count is
    restored afterwards (the suite runs with one thread, so the pool is forced here)."""
    import interp.kernels.chunked as chunked

    monkeypatch.setattr(chunked, "POOL_CELLS", 0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert chunked._workers(torch.device("cpu"), 9) == 2
        run_case("long_causal", torch.float32, "chunked", "cpu", chunk_size=17, given_lse=given_lse)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_chunked_bf16():
    q, k, kw, spans, pooled = make_case("gqa", torch.bfloat16)
    km = key_match_for(q, k)
    req = StatsRequest(lse=True, argmax=True, entropy=True, spans=spans, pooled=pooled, key_mass=True, key_match=km)
    check(attention_stats(q, k, requests=req, impl="chunked"), reference(q, k, spans=spans, pooled=pooled, key_match=km),
          2e-3)


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
@pytest.mark.parametrize("name", ["gqa", "padding", "window", "mask_float", "decode"])
def test_chunk_size_invariance(name, chunk):
    """Several query chunks give the same numbers as one chunk covering every query."""
    q, k, kw, spans, pooled = make_case(name)
    req = StatsRequest(lse=True, argmax=True, entropy=True, spans=spans, pooled=pooled, key_mass=True,
                       key_match=key_match_for(q, k))
    one = attention_stats(q, k, requests=req, impl="chunked", chunk_size=q.shape[2], **kw)
    many = attention_stats(q, k, requests=req, impl="chunked", chunk_size=chunk, **kw)
    assert torch.equal(one["argmax"], many["argmax"])
    for n in one:
        torch.testing.assert_close(many[n], one[n], atol=1e-6, rtol=1e-6)


# --------------------------------------------------------------------------------------------- shared
def tie_case():
    """Integer q, k and scale 1: logits are exact, so many keys tie and the smallest index must win."""
    g = torch.Generator().manual_seed(1)
    q = torch.randint(-1, 2, (1, 4, 18, 4), generator=g).float()
    k = torch.randint(-1, 2, (1, 2, 35, 4), generator=g).float()
    return q, k


def _ties(impl, device):
    q, k = tie_case()
    for causal in (True, False):
        out = attention_stats(q.to(device), k.to(device), requests=StatsRequest(argmax=True), scale=1.0,
                              causal=causal, impl=impl)
        ref = reference(q, k, spans=[], pooled=(1, 1), scale=1.0, causal=causal)
        assert torch.equal(out["argmax"].cpu(), ref["argmax"])


def _subsets(impl, device):
    q, k, kw, spans, pooled = make_case("gqa", device=device)
    assert attention_stats(q, k, requests=StatsRequest(), impl=impl) == {}
    assert set(attention_stats(q, k, requests=StatsRequest(lse=True), impl=impl)) == {"lse"}
    assert set(attention_stats(q, k, requests=StatsRequest(argmax=True), impl=impl)) == {"argmax", "argmax_prob"}
    got = attention_stats(q, k, requests=StatsRequest(key_mass=True, pooled=(2, 2)), impl=impl)
    assert set(got) == {"key_mass", "pooled"}
    # every query's row sums to 1, so pooled mass and key mass both total Nq per head
    torch.testing.assert_close(got["key_mass"].sum(-1).cpu(), torch.full(got["key_mass"].shape[:2], 19.0))
    torch.testing.assert_close(got["pooled"].sum((-1, -2)).cpu(), torch.full(got["pooled"].shape[:2], 19.0))
    # an explicit empty span tensor still returns span_mass, with S = 0
    got = attention_stats(q, k, requests=StatsRequest(spans=torch.zeros(0, 2, dtype=torch.long)), impl=impl)
    assert got["span_mass"].shape == (2, 6, 19, 0)
    # a label every key shares takes all of each row's mass; a label < 0 none
    ones, zeros = torch.zeros(19, dtype=torch.long, device=device), torch.zeros(2, 19, dtype=torch.long, device=device)
    got = attention_stats(q, k, requests=StatsRequest(key_match=((ones, zeros), (ones - 1, zeros - 1))), impl=impl)
    assert set(got) == {"match_mass"} and got["match_mass"].shape == (2, 6, 19, 2)
    torch.testing.assert_close(got["match_mass"][..., 0].cpu(), torch.ones(2, 6, 19))
    assert (got["match_mass"][..., 1] == 0).all()


@pytest.mark.parametrize("small_argmax", [0, None])
def test_chunked_ties(small_argmax, monkeypatch):
    import interp.kernels.chunked as chunked

    if small_argmax is not None:
        monkeypatch.setattr(chunked, "SMALL_ARGMAX", small_argmax)
    _ties("chunked", "cpu")


def test_chunked_subsets():
    _subsets("chunked", "cpu")


# --------------------------------------------------------------------------------------------- triton
needs_triton = pytest.mark.skipif(
    not HAVE_TRITON or TRITON_DEVICE is None,
    reason="triton cases need CUDA, or run in the TRITON_INTERPRET=1 child of test_triton_interpreter"
    if HAVE_TRITON else "triton is not importable",
)


@needs_triton
@pytest.mark.parametrize("name,dtype", PARAMS, ids=IDS)
def test_triton_inner(name, dtype):
    run_case(name, dtype, "triton", TRITON_DEVICE)


@needs_triton
@pytest.mark.parametrize("name", ["causal", "decode", "padding", "window", "dead_rows"])
def test_triton_inner_given_lse(name):
    run_case(name, torch.float32, "triton", TRITON_DEVICE, given_lse=True)


@needs_triton
def test_triton_inner_ties():
    _ties("triton", TRITON_DEVICE)


@needs_triton
def test_triton_inner_subsets():
    _subsets("triton", TRITON_DEVICE)


@needs_triton
def test_triton_inner_noncontiguous():
    """q and k as transposed views of [B, N, H, D] (the layout most models produce)."""
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 19, 6, 16, generator=g).to(TRITON_DEVICE).transpose(1, 2)
    k = torch.randn(2, 23, 2, 16, generator=g).to(TRITON_DEVICE).transpose(1, 2)
    km = key_match_for(q, k)
    req = StatsRequest(lse=True, argmax=True, entropy=True, spans=[(0, 4)], pooled=(2, 3), key_mass=True,
                       key_match=km)
    check(attention_stats(q, k, requests=req, impl="triton"),
          reference(q.cpu(), k.cpu(), spans=[(0, 4)], pooled=(2, 3), key_match=km), 1e-5)


@pytest.mark.skipif(not HAVE_TRITON, reason="triton is not importable")
@pytest.mark.skipif(INTERPRET, reason="this process already runs under TRITON_INTERPRET=1")
def test_triton_interpreter():
    """Run the test_triton_inner* tests on CPU tensors in a child pytest with TRITON_INTERPRET=1."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", __file__, "-q", "-k", "triton_inner", "-p", "no:cacheprovider"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and "skipped" not in r.stdout, r.stdout[-3000:]


# --------------------------------------------------------------------------------------------- API
def test_auto_and_env(monkeypatch):
    q, k, kw, spans, pooled = make_case("decode")
    req = StatsRequest(lse=True)
    ref = attention_stats(q, k, requests=req, impl="chunked")["lse"]
    torch.testing.assert_close(attention_stats(q, k, requests=req)["lse"], ref)  # CPU: auto -> chunked
    monkeypatch.setenv("INTERP_STATS_IMPL", "chunked")
    torch.testing.assert_close(attention_stats(q, k, requests=req)["lse"], ref)
    monkeypatch.setenv("INTERP_STATS_IMPL", "nope")
    with pytest.raises(ValueError, match="INTERP_STATS_IMPL"):
        attention_stats(q, k, requests=req)


@pytest.mark.skipif(not HAVE_TRITON or INTERPRET or torch.cuda.is_available(), reason="needs triton, CPU only")
def test_triton_on_cpu_is_a_clear_error():
    q, k, *_ = make_case("decode")
    with pytest.raises(ValueError, match="impl='chunked'"):
        attention_stats(q, k, requests=StatsRequest(lse=True), impl="triton")


R = StatsRequest(lse=True)
BAD = {
    "q_3d": (dict(q=(2, 19, 16)), dict()),
    "heads": (dict(q=(2, 5, 19, 16)), dict()),
    "head_dim": (dict(k=(2, 2, 19, 8)), dict()),
    "batch": (dict(k=(3, 2, 19, 16)), dict()),
    "impl": ({}, dict(impl="cuda")),
    "request": ({}, dict(requests={"lse": True})),
    "span_range": ({}, dict(requests=StatsRequest(spans=[(0, 20)]))),
    "span_order": ({}, dict(requests=StatsRequest(spans=[(5, 2)]))),
    "span_shape": ({}, dict(requests=StatsRequest(spans=torch.zeros(3, 4, 2, dtype=torch.long)))),
    "pooled": ({}, dict(requests=StatsRequest(pooled=(0, 3)))),
    "padding": ({}, dict(key_padding=torch.ones(2, 18, dtype=torch.bool))),
    "mask": ({}, dict(mask=torch.ones(2, 1, 19, 18, dtype=torch.bool))),
    "window": ({}, dict(sliding_window=0)),
    "chunk": ({}, dict(chunk_size=0)),
    "lse_shape": ({}, dict(lse=torch.zeros(2, 6, 18))),
    "match_pairs": ({}, dict(requests=StatsRequest(key_match=(torch.zeros(19, dtype=torch.long),)))),
    "match_float": ({}, dict(requests=StatsRequest(key_match=((torch.zeros(19), torch.zeros(19)),)))),
    "match_query_len": ({}, dict(requests=StatsRequest(key_match=((torch.zeros(18, dtype=torch.long),
                                                                   torch.zeros(19, dtype=torch.long)),)))),
    "match_key_batch": ({}, dict(requests=StatsRequest(key_match=((torch.zeros(19, dtype=torch.long),
                                                                   torch.zeros(3, 19, dtype=torch.long)),)))),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_arguments(case):
    shapes, kw = BAD[case]
    q = torch.randn(*shapes.get("q", (2, 6, 19, 16)))
    k = torch.randn(*shapes.get("k", (2, 2, 19, 16)))
    with pytest.raises(ValueError) as e:
        attention_stats(q, k, **{"requests": R, **kw})
    assert "\n" not in str(e.value)
