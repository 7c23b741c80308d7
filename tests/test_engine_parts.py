"""The parts a Session is made of, on their own: next-token candidates, the timeline, the
context window and its buffers, the ablation checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gptviz.engine.candidates import include_token, next_token_candidates
from gptviz.engine.history import StepResult, Timeline
from gptviz.engine.reruns import device_ablation, first_changed_layer
from gptviz.engine.window import ContextWindow, window_start_for
from gptviz.model.gpt import Ablation


def softmax64(logits):
    """Reference softmax in float64 numpy."""
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - x[np.isfinite(x)].max())
    return e / e.sum()


def entropy_bits64(p):
    """Reference entropy in bits, 0 log 0 = 0."""
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


# ---------------------------------------------------------------------- candidates
def test_candidates_match_a_plain_softmax():
    logits = torch.randn(500, generator=torch.Generator().manual_seed(0)) * 3  # (V,)
    c = next_token_candidates(logits, 7)
    p = softmax64(logits.numpy())
    want = np.argsort(-p, kind="stable")[:7]
    assert c.ids.dtype == np.int64 and c.probs.dtype == np.float32
    assert c.ids.tolist() == want.tolist()
    np.testing.assert_allclose(c.probs, p[want], rtol=1e-5)
    assert c.entropy == pytest.approx(entropy_bits64(p), rel=1e-5)
    assert c.distribution.dtype == torch.float32 and c.distribution.shape == (500,)
    np.testing.assert_allclose(c.distribution.numpy(), p, rtol=1e-5, atol=1e-12)
    assert c.prob(int(want[-1])) == pytest.approx(p[want[-1]], rel=1e-5)


def test_candidates_k_is_clipped_and_checked():
    logits = torch.tensor([0.0, 1.0, 2.0])
    c = next_token_candidates(logits, 10)
    assert c.ids.tolist() == [2, 1, 0]
    np.testing.assert_allclose(c.probs.sum(), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="k must be"):
        next_token_candidates(logits, 0)
    with pytest.raises(ValueError, match="1-d"):
        next_token_candidates(logits.view(1, 3), 2)


def test_candidates_entropy_with_impossible_tokens():
    # -inf logits (masked tokens) have probability 0 and add nothing to the entropy.
    logits = torch.tensor([1.0, float("-inf"), 0.5, float("-inf"), -2.0])
    c = next_token_candidates(logits, 5)
    p = softmax64(logits.numpy())
    assert math.isfinite(c.entropy)
    assert c.entropy == pytest.approx(entropy_bits64(p), rel=1e-6)
    assert c.prob(1) == 0.0 and c.prob(3) == 0.0
    # one certain token: entropy 0
    assert next_token_candidates(torch.tensor([0.0, float("-inf")]), 1).entropy == 0.0
    # uniform over 8 tokens: 3 bits
    assert next_token_candidates(torch.zeros(8), 2).entropy == pytest.approx(3.0, abs=1e-6)


def test_candidates_run_in_float32_whatever_the_dtype():
    logits = torch.randn(50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = next_token_candidates(logits, 5)
    b = next_token_candidates(logits.float(), 5)
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.probs, b.probs)
    assert a.entropy == b.entropy


def test_include_token():
    ids = np.array([4, 2, 9], dtype=np.int64)
    probs = np.array([0.5, 0.3, 0.1], dtype=np.float32)
    out_ids, out_probs, chosen = include_token(ids, probs, 2, 0.3)
    assert out_ids.tolist() == [4, 2, 9] and chosen == 1
    assert out_ids is not ids and np.array_equal(out_probs, probs)
    out_ids, out_probs, chosen = include_token(ids, probs, 7, 0.01)
    assert out_ids.tolist() == [4, 2, 9, 7] and chosen == 3
    assert out_ids.dtype == np.int64 and out_probs.dtype == np.float32
    assert out_probs[3] == np.float32(0.01)
    assert ids.tolist() == [4, 2, 9]  # the inputs are not modified


# ---------------------------------------------------------------------- timeline
def _step(index, token):
    return StepResult(index=index, token_id=token, token=str(token), forced=False, prob=0.5,
                      topk_ids=np.zeros(1, np.int64), topk_probs=np.zeros(1, np.float32),
                      entropy=1.0, window_start=0, slid=False, elapsed_ms=0.0)


def test_timeline_bookkeeping():
    tl = Timeline()
    tl.start([1, 2])
    for i, tok in enumerate([7, 8, 9], start=2):
        tl.append(tok)
        tl.record(_step(i, tok))
    assert tl.tokens == [1, 2, 7, 8, 9] and [s.token_id for s in tl.steps] == [7, 8, 9]
    assert tl.undo(5) == 3  # never the prompt
    assert tl.tokens == [1, 2] and tl.steps == []
    assert [s.token_id for s in tl.undone] == [9, 8, 7]  # next to redo is the last
    r = tl.pop_undone()
    tl.put_back(r)
    assert r.token_id == 7 and tl.tokens == [1, 2, 7] and tl.steps == [r]
    tl.branch()
    assert tl.undone == []
    tl.truncate(2)
    assert tl.tokens == [1, 2] and tl.steps == []
    tl.start([5])
    assert tl.tokens == [5] and tl.steps == [] and tl.undone == []


# ---------------------------------------------------------------------- window
def test_window_advance_and_move_match_a_full_forward(tiny_bundle_factory):
    bundle = tiny_bundle_factory(block_size=8)
    model = bundle.model
    w = ContextWindow(model)
    tokens = [5, 6, 7]
    w.refill(tokens, None)
    slides = []
    for tok in [11, 12, 13, 14, 15, 16, 17]:  # 10 tokens: the window slides at 9
        tokens.append(tok)
        slid = w.advance(tokens, None)
        row = w.attention_row(w.length - 1)
        slides.append(slid)
        ws = window_start_for(len(tokens), 8)
        with torch.inference_mode():
            out = model(torch.tensor([tokens[ws:]]), return_attn=True)
        full = torch.stack(out.attentions)[:, 0].numpy()  # (L, H, T, T)
        np.testing.assert_allclose(row, full[:, :, -1], atol=1e-5)
        np.testing.assert_allclose(w.attention_maps(), full, atol=1e-5)
        np.testing.assert_allclose(w.next_logits().numpy(), out.logits[0, -1].numpy(),
                                   atol=1e-4)
        assert (w.start, w.length) == (ws, len(tokens) - ws) and w.cache.length == w.length
    assert slides == [False, False, False, False, False, True, False]
    assert w.holds(9) and not w.holds(8) and not w.holds(11)  # 8 tokens: window start 0
    w.move_to(9)
    assert w.length == w.cache.length == 9 - w.start and w.valid == 10 - w.start
    w.forget_rows_past_cursor()
    assert w.valid == w.length and not w.holds(10)


# ---------------------------------------------------------------------- ablation
def test_first_changed_layer():
    L, H, D = 3, 2, 4
    ones = torch.ones(L, H)
    keep = ones.clone()
    keep[1, 0] = 0.0
    assert first_changed_layer(None, None, L) == L
    assert first_changed_layer(None, Ablation(keep=ones), L) == L  # all ones: no head removed
    assert first_changed_layer(None, Ablation(keep=keep), L) == 1
    assert first_changed_layer(Ablation(keep=keep), None, L) == 1
    zero_fill = torch.zeros(L, H, D)
    # A removed head's output is its fill, zeros when there is none: same thing.
    assert first_changed_layer(Ablation(keep=keep), Ablation(keep=keep, fill=zero_fill), L) == L
    fill = zero_fill.clone()
    fill[0, 0] = 1.0  # layer 0 keeps every head: its fill is never used
    assert first_changed_layer(Ablation(keep=keep), Ablation(keep=keep, fill=fill), L) == L
    fill[1, 1] = 2.0  # layer 1 removes head 0: its fill row changed
    assert first_changed_layer(Ablation(keep=keep, fill=zero_fill),
                               Ablation(keep=keep, fill=fill), L) == 1


def test_device_ablation_converts_and_checks(tiny_bundle):
    cfg = tiny_bundle.model.config
    like = tiny_bundle.model.wte.weight
    keep = np.ones((cfg.n_layer, cfg.n_head))  # float64 numpy
    a = device_ablation(Ablation(keep=keep), cfg, like)
    assert a is not None and a.fill is None
    assert a.keep.dtype == like.dtype and a.keep.device == like.device
    assert device_ablation(None, cfg, like) is None
    with pytest.raises(ValueError, match="must be an Ablation"):
        device_ablation("heads", cfg, like)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep must have shape"):
        device_ablation(Ablation(keep=np.ones(3)), cfg, like)
    with pytest.raises(ValueError, match="fill must have shape"):
        device_ablation(Ablation(keep=keep, fill=np.zeros((1, 2, 3))), cfg, like)
    bad = keep.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        device_ablation(Ablation(keep=bad), cfg, like)


@pytest.mark.parametrize("overrides", [dict(n_kv_head=2),
                                       dict(positional_embedding_type="rotary", n_kv_head=1)])
def test_session_with_fewer_kv_heads_and_rotary_positions(tiny_bundle_factory, overrides):
    from gptviz.engine.session import Session
    from gptviz.model.config import GPTConfig

    missing = set(overrides) - set(GPTConfig.__dataclass_fields__)
    if missing:
        pytest.skip(f"the model has no {sorted(missing)} yet")
    bundle = tiny_bundle_factory(seed=2, block_size=16, **overrides)
    s = Session(bundle, "Once upon a time there was")
    s.generate(20)  # slides the window
    s.undo(7)
    s.redo(3)
    keep = np.ones((2, 4), np.float32)
    keep[1, 1] = 0
    s.set_ablation(Ablation(keep=keep))  # re-runs layer 1 from the stored residual stream
    s.generate(2)
    ids = s.window_tokens
    with torch.inference_mode():
        out = bundle.model(torch.tensor([ids]), return_attn=True, ablation=s.device_ablation)
        full = torch.stack(out.attentions)[:, 0].numpy()  # (L, H, T, T)
        np.testing.assert_allclose(s.attention(), full, atol=1e-5)
        np.testing.assert_allclose(s.next_probs(), torch.softmax(out.logits[0, -1], -1).numpy(),
                                   atol=1e-6)
        snap = s.kv_cache_snapshot(len(ids) - 1)  # every position but the last
        last = bundle.model(torch.tensor([ids[-1:]]), snap, ablation=s.device_ablation)
    np.testing.assert_allclose(last.logits[0, -1].numpy(), out.logits[0, -1].numpy(), atol=1e-4)
