"""What a lecturer on a projector and a new user in a small window see, measured (pytest-qt,
offscreen): every plot text of every analysis panel follows the presentation font (axis and
colour-bar titles, tick labels, a spin box's text) and comes back down after it; a column too
short for the head grid and an analysis panel tabs the two (each then gets the full height, the
map keeps its share) and splits them again in a taller window, without counting as the user's
arrangement; beside a panel the head grid keeps its share; the map's title after the context
window slid fits its label.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtGui import QFontMetricsF  # noqa: E402

from tests.gui.conftest import close_window, settle, show_window  # noqa: E402
from tests.gui.test_app_layout import on_screen, plot_areas  # noqa: E402
from tests.gui.test_app_look import settle_layout  # noqa: E402

PROMPT = "To be, or not to be, that is the question"


@pytest.fixture
def shaped(tiny_bundle_factory):
    """A tiny model of the bundled model's shape: 4 layers x 8 heads and a 3-class head."""
    return tiny_bundle_factory(n_layer=4, n_head=8, n_classes=3,
                               class_names=("comedy", "history", "tragedy"))


def open_window(qtbot, bundle, size, panels=(), steps=6, prompt=PROMPT):
    win = show_window(qtbot, bundle, prompt=prompt, size=size)
    settle(qtbot, win, win.controller.step(steps))
    for key in panels:
        win.analysis.reveal(key)
    settle_layout(qtbot, win)
    settle(qtbot, win)
    settle_layout(qtbot, win)
    return win


def plot_texts(panel):
    """(what, point size) of every plot text of ``panel`` on its axes: tick labels (where the
    axis draws values) and titles."""
    import pyqtgraph as pg

    out = []
    for view in panel.findChildren(pg.GraphicsView):
        for item in view.scene().items():
            if not isinstance(item, pg.AxisItem) or not item.isVisible():
                continue
            tick = item.style.get("tickFont")
            if item.style.get("showValues", True):
                out.append((f"{item.orientation} ticks", tick.pointSizeF() if tick else 0.0))
            if item.labelText:
                out.append((f"{item.orientation} title {item.labelText!r}",
                            item.label.font().pointSizeF()))
    return out


# ---------------------------------------------------------------------- presentation fonts
def test_every_plot_text_follows_the_presentation_font(qtbot, shaped):
    from PySide6.QtWidgets import QAbstractScrollArea, QAbstractSpinBox

    from gptviz_app.views.plot_text import LEAST_FACTOR

    win = open_window(qtbot, shaped, (1920, 1080))
    try:
        panels = win.analysis.panels
        normal = {k: dict(plot_texts(p)) for k, p in panels.items()}
        # the colour bars' titles of the panels' maps are among them (rollout, attribution...)
        assert any("title 'rollout" in w for w in normal["rollout"]), normal["rollout"]
        pres = win.features.presentation
        pres.set_active(True, fullscreen=False)
        settle_layout(qtbot, win)
        least = win.theme.pt(LEAST_FACTOR) - 0.05
        grown = 0
        for key, panel in panels.items():
            for what, pt in plot_texts(panel):
                assert pt >= least, (key, what, pt, win.theme.pt())
                before = normal[key].get(what)
                if before is not None:
                    assert pt > before * 1.2, (key, what, before, pt)  # it grew with the font
                    grown += 1
            for box in panel.findChildren(QAbstractSpinBox):
                assert box.lineEdit().font().pointSizeF() == box.font().pointSizeF(), key
            for area in panel.findChildren(QAbstractScrollArea):  # table headers paint there
                assert area.viewport().font().pointSizeF() == area.font().pointSizeF(), key
                assert area.font().pointSizeF() >= least, (key, type(area).__name__)
        assert grown >= 20
        pres.set_active(False)
        settle_layout(qtbot, win)
        for key, panel in panels.items():  # back to the normal sizes, none left large
            assert dict(plot_texts(panel)) == pytest.approx(normal[key], rel=0.05), key
    finally:
        close_window(win)


def test_least_text_size_raises_only_small_texts(qtbot):
    import pyqtgraph as pg

    from gptviz_app.views.plot_text import least_text_size
    from gptviz_app.views.theme import DARK

    glw = pg.GraphicsLayoutWidget()
    qtbot.addWidget(glw)
    plot = glw.addPlot()
    plot.setLabel("left", "layer")
    plot.getAxis("left").label.setFont(DARK.font(0.5))  # small, whatever the app's font is
    big = DARK.font(2.2)
    plot.getAxis("bottom").setStyle(tickFont=big)
    theme = DARK.scaled(2.0)
    least_text_size(glw, theme)
    left, bottom = plot.getAxis("left"), plot.getAxis("bottom")
    assert left.label.font().pointSizeF() == pytest.approx(theme.pt(0.8))
    assert bottom.style["tickFont"].pointSizeF() == big.pointSizeF()  # big enough: kept
    least_text_size(glw, DARK)           # smaller again: the text it sized follows
    assert left.label.font().pointSizeF() == pytest.approx(DARK.pt(0.8))


# ---------------------------------------------------------------------- a short column
def column_height(win) -> int:
    return win.centralWidget().height()


def test_short_window_tabs_the_head_grid_with_the_panel(qtbot, shaped):
    from gptviz_app.views.window_layout import ANALYSIS_LEAST_EM, GRID_SHARE

    win = open_window(qtbot, shaped, (1024, 640), panels=("inside_head",))
    try:
        layout = win.window_layout
        grid, dock = win.docks["grid"], win.docks["inside_head"]
        em = QFontMetricsF(win.theme.font()).height()
        column = column_height(win)
        assert column * (1 - GRID_SHARE) < ANALYSIS_LEAST_EM * em  # too short for both
        assert layout.tabbed() and dock in win.tabifiedDockWidgets(grid)
        assert layout.auto                      # the layout's move, not the user's
        assert on_screen(dock) and not on_screen(grid)  # the panel asked for is in front
        assert dock.height() >= column - 2.5 * em      # the column's height, but the tabs
        areas = plot_areas(win)
        assert areas["map"] / sum(areas.values()) >= 0.40, areas
        vb = win.attention.vb
        assert 0.8 <= vb.width() / vb.height() <= 1.25
        # the grid one tab away, as tall as the panel
        grid.raise_()
        settle_layout(qtbot, win)
        assert on_screen(grid) and grid.height() >= column - 2.5 * em
        # a tall window: the grid above the panel again, both on screen
        win.resize(1920, 1080)
        settle_layout(qtbot, win)
        assert not layout.tabbed() and layout.auto
        assert on_screen(grid) and on_screen(dock)
        assert grid.geometry().bottom() < dock.geometry().top()
        # the panel hidden: nothing tabbed either, in a short window too
        win.resize(1024, 640)
        settle_layout(qtbot, win)
        assert layout.tabbed()
        dock.hide()
        settle_layout(qtbot, win)
        assert not layout.tabbed() and on_screen(grid)
    finally:
        close_window(win)


@pytest.mark.parametrize("panel", ["ablation", "inside_head"])
def test_head_grid_keeps_its_share_beside_a_panel(qtbot, shaped, panel):
    from gptviz_app.views.window_layout import GRID_SHARE

    win = open_window(qtbot, shaped, (1280, 800), panels=(panel,))
    try:
        layout, grid, dock = win.window_layout, win.docks["grid"], win.docks[panel]
        if layout.tabbed():  # too short for both: each gets the column in turn
            assert on_screen(dock)
            return
        column = column_height(win)
        fill = layout.grid_fill_height(grid.width())
        assert grid.height() >= min(GRID_SHARE * column, fill) - 4, (grid.height(), column)
        assert on_screen(grid) and on_screen(dock)
        areas = plot_areas(win)
        assert areas["map"] / sum(areas.values()) >= 0.40, areas
    finally:
        close_window(win)


def test_no_panel_scrolls_sideways_on_a_projector(qtbot, shaped):
    """Presentation fonts at 1920x1080: every panel gets its least width (no sideways
    scrolling) and the map keeps its share."""
    from gptviz_app.panels.docks import PANEL_LEAST_EM

    win = open_window(qtbot, shaped, (1920, 1080))
    try:
        win.features.presentation.set_active(True, fullscreen=False)
        win.resize(1920, 1080)
        for key in win.analysis.panels:
            win.analysis.reveal(key)
            settle_layout(qtbot, win)
            scroll = win.docks[key].widget()
            em = QFontMetricsF(win.theme.font()).height()
            assert scroll.viewport().width() >= int(PANEL_LEAST_EM[0] * em) - 1, key
            assert not scroll.horizontalScrollBar().isVisible(), key
            areas = plot_areas(win)
            assert areas["map"] / sum(areas.values()) >= 0.40, (key, areas)
            win.docks[key].hide()
    finally:
        close_window(win)


# ---------------------------------------------------------------------- the slid title
def test_title_abbreviations_fit_a_narrow_row(qtbot):
    from PySide6.QtWidgets import QComboBox, QLabel, QWidget

    from gptviz_app.views.header_fit import HeaderFit, abbreviations
    from gptviz_app.views.panel_layout import controls_row, shrinkable_label

    host = QWidget()
    qtbot.addWidget(host)
    box = QComboBox()
    box.addItems(["L0", "L1"])
    title = shrinkable_label("")
    word = QLabel("Layer")
    host.setLayout(controls_row(word, box, 8, (title, 1)))
    fit = HeaderFit(host, host.layout(), title, [word])
    host.resize(1000, 40)
    host.show()
    full = "231 tokens from position 256"
    assert abbreviations(full) == [full, "231 tokens from 256", "231 from 256"]
    fit.set_title(full)
    assert title.text() == full and not fit.compact
    narrow = fit.row_width(True) + QFontMetricsF(title.font()).horizontalAdvance(
        "231 from 256") + 12
    host.resize(int(narrow), 40)
    qtbot.waitUntil(lambda: fit.compact)
    assert title.text() == "231 from 256"
    qtbot.waitUntil(fit.fits)  # once the row has laid the title out
    host.resize(1000, 40)
    qtbot.waitUntil(lambda: not fit.compact)
    assert title.text() == full


def test_map_title_fits_after_the_window_slid(qtbot, tiny_bundle_factory):
    bundle = tiny_bundle_factory(n_layer=4, n_head=8, block_size=64)
    prompt = " ".join(["Once upon a time there was a little robot."] * 8)
    win = open_window(qtbot, bundle, (1024, 640), steps=3, prompt=prompt)
    try:
        snap = win.controller.snapshot
        assert snap.window_start > 0   # the text outgrew the model's window
        at = win.attention
        title = at.title
        assert str(snap.window_start) in title.text()  # where the window starts, still said
        assert at.header_fit.fits(), (title.text(), title.width())
        assert title.geometry().right() <= at.width()
    finally:
        close_window(win)
