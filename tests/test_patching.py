"""Activation patching, checked against transformers' GPT2LMHeadModel with random weights run
with forward hooks that put the clean head output (before c_proj) or the clean block input
into the corrupted run; the block-by-block run equals GPT.forward exactly (every family)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gptviz.analysis.patching import (
    Cancelled,
    activation_patching,
    patch_head_positions,
    prepare,
    run_traced,
)
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT
from tests.test_attribution import _randomize, hf_gpt2, ours_from_hf

CLEAN = [5, 17, 3, 40, 8, 96, 2, 33]
CORRUPT = [5, 17, 61, 40, 8, 12, 2, 33]
TARGET, VS = 7, 11


def _metric(hf, ids, hooks=()):
    handles = [m.register_forward_pre_hook(fn, with_kwargs=True) for m, fn in hooks]
    try:
        with torch.no_grad():
            logits = hf(torch.tensor([ids])).logits[0, -1].double()
    finally:
        for h in handles:
            h.remove()
    return float(logits[TARGET] - logits[VS])


def _first_arg(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def _with_first(args, kwargs, x):
    if args:
        return (x, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": x}


def _capture(hf, ids):
    """Clean z before every c_proj and the input of every block, by hooks."""
    tr = hf.transformer
    z, xin = {}, {}

    def keep(store, i):
        def hook(_m, args, kwargs):
            store[i] = _first_arg(args, kwargs).clone()
        return hook

    hooks = [(b.attn.c_proj, keep(z, i)) for i, b in enumerate(tr.h)]
    hooks += [(b, keep(xin, i)) for i, b in enumerate(tr.h)]
    _metric(hf, ids, hooks)
    return z, xin


def _replace(clean, sl):
    def hook(_m, args, kwargs):
        x = _first_arg(args, kwargs).clone()
        x[sl] = clean[sl]
        return _with_first(args, kwargs, x)
    return hook


def test_heads_and_residual_maps_match_hooks_on_transformers():
    hf = hf_gpt2()
    ours = ours_from_hf(hf)
    res = activation_patching(ours, CLEAN, CORRUPT, TARGET, VS)
    m_clean, m_corr = _metric(hf, CLEAN), _metric(hf, CORRUPT)
    assert abs(res.clean_metric - m_clean) < 1e-4 and abs(res.corrupt_metric - m_corr) < 1e-4
    assert abs(m_clean - m_corr) > 0.1  # the prompts do differ for this metric
    z, xin = _capture(hf, CLEAN)
    tr = hf.transformer
    L, H, hd = 3, 4, 8
    heads = np.zeros((L, H))
    for layer in range(L):
        for h in range(H):
            sl = (slice(None), slice(None), slice(h * hd, (h + 1) * hd))
            m = _metric(hf, CORRUPT, [(tr.h[layer].attn.c_proj, _replace(z[layer], sl))])
            heads[layer, h] = (m - m_corr) / (m_clean - m_corr)
    np.testing.assert_allclose(res.heads, heads, atol=1e-4)
    T = len(CLEAN)
    resid = np.zeros((L, T))
    for layer in range(L):
        for t in range(T):
            m = _metric(hf, CORRUPT, [(tr.h[layer], _replace(xin[layer], (slice(None), t)))])
            resid[layer, t] = (m - m_corr) / (m_clean - m_corr)
    np.testing.assert_allclose(res.resid, resid, atol=1e-4)
    # What patching must show: at block 0 the tokens that are the same in both prompts
    # restore nothing.
    assert np.allclose(res.resid[0, [0, 1, 3, 4, 6]], 0.0, atol=1e-4)
    assert np.abs(res.resid[0, [2, 5]]).max() > 1e-2
    assert np.abs(res.heads).max() > 1e-2
    d = res.to_dict()
    assert len(d["heads"]) == L and len(d["resid"][0]) == T


def test_one_head_at_each_position_matches_hooks():
    hf = hf_gpt2(seed=4)
    ours = ours_from_hf(hf)
    m_clean, m_corr = _metric(hf, CLEAN), _metric(hf, CORRUPT)
    z, _ = _capture(hf, CLEAN)
    hd = 8
    for layer, head in ((0, 1), (2, 3)):
        with torch.inference_mode():
            got = patch_head_positions(prepare(ours, CLEAN, CORRUPT, TARGET, VS), layer, head)
        want = []
        for t in range(len(CLEAN)):
            sl = (slice(None), t, slice(head * hd, (head + 1) * hd))
            c_proj = hf.transformer.h[layer].attn.c_proj
            want.append((_metric(hf, CORRUPT, [(c_proj, _replace(z[layer], sl))]) - m_corr)
                        / (m_clean - m_corr))
        np.testing.assert_allclose(got, want, atol=1e-4)


FAMILIES = [dict(), dict(parallel_attn=True, tie_word_embeddings=False),
            dict(positional_embedding_type="rotary", n_kv_head=2, norm_type="rmsnorm",
                 mlp_type="gated", bias=False),
            dict(ln_placement="post", final_ln=False, activation="gelu_tanh"),
            dict(attention_layers=("global", "local", "local"), window_size=3, attn_scale=1.0,
                 qkv_bias=False)]


@pytest.mark.parametrize("kw", FAMILIES, ids=["gpt2", "neox", "llama", "gpt1", "gpt-neo"])
def test_unpatched_run_equals_forward_exactly(kw):
    cfg = GPTConfig(n_layer=3, n_head=4, n_embd=32, block_size=32, vocab_size=61, **kw)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    _randomize(model, 0)
    idx = torch.tensor([[1, 50, 7, 7, 23, 40, 2, 9]])
    with torch.no_grad():
        out = model(idx, return_resid=True, return_head_out=True)
        u = model.unembed_weight[3] - model.unembed_weight[4]
        run = run_traced(model, idx, u)
    for a, b in zip(out.residuals, run.resid, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(out.head_outputs, run.z, strict=True):
        assert torch.equal(a, b)
    want = out.logits[0, -1, 3] - out.logits[0, -1, 4]
    assert abs(float(run.metric[0]) - float(want)) < 1e-5
    # patching runs for every family; identical tokens restore nothing at block 0
    other = [1, 50, 8, 7, 23, 41, 2, 9]
    res = activation_patching(model, idx[0].tolist(), other, 3, 4)
    assert res.heads.shape == (3, 4) and res.resid.shape == (3, 8)
    assert np.allclose(res.resid[0, [0, 1, 3]], 0, atol=1e-4)


def test_errors_and_cancel():
    ours = ours_from_hf(hf_gpt2())
    with pytest.raises(ValueError, match="same token length"):
        activation_patching(ours, [1, 2, 3], [1, 2], TARGET, VS)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        activation_patching(ours, [1, 2], [1, 3], 97, VS)
    seen = []

    def progress(done, total):
        seen.append((done, total))
        return done < 2

    with pytest.raises(Cancelled):
        activation_patching(ours, CLEAN, CORRUPT, TARGET, VS, progress=progress)
    assert seen == [(1, 6), (2, 6)]
    res = activation_patching(ours, CLEAN, CLEAN, TARGET, VS, resid=False)
    assert res.note and "same on both" in res.note and np.isnan(res.heads).all()
    assert res.to_dict()["heads"][0][0] is None


def test_the_bench_reports_attribution_and_patching():
    from gptviz.bench.analysis import bench_analysis

    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=40, vocab_size=50)
    r = bench_analysis(repeats=1, context=32, model_repeats=1, config=cfg)
    assert r["dla_ms"] > 0 and r["patch_heads_20_ms"] > 0
    assert r["ratio_dla_to_step"] == pytest.approx(r["dla_ms"] / r["step_ms"])
    assert r["ratio_patch_heads_20_to_prefill"] == pytest.approx(
        r["patch_heads_20_ms"] / r["prefill_ms"])
