"""The main window's geometry, measured (pytest-qt, offscreen): it fits 1024x640, the attention
map keeps the largest, near-square share of the plot area whatever panels are open, the head
grid fills its panel, presentation mode keeps every label of the next-token chart whole, the
"top N" box says how many bars fit, long status messages are not cut off, and ``--size`` gives
that size or says why not.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt  # noqa: E402

from tests.gui.conftest import TIMEOUT, close_window, settle, show_window  # noqa: E402

PROMPT = "To be, or not to be, that is the question"
SIZES = [(1024, 640), (1280, 800), (1920, 1080)]
PANEL_SETS = [(), ("ablation",), ("compare",), ("ablation", "compare")]


@pytest.fixture
def bundled_shape(tiny_bundle_factory):
    """A tiny model of the bundled model's shape: 4 layers x 8 heads and a 3-class head."""
    return tiny_bundle_factory(n_layer=4, n_head=8, n_classes=3,
                               class_names=("comedy", "history", "tragedy"))


def settle_layout(qtbot, win):
    """Wait until the window's layout has been applied and nothing more is scheduled."""
    for _ in range(3):
        qtbot.waitUntil(lambda: not win.window_layout.pending, timeout=TIMEOUT)
        qtbot.wait(30)
    qtbot.waitUntil(lambda: not win.window_layout.pending, timeout=TIMEOUT)


def open_window(qtbot, bundle, size, panels=(), steps=6, presenting=False):
    win = show_window(qtbot, bundle, prompt=PROMPT, size=size)
    settle(qtbot, win, win.controller.step(steps))
    for key in panels:
        win.analysis.reveal(key)
    if presenting:
        win.features.presentation.set_active(True, fullscreen=False)
        win.resize(*size)
    settle_layout(qtbot, win)
    settle(qtbot, win)
    settle_layout(qtbot, win)
    return win


def on_screen(dock) -> bool:
    """Shown and not behind another tab."""
    return not dock.isHidden() and not dock.isFloating() and not dock.visibleRegion().isEmpty()


def plot_areas(win) -> dict[str, int]:
    """Pixel area of the map (central widget) and of every panel on screen but the text."""
    c = win.centralWidget()
    areas = {"map": c.width() * c.height()}
    for key, d in win.docks.items():
        if key != "text" and on_screen(d):
            areas[key] = d.width() * d.height()
    return areas


# ---------------------------------------------------------------------- 1024 x 640
@pytest.mark.parametrize("panels", [(), ("ablation", "compare"),
                                    ("diagnostics", "lens", "rollout")])
def test_window_fits_1024x640(qtbot, bundled_shape, panels):
    win = open_window(qtbot, bundled_shape, (1024, 640), panels)
    try:
        least = win.minimumSizeHint()
        assert least.width() <= 1024 and least.height() <= 640, (least.width(), least.height())
        assert (win.width(), win.height()) == (1024, 640)
        assert win.grab().size().toTuple() == (1024, 640)
        # the sampling controls fold into the toolbar's extension menu instead of widening it
        tb = win.sampling_toolbar
        full = sum(f.sizeHint().width() for f in win.sampling.fields)
        assert tb.minimumSizeHint().width() < full / 3
        assert tb.geometry().right() < 1024 and win.analysis.toolbar.geometry().right() < 1024
    finally:
        close_window(win)


# ---------------------------------------------------------------------- the map's share
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("panels", PANEL_SETS, ids=lambda p: "+".join(p) or "none")
def test_map_keeps_the_largest_near_square_share(qtbot, bundled_shape, size, panels):
    win = open_window(qtbot, bundled_shape, size, panels)
    try:
        for key in panels:
            assert on_screen(win.docks[key]) or on_screen(
                win.docks[panels[-1]]), key  # shown (the last one in front of its tab)
        areas = plot_areas(win)
        total = sum(areas.values())
        share = areas["map"] / total
        assert share >= 0.40, (share, areas)
        assert all(areas["map"] > a for k, a in areas.items() if k != "map"), areas
        vb = win.attention.vb
        aspect = vb.width() / vb.height()
        assert 0.8 <= aspect <= 1.25, (vb.width(), vb.height())
        assert vb.height() >= 0.55 * win.centralWidget().height()
        # the colour bar has room for its labels: its ticks are at least a line apart
        cb = win.attention.colorbar
        assert cb.height() >= 0.5 * vb.height()
    finally:
        close_window(win)


def mosaic_fill(grid) -> float:
    """Share of the head grid's plot the mosaic of thumbnails covers."""
    import pyqtgraph as pg

    a = grid.vb.mapViewToScene(pg.Point(0, 0))
    b = grid.vb.mapViewToScene(pg.Point(grid.H * grid.pitch - grid.gap,
                                         grid.L * grid.pitch - grid.gap))
    r = grid.vb.sceneBoundingRect()
    return abs(b.x() - a.x()) * abs(b.y() - a.y()) / (r.width() * r.height())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_head_grid_is_not_mostly_empty(qtbot, bundled_shape, size):
    win = open_window(qtbot, bundled_shape, size)
    try:
        assert mosaic_fill(win.grid) >= 0.5
    finally:
        close_window(win)


def test_head_grid_without_a_class_head_at_1920(qtbot, tiny_bundle_factory):
    """A wide mosaic (2 layers x 4 heads) with nothing under it: the map and the next-token
    column give the grid width until its thumbnails fill most of its height."""
    win = open_window(qtbot, tiny_bundle_factory(), (1920, 1080))
    try:
        assert win.docks["classes"].isHidden()
        assert mosaic_fill(win.grid) >= 0.5
        areas = plot_areas(win)
        assert areas["map"] / sum(areas.values()) >= 0.40
    finally:
        close_window(win)


# ---------------------------------------------------------------------- presentation
def drawn_tick_labels(axis) -> list[tuple[float, float, str]]:
    """(left, right, text) of the tick labels a pyqtgraph axis draws now."""
    from PySide6.QtGui import QImage, QPainter

    img = QImage(max(1, int(axis.width())), max(1, int(axis.height())),
                 QImage.Format.Format_ARGB32)
    p = QPainter(img)
    try:
        specs = axis.generateDrawSpecs(p)
    finally:
        p.end()
    return [(r.left(), r.right(), text) for r, _flags, text in (specs[2] if specs else [])]


def next_token_whole(win):
    """Every value label, the probability axis, its tick labels and the bar count are whole
    and inside the chart; returns the number of bars drawn."""
    nt = win.next_token
    vb = nt.vb.sceneBoundingRect()
    shown = nt.rows.label_rects()
    bars = len(nt.bars.opts["y"])
    assert len(shown) == bars == nt.n_shown >= 3
    for text, rect in shown:
        assert text.endswith("%")
        assert rect.right() <= vb.right() + 1, text
    axis = nt.plot.getAxis("bottom")
    label = axis.label.mapRectToScene(axis.label.boundingRect())
    assert axis.label.toPlainText().strip() == "probability"
    assert label.left() >= 0 and label.right() <= nt.glw.width()
    ticks = drawn_tick_labels(axis)
    assert ticks, "no probability tick labels"
    assert all(left >= 0 and right <= axis.width() + 1 for left, right, _ in ticks)
    # the rows are readable: a line of the token font each at least
    from PySide6.QtGui import QFontMetricsF

    font = nt.plot.getAxis("left").style["tickFont"]
    assert nt.vb.height() / bars >= QFontMetricsF(font).height()
    return bars


def text_panel_whole(win):
    """Whole lines of prompt and of chips, no blank band under them."""
    ed = win.prompt_editor.edit
    text = ed.toPlainText()
    ed.setPlainText("one\ntwo\nthree\nfour")     # the last block has the bottom margin too
    line = ed.blockBoundingRect(ed.document().firstBlock()).height()
    ed.setPlainText(text)
    inside = ed.viewport().height() - 2 * ed.document().documentMargin()
    assert inside == pytest.approx(win.prompt_editor.lines * line, abs=1)
    strip = win.token_strip
    assert strip.scroll.viewport().height() == strip.canvas.height_for_rows(2)
    body = win.docks["text"].widget()
    below = body.height() - strip.geometry().bottom() - 1
    below += strip.height() - strip.scroll.geometry().bottom() - 1
    assert below <= 3, below


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_presentation_keeps_the_next_token_chart_whole(qtbot, bundled_shape, size):
    win = open_window(qtbot, bundled_shape, size, presenting=True)
    try:
        nt = win.next_token
        assert win.theme.font_scale == pytest.approx(1.6)
        bars = next_token_whole(win)
        if size == (1920, 1080):
            assert bars == nt.count.value() == 12
        note = nt.fit_note
        assert (note.text() == f"only {bars} fit") if bars < 12 else note.isHidden()
        text_panel_whole(win)
        # the Head box is sized for "H11", not for "Average of heads"
        box = win.attention.head_box
        assert box.width() < box.fontMetrics().horizontalAdvance("Average of heads")
        assert box.width() >= box.fontMetrics().horizontalAdvance("H11")
        areas = plot_areas(win)
        assert areas["map"] / sum(areas.values()) >= 0.40
        win.features.presentation.set_active(False)
        settle_layout(qtbot, win)
        next_token_whole(win)
        text_panel_whole(win)
    finally:
        close_window(win)


def test_sample_prompt_explanation_is_not_cut_off_while_presenting(qtbot, bundled_shape):
    from PySide6.QtGui import QFontMetrics

    win = open_window(qtbot, bundled_shape, (1280, 800), presenting=True)
    try:
        st = win.status
        text = ("A name repeated (induction): an induction head (the bundled model's layer 3, "
                "GPT-2 small's layers 5-6): after the second 'Prospero' it looks at what "
                "followed the first one")
        fm = QFontMetrics(st.font())
        assert fm.horizontalAdvance(text) > st.width()      # longer than the whole bar
        st.showMessage(text, 10000)
        qtbot.waitUntil(lambda: st.height() >= 2 * fm.lineSpacing(), timeout=TIMEOUT)
        assert st.message_lines == 2 and st.fields.isHidden()
        assert st.wrapped_message() == text                 # all of it, on two lines
        st.clearMessage()
        assert st.message_lines == 0 and not st.fields.isHidden()
        # a short one sits beside the fields
        st.showMessage("ok", 1000)
        assert st.message_lines == 1 and not st.fields.isHidden()
    finally:
        close_window(win)


# ---------------------------------------------------------------------- top N
def test_top_n_box_says_how_many_bars_fit(qtbot, bundled_shape):
    win = open_window(qtbot, bundled_shape, (1280, 800))
    try:
        nt = win.next_token
        assert len(nt.bars.opts["y"]) == nt.count.value() == 12 and nt.fit_note.isHidden()
        win.resize(1024, 640)
        settle_layout(qtbot, win)
        qtbot.waitUntil(lambda: nt.n_shown < 12, timeout=TIMEOUT)
        bars = len(nt.bars.opts["y"])
        assert bars == nt.n_shown < 12
        assert not nt.fit_note.isHidden() and nt.fit_note.text() == f"only {bars} fit"
        nt.count.setValue(bars)                    # as many as fit: nothing to say
        assert nt.fit_note.isHidden() and len(nt.bars.opts["y"]) == bars
    finally:
        close_window(win)


# ---------------------------------------------------------------------- following the window
def test_panels_follow_the_window_until_the_user_arranges_them(qtbot, bundled_shape):
    win = open_window(qtbot, bundled_shape, (1280, 800))
    try:
        lay = win.window_layout
        assert lay.auto
        win.resize(1920, 1080)
        settle_layout(qtbot, win)
        c = win.centralWidget()
        assert c.width() < 0.5 * 1920                       # the map did not take it all
        # the user drags the separator between the map and the head grid
        x = (c.geometry().right() + win.docks["grid"].geometry().left()) // 2
        pos = QPoint(x, c.geometry().center().y())
        assert win.childAt(pos) is None
        qtbot.mousePress(win, Qt.MouseButton.LeftButton, pos=pos)
        qtbot.mouseRelease(win, Qt.MouseButton.LeftButton, pos=pos)
        assert not lay.auto
        grid_w = win.docks["grid"].width()
        win.resize(1600, 1000)
        qtbot.wait(50)
        assert not lay.pending and win.docks["grid"].width() == grid_w   # left as it was
        win.actions["reset_layout"].trigger()
        assert lay.auto
        settle_layout(qtbot, win)
        areas = plot_areas(win)
        assert areas["map"] / sum(areas.values()) >= 0.40
    finally:
        close_window(win)


# ---------------------------------------------------------------------- --size
def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_size_option_gives_the_size_or_says_why(tmp_path, tiny_bundle):
    from gptviz import save_checkpoint

    d = save_checkpoint(tmp_path / "m", tiny_bundle.model, tiny_bundle.tokenizer)
    root = Path(__file__).resolve().parents[2]

    def shot(size, *extra):
        out = tmp_path / f"{size}.png"
        r = subprocess.run([sys.executable, "main.py", "--model", str(d), "--prompt", "Hello",
                            "--steps", "2", "--screenshot", str(out), "--size", size, *extra],
                           cwd=root, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
        assert r.returncode == 0, r.stderr
        return png_size(out), r.stderr

    got, err = shot("1024x640", "--panels", "ablation,compare")
    assert got == (1024, 640) and "note:" not in err
    got, err = shot("500x300")
    assert got != (500, 300)
    assert f"--size 500x300: the window is {got[0]}x{got[1]}: its panels and toolbars need " \
           f"at least" in err
