"""The sampling rules and the token-by-token Session: KV-cache steps, history, windows,
ablation, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gptviz.engine.sampling import SamplingSettings, choose, filter_probs, sample, step_generator
from gptviz.engine.session import Session, StepResult, window_start_for
from gptviz.model.gpt import Ablation

PROMPT = "Once upon a time there was"


def full_forward(bundle, ids, ablation=None):
    """Reference: attention (L, H, T, T) and probs (T, V) of one forward without a cache."""
    with torch.inference_mode():
        out = bundle.model(torch.tensor([ids]), return_attn=True, ablation=ablation)
    att = torch.stack(out.attentions)[:, 0].numpy()
    return att, torch.softmax(out.logits[0], -1).numpy()


def assert_causal(att):
    T = att.shape[-1]
    assert att.shape[-2] == T
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
    upper = np.triu(np.ones((T, T), dtype=bool), 1)
    assert (att[..., upper] == 0).all()


# ---------------------------------------------------------------------- sampling
def test_settings_validation():
    for bad in (dict(temperature=0), dict(temperature=-1.0), dict(temperature=float("nan")),
                dict(temperature=float("inf")), dict(top_k=-1), dict(top_k=2.5),
                dict(top_p=0.0), dict(top_p=1.5), dict(top_p=float("nan")), dict(seed=-1),
                dict(seed=1.5), dict(seed=2 ** 64), dict(temperature="hot")):
        with pytest.raises(ValueError, match=next(iter(bad)).replace("_", "_")):
            SamplingSettings(**bad)
    s = SamplingSettings(temperature=0.5, top_k=3, top_p=0.9, seed=7)
    assert s.describe() == "T=0.5 top-k=3 top-p=0.9 seed=7"
    assert SamplingSettings(greedy=True).describe() == "greedy"


def test_filter_greedy_is_one_hot_argmax():
    logits = torch.tensor([0.1, 3.0, -1.0, 3.0, 2.0])
    p = filter_probs(logits, SamplingSettings(greedy=True))
    assert p.tolist() == [0, 1, 0, 0, 0]  # first of the tied maxima
    assert choose(logits, SamplingSettings(greedy=True), position=5) == 1


def test_filter_temperature():
    logits = torch.tensor([1.0, 2.0, 4.0])
    p = filter_probs(logits, SamplingSettings(temperature=2.0))
    assert torch.allclose(p, torch.softmax(logits / 2, -1))


def test_filter_top_k_keeps_exactly_k():
    logits = torch.tensor([0.0, 5.0, 1.0, 4.0, 3.0, -2.0])
    p = filter_probs(logits, SamplingSettings(top_k=3))
    kept = p > 0
    assert kept.tolist() == [False, True, False, True, True, False]
    assert torch.allclose(p[kept], torch.softmax(torch.tensor([5.0, 4.0, 3.0]), -1))
    # top_k >= V is the same as off.
    assert torch.allclose(filter_probs(logits, SamplingSettings(top_k=99)),
                          torch.softmax(logits, -1))


def test_filter_top_p_smallest_set_reaching_mass():
    probs = torch.tensor([0.05, 0.5, 0.25, 0.15, 0.05])
    logits = probs.log()
    p = filter_probs(logits, SamplingSettings(top_p=0.7))
    # 0.5 < 0.7, 0.5 + 0.25 >= 0.7: keep the top two.
    assert (p > 0).tolist() == [False, True, True, False, False]
    assert torch.allclose(p[1:3], torch.tensor([0.5, 0.25]) / 0.75)
    # A tiny top_p keeps only the most probable token.
    assert filter_probs(logits, SamplingSettings(top_p=1e-6)).tolist() == [0, 1, 0, 0, 0]
    # top_k then top_p compose: top-4 renormalised is ~[.05, .53, .26, .16]/.95; the mass
    # before the 4th-ranked token is ~.947 >= .9, so it goes.
    q = filter_probs(logits, SamplingSettings(top_k=4, top_p=0.9))
    assert (q > 0).tolist() == [False, True, True, True, False]
    assert torch.allclose(q.sum(), torch.tensor(1.0))


def test_sample_is_a_pure_function_of_seed_and_position():
    logits = torch.randn(300, generator=torch.Generator().manual_seed(1))
    s = SamplingSettings(seed=3)
    a = [choose(logits, s, t) for t in range(50)]
    b = [choose(logits, s, t) for t in range(50)]
    c = [choose(logits, SamplingSettings(seed=4), t) for t in range(50)]
    assert a == b
    assert a != c
    assert len(set(a)) > 10  # positions give different draws
    # Samples follow the distribution: a one-hot is always drawn.
    assert sample(torch.eye(5)[3], step_generator(0, 0)) == 3
    with pytest.raises(ValueError):
        sample(torch.ones(2, 3), step_generator(0, 0))


def test_sampling_never_draws_filtered_tokens():
    logits = torch.randn(100, generator=torch.Generator().manual_seed(2))
    s = SamplingSettings(top_k=5, seed=11)
    allowed = set(torch.topk(logits, 5).indices.tolist())
    draws = {choose(logits, s, t) for t in range(200)}
    assert draws <= allowed and len(draws) > 1


# ---------------------------------------------------------------------- session basics
def test_prefill_matches_full_forward(tiny_bundle):
    s = Session(tiny_bundle, PROMPT)
    ids = tiny_bundle.tokenizer.encode(PROMPT)
    assert s.tokens == ids and s.prompt_len == len(ids) and s.n_generated == 0
    att, probs = full_forward(tiny_bundle, ids)
    np.testing.assert_allclose(s.attention(), att, atol=1e-5, rtol=0)
    np.testing.assert_allclose(s.next_probs(), probs[-1], atol=1e-6)
    ids_k, p_k, ent = s.next_distribution()
    assert ids_k.dtype == np.int64 and p_k.dtype == np.float32 and len(ids_k) == 20
    assert (np.diff(p_k) <= 0).all()
    np.testing.assert_array_equal(ids_k, np.argsort(-probs[-1], kind="stable")[:20])
    ref_ent = -(probs[-1] * np.log2(probs[-1])).sum()
    assert ent == pytest.approx(ref_ent, abs=1e-4)
    assert s.display_tokens() == [tiny_bundle.tokenizer.display(i) for i in ids]
    assert s.text() == PROMPT


@pytest.mark.parametrize("ln", ["pre", "post"])
def test_steps_equal_full_recompute(tiny_bundle_factory, ln):
    bundle = tiny_bundle_factory(ln_placement=ln, final_ln=(ln == "pre"))
    s = Session(bundle, PROMPT, SamplingSettings(seed=5))
    before = s.next_probs()
    results = [s.step() for _ in range(12)]
    att, probs = full_forward(bundle, s.tokens)
    T = s.n_tokens
    assert s.attention().shape == (bundle.config.n_layer, bundle.config.n_head, T, T)
    np.testing.assert_allclose(s.attention(), att, atol=1e-5, rtol=0)
    np.testing.assert_allclose(s.next_probs(), probs[-1], atol=1e-5)
    assert_causal(s.attention())
    for r in results:
        assert isinstance(r, StepResult)
        assert s.tokens[r.index] == r.token_id
        assert r.token == bundle.tokenizer.display(r.token_id)
        assert r.attention_row.shape == (bundle.config.n_layer, bundle.config.n_head, r.index + 1)
        np.testing.assert_allclose(r.attention_row, att[:, :, r.index, :r.index + 1], atol=1e-5)
        # prob/top-k/entropy are of the distribution the token was drawn from.
        dist = probs[r.index - 1]
        assert r.prob == pytest.approx(float(dist[r.token_id]), abs=1e-6)
        np.testing.assert_allclose(r.topk_probs, np.sort(dist)[::-1][:20], atol=1e-6)
        assert r.entropy == pytest.approx(-(dist * np.log2(dist)).sum(), abs=1e-4)
        assert not r.forced and not r.slid and r.window_start == 0 and r.elapsed_ms >= 0
    assert results[0].prob == pytest.approx(float(before[results[0].token_id]))


def test_same_seed_same_tokens_different_seed_different(tiny_bundle):
    runs = {}
    for seed in (1, 1, 2):
        s = Session(tiny_bundle, PROMPT, SamplingSettings(seed=seed, temperature=1.5))
        runs.setdefault(seed, []).append([s.step().token_id for _ in range(20)])
    assert runs[1][0] == runs[1][1]
    assert runs[1][0] != runs[2][0]


def test_greedy_is_argmax(tiny_bundle):
    s = Session(tiny_bundle, PROMPT, SamplingSettings(greedy=True))
    for _ in range(8):
        expected = int(np.argmax(s.next_probs()))
        r = s.step()
        assert r.token_id == expected == int(r.topk_ids[0])


def test_top_k_sampling_stays_in_top_k(tiny_bundle):
    s = Session(tiny_bundle, PROMPT, SamplingSettings(top_k=3, seed=9), top_k_report=3)
    for _ in range(15):
        allowed = set(s.next_distribution()[0].tolist())
        assert s.step().token_id in allowed


def test_settings_change_midway_applies_from_next_step(tiny_bundle):
    s = Session(tiny_bundle, PROMPT, SamplingSettings(seed=4))
    a = [s.step().token_id for _ in range(5)]
    s.set_settings(SamplingSettings(greedy=True))
    b = s.step()
    assert b.token_id == int(b.topk_ids[0])
    assert s.settings.greedy
    # Replaying the same schedule gives the same tokens (draws depend on seed and position).
    t = Session(tiny_bundle, PROMPT, SamplingSettings(seed=4))
    assert [t.step().token_id for _ in range(5)] == a
    t.settings = SamplingSettings(greedy=True)
    assert t.step().token_id == b.token_id
    with pytest.raises(ValueError):
        s.set_settings({"greedy": True})


# ---------------------------------------------------------------------- history
def snapshot(s):
    return (s.tokens, s.attention(copy=True), s.next_probs(), s.next_distribution())


def assert_same(a, b):
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(a[3][0], b[3][0])
    np.testing.assert_array_equal(a[3][1], b[3][1])
    assert a[3][2] == b[3][2]


def test_undo_redo_restore_exactly(tiny_bundle):
    s = Session(tiny_bundle, PROMPT, SamplingSettings(seed=8))
    snaps = [snapshot(s)]
    for _ in range(10):
        s.step()
        snaps.append(snapshot(s))
    hist = s.history
    assert s.undo(4) == 4 and s.n_generated == 6 and s.can_redo
    assert_same(snapshot(s), snaps[6])
    assert [r.token_id for r in s.redo_stack] == [r.token_id for r in hist[6:]]
    assert s.undo(100) == 6 and s.n_generated == 0 and not s.can_undo
    assert_same(snapshot(s), snaps[0])
    assert s.undo() == 0  # never below the prompt
    assert s.redo(3) == 3
    assert_same(snapshot(s), snaps[3])
    assert s.redo(100) == 7 and not s.can_redo
    assert_same(snapshot(s), snaps[10])
    assert [r.token_id for r in s.history] == [r.token_id for r in hist]
    for g in (2, 9, 0, 10, 5):
        s.goto(g)
        assert s.n_generated == g
        assert_same(snapshot(s), snaps[g])
    with pytest.raises(ValueError):
        s.goto(11)
    with pytest.raises(ValueError):
        s.goto(-1)


def test_undo_then_resample_is_reproducible(tiny_bundle):
    s = Session(tiny_bundle, PROMPT, SamplingSettings(seed=12))
    first = [s.step().token_id for _ in range(6)]
    s.undo(3)
    again = [s.step().token_id for _ in range(3)]
    assert again == first[3:]  # the draw at a position depends only on (seed, position)
    assert not s.can_redo  # a new step clears the redo stack


def test_force_branches_and_clears_redo(tiny_bundle):
    s = Session(tiny_bundle, PROMPT, SamplingSettings(seed=1))
    for _ in range(5):
        s.step()
    s.undo(2)
    assert s.can_redo
    p = s.next_probs()
    forced = int(np.argsort(p)[0])  # the least likely token
    r = s.step(force=forced)
    assert r.forced and r.token_id == forced and r.index == s.prompt_len + 3
    assert r.prob == pytest.approx(float(p[forced]))
    assert not s.can_redo and s.n_generated == 4
    att, probs = full_forward(tiny_bundle, s.tokens)
    np.testing.assert_allclose(s.attention(), att, atol=1e-5)
    np.testing.assert_allclose(s.next_probs(), probs[-1], atol=1e-5)
    assert_causal(s.attention())
    # Undo/redo of the forced token keeps it forced.
    s.undo()
    s.redo()
    assert s.history[-1].forced and s.history[-1].token_id == forced


def test_reset_and_set_prompt(tiny_bundle):
    s = Session(tiny_bundle, PROMPT)
    start = snapshot(s)
    for _ in range(4):
        s.step()
    s.undo()
    s.reset()
    assert s.n_generated == 0 and not s.can_redo and not s.history
    assert_same(snapshot(s), start)
    s.set_prompt("Hello")
    assert s.text() == "Hello" and s.prompt_len == len(tiny_bundle.tokenizer.encode("Hello"))
    np.testing.assert_allclose(s.next_probs(), full_forward(tiny_bundle, s.tokens)[1][-1],
                               atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        s.set_prompt("")
    assert s.text() == "Hello"  # unchanged by the failed call


def test_prompt_as_token_ids(tiny_bundle):
    ids = tiny_bundle.tokenizer.encode(PROMPT)
    s = Session(tiny_bundle, ids)
    assert s.tokens == ids and s.prompt == PROMPT


def test_bad_inputs(tiny_bundle):
    V = tiny_bundle.config.vocab_size
    with pytest.raises(ValueError, match="prompt is empty"):
        Session(tiny_bundle, "")
    with pytest.raises(ValueError, match="prompt is empty"):
        Session(tiny_bundle, [])
    with pytest.raises(ValueError):
        Session(tiny_bundle, [1, V])
    with pytest.raises(ValueError):
        Session(tiny_bundle, None)
    with pytest.raises(ValueError):
        Session(tiny_bundle, PROMPT, top_k_report=0)
    with pytest.raises(ValueError):
        Session(tiny_bundle, PROMPT, settings="greedy")
    s = Session(tiny_bundle, PROMPT)
    before = snapshot(s)
    for bad in (V, -1, 10 ** 9, 2.0, "a", True):
        with pytest.raises(ValueError):
            s.step(force=bad)
    for call in (lambda: s.undo(-1), lambda: s.redo(-2), lambda: s.attention_head(5, 0),
                 lambda: s.attention_head(0, 4), lambda: s.generate(-1)):
        with pytest.raises(ValueError):
            call()
    assert_same(snapshot(s), before)


def test_padded_vocab_never_samples_untokenizable_ids(tiny_bundle_factory, tiny_tokenizer):
    n = tiny_tokenizer.vocab_size
    bundle = tiny_bundle_factory(vocab_size=n + 40)
    # Make the padding rows dominate the output so an unrestricted sampler would pick them.
    with torch.no_grad():
        bundle.model.wte.weight[n:] *= 20
    s = Session(bundle, PROMPT, SamplingSettings(seed=0, temperature=2.0))
    for _ in range(10):
        assert s.step().token_id < n
    with pytest.raises(ValueError):
        s.step(force=n)
    assert s.display(n + 1) == f"<{n + 1}>"


# ---------------------------------------------------------------------- window slide
def test_window_start_is_a_pure_function():
    assert ([window_start_for(n, 16) for n in (1, 16, 17, 24, 25, 32, 33)]
            == [0, 0, 8, 8, 16, 16, 24])
    for n in range(1, 200):
        ws = window_start_for(n, 16)
        assert 8 < n - ws <= 16 or n <= 16


def test_window_slides_past_block_size(tiny_bundle_factory):
    bundle = tiny_bundle_factory(block_size=16)
    s = Session(bundle, PROMPT, SamplingSettings(seed=2))
    slides = []
    for _ in range(60):
        r = s.step()
        T = s.window_len
        assert T <= 16 and s.attention().shape[-1] == T
        assert r.attention_row.shape[-1] == r.index - r.window_start + 1 <= 16
        if r.slid:
            slides.append(r.index)
            assert r.window_start == window_start_for(r.index + 1, 16) > 0
    assert s.n_tokens == s.prompt_len + 60 and slides
    assert all(b - a == 8 for a, b in zip(slides, slides[1:]))
    # The window holds the last tokens, and matches a fresh forward over them.
    att, probs = full_forward(bundle, s.window_tokens)
    np.testing.assert_allclose(s.attention(), att, atol=1e-5)
    np.testing.assert_allclose(s.next_probs(), probs[-1], atol=1e-5)
    assert_causal(s.attention())
    # Undo across slides recomputes the right window.
    s.undo(20)
    assert s.window_start == window_start_for(s.n_tokens, 16)
    att, probs = full_forward(bundle, s.window_tokens)
    np.testing.assert_allclose(s.attention(), att, atol=1e-5)
    np.testing.assert_allclose(s.next_probs(), probs[-1], atol=1e-5)
    s.redo(20)
    assert s.n_tokens == s.prompt_len + 60
    np.testing.assert_allclose(s.attention(), full_forward(bundle, s.window_tokens)[0], atol=1e-5)
    trace = s.trace_arrays()
    assert trace["attention"].shape[-1] == s.window_len
    assert int(trace["window_start"]) == s.window_start and int(trace["prompt_len"]) == 0


def test_prompt_longer_than_block_starts_slid(tiny_bundle_factory):
    bundle = tiny_bundle_factory(block_size=16)
    text = "The quick brown fox jumps over the lazy dog. " * 3
    s = Session(bundle, text)
    assert s.prompt_len > 16 and s.text() == text
    assert s.window_start == window_start_for(s.prompt_len, 16) and s.window_len <= 16
    s.step()
    assert s.undo(5) == 1  # never below the prompt


# ---------------------------------------------------------------------- ablation, heads
def test_ablation_none_vs_all_ones_identical(tiny_bundle):
    cfg = tiny_bundle.config
    a = Session(tiny_bundle, PROMPT, SamplingSettings(seed=3))
    b = Session(tiny_bundle, PROMPT, SamplingSettings(seed=3))
    b.set_ablation(Ablation(keep=torch.ones(cfg.n_layer, cfg.n_head)))
    for _ in range(6):
        assert a.step().token_id == b.step().token_id
    assert_same(snapshot(a), snapshot(b))


def test_ablation_recomputes_and_applies_to_later_steps(tiny_bundle):
    cfg = tiny_bundle.config
    keep = np.ones((cfg.n_layer, cfg.n_head), dtype=np.float32)
    keep[0, :2] = 0
    abl = Ablation(keep=torch.from_numpy(keep))
    s = Session(tiny_bundle, PROMPT, SamplingSettings(seed=6))
    for _ in range(4):
        s.step()
    normal = snapshot(s)
    s.undo(2)
    s.set_ablation(abl)
    assert s.ablation is abl
    for _ in range(3):
        s.step(force=int(s.next_distribution()[0][1]))
    att, probs = full_forward(tiny_bundle, s.tokens, ablation=abl)
    np.testing.assert_allclose(s.attention(), att, atol=1e-5)
    np.testing.assert_allclose(s.next_probs(), probs[-1], atol=1e-5)
    np.testing.assert_allclose(s.trace_arrays()["probs"], probs, atol=1e-5)
    # Removing the ablation brings back the normal model on the same tokens.
    s.set_ablation(None)
    np.testing.assert_allclose(s.next_probs(), full_forward(tiny_bundle, s.tokens)[1][-1],
                               atol=1e-5)
    # Redo after an ablation change replays the tokens with recomputed numbers.
    s.undo(3)
    s.step()  # branch
    t = Session(tiny_bundle, PROMPT, SamplingSettings(seed=6))
    for _ in range(4):
        t.step()
    t.undo(2)
    t.set_ablation(abl)
    t.redo(2)
    assert t.tokens == normal[0]
    np.testing.assert_allclose(t.attention(), full_forward(tiny_bundle, t.tokens, abl)[0],
                               atol=1e-5)
    with pytest.raises(ValueError):
        s.set_ablation(Ablation(keep=torch.ones(cfg.n_layer + 1, cfg.n_head)))
    with pytest.raises(ValueError):
        s.set_ablation(Ablation(keep=torch.ones(cfg.n_layer, cfg.n_head),
                                fill=torch.zeros(cfg.n_layer, cfg.n_head)))


def test_toggling_a_head_reruns_from_its_layer_and_matches_a_full_forward(tiny_bundle_factory):
    from gptviz.analysis.ablation import make_ablation

    bundle = tiny_bundle_factory(n_layer=3)
    s = Session(bundle, PROMPT, SamplingSettings(seed=4))
    s.generate(5)  # incremental rows, then a toggle in the top layers only
    clean_low = s.attention()[:1].copy()
    # Re-runs from layer 2, 1, 2 (with a head of layer 1 still removed below), then 1.
    for heads, mode in [([(2, 1)], "zero"), ([(1, 0), (2, 1)], "zero"),
                        ([(1, 0), (2, 3)], "zero"), ([(1, 0), (2, 3)], "mean")]:
        abl = make_ablation(bundle.config, heads, mode, model=bundle.model, ids=s.window_tokens)
        s.set_ablation(abl)
        att, probs = full_forward(bundle, s.tokens, ablation=abl)
        np.testing.assert_allclose(s.attention(), att, atol=1e-5)
        np.testing.assert_allclose(s.next_probs(), probs[-1], atol=1e-5)
        # Layer 0 sits below every removed head: its rows are the very same numbers.
        np.testing.assert_array_equal(s.attention()[:1], clean_low)
        s.step()  # later steps run ablated from the re-run cache
        att, probs = full_forward(bundle, s.tokens, ablation=abl)
        np.testing.assert_allclose(s.attention(), att, atol=1e-5)
        np.testing.assert_allclose(s.next_probs(), probs[-1], atol=1e-5)
        s.undo()
    s.set_ablation(None)
    att, probs = full_forward(bundle, s.tokens)
    np.testing.assert_allclose(s.attention(), att, atol=1e-5)
    np.testing.assert_allclose(s.next_probs(), probs[-1], atol=1e-5)
    # Setting the same removal again changes nothing, bit for bit.
    before = s.next_probs()
    s.set_ablation(Ablation(keep=torch.ones(3, bundle.config.n_head)))
    np.testing.assert_array_equal(s.next_probs(), before)


def test_attention_views_and_heads(tiny_bundle):
    s = Session(tiny_bundle, PROMPT)
    s.generate(3)
    full = s.attention()
    with pytest.raises(ValueError):
        full[0, 0, 0, 0] = 1.0  # read-only view
    np.testing.assert_array_equal(s.attention_head(1, 3), full[1, 3])
    assert s.attention_head(1, 3).shape == (s.n_tokens, s.n_tokens)


def test_final_hidden_kv_cache_snapshot_and_device_ablation(tiny_bundle):
    """The public read-only views of the engine's buffers (used by the app's analyses)."""
    cfg = tiny_bundle.config
    s = Session(tiny_bundle, PROMPT, SamplingSettings(seed=2))
    assert s.device_ablation is None
    keep = torch.ones(cfg.n_layer, cfg.n_head)
    keep[0, 1] = 0
    abl = Ablation(keep=keep)
    s.set_ablation(abl)
    dev = s.device_ablation
    p = tiny_bundle.model.wte.weight
    assert (dev.keep.device, dev.keep.dtype) == (p.device, p.dtype) and dev.fill is None
    torch.testing.assert_close(dev.keep, keep)
    s.generate(4)
    s.undo(1)  # the cache holds one position more than the window
    ids = s.window_tokens
    T = len(ids)
    _, probs = full_forward(tiny_bundle, ids, ablation=abl)  # (T, V)
    # final activations: the logits of every window position without a forward pass
    with torch.no_grad():
        h = s.final_hidden()
        assert h.shape == (T, cfg.n_embd)
        got = torch.softmax(s.model.lm_head(h).float(), -1).numpy()
        np.testing.assert_allclose(got, probs, atol=1e-5)
        c = s.final_hidden(copy=True)
        c.zero_()
        assert s.final_hidden().abs().sum() > 0  # the copy is the caller's
    # a cache snapshot continues the forward pass at any window position
    before = s.next_probs()
    full = s.kv_cache_snapshot()
    assert full.length == T and full.k.shape == (cfg.n_layer, 1, cfg.n_head, T + 1, cfg.head_dim)
    for q in (0, 3, T - 1):
        cache = s.kv_cache_snapshot(q)
        assert cache.length == q and cache.block_size == q + 1
        with torch.no_grad():
            out = s.model(torch.tensor([[ids[q]]]), cache, ablation=s.device_ablation)
        assert cache.length == q + 1
        np.testing.assert_allclose(torch.softmax(out.logits[0, -1], -1).numpy(), probs[q],
                                   atol=1e-5)
    np.testing.assert_array_equal(s.next_probs(), before)  # the session is untouched
    r = s.step(force=ids[-1])
    _, probs2 = full_forward(tiny_bundle, s.tokens, ablation=abl)
    np.testing.assert_allclose(s.next_probs(), probs2[-1], atol=1e-5)
    assert r.token_id == ids[-1]
    for bad in (dict(length=T + 2), dict(length=-1), dict(room=-1), dict(length=0, room=0),
                dict(length=2, room=cfg.block_size)):
        with pytest.raises(ValueError):
            s.kv_cache_snapshot(**bad)


def test_final_hidden_follows_the_sliding_window(tiny_bundle_factory):
    bundle = tiny_bundle_factory(block_size=16)
    s = Session(bundle, "Hi", SamplingSettings(seed=3))
    s.generate(20)
    assert s.window_start > 0
    ids = s.window_tokens
    _, probs = full_forward(bundle, ids)
    with torch.no_grad():
        h = s.final_hidden()
        np.testing.assert_allclose(torch.softmax(s.model.lm_head(h), -1).numpy(), probs,
                                   atol=1e-5)
        cache = s.kv_cache_snapshot(len(ids) - 1)
        out = s.model(torch.tensor([[ids[-1]]]), cache)
    np.testing.assert_allclose(torch.softmax(out.logits[0, -1], -1).numpy(), probs[-1],
                               atol=1e-5)


def test_attention_buffer_grows_past_initial_capacity(tiny_bundle_factory):
    bundle = tiny_bundle_factory(block_size=256)
    s = Session(bundle, "Hi")
    s.generate(150)
    att = s.attention()
    assert att.shape[-1] == s.n_tokens
    assert_causal(att)
    np.testing.assert_allclose(att, full_forward(bundle, s.tokens)[0], atol=1e-5)


def test_class_probs(tiny_bundle, tiny_bundle_factory):
    assert Session(tiny_bundle, PROMPT).class_probs() is None
    bundle = tiny_bundle_factory(n_classes=3, class_names=("neg", "neu", "pos"))
    s = Session(bundle, PROMPT)
    p = s.class_probs()
    assert p.shape == (3,) and math.isclose(float(p.sum()), 1.0, rel_tol=1e-5)
    with torch.inference_mode():
        out = bundle.model(torch.tensor([s.tokens]))
        ref = torch.softmax(bundle.model.classify(out.hidden), -1)[0].numpy()
    np.testing.assert_allclose(p, ref, atol=1e-6)
    assert s.class_names == ("neg", "neu", "pos")
    s.step()
    assert not np.allclose(s.class_probs(), p)


def test_trace_arrays_schema(tiny_bundle):
    s = Session(tiny_bundle, PROMPT, SamplingSettings(seed=1))
    s.generate(5)
    tr = s.trace_arrays()
    T, V = s.n_tokens, tiny_bundle.config.vocab_size
    L, H = tiny_bundle.config.n_layer, tiny_bundle.config.n_head
    assert tr["token_ids"].dtype == np.int64 and tr["token_ids"].tolist() == s.tokens
    assert tr["tokens"].dtype.kind == "U" and tr["tokens"].tolist() == s.display_tokens()
    assert tr["attention"].shape == (L, H, T, T) and tr["attention"].dtype == np.float32
    assert tr["probs"].shape == (T, V) and tr["probs"].dtype == np.float32
    np.testing.assert_allclose(tr["probs"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(tr["attention"], s.attention(), atol=1e-5)
    np.testing.assert_allclose(tr["probs"][-1], s.next_probs(), atol=1e-5)
    assert int(tr["prompt_len"]) == s.prompt_len
    assert '"n_layer": 2' in str(tr["config"])
