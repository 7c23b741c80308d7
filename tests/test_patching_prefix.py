"""Activation patching of prompts that share a prefix (the patched runs then start at the first
differing token), for rotary, grouped-query, parallel and post-LN configs: every map against
forward hooks on the model's own modules in ``GPT.forward`` (float64), which put the clean
head output (the input of the attention's ``c_proj``) or the clean block input into the
corrupted run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gptviz.analysis.ablation import make_ablation
from gptviz.analysis.patching import activation_patching, patch_head_positions, prepare
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT

CONFIGS = {
    "llama": dict(positional_embedding_type="rotary", n_kv_head=2, norm_type="rmsnorm",
                  mlp_type="gated", bias=False),
    "neox": dict(positional_embedding_type="rotary", rotary_dim=4, parallel_attn=True,
                 tie_word_embeddings=False),
    "gpt1": dict(ln_placement="post", final_ln=False, activation="gelu_tanh"),
    "gpt-neo": dict(attention_layers=("local", "global", "local"), window_size=3,
                    attn_scale=1.0, qkv_bias=False),
}
TARGET, VS = 7, 11


def _model(kw: dict) -> GPT:
    cfg = GPTConfig(n_layer=3, n_head=4, n_embd=32, block_size=32, vocab_size=61, **kw)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.3 * r if ("ln" in name or "norm" in name) and
                    name.endswith("weight") else 0.3 * r)
    return model


def _prompts(start: int, T: int = 10) -> tuple[list[int], list[int]]:
    g = torch.Generator().manual_seed(start)
    clean = torch.randint(0, 61, (T,), generator=g)
    corrupt = clean.clone()
    corrupt[start:] = torch.randint(0, 61, (T - start,), generator=g)
    corrupt[start] = (clean[start] + 1) % 61  # the first difference is at ``start``
    return clean.tolist(), corrupt.tolist()


def _metric(model: GPT, ids: list[int], hooks=()) -> float:
    handles = [m.register_forward_pre_hook(fn) for m, fn in hooks]
    try:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].double()
    finally:
        for h in handles:
            h.remove()
    return float(logits[TARGET] - logits[VS])


def _capture(model: GPT, ids: list[int]) -> tuple[dict, dict]:
    z, xin = {}, {}

    def keep(store, i):
        def hook(_m, args):
            store[i] = args[0].clone()
        return hook

    hooks = [(b.attn.c_proj, keep(z, i)) for i, b in enumerate(model.h)]
    hooks += [(b, keep(xin, i)) for i, b in enumerate(model.h)]
    _metric(model, ids, hooks)
    return z, xin


def _replace(clean: torch.Tensor, sl: tuple):
    def hook(_m, args):
        x = args[0].clone()
        x[sl] = clean[sl]
        return (x, *args[1:])
    return hook


@pytest.mark.parametrize("start", [1, 4, 9])
@pytest.mark.parametrize("family", list(CONFIGS))
def test_shared_prefix_maps_match_hooks(family, start):
    model = _model(CONFIGS[family]).double()
    clean, corrupt = _prompts(start)
    assert prepare(model, clean, corrupt, TARGET, VS).start == start
    res = activation_patching(model, clean, corrupt, TARGET, VS)
    m_clean, m_corr = _metric(model, clean), _metric(model, corrupt)
    assert abs(m_clean - m_corr) > 1e-3
    z, xin = _capture(model, clean)
    L, H, hd, T = 3, 4, 8, len(clean)
    heads = np.zeros((L, H))
    resid = np.zeros((L, T))
    for layer in range(L):
        proj, block = model.h[layer].attn.c_proj, model.h[layer]
        for h in range(H):
            sl = (slice(None), slice(None), slice(h * hd, (h + 1) * hd))
            m = _metric(model, corrupt, [(proj, _replace(z[layer], sl))])
            heads[layer, h] = (m - m_corr) / (m_clean - m_corr)
        for t in range(T):
            m = _metric(model, corrupt, [(block, _replace(xin[layer], (slice(None), t)))])
            resid[layer, t] = (m - m_corr) / (m_clean - m_corr)
    np.testing.assert_allclose(res.heads, heads, atol=1e-9)
    np.testing.assert_allclose(res.resid, resid, atol=1e-9)
    assert np.all(res.resid[:, :start] == 0.0)  # the shared prefix restores nothing
    assert np.abs(res.heads).max() > 1e-3
    with torch.inference_mode():
        pair = prepare(model, clean, corrupt, TARGET, VS)
        for layer, head in ((0, 1), (2, 3)):
            got = patch_head_positions(pair, layer, head)
            want = []
            for t in range(T):
                sl = (slice(None), t, slice(head * hd, (head + 1) * hd))
                proj = model.h[layer].attn.c_proj
                m = _metric(model, corrupt, [(proj, _replace(z[layer], sl))])
                want.append((m - m_corr) / (m_clean - m_corr))
            np.testing.assert_allclose(got, want, atol=1e-9)


def test_shared_prefix_under_an_ablation_matches_hooks():
    model = _model(CONFIGS["llama"]).double()
    clean, corrupt = _prompts(5)
    ablation = make_ablation(model.config, [(1, 2)])
    res = activation_patching(model, clean, corrupt, TARGET, VS, ablation=ablation, resid=False)

    def run(ids, hooks=()):
        handles = [m.register_forward_pre_hook(fn) for m, fn in hooks]
        try:
            with torch.no_grad():
                logits = model(torch.tensor([ids]), ablation=ablation).logits[0, -1].double()
        finally:
            for h in handles:
                h.remove()
        return float(logits[TARGET] - logits[VS])

    z: dict[int, torch.Tensor] = {}

    def keep(i: int):
        def hook(_m, args):
            z[i] = args[0].clone()
        return hook

    run(clean, [(b.attn.c_proj, keep(i)) for i, b in enumerate(model.h)])
    m_clean, m_corr = run(clean), run(corrupt)
    heads = np.zeros((3, 4))
    for layer in range(3):
        for h in range(4):
            sl = (slice(None), slice(None), slice(h * 8, (h + 1) * 8))
            m = run(corrupt, [(model.h[layer].attn.c_proj, _replace(z[layer], sl))])
            heads[layer, h] = (m - m_corr) / (m_clean - m_corr)
    np.testing.assert_allclose(res.heads, heads, atol=1e-9)
    assert res.heads[1, 2] == pytest.approx(0.0, abs=1e-12)  # an ablated head restores nothing
