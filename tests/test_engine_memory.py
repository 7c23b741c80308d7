"""Bounded, compact memory in the engine: packed attention history, buffers that grow with the
text, steps that keep no attention, refusals that say how much a context would take.

Memory is measured by the buffers' byte counts (deterministic), never by timing or RSS.
"""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest
import torch

import gptviz.engine.window as window_mod
from gptviz.engine.attention_store import AttentionHistory, history_dtype, packed_size
from gptviz.engine.memory import NotEnoughMemory, format_bytes
from gptviz.engine.rows import path_tokens, prompt_path
from gptviz.engine.sampling import SamplingSettings
from gptviz.engine.session import Session
from gptviz.engine.window import ContextWindow, window_start_for
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT, Ablation

GREEDY = SamplingSettings(greedy=True)


def reference(bundle, ids, ablation=None):
    """Attention ``(L, H, T, T)`` of one forward without a cache (no window, no history)."""
    with torch.inference_mode():
        out = bundle.model(torch.tensor([ids]), return_attn=True, ablation=ablation)
    return torch.stack(out.attentions)[:, 0].numpy()


def random_attention(H, T, seed=0):
    """``(H, T, T)`` causal softmax rows drawn at random (numpy only)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(H, T, T)) * 3
    s[:, np.triu(np.ones((T, T), bool), 1)] = -np.inf
    e = np.exp(s - s.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------------- the packed history
@pytest.mark.parametrize("dtype, tol", [(np.float32, 0.0), (np.float16, 1e-3)])
def test_history_packs_lower_triangles_and_reads_float32(dtype, tol):
    L, H, T = 2, 3, 37
    att = np.stack([random_attention(H, T, seed=i) for i in range(L)])  # (L, H, T, T)
    hist = AttentionHistory(L, H, dtype)
    hist.reserve(20)
    for layer in range(L):  # rows 0..19 in one block, the rest one row at a time
        hist.write_block(layer, torch.from_numpy(att[layer, :, :20, :20]), 0)
    hist.reserve(T)  # growing keeps what is there
    for t in range(20, T):
        hist.write_row(t, torch.from_numpy(att[:, :, t, :t + 1]))
    assert hist.nbytes == L * H * T * (T + 1) // 2 * np.dtype(dtype).itemsize
    full = hist.maps(T)
    assert full.dtype == np.float32 and full.shape == (L, H, T, T)
    np.testing.assert_allclose(full, att, atol=tol, rtol=0)
    assert (full[..., np.triu(np.ones((T, T), bool), 1)] == 0).all()
    np.testing.assert_array_equal(hist.maps(T, 1, 2), full[1, 2])
    np.testing.assert_array_equal(hist.maps(T, 0), full[0])
    np.testing.assert_array_equal(hist.maps(9), full[:, :, :9, :9])
    for t in (0, 5, T - 1):
        np.testing.assert_array_equal(hist.row(t), full[:, :, t, :t + 1])


def test_block_writes_at_an_offset_match_rows():
    """A block of queries p0.. over keys 0..p0+c-1 lands where one-row writes would."""
    H, T = 2, 12
    att = random_attention(H, T, seed=3)
    a, b = AttentionHistory(1, H), AttentionHistory(1, H)
    a.reserve(T)
    b.reserve(T)
    for p0 in range(0, T, 5):
        p1 = min(T, p0 + 5)
        a.write_block(0, torch.from_numpy(att[:, p0:p1, :p1]), p0)
    for t in range(T):
        b.write_row(t, torch.from_numpy(att[None, :, t, :t + 1]))
    np.testing.assert_array_equal(a.buf, b.buf)


def test_float16_only_for_big_models():
    assert history_dtype(4, 8, 256) == np.float32  # the bundled model: 8 MB
    assert history_dtype(12, 12, 1024) == np.float16  # GPT-2 small: 302 MB in float32


# ---------------------------------------------------------------------- sessions
def test_float16_session_reads_within_1e3_of_float32(tiny_bundle):
    s = Session(tiny_bundle, "Once upon a time there was", GREEDY, attention_dtype=np.float16)
    s.generate(6)
    ref = reference(tiny_bundle, s.window_tokens)
    att = s.attention()
    assert att.dtype == np.float32 and not att.flags.writeable
    np.testing.assert_allclose(att, ref, atol=1e-3, rtol=0)
    np.testing.assert_array_equal(s.attention_head(1, 2), att[1, 2])
    np.testing.assert_array_equal(s.attention_layer(1), att[1])
    np.testing.assert_array_equal(s.attention_row(), att[:, :, -1])
    np.testing.assert_array_equal(s.attention_row(3), att[:, :, 3, :4])
    for r in s.history:
        np.testing.assert_array_equal(r.attention_row, att[:, :, r.window_pos, :r.window_pos + 1])
    with pytest.raises(ValueError, match="outside the window"):
        s.attention_row(s.window_len)


def test_buffers_grow_with_the_text_not_the_block(tiny_bundle_factory):
    bundle = tiny_bundle_factory(block_size=4096)
    cfg = bundle.config
    s = Session(bundle, [5, 6, 7, 8, 9], GREEDY, attention_dtype=np.float32)
    mem = s.memory_bytes()
    rows = 64  # the first capacity: nothing like 4096 positions up front
    assert mem["attention"] == cfg.n_layer * cfg.n_head * rows * (rows + 1) // 2 * 4
    assert mem["kv_cache"] == 2 * cfg.n_layer * rows * cfg.n_embd * 4
    assert mem["residuals"] == (cfg.n_layer + 1) * rows * cfg.n_embd * 4
    assert mem["hidden"] == rows * cfg.n_embd * 4
    s.generate(64)  # 69 tokens: one doubling
    assert s.memory_bytes()["attention"] == cfg.n_layer * cfg.n_head * packed_size(128) * 4
    np.testing.assert_allclose(s.attention(), reference(bundle, s.tokens), atol=1e-5)
    s.undo(40)  # redo stays free: the rows past the cursor are kept
    before = s.memory_bytes()
    s.redo(40)
    assert s.memory_bytes() == before
    np.testing.assert_allclose(s.attention(), reference(bundle, s.tokens), atol=1e-5)


def _shape_window(n_layer, n_head, n_embd, tokens=1024):
    """A model of that shape on the meta device (no weights in memory) and its window's
    buffers with room for ``tokens`` positions, as after a prefill there."""
    cfg = GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=50257,
                    block_size=1024)
    with torch.device("meta"):
        model = GPT(cfg)
    w = ContextWindow(model)
    w.reserve(tokens - 4, min(cfg.block_size, tokens + 12))
    w.reserve(tokens)  # and a few steps
    return w


@pytest.mark.parametrize("shape, limit", [((24, 16, 1024), 750e6), ((48, 25, 1600), 2.5e9)])
def test_gpt2_medium_and_xl_windows_fit(shape, limit):
    L, H, C = shape
    w = _shape_window(L, H, C)
    mem = w.nbytes()
    assert w.capacity == 1024 and w.attn.dtype == np.float16
    assert mem["attention"] == L * H * 1024 * 1025 // 2 * 2  # half the square, 2 bytes each
    assert mem["kv_cache"] == 2 * L * 1024 * C * 4 and mem["residuals"] == (L + 1) * 1024 * C * 4
    square = L * H * 1024 * 1024 * 4 + mem["kv_cache"] + mem["residuals"] + mem["hidden"]
    assert sum(mem.values()) <= limit < square  # the float32 square did not fit


def test_a_context_beyond_memory_is_refused_with_its_size(tiny_bundle_factory, monkeypatch):
    bundle = tiny_bundle_factory(block_size=4096)
    s = Session(bundle, [5, 6, 7], GREEDY)
    s.generate(61)  # 64 tokens: the first capacity is full
    state = (s.tokens, s.attention(copy=True))
    monkeypatch.setattr(window_mod, "available_bytes", lambda: 100_000)
    with pytest.raises(NotEnoughMemory, match=r"a window of 3000 tokens needs [\d.]+ MB"):
        Session(bundle, [3 + i % 300 for i in range(3000)], GREEDY)
    s.undo(1)
    assert s.redo(1) == 1  # free: no memory asked
    with pytest.raises(NotEnoughMemory, match="only 100.0 kB is available"):
        s.step()  # the 65th token needs the buffers to double
    assert s.tokens == state[0] and s.history[-1].token_id == state[0][-1]  # nothing lost
    np.testing.assert_array_equal(s.attention(), state[1])
    with pytest.raises(ValueError, match="needs"):
        s.set_prompt(list(range(3, 203)))
    assert s.tokens == state[0]


def test_format_bytes():
    assert [format_bytes(n) for n in (12, 1500, 2.5e6, 7.25e9)] == \
        ["12 B", "1.5 kB", "2.5 MB", "7.2 GB"]


# ---------------------------------------------------------------------- long windows
def test_long_windows_run_a_block_of_queries_at_a_time(tiny_bundle_factory, monkeypatch):
    bundle = tiny_bundle_factory(block_size=128)
    # 2 layers x 4 heads x 100 keys x 4 bytes = 3.2 kB per query: 16 queries a forward
    monkeypatch.setattr(window_mod, "FORWARD_BUDGET", 16 * 3200)
    assert window_mod.chunk_rows(2, 4, 100, 16 * 3200) == 16
    gen = torch.Generator().manual_seed(1)
    ids = [int(i) for i in torch.randint(0, 300, (100,), generator=gen)]
    s = Session(bundle, ids, GREEDY)
    np.testing.assert_allclose(s.attention(), reference(bundle, ids), atol=1e-5)
    with torch.inference_mode():
        out = bundle.model(torch.tensor([ids]), return_resid=True)
    hidden = s.final_hidden()
    np.testing.assert_allclose(hidden.numpy(), out.hidden[0].numpy(), atol=1e-5)
    keep = torch.ones(2, 4)
    keep[1, 2] = 0  # re-runs layer 1 only, in blocks of queries too
    s.set_ablation(Ablation(keep=keep))
    np.testing.assert_allclose(s.attention(), reference(bundle, ids, Ablation(keep=keep)),
                               atol=1e-5)


# ---------------------------------------------------------------------- steps
def test_steps_keep_no_attention_and_rows_come_back(tiny_bundle_factory):
    bundle = tiny_bundle_factory(block_size=16)
    s = Session(bundle, [5, 6, 7], GREEDY)
    results = s.generate(40)  # the window slides several times
    for r in results:  # nothing of the size of the model's attention is kept with a step
        held = list(vars(r).values())
        assert sum(a.nbytes for a in held if isinstance(a, np.ndarray)) <= 12 * s.top_k_report
        tokens = s.tokens[:r.index + 1]
        ref = reference(bundle, tokens[r.window_start:])[:, :, -1]
        np.testing.assert_allclose(r.attention_row, ref, atol=1e-5)  # read or recomputed
    # Under another ablation, old steps still show the rows they were computed with.
    keep = torch.ones(2, 4)
    keep[0, 1] = 0
    last = results[-1]
    row = last.attention_row
    s.set_ablation(Ablation(keep=keep))
    np.testing.assert_allclose(last.attention_row, row, atol=1e-6)  # recomputed, unablated
    assert not np.allclose(s.attention_row(), row, atol=1e-3)  # what the window holds now
    # A branch: the undone steps are discarded, yet their rows come back from their path.
    s.undo(3)
    gone = s.redo_stack
    s.step(force=9)
    for r in gone:
        ref = reference(bundle, path_tokens(r.source.path, r.index, r.window_start))
        np.testing.assert_allclose(r.attention_row, ref[:, :, -1], atol=1e-5)


def test_token_paths():
    root = prompt_path([1, 2, 3])
    p = (((root, 7), 8), 9)
    assert path_tokens(p, 5, 0) == [1, 2, 3, 7, 8, 9]
    assert path_tokens(p, 5, 2) == [3, 7, 8, 9]
    assert path_tokens(p, 5, 4) == [8, 9]


def test_a_long_run_grows_by_a_few_hundred_bytes_a_step(tiny_bundle_factory):
    bundle = tiny_bundle_factory(block_size=32)
    s = Session(bundle, [5, 6, 7], SamplingSettings(seed=3), top_k_report=20)
    s.generate(100)  # past the first windows: the buffers are at full size
    tracemalloc.start()
    try:
        s.generate(10)
        base = tracemalloc.get_traced_memory()[0]
        s.generate(400)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown / 400 < 2500  # bytes a step (it was 24 KB at the bundled model's size)
    assert window_start_for(s.n_tokens, 32) > 0 and sys.getsizeof(s.history[-1]) < 200


def test_heap_setting_is_idempotent():
    from gptviz.engine.memory import limit_heap_fragmentation

    first = limit_heap_fragmentation()
    assert isinstance(first, bool) and limit_heap_fragmentation() == first
