"""Property tests (hypothesis): the tokenizer's round trip, the window arithmetic, the sampling
filters and the incremental thumbnail mosaic, each against its written-out definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gptviz.engine import SamplingSettings, Session, window_start_for
from gptviz.engine.sampling import filter_probs

# Few examples each: the suite stays fast, and every run draws new ones.
FAST = settings(max_examples=60, deadline=None)


# ---------------------------------------------------------------------- tokenizer
# Any text: every Unicode category but surrogates (a str that holds one cannot be UTF-8),
# with newlines, tabs, spaces and characters the tiny tokenizer never saw in training.
TEXT = st.text(alphabet=st.one_of(st.characters(exclude_categories=("Cs",)),
                                  st.sampled_from(" \n\t\r\x00 \u200b\ufeffé😀")),
               max_size=60)


@FAST
@given(text=TEXT)
def test_byte_level_tokenizer_round_trips_any_text(tiny_tokenizer, text):
    ids = tiny_tokenizer.encode(text)
    assert tiny_tokenizer.decode(ids) == text
    # The tokens are a split of the text's UTF-8 bytes.
    assert b"".join(tiny_tokenizer.token_bytes(i) for i in ids) == text.encode("utf-8")
    assert all(0 <= i < tiny_tokenizer.vocab_size for i in ids)


# ---------------------------------------------------------------------- window
def window_start_reference(n: int, B: int) -> int:
    """0 while the text fits, else ceil((n - B) / S) * S with the stride S = B // 2 (>= 1)."""
    if n <= B:
        return 0
    S = max(1, B // 2)
    return math.ceil((n - B) / S) * S


@FAST
@given(n=st.integers(0, 5000), B=st.integers(1, 1100))
def test_window_start_follows_its_definition(n, B):
    start = window_start_for(n, B)
    S = max(1, B // 2)
    assert start == window_start_reference(n, B)
    assert start % S == 0
    assert n - start <= B                       # the window fits the model
    if n >= 1:
        assert start <= n - 1                   # ... and holds the newest token
    if n > B:
        assert n - start >= B - S + 1           # at least half a context of history
    nxt = window_start_for(n + 1, B)
    assert nxt >= start                         # monotone in n
    # it moves only when the next token would not fit, and then by one stride
    assert nxt == (start if n + 1 - start <= B else start + S)


# ---------------------------------------------------------------------- sampling filters
LOGITS = st.lists(st.one_of(st.integers(-8, 8).map(float),  # integers: ties are common
                            st.floats(-10, 10, allow_nan=False, width=32)),
                  min_size=1, max_size=40)
# Temperatures >= 0.25 keep every kept probability above float32's smallest number, so that
# "kept" can be read as "probability > 0".
TEMPERATURE = st.floats(0.25, 4.0, allow_nan=False)


def softmax64(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def top_p_count(p_sorted: np.ndarray, top_p: float) -> int:
    """Size of the smallest prefix of the descending probabilities whose mass reaches top_p."""
    mass = np.cumsum(p_sorted)
    return int(np.argmax(mass >= top_p)) + 1 if mass[-1] >= top_p else len(p_sorted)


def check_distribution(out: torch.Tensor, V: int) -> np.ndarray:
    p = out.numpy().astype(np.float64)
    assert out.dtype == torch.float32 and p.shape == (V,)
    assert (p >= 0).all() and abs(p.sum() - 1.0) < 1e-5
    return p


@FAST
@given(logits=LOGITS, top_k=st.integers(1, 10), top_p=st.floats(0.05, 1.0),
       temperature=TEMPERATURE, seed=st.integers(0, 2**63 - 1))
def test_greedy_is_the_first_argmax(logits, top_k, top_p, temperature, seed):
    x = torch.tensor(logits)
    s = SamplingSettings(greedy=True, temperature=temperature, top_k=top_k, top_p=top_p,
                         seed=seed)  # the other fields are ignored
    p = check_distribution(filter_probs(x, s), len(logits))
    expect = np.zeros(len(logits))
    expect[int(np.argmax(np.asarray(logits)))] = 1.0  # numpy: the first maximum
    np.testing.assert_array_equal(p, expect)


@FAST
@given(logits=LOGITS, temperature=TEMPERATURE)
def test_temperature_divides_the_logits(logits, temperature):
    p = check_distribution(filter_probs(torch.tensor(logits), SamplingSettings(
        temperature=temperature)), len(logits))
    z = np.asarray(logits, dtype=np.float32).astype(np.float64) / temperature
    np.testing.assert_allclose(p, softmax64(z), rtol=1e-4, atol=1e-7)


@FAST
@given(logits=LOGITS, top_k=st.integers(1, 45), temperature=TEMPERATURE)
def test_top_k_keeps_exactly_the_k_largest(logits, top_k, temperature):
    V = len(logits)
    p = check_distribution(filter_probs(torch.tensor(logits), SamplingSettings(
        temperature=temperature, top_k=top_k)), V)
    z = np.asarray(logits, dtype=np.float32).astype(np.float64) / temperature
    kept = p > 0
    assert kept.sum() == min(top_k, V)  # exactly k, ties at the boundary included
    if not kept.all():
        assert z[kept].min() >= z[~kept].max()  # no dropped logit beats a kept one
    np.testing.assert_allclose(p[kept], softmax64(z[kept]), rtol=1e-4, atol=1e-7)


@FAST
@given(logits=LOGITS, top_p=st.floats(0.01, 1.0), temperature=TEMPERATURE,
       top_k=st.sampled_from([0, 0, 1, 3, 8]))
def test_top_p_keeps_the_smallest_prefix_that_reaches_p(logits, top_p, temperature, top_k):
    """Top-p after top-k: from the top-k distribution, the smallest set of most probable
    tokens whose mass reaches ``top_p``, renormalised."""
    V = len(logits)
    p = check_distribution(filter_probs(torch.tensor(logits), SamplingSettings(
        temperature=temperature, top_k=top_k, top_p=top_p)), V)
    z = np.asarray(logits, dtype=np.float32).astype(np.float64) / temperature
    order = np.argsort(-z, kind="stable")
    after_k = np.zeros(V)
    k = top_k if 0 < top_k < V else V
    if top_k and top_k < V:
        assume(z[order[k - 1]] != z[order[k]])  # a tie at the top-k boundary: any k may stay
    after_k[order[:k]] = softmax64(z[order[:k]])
    p_sorted = after_k[order]
    m = top_p_count(p_sorted, top_p) if top_p < 1.0 else k
    mass = np.cumsum(p_sorted)
    # float32 sums differ from these in the last bits: skip p within rounding of a boundary
    assume(top_p >= 1.0 or np.abs(mass[:k] - top_p).min() > 1e-5)
    # nearly tied at the cut (logits 1e-10 apart: the same float32 probability): either may stay
    assume(m >= k or p_sorted[m - 1] - p_sorted[m] > 1e-6 * p_sorted[m - 1])
    kept = p > 0
    assert kept.sum() == m
    if m < V:
        assert after_k[kept].min() >= after_k[~kept].max()  # the most probable ones
    expect = np.where(kept, after_k, 0.0)
    np.testing.assert_allclose(p, expect / expect.sum(), rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------- thumbnail mosaic
def mosaic_reference(att: np.ndarray, cell: int, gap: int) -> np.ndarray:
    """The L x H thumbnail image of a window's attention ``att`` ``[L, H, T, T]``, written
    out: cells of ``cell`` pixels, ``gap`` NaN pixels after each; a text that fits is drawn
    at ``cell // T`` pixels per token, a longer one max-pooled over blocks of
    ``ceil(T / cell)`` tokens; NaN where the key comes after the query. What was drawn
    (``e`` x ``e`` pixels) is then stretched over the whole cell: cell pixel ``p`` shows drawn
    pixel ``floor(p * e / cell)``."""
    L, H, n_tok, _ = att.shape
    pitch = cell + gap
    out = np.full((L * pitch, H * pitch), np.nan, np.float32)
    for layer in range(L):
        for head in range(H):
            a = att[layer, head]
            if n_tok <= cell:
                u = cell // n_tok
                img = np.kron(a, np.ones((u, u))).astype(np.float32)
                y, x = np.indices(img.shape)
                img[x // u > y // u] = np.nan
            else:
                b = math.ceil(n_tok / cell)
                n = math.ceil(n_tok / b)
                img = np.full((n, n), np.nan, np.float32)
                for r in range(n):
                    for c in range(r + 1):
                        img[r, c] = a[r * b:(r + 1) * b, c * b:(c + 1) * b].max()
            src = np.arange(cell) * img.shape[0] // cell
            img = img[src][:, src]
            out[layer * pitch:layer * pitch + cell, head * pitch:head * pitch + cell] = img
    return out


OPS = st.lists(st.tuples(st.sampled_from(["step", "step", "step", "undo", "redo", "goto"]),
                         st.integers(1, 5), st.booleans()),
               min_size=1, max_size=14)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # a stateless factory
@given(ops=OPS, prompt=st.lists(st.integers(0, 255), min_size=1, max_size=12),
       cell=st.sampled_from([3, 5, 8, 16, 64]), gap=st.integers(0, 3), seed=st.integers(0, 99),
       sqrt_scale=st.booleans())
def test_incremental_mosaic_equals_a_rebuild(tiny_bundle_factory, ops, prompt, cell, gap, seed,
                                             sqrt_scale):
    """Steps (incremental rows), undo, redo and goto (rebuilds), and window slides (block
    16), with a snapshot taken after some of them, as the worker does. The snapshot's grid
    is the mosaic, or its square root on the square-root colour scale."""
    pytest.importorskip("gptviz_app")
    from gptviz_app.runtime.snapshot import ViewSpec
    from gptviz_app.runtime.snapshots import SnapshotBuilder

    bundle = bundle_cache(tiny_bundle_factory)
    s = Session(bundle, prompt, SamplingSettings(seed=seed), top_k_report=5)
    builder = SnapshotBuilder(s, cell=cell, gap=gap)
    view = ViewSpec(grid_mode="map", sqrt_scale=sqrt_scale)

    def check() -> None:
        snap = builder.build(0, "test", view)
        assert s.window_start == window_start_for(s.n_tokens, s.block_size)
        expect = mosaic_reference(s.attention(), cell, gap)
        if sqrt_scale:
            expect = np.sqrt(expect)
        np.testing.assert_array_equal(snap.grid, expect)
        fresh = SnapshotBuilder(s, cell=cell, gap=gap).build(0, "fresh", view)
        np.testing.assert_array_equal(snap.grid, fresh.grid)

    check()
    for op, n, snapshot in ops:
        if op == "step":
            for _ in range(n):
                builder.note_step(s.step())
                if snapshot:
                    check()
        elif op == "undo":
            s.undo(n)
            builder.note_jump()
        elif op == "redo":
            s.redo(n)
            builder.note_jump()
        else:
            s.goto(min(n, s.n_generated + len(s.redo_stack)))
            builder.note_jump()
        if snapshot:
            check()
    check()


_BUNDLES: dict[int, object] = {}


def bundle_cache(factory):
    """One block-16 tiny model for every example (building it is most of an example's time;
    a session never changes its weights)."""
    if not _BUNDLES:
        _BUNDLES[0] = factory(block_size=16, n_layer=2, n_head=3, n_embd=24)
    return _BUNDLES[0]
