"""Reading a session's attention a layer (or a head) at a time: the same numbers as the whole
``(L, H, T, T)`` array, for the engine's reads and for every analysis that takes them.

The analyses read through :class:`~gptviz.engine.attention_store.PackedAttention` now; each
result is compared bit for bit with the same function on the whole array (the path it took
before), and with a computation of its own here (plain loops over the definitions).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gptviz.analysis.heads import SCORE_NAMES, head_scores
from gptviz.analysis.maps import head_map
from gptviz.analysis.rollout import attention_rollout, rollout_layers, rollout_row
from gptviz.analysis.sources import forward_attention, is_source, layer_reader
from gptviz.engine.attention_store import AttentionHistory, PackedAttention
from gptviz.engine.session import Session


def _ids(n: int, vocab: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n,), generator=g).tolist()


@pytest.fixture(params=[np.float32, np.float16], ids=["float32", "float16"])
def session(request, tiny_bundle):
    # few distinct tokens: the induction and duplicate masks are dense (the BLAS path)
    return Session(tiny_bundle, _ids(40, 5, 1), attention_dtype=request.param)


# ---------------------------------------------------------------------- engine reads
def test_packed_attention_reads_what_the_whole_array_holds(session):
    full = session.attention()
    p = session.packed_attention()
    L, H, T, _ = full.shape
    assert p.shape == full.shape and is_source(p) and not is_source(full)
    for layer in range(L):
        assert np.array_equal(p.layer(layer), full[layer])
        for head in range(H):
            assert np.array_equal(p.head(layer, head), full[layer, head])
    assert np.array_equal(p.layer(-1), full[-1])
    assert all(np.array_equal(a, b) for a, b in zip(p.layers(), full, strict=True))
    assert np.array_equal(p.full(), full)
    shape, read = layer_reader(p)
    assert shape == full.shape and np.array_equal(read(1), full[1])
    for bad in (lambda: p.layer(L), lambda: p.head(0, H), lambda: p.head(-L - 1, 0)):
        with pytest.raises(ValueError, match="no (layer|head)"):
            bad()


def test_a_packed_copy_keeps_its_moment(tiny_bundle):
    B = tiny_bundle.config.block_size
    s = Session(tiny_bundle, _ids(B, 50, 2), attention_dtype=np.float16)  # a full window
    before = s.attention().copy()
    kept = s.packed_attention(copy=True)
    live = s.packed_attention()
    # never a view of the window's buffer, even when the rows fill it
    assert not np.shares_memory(kept.history.buf, live.history.buf)
    assert kept.nbytes == live.nbytes == before[..., 0, 0].size * (B * (B + 1) // 2) * 2
    s.set_prompt(_ids(B, 50, 3))
    assert np.array_equal(kept.full(), before)
    assert not np.array_equal(live.full(), before)
    assert np.array_equal(live.full(), s.attention())


# ---------------------------------------------------------------------- head scores
def _scores_by_hand(att: np.ndarray, ids: list[int]) -> dict[str, np.ndarray]:
    """The definitions of docs/analysis.md as loops over one head's rows."""
    L, H, T, _ = att.shape
    out = {k: np.full((L, H), np.nan) for k in SCORE_NAMES}
    for layer in range(L):
        for head in range(H):
            a = att[layer, head].astype(np.float64)
            out["prev_token"][layer, head] = np.mean([a[i, i - 1] for i in range(1, T)])
            out["first_token"][layer, head] = np.mean([a[i, 0] for i in range(1, T)])
            ind, dup = [], []
            for i in range(T):
                targets = [k for k in range(1, i - 1) if ids[k - 1] == ids[i]]
                if targets:
                    ind.append(sum(a[i, k] for k in targets))
                copies = [k for k in range(i) if ids[k] == ids[i]]
                if copies:
                    dup.append(sum(a[i, k] for k in copies))
            out["induction"][layer, head] = np.mean(ind) if ind else np.nan
            out["duplicate_token"][layer, head] = np.mean(dup) if dup else np.nan
            ent = [-sum(p * math.log2(p) for p in a[i, :i + 1] if p > 0) for i in range(1, T)]
            out["entropy"][layer, head] = np.mean(ent)
    return out


@pytest.mark.parametrize("convention", ["gptviz", "transformer_lens"])
def test_head_scores_read_a_layer_at_a_time(session, convention):
    ids = session.window_tokens
    full = session.attention()
    by_layer = head_scores(session.packed_attention(), ids, convention=convention)
    whole = head_scores(full, ids, convention=convention)
    for name in SCORE_NAMES:
        assert np.array_equal(getattr(by_layer, name), getattr(whole, name), equal_nan=True)
    assert (by_layer.n_tokens, by_layer.induction_queries, by_layer.duplicate_queries) == (
        whole.n_tokens, whole.induction_queries, whole.duplicate_queries)
    if convention == "gptviz":
        want = _scores_by_hand(full, ids)
        for name in SCORE_NAMES:
            np.testing.assert_allclose(getattr(by_layer, name), want[name], rtol=1e-5,
                                       atol=1e-6)


# ---------------------------------------------------------------------- rollout
def _rollout_by_hand(att: np.ndarray, keep: np.ndarray | None, residual: bool) -> np.ndarray:
    L, H, T, _ = att.shape
    w = np.ones((L, H)) if keep is None else keep
    R = np.eye(T)
    for layer in range(L):
        if w[layer].sum() == 0:
            A = np.eye(T)
        else:
            A = sum(w[layer, h] * att[layer, h].astype(np.float64) for h in range(H))
            A = A / w[layer].sum()
        if residual:
            A = 0.5 * A + 0.5 * np.eye(T)
            A = A / A.sum(axis=1, keepdims=True)
        R = A @ R
    return R


@pytest.mark.parametrize("residual", [True, False])
def test_rollout_reads_a_layer_at_a_time(session, residual):
    full = session.attention()
    src = session.packed_attention()
    L, H = full.shape[:2]
    keep = np.ones((L, H))
    keep[0, 1] = 0
    keep[1] = 0  # a layer with no head left: the identity
    for mask in (None, keep):
        roll = attention_rollout(src, residual, mask)
        assert np.array_equal(roll, attention_rollout(full, residual, mask))
        np.testing.assert_allclose(roll, _rollout_by_hand(full, mask, residual), atol=1e-5)
        for q in (0, 11, -1):
            row = rollout_row(src, q, residual, mask)
            assert np.array_equal(row, rollout_row(full, q, residual, mask))
            np.testing.assert_allclose(row, roll[q], atol=1e-6)
        for n in (1, L):
            assert np.array_equal(attention_rollout(src, residual, mask, n_layers=n),
                                  attention_rollout(full, residual, mask, n_layers=n))
    assert np.array_equal(rollout_layers(full, residual)[0],
                          rollout_layers(full[:1], residual)[0])
    with pytest.raises(ValueError, match="head_mask"):
        rollout_row(src, 0, head_mask=np.ones((L + 1, H)))
    with pytest.raises(ValueError, match="n_layers"):
        attention_rollout(src, n_layers=L + 1)


# ---------------------------------------------------------------------- forwards, maps
def test_forward_attention_is_the_forward_packed(tiny_bundle):
    from gptviz.analysis import attention_array

    model = tiny_bundle.model
    ids = _ids(30, 50, 4)
    packed = forward_attention(model, ids)
    assert isinstance(packed, PackedAttention) and packed.shape == (2, 4, 30, 30)
    assert np.array_equal(packed.full(), attention_array(model, ids))
    with torch.no_grad():  # the model's own forward, its maps stacked here
        out = model(torch.tensor([ids]), return_attn=True)
    for layer, att in enumerate(out.attentions):
        assert np.array_equal(packed.layer(layer), att[0].numpy())
    full = packed.full()
    assert np.array_equal(head_map(packed, 1, 2, False), head_map(full, 1, 2, False))
    assert np.array_equal(head_map(packed, 1, 2, True), head_map(full, 1, 2, True))


def test_trace_attention_is_the_forward_stacked(session):
    arrays = session.trace_arrays()
    ids = session.window_tokens
    with torch.no_grad():
        out = session.model(torch.tensor([ids]), return_attn=True)
    want = torch.stack([a[0] for a in out.attentions]).numpy()  # (L, H, T, T)
    assert arrays["attention"].dtype == np.float32
    assert np.array_equal(arrays["attention"], want)


def test_compare_reads_its_sides_a_head_at_a_time(tiny_bundle):
    from gptviz.analysis.live_compare import CompareSettings
    from gptviz.analysis.runner import AnalysisRunner, AnalysisSpec
    from gptviz.model.gpt import Ablation

    s = Session(tiny_bundle, _ids(24, 50, 5), attention_dtype=np.float16)
    runner = AnalysisRunner()
    runner.command(s, "spec", spec=AnalysisSpec({"compare": CompareSettings("pinned")}))
    pinned_at = s.attention().copy()
    runner.command(s, "compare.pin")
    assert is_source(runner.analysis("compare").pinned["att"])
    s.generate(3)
    cv = runner.run(s, layer=1, head=3).get("compare")
    T = pinned_at.shape[-1]
    a = np.where(np.tri(T, dtype=bool), pinned_at[1, 3], np.nan)
    np.testing.assert_array_equal(cv.a, a)  # NaN where masked, the pinned numbers elsewhere
    cur = s.attention()
    np.testing.assert_array_equal(np.nan_to_num(cv.b), cur[1, 3])
    np.testing.assert_array_equal(np.nan_to_num(cv.diff), pinned_at[1, 3] - cur[1, 3, :T, :T])
    # clean model (a forward kept packed) against the ablated session
    keep = np.ones((2, 4), np.float32)
    keep[0, 1] = 0
    s.set_ablation(Ablation(keep=keep))
    runner.command(s, "spec", spec=AnalysisSpec({"compare": CompareSettings("ablation")}))
    cv = runner.run(s, layer=1, head=0, average=True).get("compare")
    with torch.no_grad():
        clean = s.model(torch.tensor([s.window_tokens]), return_attn=True).attentions[1][0]
    np.testing.assert_array_equal(np.nan_to_num(cv.a), clean.numpy().mean(axis=0))
    np.testing.assert_array_equal(np.nan_to_num(cv.b), s.attention()[1].mean(axis=0))


def test_steps_into_a_float16_history_store_the_float32_rows_rounded(tiny_bundle):
    """A step whose rows the history cannot take directly (float16 storage) computes them in
    a buffer of the model's dtype and stores them rounded: the float32 history's rows, in
    float16."""
    prompt = _ids(20, 50, 6)
    exact = Session(tiny_bundle, prompt, attention_dtype=np.float32)
    packed = Session(tiny_bundle, prompt, attention_dtype=np.float16)
    for _ in range(6):
        a, b = exact.step(force=7), packed.step(force=7)
        np.testing.assert_array_equal(b.attention_row,
                                      a.attention_row.astype(np.float16).astype(np.float32))
    want = exact.attention().astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(packed.attention(), want)


def _mosaic_by_hand(att: np.ndarray, cell: int, windows) -> tuple[tuple[str, int], np.ndarray]:
    """The thumbnails by their definition, cell by cell: ``f = cell // T`` pixels a token
    while the map fits, else the max over blocks of ``f = ceil(T / cell)`` tokens (padded with
    0); NaN where a token cell is masked (key after query, or outside a local layer's window)
    and on blocks whose every cell is masked."""
    L, H, T, _ = att.shape
    out = np.full((L, H, cell, cell), np.nan, np.float32)

    def masked(layer: int, q: int, k: int) -> bool:
        w = windows[layer]
        return k > q or q >= T or k >= T or (w is not None and k <= q - w)

    if cell >= T:
        f = cell // T
        for layer in range(L):
            for q in range(T):
                for k in range(T):
                    if not masked(layer, q, k):
                        out[layer, :, q * f:(q + 1) * f, k * f:(k + 1) * f] = \
                            att[layer, :, q, k, None, None]
        return ("up", f), out
    f = -(-T // cell)
    n = -(-T // f)
    for layer in range(L):
        for i in range(n):
            for j in range(n):
                block = [(q, k) for q in range(i * f, (i + 1) * f)
                         for k in range(j * f, (j + 1) * f)]
                if all(masked(layer, q, k) for q, k in block):
                    continue
                vals = [att[layer, :, q, k] if q < T and k < T else np.zeros(H, np.float32)
                        for q, k in block]
                out[layer, :, i, j] = np.max(vals, axis=0)
    return ("pool", f), out


@pytest.mark.parametrize("T", [5, 20, 64, 65, 130, 200])
def test_mosaic_cells_a_layer_at_a_time_are_the_thumbnails_by_definition(tiny_bundle, T):
    """:func:`map_cells` (one layer read at a time) and the head grid's mosaic rebuilt from
    the session's packed attention draw the thumbnails as defined (local windows included)."""
    from gptviz.analysis.maps import map_cells
    from gptviz_app.runtime.snapshots import GridMosaic

    rng = np.random.default_rng(T)
    L, H, cell = 3, 2, 32
    att = np.tril(rng.random((L, H, T, T), dtype=np.float32))
    att /= att.sum(-1, keepdims=True)
    windows = (None, 7, None)
    scale, want = _mosaic_by_hand(att, cell, windows)
    cells = np.full((L, H, cell, cell), np.nan, np.float32)
    hist = AttentionHistory(L, H, np.float32)
    hist.reserve(T)
    for layer in range(L):
        hist.write_block(layer, torch.from_numpy(att[layer]), 0)
    assert map_cells(PackedAttention(hist, T), cell, cells, windows) == scale
    np.testing.assert_array_equal(cells, want)
    mosaic = GridMosaic(L, H, cell=cell, gap=2, windows=windows)
    mosaic.rebuild_maps(PackedAttention(hist, T))
    assert mosaic.scale == scale
    np.testing.assert_array_equal(mosaic.cells, want)
