"""The main map's range: exact while a token has a device pixel or more; pooled (more tokens
than pixels), rounded up to steps of a few tokens so that it stays put for several steps with
at most ``MARGIN_PX`` blank pixels beyond the newest token. Checked on the rule itself and in
the app's window with 1,000-odd-token snapshots: the range per step, hover over the margin,
a zoom kept and a double click back to the rule's range, the image the independent pooling
of the weights placed in that range, and a step that repaints only what it changed (the map's
image on screen, painted in parts, equal to a fresh painting of all of it)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.gui.conftest import settle  # noqa: E402
from tests.gui.test_map_incremental import (  # noqa: E402
    _painted,
    _reference_pixels,
    padded,
    ref_pool,
)

# the main map's size in the bench's window (1280 x 800, GPT-2-small shape), device pixels
BENCH_MAP = (322.4, 403.7)


@pytest.mark.parametrize("size", [BENCH_MAP, (250.0, 250.0), (600.5, 480.0), (137.0, 512.0),
                                  (1000.0, 900.0), (333.3, 333.3)])
def test_the_range_rule_keeps_a_small_margin_and_the_block_size(size):
    from gptviz_app.views.attention_map import MARGIN_PX, snapped_range

    w, h = size
    last, changes, blocks = None, [], None
    unpooled_changes = []
    for T in range(1, 4001):
        kx, qy = snapped_range(T, w, h)
        if (w >= T) != (h >= T):  # pooled on one side only: exact
            assert (kx, qy) == (T, T)
            continue
        assert kx == qy >= T
        if w >= T and h >= T:  # a pixel or more a token: unpooled, with a small margin
            assert kx <= min(w, h)  # still a pixel or more a token
            for px in (w, h):
                assert (kx - T) * px / kx <= MARGIN_PX + 1e-9
            if max(w, h) > T * MARGIN_PX:  # a token wider than the margin: exact
                assert kx == T
            if last is not None and kx != last:
                unpooled_changes.append(T)
            last = kx
            continue
        for px in (w, h):
            assert (kx - T) * px / kx <= MARGIN_PX + 1e-9  # the blank margin, in pixels
            # the block size is the one that shows T: the range holds no more than its blocks
            assert math.ceil(kx / px - 1e-9) == math.ceil(T / px - 1e-9)
        f = (math.ceil(T / w - 1e-9), math.ceil(T / h - 1e-9))
        if last is not None and kx != last:
            changes.append((T, f != blocks))
        last, blocks = kx, f
    # pooled 3 or more tokens a pixel: the range stays for at least 3 steps between changes,
    # but next to where the blocks grow (a range that held all the blocks it could)
    gaps = [b - a for (a, grew_a), (b, grew_b) in zip(changes, changes[1:], strict=False)
            if a > 3 * max(size) and not grew_a and not grew_b]
    assert gaps and min(gaps) >= 3
    # unpooled, 2 or more tokens in the margin: the range stays for 2 steps or more (but
    # where the step itself grows by a token)
    dense = [b - a for a, b in zip(unpooled_changes, unpooled_changes[1:], strict=False)
             if a * MARGIN_PX >= 2 * max(size) and b < min(size) - 2 * MARGIN_PX]
    assert sum(g >= 2 for g in dense) >= 0.9 * len(dense)


def test_at_1024_tokens_in_the_bench_window_the_range_changes_once_in_eight_steps():
    from gptviz_app.views.attention_map import snapped_range

    ranges = [snapped_range(T, *BENCH_MAP) for T in range(993, 1025)]
    moved = [i for i in range(1, len(ranges)) if ranges[i] != ranges[i - 1]]
    assert len(moved) <= len(ranges) // 8 + 1
    assert np.diff(moved).min() >= 8


def _snap(base, T: int, rev, seed: int, query: int | None = None, n_words: int = 0):
    """A snapshot of ``T`` tokens made from the window's own (its view, its extras), with
    random causal weights; ``rev`` its ``attn_rev`` (the same: only tokens appended)."""
    rng = np.random.default_rng(seed)
    a = rng.random((T, T)).astype(np.float32) ** 4
    a[np.triu_indices(T, 1)] = np.nan
    tokens = [f"w{(i + n_words) % 97}" for i in range(T)]
    return dataclasses.replace(
        base, attn=a, tokens=tokens, ids=np.arange(n_words, n_words + T, dtype=np.int64),
        window_start=0, query=T - 1 if query is None else query, attn_rev=rev,
        tokens_rev=None, extra={})


def _grow(prev, seed: int):
    """``prev`` with one more token (its cells kept)."""
    T = prev.attn.shape[0] + 1
    s = _snap(prev, T, prev.attn_rev, seed)
    s.attn[:T - 1, :T - 1] = prev.attn
    return s


def _matches(view, snap, pooled: bool = True) -> None:
    """The range is the rule's; the image is the independent pooling of the weights in it
    (``pooled``; else the weights themselves), placed at the blocks' cells and painted as
    pyqtgraph paints it."""
    from PySide6.QtCore import QRectF

    from gptviz_app.views.attention_map import snapped_range

    mp = view.map
    T = snap.attn.shape[0]
    kx, qy = snapped_range(T, *mp.device_size())
    assert [list(r) for r in view.vb.viewRange()] == [[0.0, kx], [0.0, qy]]
    r0, r1, c0, c1, fy, fx = mp.pooling()
    assert (r0, r1, c0, c1) == (0, T, 0, T)
    assert (fy > 1 and fx > 1) if pooled else (fy, fx) == (1, 1)
    expected = padded(np.sqrt(ref_pool(snap.attn, fy, fx, signed=False)), mp)
    np.testing.assert_array_equal(mp.image.image, expected)
    ny, nx = expected.shape
    assert ny * fy >= qy and nx * fx >= kx  # NaN (transparent) blocks up to the range's edge
    assert mp.image.mapRectToParent(mp.image.boundingRect()) == QRectF(0, 0, nx * fx, ny * fy)
    assert np.array_equal(_painted(mp.image, expected.shape),
                          _reference_pixels(expected, mp.image.levels, mp.image.lut))
    assert mp.backdrop.rect().width() == T and mp.backdrop.rect().height() == T
    assert mp.box.rect().top() == snap.query and mp.box.rect().width() == snap.query + 1


@pytest.fixture
def long_map(qtbot, window):
    settle(qtbot, window)
    view = window.attention
    qtbot.waitUntil(lambda: view.vb.width() > 100)
    base = window.controller.snapshot
    snap = _snap(base, 1000, ("a", 1), seed=0)
    view.apply_snapshot(snap)
    w, h = view.map.device_size()
    assert 2 * max(w, h) < 1000  # pooled on both sides
    return window, view, snap


def test_a_long_map_keeps_its_range_for_several_steps_and_draws_every_step(qtbot, long_map):
    from gptviz_app.views.attention_map import MARGIN_PX

    window, view, snap = long_map
    _matches(view, snap)
    ranges = []
    for s in range(1, 25):
        snap = _grow(snap, seed=s)
        view.apply_snapshot(snap)
        _matches(view, snap)
        ranges.append(view.vb.viewRange()[0][1])
        w, h = view.map.device_size()
        T = snap.attn.shape[0]
        assert (ranges[-1] - T) * min(w, h) / ranges[-1] <= MARGIN_PX
    assert len(set(ranges)) <= len(ranges) // 3 + 1
    back = _snap(snap, snap.attn.shape[0] - 1, ("a", 2), seed=99)  # Back: a jump
    back.attn[...] = snap.attn[:-1, :-1]
    view.apply_snapshot(back)
    _matches(view, back)
    other = _snap(snap, 1010, ("b", 1), seed=7, n_words=5)  # a new prompt
    view.apply_snapshot(other)
    _matches(view, other)
    grown = _grow(other, seed=8)
    view.apply_snapshot(grown)
    _matches(view, grown)


def test_hover_beyond_the_newest_token_shows_nothing(qtbot, long_map):
    from PySide6.QtCore import QPointF

    window, view, snap = long_map
    while view.vb.viewRange()[0][1] == snap.attn.shape[0]:  # till the range has a margin
        snap = _grow(snap, seed=snap.attn.shape[0])
        view.apply_snapshot(snap)
    T = snap.attn.shape[0]
    inside = view.vb.mapViewToScene(QPointF(T - 0.5, T - 0.5))
    assert view.cell_at(inside) == (T - 1, T - 1)
    view._on_move(inside)
    assert f"query {T - 1} " in view.readout.text()
    for x, y in ((T + 0.2, T - 0.5), (T - 0.5, T + 0.2), (T + 0.2, T + 0.2)):
        p = view.vb.mapViewToScene(QPointF(x, y))
        assert view.vb.sceneBoundingRect().contains(p)  # in the map's range, past its cells
        assert view.cell_at(p) is None
        view._on_move(p)
        assert view.readout.text().strip() == ""


def test_a_zoom_is_kept_through_steps_and_a_double_click_returns_to_the_rule(qtbot, long_map):
    from PySide6.QtCore import QPointF, Qt

    from gptviz_app.views.attention_map import snapped_range

    window, view, snap = long_map
    view.vb.setRange(xRange=(100, 400), yRange=(200, 500), padding=0.0)
    view.vb.sigRangeChangedManually.emit([True, True])  # what a wheel or a drag emits
    for s in range(3):
        snap = _grow(snap, seed=50 + s)
        view.apply_snapshot(snap)
        assert [list(r) for r in view.vb.viewRange()] == [[100.0, 400.0], [200.0, 500.0]]
    at = view.glw.mapFromScene(view.vb.mapViewToScene(QPointF(250, 350)))
    port, left = view.glw.viewport(), Qt.MouseButton.LeftButton
    qtbot.mouseClick(port, left, pos=at)  # a double click: press, release, double, release
    qtbot.mouseDClick(port, left, pos=at)
    qtbot.mouseRelease(port, left, pos=at)
    T = snap.attn.shape[0]
    qtbot.waitUntil(lambda: view.vb.viewRange()[0][1] != 400.0)
    kx, qy = snapped_range(T, *view.map.device_size())
    assert [list(r) for r in view.vb.viewRange()] == [[0.0, kx], [0.0, qy]]
    snap = _grow(snap, seed=60)
    view.apply_snapshot(snap)
    _matches(view, snap)


def test_a_step_repaints_only_what_it_changed(qtbot, long_map):
    """A step whose range stays asks Qt for the image's new block row and column, the
    backdrop's new strips and the query's outline, not the whole map: the repainted region
    is a small part of the map. What the screen then shows (the window's backing store,
    painted in parts) is what a repaint of the whole map puts there, pixel for pixel."""
    from PySide6.QtGui import QRegion

    from tests.gui.chip_pictures import PaintSpy, flush, on_screen

    window, view, snap = long_map
    port = view.glw.viewport()
    flush()
    spy = PaintSpy(port)
    regions = spy.regions
    vb = view.glw.mapFromScene(view.vb.sceneBoundingRect()).boundingRect()
    small = 0
    try:
        for s in range(1, 13):
            before = view.vb.viewRange()
            snap = _grow(snap, seed=100 + s)
            regions.clear()
            view.apply_snapshot(snap)
            flush()
            if view.vb.viewRange() != before:
                continue  # the range moved: all of it again
            assert regions
            area = sum(rect.width() * rect.height() for r in regions
                       for rect in r.intersected(QRegion(vb)))
            assert area < 0.25 * vb.width() * vb.height(), (s, [list(r) for r in regions])
            small += 1
    finally:
        spy.stop()
    assert small >= 6
    shown = on_screen(port)  # painted in parts, step by step
    port.repaint()  # all of it, afresh, into the same place
    flush()
    assert shown == on_screen(port)


def test_an_unpooled_map_keeps_its_range_for_a_few_steps_and_repaints_what_changed(qtbot,
                                                                                  window):
    """A pixel or more a token (the bundled model's 256 tokens in the map): the range is
    rounded up by a few tokens too; each step draws what a fresh map draws, and a step whose
    range stays repaints a small part of the map."""
    from PySide6.QtGui import QRegion

    from gptviz_app.views.attention_map import MARGIN_PX
    from tests.gui.chip_pictures import PaintSpy, flush, on_screen

    settle(qtbot, window)
    view = window.attention
    qtbot.waitUntil(lambda: view.vb.width() > 100)
    w, h = view.map.device_size()
    T0 = int(min(w, h)) - 40  # unpooled, 40 tokens short of a pixel a token
    assert 2 * max(w, h) <= T0 * MARGIN_PX  # 2 or more tokens fit in the margin
    snap = _snap(window.controller.snapshot, T0, ("u", 1), seed=3)
    view.apply_snapshot(snap)
    _matches(view, snap, pooled=False)
    port = view.glw.viewport()
    flush()
    spy = PaintSpy(port)
    vb = view.glw.mapFromScene(view.vb.sceneBoundingRect()).boundingRect()
    ranges, small = [], 0
    try:
        for s in range(1, 17):
            before = view.vb.viewRange()
            snap = _grow(snap, seed=200 + s)
            spy.regions.clear()
            view.apply_snapshot(snap)
            flush()
            _matches(view, snap, pooled=False)
            ranges.append(view.vb.viewRange()[0][1])
            if view.vb.viewRange() == before:
                area = sum(rect.width() * rect.height() for r in spy.regions
                           for rect in r.intersected(QRegion(vb)))
                assert area < 0.25 * vb.width() * vb.height(), s
                small += 1
    finally:
        spy.stop()
    assert len(set(ranges)) <= len(ranges) // 2 + 1
    assert small >= 6
    shown = on_screen(port)  # painted in parts, step by step
    port.repaint()
    flush()
    assert shown == on_screen(port)
