"""The snapshot builder and the thumbnail mosaic (numpy only, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from gptviz_app.runtime.snapshot import ViewSpec
from gptviz_app.runtime.snapshots import GridMosaic, SnapshotBuilder, masked_map


def test_masked_map_hides_the_future():
    a = np.tril(np.ones((5, 5), np.float32))
    m = masked_map(a)
    assert m.dtype == np.float32 and m.flags.c_contiguous
    assert np.isnan(m[np.triu_indices(5, 1)]).all()
    assert (m[np.tril_indices(5)] == 1).all()


def _random_attention(L, H, T, rng):
    a = rng.random((L, H, T, T)).astype(np.float32)
    a = np.tril(a)
    return a / a.sum(-1, keepdims=True)


@pytest.mark.parametrize("cell", [8, 16])
def test_incremental_mosaic_equals_a_rebuild(cell):
    """Adding rows one at a time (crossing every change of scale) gives the same image as
    drawing the whole map at once."""
    rng = np.random.default_rng(0)
    L, H, T_max = 2, 3, 5 * cell + 3
    full = _random_attention(L, H, T_max, rng)
    inc = GridMosaic(L, H, cell=cell, gap=2)
    inc.rebuild_maps(full[:, :, :3, :3])
    rebuilds = 0
    for T in range(4, T_max + 1):
        if not inc.add_row(full[:, :, T - 1, :T]):
            inc.rebuild_maps(full[:, :, :T, :T])
            rebuilds += 1
        ref = GridMosaic(L, H, cell=cell, gap=2)
        ref.rebuild_maps(full[:, :, :T, :T])
        np.testing.assert_array_equal(inc.data, ref.data)
    assert rebuilds < T_max // 2  # most steps were incremental


def test_map_mode_pools_with_max_and_masks_above_the_diagonal():
    L, H, cell = 1, 1, 4
    T = 8  # pooled over 2x2 blocks
    a = np.tril(np.arange(T * T, dtype=np.float32).reshape(T, T))[None, None]
    g = GridMosaic(L, H, cell=cell, gap=1)
    g.rebuild_maps(a)
    c = g.cells[0, 0]
    assert c[1, 0] == a[0, 0, 2:4, 0:2].max()
    assert np.isnan(c[0, 1]) and not np.isnan(c[1, 1])


def test_row_mode_wraps_the_query_row_like_text():
    L, H, cell = 1, 2, 4
    S = 10  # 3 lines of 4 keys
    rows = np.arange(L * H * S, dtype=np.float32).reshape(L, H, S) / 100
    g = GridMosaic(L, H, cell=cell, gap=1)
    g.draw_rows(rows)
    c = g.cells[0, 1]
    line_h = cell // 3
    assert c[0, 0] == rows[0, 1, 0]
    assert c[line_h, 0] == rows[0, 1, 4]
    assert c[2 * line_h, 1] == rows[0, 1, 9]
    assert np.isnan(c[2 * line_h, 2])  # past the last key


def test_builder_follows_the_session(tiny_bundle):
    from gptviz.engine.session import Session

    s = Session(tiny_bundle, "Once upon a time")
    b = SnapshotBuilder(s, cell=16, gap=2)
    snap = b.build(1, "init", ViewSpec())
    T0 = snap.T
    assert snap.attn.shape == (T0, T0) and snap.candidates.kind == "next"
    for _ in range(3):
        b.note_step(s.step())
    snap = b.build(2, "step", ViewSpec(layer=1, head=2))
    assert snap.T == T0 + 3 and snap.n_generated == 3
    np.testing.assert_array_equal(np.nan_to_num(snap.attn), s.attention_head(1, 2))
    assert snap.candidates.kind == "last"
    assert snap.candidates.ids[snap.candidates.chosen] == s.tokens[-1]
    assert not np.isnan(snap.chosen_probs[-3:]).any() and np.isnan(snap.chosen_probs[0])
    avg = b.build(3, "view", ViewSpec(layer=1, average=True))
    np.testing.assert_allclose(np.nan_to_num(avg.attn), s.attention()[1].mean(0), atol=1e-7)
    q = b.build(4, "view", ViewSpec(query=2, grid_mode="row"))
    assert q.query == 2 and q.grid_mode == "row"


def test_grid_cell_fitting_and_gaps():
    """The largest thumbnail whose mosaic (cells and the gaps between them) fits, within
    8..64 pixels; the gap is about a twentieth of a thumbnail, at least a pixel."""
    from gptviz_app.runtime.snapshots import grid_cell_fitting, grid_gap

    for cell in range(8, 65):
        g = grid_gap(cell)
        assert 1 <= g <= 3 and (g == 3) == (cell >= 40)
    for w, h, L, H in ((400, 400, 12, 12), (805, 900, 12, 12), (300, 1000, 2, 8),
                       (2000, 2000, 4, 4), (40, 40, 12, 12), (1000, 120, 4, 8)):
        cell = grid_cell_fitting(w, h, L, H)
        assert 8 <= cell <= 64
        fits = [c for c in range(8, 65)
                if H * (c + grid_gap(c)) - grid_gap(c) <= w
                and L * (c + grid_gap(c)) - grid_gap(c) <= h]
        assert cell == (max(fits) if fits else 8)


@pytest.mark.parametrize("mode", ["map", "row"])
def test_the_mosaic_is_drawn_at_the_size_the_view_asks_for(tiny_bundle, mode):
    """A build naming a thumbnail size gets the mosaic at that size and gap (redrawn whole,
    the same image as a builder made for that size); no size keeps the builder's own."""
    from gptviz.engine.session import Session
    from gptviz_app.runtime.snapshots import grid_gap

    s = Session(tiny_bundle, "Once upon a time there was a little robot")
    b = SnapshotBuilder(s, cell=16, gap=2)
    L, H = tiny_bundle.config.n_layer, tiny_bundle.config.n_head
    assert b.build(1, "v", ViewSpec(grid_mode=mode)).grid_cell == 16
    for cell in (9, 23, 64, 200, 2):
        snap = b.build(2, "v", ViewSpec(grid_mode=mode), grid_cell=cell)
        want = min(64, max(8, cell))
        assert (snap.grid_cell, snap.grid_gap) == (want, grid_gap(want))
        p = want + grid_gap(want)
        assert snap.grid.shape == (L * p, H * p)
        ref = SnapshotBuilder(s, cell=want, gap=grid_gap(want)).build(0, "ref",
                                                                        ViewSpec(grid_mode=mode))
        np.testing.assert_array_equal(snap.grid, ref.grid)
        b.note_step(s.step())  # and it goes on incrementally at that size
        snap = b.build(3, "step", ViewSpec(grid_mode=mode), grid_cell=cell)
        ref = SnapshotBuilder(s, cell=want, gap=grid_gap(want)).build(0, "ref",
                                                                        ViewSpec(grid_mode=mode))
        np.testing.assert_array_equal(snap.grid, ref.grid)
    assert b.build(4, "v", ViewSpec(grid_mode=mode)).grid_cell == 8  # None: as it is
