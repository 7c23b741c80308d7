"""What a user sees, measured (pytest-qt, offscreen): the attention map's title is whole at
every window size (the row of controls makes room for it), presentation mode keeps the panels
the user asked for, every analysis panel is one key away and listed in Help ▸ Keyboard
shortcuts, a panel docked in a small window keeps a usable size (it scrolls rather than
squeezes), and the "Inside one head" panel never cuts its header or its formula line.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtGui import QFontMetrics, QFontMetricsF, QKeySequence  # noqa: E402

from tests.gui.conftest import TIMEOUT, close_window, settle, show_window  # noqa: E402

PROMPT = "To be, or not to be, that is the question"


@pytest.fixture
def shaped(tiny_bundle_factory):
    """A tiny model of the bundled model's shape: 4 layers x 8 heads and a 3-class head."""
    return tiny_bundle_factory(n_layer=4, n_head=8, n_classes=3,
                               class_names=("comedy", "history", "tragedy"))


def settle_layout(qtbot, win):
    for _ in range(3):
        qtbot.waitUntil(lambda: not win.window_layout.pending, timeout=TIMEOUT)
        qtbot.wait(30)
    qtbot.waitUntil(lambda: not win.window_layout.pending, timeout=TIMEOUT)


def open_window(qtbot, bundle, size, panels=(), presenting=False, steps=6):
    win = show_window(qtbot, bundle, prompt=PROMPT, size=size)
    settle(qtbot, win, win.controller.step(steps))
    for key in panels:
        win.analysis.reveal(key)
    if presenting:
        win.features.presentation.set_active(True, fullscreen=False, keep=tuple(panels))
        win.resize(*size)
    settle_layout(qtbot, win)
    settle(qtbot, win)
    settle_layout(qtbot, win)
    return win


def text_fits(label) -> bool:
    """The label's whole (plain) text is inside its width."""
    return QFontMetrics(label.font()).horizontalAdvance(label.text()) <= label.width()


# ---------------------------------------------------------------------- the map's title
@pytest.mark.parametrize("size,presenting", [((1024, 640), False), ((1280, 800), False),
                                             ((1920, 1080), False), ((1920, 1080), True)],
                         ids=["1024x640", "1280x800", "1920x1080", "1920x1080-presenting"])
def test_map_title_is_whole_beside_the_stage_box(qtbot, shaped, size, presenting):
    win = open_window(qtbot, shaped, size, presenting=presenting)
    try:
        at = win.attention
        title = at.title
        assert title.text().startswith(f"{win.controller.snapshot.n_tokens} tokens")
        assert title.isVisible() and text_fits(title), (title.text(), title.width())
        # the title lies inside the map's panel, right of every control of its row
        assert title.geometry().right() <= at.width()
        for w in (at.layer_box, at.head_box, at.stage_box, at.sqrt_box):
            assert w.isVisible() and w.geometry().right() < title.geometry().left()
        # a longer title (another stage) stays whole too
        c = win.controller
        settle(qtbot, win, c.set_view(map_stage="value"))
        qtbot.waitUntil(lambda: at.stage == "value", timeout=TIMEOUT)
        qtbot.wait(30)
        assert text_fits(title), (title.text(), title.width())
        # the stage is named: in the title, or (narrow map) by the stage box only
        box = at.stage_box
        assert "value" in title.text() or at.header_fit.compact
        assert box.currentText().startswith("Value")
        # the stage box shows its whole current text, full or short
        assert box.fontMetrics().horizontalAdvance(box.currentText()) < box.width()
        if size == (1920, 1080) and not presenting:  # room for the full row
            assert not at.header_fit.compact and box.currentText() == "Value-weighted"
    finally:
        close_window(win)


def test_a_wider_map_brings_the_full_row_back(qtbot, shaped):
    win = open_window(qtbot, shaped, (1024, 640))
    try:
        at = win.attention
        assert at.header_fit.compact  # 1024 wide: "Layer" and "Head" make way for the title
        win.resize(1920, 1080)
        settle_layout(qtbot, win)
        qtbot.waitUntil(lambda: not at.header_fit.compact, timeout=TIMEOUT)
        assert at.sqrt_box.text() == "√ scale" and text_fits(at.title)
    finally:
        close_window(win)


# ---------------------------------------------------------------------- presentation
def test_presentation_keeps_the_panels_asked_for(qtbot, shaped):
    win = open_window(qtbot, shaped, (1280, 800), panels=("diagnostics", "inside_head"))
    try:
        p = win.features.presentation
        p.set_active(True, fullscreen=False, keep=("inside_head",))
        settle_layout(qtbot, win)
        assert not win.docks["inside_head"].isHidden()
        assert win.docks["diagnostics"].isHidden()  # an advanced panel nobody asked to keep
        p.set_active(False)
        settle_layout(qtbot, win)
        assert not win.docks["inside_head"].isHidden()
        assert not win.docks["diagnostics"].isHidden()  # back as it was
    finally:
        close_window(win)


def test_presentation_option_keeps_the_panels_option(monkeypatch):
    """``--panels K --presentation``: the launcher passes the keys to presentation mode."""
    import inspect

    from gptviz_app import launch
    from gptviz_app.actions.presentation import PresentationMode

    assert "keep" in inspect.signature(PresentationMode.set_active).parameters
    src = inspect.getsource(launch.start)
    assert "keep=panels" in src


# ---------------------------------------------------------------------- keyboard
def test_every_panel_is_one_listed_key_away(qtbot, shaped):
    from gptviz_app.actions.shortcuts import shortcut_rows

    win = open_window(qtbot, shaped, (1280, 800))
    try:
        rows = dict(shortcut_rows(win))
        keys = set()
        for key in win.analysis.panels:
            dock = win.docks[key]
            toggle = dock.toggleViewAction()
            seq = toggle.shortcut()
            assert not seq.isEmpty(), key
            text = seq.toString(QKeySequence.SequenceFormat.NativeText)
            assert rows.get(dock.windowTitle()) == text, (key, text)
            assert text in win.analysis.toolbar_actions[key].toolTip()
            keys.add(text)
            target = win.attention.glw
            target.setFocus()
            assert dock.isHidden()
            kc = seq[0]
            qtbot.keyClick(target, kc.key(), kc.keyboardModifiers())
            qtbot.waitUntil(lambda d=dock: not d.isHidden(), timeout=TIMEOUT)
            target.setFocus()
            qtbot.keyClick(target, kc.key(), kc.keyboardModifiers())
            qtbot.waitUntil(dock.isHidden, timeout=TIMEOUT)
        assert len(keys) == len(win.analysis.panels)  # one key each
    finally:
        close_window(win)


# ---------------------------------------------------------------------- room for a panel
def test_each_panel_keeps_a_usable_size_at_1024x640(qtbot, shaped):
    from gptviz_app.panels.docks import PANEL_LEAST_EM

    win = open_window(qtbot, shaped, (1024, 640))
    try:
        for key, panel in win.analysis.panels.items():
            win.analysis.reveal(key)
            settle_layout(qtbot, win)
            em = QFontMetricsF(win.theme.font()).height()
            # the panel keeps its least size; the dock scrolls it where it is smaller
            assert panel.width() >= int(PANEL_LEAST_EM[0] * em) - 1, key
            assert panel.height() >= int(PANEL_LEAST_EM[1] * em) - 1, key
            glw = getattr(panel, "glw", None)
            if glw is not None:
                assert glw.height() >= 0.4 * panel.height(), (key, glw.height())
            # the attention map stays the largest plot
            c = win.centralWidget()
            dock = win.docks[key]
            assert c.width() * c.height() > dock.width() * dock.height(), key
            win.docks[key].hide()
        assert (win.width(), win.height()) == (1024, 640)
    finally:
        close_window(win)


def test_short_window_gives_the_panel_more_of_the_column(qtbot, shaped):
    from gptviz_app.views.window_layout import GRID_SHARE

    win = open_window(qtbot, shaped, (1280, 800), panels=("inside_head",))
    try:
        dock, grid = win.docks["inside_head"], win.docks["grid"]
        em = QFontMetricsF(win.theme.font()).height()
        column = win.centralWidget().height()  # the grid's column is as tall as the map
        from PySide6.QtWidgets import QTabBar

        bars = [b for b in win.findChildren(QTabBar) if b.isVisible() and any(
            b.tabText(i) == dock.windowTitle() for i in range(b.count()))]
        # the tab bar of the group under the grid, and the separator
        tabs = (bars[0].height() if bars else 1.6 * em) + 4
        if win.window_layout.tabbed():  # too short for both: the panel gets the column
            assert dock.height() + tabs >= column
        else:  # the grid keeps its share (or less, as far as its thumbnails fill), the panel
            assert dock.height() + tabs + 6 >= (1 - GRID_SHARE) * column, (dock.height(), column)
            assert grid.height() <= GRID_SHARE * column + 4
    finally:
        close_window(win)


# ---------------------------------------------------------------------- inside one head
@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_inside_head_header_and_formula_are_never_cut(qtbot, shaped, size):
    win = open_window(qtbot, shaped, size, panels=("inside_head",))
    try:
        panel = win.analysis.panels["inside_head"]
        qtbot.waitUntil(lambda: panel.view is not None, timeout=TIMEOUT)
        settle_layout(qtbot, win)
        for label in (panel.header, panel.readout):
            assert label.wordWrap()
            assert label.heightForWidth(label.width()) <= label.height(), (
                label.text(), label.width(), label.height())
        # the formula line is two lines tall whatever it says (hovering moves nothing)
        h = panel.readout.height()
        panel.readout.setText(panel.describe_key(0))
        assert panel.readout.height() == h
        assert panel.readout.heightForWidth(panel.readout.width()) <= h
        # the key box sits to the right of the header, not over it
        assert panel.key_box.geometry().left() > panel.header.geometry().right()
    finally:
        close_window(win)
