"""The window's features (``window.features``): keyboard control, the shortcuts dialog,
presentation mode, themes, sample prompts.

Keys are sent with QTest to the focused widget, through Qt's real shortcut machinery
(``ShortcutOverride`` first, then the shortcut map). Qt warnings fail the tests (a key that
nobody takes makes QTest warn), and no worker thread may be left running (conftest.py).
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QFontMetricsF, QKeySequence  # noqa: E402

from tests.gui.conftest import TIMEOUT, settle, show_window  # noqa: E402


@pytest.fixture
def window_options():
    return {"activate": True}


def press(qtbot, widget, keys: str):
    """Send one key combination (``"Shift+Space"``, ``"Ctrl+S"``, ``"]"``) to ``widget``."""
    kc = QKeySequence(keys)[0]
    qtbot.keyClick(widget, kc.key(), kc.keyboardModifiers())


# ---------------------------------------------------------------------- keyboard
def test_every_listed_shortcut_triggers_its_action(qtbot, window, monkeypatch, tmp_path):
    """Each row of Help ▸ Keyboard shortcuts, pressed on the focused attention map, fires
    the action it names (file dialogs answer "cancel"; Ctrl+E writes into tmp_path)."""
    from PySide6.QtWidgets import QFileDialog

    from gptviz_app.actions.shortcuts import _all_actions, shortcut_rows

    window.features.exporter.directory = str(tmp_path)

    for name in ("getSaveFileName", "getOpenFileName"):
        monkeypatch.setattr(QFileDialog, name, staticmethod(lambda *a, **k: ("", "")))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: ""))
    c = window.controller
    target = window.attention.glw
    target.setFocus()
    c.step(3)
    settle(qtbot, window)
    fired: dict[int, int] = {}
    actions = {}
    for a in _all_actions(window):
        for s in a.shortcuts():
            actions[s.toString()] = a
        if a.shortcuts():
            key_id = id(a)
            a.triggered.connect(lambda _=False, i=key_id: fired.__setitem__(i, fired.get(i, 0) + 1))
    pressed = []
    for key, a in actions.items():
        if key in ("Ctrl+Q",):               # quitting ends the test run
            continue
        if not a.isEnabled():                # e.g. Forward with nothing to redo: step first
            if key == "Right":
                c.back()
                settle(qtbot, window)
            assert a.isEnabled(), key
        target.setFocus()
        n = fired.get(id(a), 0)
        press(qtbot, target, key)
        assert fired.get(id(a), 0) == n + 1, f"{key} ({a.text()}) did not trigger its action"
        pressed.append(key)
        # undo what would get in the way of the next keys
        qtbot.waitUntil(lambda: not c.client.busy or c.playing, timeout=TIMEOUT)
        if c.playing:
            c.set_playing(False)
        if window.features.presentation.active:
            window.features.presentation.set_active(False)
        for dlg in (window.features.exporter.dialog, window.features.shortcuts_dialog,
                    window.features.models.dialog):
            if dlg is not None and dlg.isVisible():
                dlg.close()
        if not window.isActiveWindow():       # offscreen: nobody gives activation back
            window.activateWindow()
            qtbot.waitUntil(window.isActiveWindow, timeout=TIMEOUT)
        settle(qtbot, window)
    # every row of the dialog was among the keys pressed
    listed = set()
    for _what, keys in shortcut_rows(window):
        for k in keys.split(" or "):
            listed.update(k.split(" … "))
    missing = {k for k in listed if k not in pressed and k != "Ctrl+Q"}
    # "1 … 9" lists the ends of the range; the middle digits were pressed as well
    assert missing == set(), missing
    for required in ("Space", "Shift+Space", "Left", "Right", "Up", "Down", "Home", "[", "]",
                     "1", "5", "9", "Ctrl+S", "Ctrl+O", "Ctrl+E", "F11", "F1"):
        assert required in pressed


def test_keys_change_the_state_as_described(qtbot, window):
    c = window.controller
    m = window.attention.glw
    m.setFocus()
    n0 = c.snapshot.n_tokens
    press(qtbot, m, "Space")
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n0 + 1 and not c.client.busy, timeout=TIMEOUT)
    press(qtbot, m, "Space")
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n0 + 2 and not c.client.busy, timeout=TIMEOUT)
    press(qtbot, m, "Left")
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n0 + 1 and c.snapshot.can_redo,
                    timeout=TIMEOUT)
    press(qtbot, m, "Right")
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n0 + 2 and not c.snapshot.can_redo,
                    timeout=TIMEOUT)
    # layers: Down = next, Up = previous (clamped)
    press(qtbot, m, "Down")
    qtbot.waitUntil(lambda: c.snapshot.view.layer == 1, timeout=TIMEOUT)
    press(qtbot, m, "Down")
    press(qtbot, m, "Up")
    qtbot.waitUntil(lambda: c.snapshot.view.layer == 0 and not c.client.busy, timeout=TIMEOUT)
    # heads: digits are 1-based, [ ] step through the heads and then the average
    press(qtbot, m, "3")
    qtbot.waitUntil(lambda: c.snapshot.view.head == 2 and not c.snapshot.view.average,
                    timeout=TIMEOUT)
    assert window.attention.head_box.currentIndex() == 2
    press(qtbot, m, "]")
    qtbot.waitUntil(lambda: c.snapshot.view.head == 3, timeout=TIMEOUT)
    press(qtbot, m, "]")
    qtbot.waitUntil(lambda: c.snapshot.view.average, timeout=TIMEOUT)
    assert window.attention.head_box.currentText() == "Average of heads"
    press(qtbot, m, "[")
    qtbot.waitUntil(lambda: c.snapshot.view.head == 3 and not c.snapshot.view.average,
                    timeout=TIMEOUT)
    press(qtbot, m, "9")                # the tiny model has 4 heads: nothing happens
    qtbot.wait(50)
    assert c.view.head == 3
    press(qtbot, m, "1")
    qtbot.waitUntil(lambda: c.snapshot.view.head == 0, timeout=TIMEOUT)
    # play / pause
    press(qtbot, m, "Shift+Space")
    assert c.playing
    qtbot.waitUntil(lambda: c.snapshot.n_generated >= 4, timeout=TIMEOUT)
    press(qtbot, m, "Shift+Space")
    assert not c.playing
    settle(qtbot, window)
    press(qtbot, m, "Home")
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n0 and c.snapshot.n_total == 0,
                    timeout=TIMEOUT)


def test_space_types_in_the_prompt_editor_and_escape_gives_the_keys_back(qtbot, window):
    c = window.controller
    edit = window.prompt_editor.edit
    edit.setFocus()
    edit.moveCursor(edit.textCursor().MoveOperation.End)
    before, gen = window.prompt_editor.text(), c.client.latest
    for key in ("Space", "Shift+Space", "1", "[", "Left", "Right", "Up", "Down", "Home"):
        press(qtbot, edit, key)
    assert window.prompt_editor.text() == before + "  1["
    assert c.client.latest == gen and not c.client.busy       # nothing was stepped
    # Escape leaves the editor; Space steps again
    press(qtbot, edit, "Escape")
    qtbot.waitUntil(lambda: window.attention.glw.hasFocus(), timeout=TIMEOUT)
    n = c.snapshot.n_tokens
    press(qtbot, window.attention.glw, "Space")
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n + 1, timeout=TIMEOUT)


def test_typed_text_is_exactly_what_was_typed(qtbot, window):
    c = window.controller
    edit = window.prompt_editor.edit
    window.prompt_editor.set_text("")
    edit.setFocus()
    gen = c.client.latest
    qtbot.keyClicks(edit, "a b 12 [x]")
    assert window.prompt_editor.text() == "a b 12 [x]" and c.client.latest == gen
    # Ctrl+Enter submits; the keys are for stepping again afterwards
    qtbot.keyClick(edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    snap = settle(qtbot, window)
    assert snap.n_generated == 0 and window.attention.glw.hasFocus()
    press(qtbot, window.attention.glw, "Space")
    qtbot.waitUntil(lambda: c.snapshot.n_generated == 1, timeout=TIMEOUT)


def test_number_boxes_keep_their_keys_but_space_still_steps(qtbot, window):
    c = window.controller
    t = window.sampling.temperature
    t.setFocus()
    assert window.focusWidget() is t
    n = c.snapshot.n_tokens
    press(qtbot, t, "Space")
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n + 1 and not c.client.busy, timeout=TIMEOUT)
    assert window.features.router.routed >= 1
    layer = c.view.layer
    press(qtbot, t, "Up")                       # the box's arrow, not "previous layer"
    assert t.value() == pytest.approx(1.1)
    press(qtbot, t, "Down")
    assert t.value() == pytest.approx(1.0)
    assert c.view.layer == layer
    press(qtbot, t, "]")                        # [ ] pick heads from a number box too
    qtbot.waitUntil(lambda: c.snapshot.view.head == 1, timeout=TIMEOUT)
    # a combo box: arrows are the shortcuts' (previous / next layer)
    box = window.attention.layer_box
    box.setFocus()
    press(qtbot, box, "Down")
    qtbot.waitUntil(lambda: c.snapshot.view.layer == 1, timeout=TIMEOUT)
    assert box.currentIndex() == 1


@pytest.mark.qt_log_ignore(r".*propagateSizeHints.*", r".*does not support raise\(\).*")
def test_keys_work_in_a_floating_panel(qtbot, window):
    c = window.controller
    dock = window.docks["next"]
    dock.setFloating(True)
    qtbot.waitUntil(lambda: dock.isFloating() and dock.isVisible(), timeout=TIMEOUT)
    dock.activateWindow()
    qtbot.waitUntil(lambda: dock.isActiveWindow(), timeout=TIMEOUT)
    window.next_token.glw.setFocus()
    n = c.snapshot.n_tokens
    press(qtbot, window.next_token.glw, "Space")
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n + 1, timeout=TIMEOUT)
    press(qtbot, window.next_token.glw, "2")
    qtbot.waitUntil(lambda: c.snapshot.view.head == 1, timeout=TIMEOUT)
    dock.setFloating(False)


def test_shortcuts_dialog_is_built_from_the_actions(qtbot, window):
    from gptviz_app.actions.shortcuts import shortcut_rows

    window.attention.glw.setFocus()
    press(qtbot, window.attention.glw, "F1")
    dlg = window.features.shortcuts_dialog
    qtbot.waitUntil(lambda: dlg.isVisible(), timeout=TIMEOUT)
    table = {dlg.table.item(i, 0).text(): dlg.table.item(i, 1).text()
             for i in range(dlg.table.rowCount())}
    assert list(table.items()) == shortcut_rows(window)
    keys = " | ".join(table.values())
    for k in ("Space", "Shift+Space", "Left", "Right", "Up", "Down", "[", "]", "1 … 9", "Home",
              "Ctrl+S", "Ctrl+O", "Ctrl+E", "F11"):
        assert k in table.values() or k in keys, k
    assert table["Step: generate one token"] == "Space"
    assert table["Select head 0-8 (1 = head 0)"] == "1 … 9"
    dlg.close()
    # no drift: the dialog shows what the actions say
    window.actions["step"].setShortcut(QKeySequence("N"))
    try:
        assert dict(shortcut_rows(window))["Step: generate one token"] == "N"
    finally:
        window.actions["step"].setShortcut(QKeySequence("Space"))


# ---------------------------------------------------------------------- presentation
def font_sizes(win):
    """Point sizes of the texts presentation mode must enlarge."""
    from PySide6.QtWidgets import QToolTip

    nt = win.next_token
    return {
        "token chips": win.token_strip.canvas.font().pointSizeF(),
        "map ticks": win.attention.plot.getAxis("left").style["tickFont"].pointSizeF(),
        "map axis label": win.attention.plot.getAxis("left").label.font().pointSizeF(),
        "colour bar": win.attention.colorbar.axis.style["tickFont"].pointSizeF(),
        "grid labels": win.grid.plot.getAxis("left").style["tickFont"].pointSizeF(),
        "bar labels": nt.rows.font.pointSizeF(),
        "candidate tokens": nt.plot.getAxis("left").style["tickFont"].pointSizeF(),
        "buttons": win.stepping.buttons["step"].font().pointSizeF(),
        "prompt": win.prompt_editor.edit.font().pointSizeF(),
        "menus": win.menus["file"].font().pointSizeF(),
        "menu bar": win.menuBar().font().pointSizeF(),
        "tooltips": QToolTip.font().pointSizeF(),
        "status": win.status.model.font().pointSizeF(),
        "colour bar title": win.attention.colorbar.getAxis("left").label.font().pointSizeF(),
        "probability label": nt.plot.getAxis("bottom").label.font().pointSizeF(),
        "grid head labels": win.grid.plot.getAxis("top").style["tickFont"].pointSizeF(),
        "dock titles": win.docks["text"].font().pointSizeF(),
    }


def test_presentation_mode_scales_fonts_hides_advanced_panels_and_restores(qtbot, window):
    from PySide6.QtWidgets import QLabel

    lec = window.features
    ap = lec.appearance
    c = window.controller
    c.step(2)
    settle(qtbot, window)
    # an "advanced" panel added later (like the diagnostics panels)
    window.add_panel("diag", "Diagnostics", QLabel("head scores")).show()
    assert window.docks["diag"].isVisible()
    qtbot.waitUntil(lambda: len(window.next_token.rows.labels()) > 0, timeout=TIMEOUT)
    before = font_sizes(window)
    cmap_before = window.theme.colormap
    h_before = window.token_strip.canvas.rects[0].height()
    window.attention.glw.setFocus()
    press(qtbot, window.attention.glw, "F11")
    assert lec.presentation.active and window.actions["presentation"].isChecked()
    factor = ap.presentation_scale
    assert factor == pytest.approx(1.6)
    after = font_sizes(window)
    for k, v in before.items():
        assert after[k] == pytest.approx(v * factor, rel=0.02), k
    assert window.token_strip.canvas.rects[0].height() > h_before * 1.3
    assert window.theme.colormap == "cividis"
    assert window.attention.colorbar.colorMap().name == "cividis"
    assert not window.sampling_toolbar.isVisible()
    assert not window.docks["diag"].isVisible()
    assert not window.status.timing.isVisible()
    for key in ("text", "grid", "next"):
        assert window.docks[key].isVisible(), key
    assert window.isFullScreen()
    # the font size is adjustable while presenting
    press(qtbot, window.attention.glw, "Ctrl+=")
    assert window.theme.font_scale == pytest.approx(factor + 0.1)
    assert font_sizes(window)["token chips"] == pytest.approx(before["token chips"] *
                                                              (factor + 0.1), rel=0.02)
    press(qtbot, window.attention.glw, "Ctrl+-")
    assert window.theme.font_scale == pytest.approx(factor)
    # the other colour-blind-safe map
    lec.presentation.actions["colormap_viridis"].trigger()
    assert window.theme.colormap == "viridis"
    # leave: everything as it was
    press(qtbot, window.attention.glw, "F11")
    assert not lec.presentation.active
    restored = font_sizes(window)
    for k, v in before.items():
        assert restored[k] == pytest.approx(v, rel=0.02), k
    assert window.theme.colormap == cmap_before and window.theme.font_scale == 1.0
    assert window.sampling_toolbar.isVisible() and window.docks["diag"].isVisible()
    assert window.status.timing.isVisible()
    assert not window.isFullScreen()
    # the next time it remembers the presentation choices
    lec.presentation.set_active(True, fullscreen=False)
    assert window.theme.colormap == "viridis" and not window.isFullScreen()
    lec.presentation.set_active(False)


def test_presentation_font_size_menu(qtbot, window):
    lec = window.features
    lec.presentation.actions["scale_2.5"].trigger()
    assert lec.appearance.presentation_scale == 2.5 and window.theme.font_scale == 1.0
    lec.presentation.set_active(True, fullscreen=False)
    assert window.theme.font_scale == 2.5
    assert lec.presentation.actions["scale_2.5"].isChecked()
    lec.presentation.actions["scale_1.3"].trigger()
    assert window.theme.font_scale == 1.3
    lec.presentation.set_active(False)
    assert window.theme.font_scale == 1.0


def test_head_labels_never_touch(qtbot, tiny_bundle_factory):
    """Many heads, big fonts: the grid labels every n-th head instead of overlapping."""
    win = show_window(qtbot, tiny_bundle_factory(n_head=16, n_embd=64), prompt="Hello there")
    qtbot.waitUntil(lambda: win.grid.vb.width() > 50, timeout=TIMEOUT)
    try:
        grid = win.grid

        def spacing_ok():
            ticks = grid.plot.getAxis("top")._tickLevels[0]
            (x0, x1), _ = grid.vb.viewRange()
            px = grid.vb.width() / (x1 - x0)
            gap = (ticks[1][0] - ticks[0][0]) * px if len(ticks) > 1 else 1e9
            fm_w = max(QFontMetricsF(grid.plot.getAxis("top").style["tickFont"])
                       .horizontalAdvance(label) for _p, label in ticks)
            return len(ticks), gap >= fm_w

        n_small, ok = spacing_ok()
        assert ok
        win.features.presentation.set_scale(2.5)
        win.features.presentation.set_active(True, fullscreen=False)
        n_big, ok = spacing_ok()
        assert ok and n_big < n_small <= 16
        win.features.presentation.set_active(False)
        assert spacing_ok() == (n_small, True)
    finally:
        win.close()


def test_panels_stay_compact_at_presentation_sizes(qtbot, window):
    """The thumbnails sit at the top of their panel; the next-token header and the grid
    caption stay on one line each (elided, whole in the tooltip); the bars stay readable."""
    import pyqtgraph as pg

    c = window.controller
    c.step(2)
    settle(qtbot, window)
    grid, nt = window.grid, window.next_token

    def mosaic_corners():
        """Top-left and bottom-right corners of the mosaic, in pixels inside the view box."""
        r = grid.vb.sceneBoundingRect()
        a = grid.vb.mapViewToScene(pg.Point(0, 0))
        b = grid.vb.mapViewToScene(pg.Point(grid.H * grid.pitch - grid.gap,
                                             grid.L * grid.pitch - grid.gap))
        return (a.x() - r.left(), a.y() - r.top()), (r.right() - b.x(), r.bottom() - b.y())

    def fits(label):
        return label.sizeHint().width() <= label.width() + 1

    def check():
        qtbot.waitUntil(lambda: grid.vb.width() > 50 and nt.vb.height() > 50, timeout=TIMEOUT)
        (x0, y0), (x1, y1) = mosaic_corners()
        assert 0 <= x0 <= 5 and 0 <= y0 <= 5          # top left, under the head labels
        assert x1 >= 0 and y1 >= 0 and min(x1, y1) <= 5  # all of it, as large as it fits
        for label in (nt.header, nt.detail, nt.hint, grid.caption):
            assert fits(label), label.full_text()
            line = label.fontMetrics().height()
            assert label.height() < 2 * line          # one line each
            if label.elided:
                assert label.full_text() in label.toolTip()
        row_px = nt.vb.height() / max(1, nt.n_shown)
        font = nt.plot.getAxis("left").style["tickFont"]
        assert nt.n_shown >= 3 and row_px >= QFontMetricsF(font).height()
        assert "Step 2" in nt.header.full_text()
        assert "whole maps" in grid.caption.full_text()
        # every bar's value label ends inside the chart (a fixed margin clipped "6.4%")
        right = nt.vb.sceneBoundingRect().right()
        shown = nt.rows.label_rects()
        assert len(shown) == nt.n_shown
        assert all(rect.right() <= right + 1 for _text, rect in shown)
        # the probability axis' labelled ticks have room for their labels
        tick_px = nt.tick_step / nt.vb.viewRange()[0][1] * nt.vb.width()
        assert tick_px >= QFontMetricsF(font).horizontalAdvance("0.00")
        # ... and stop at probability 1 however far the axis runs for the value labels
        ticks = [v for level in nt.plot.getAxis("bottom")._tickLevels for v, _ in level]
        assert ticks and max(ticks) <= 1.0
        # the token strip shows whole lines of chips, at least two
        strip = window.token_strip
        qtbot.waitUntil(lambda: strip.scroll.viewport().height() in
                        [strip.canvas.height_for_rows(n) for n in range(2, 30)],
                        timeout=TIMEOUT)

    check()
    assert nt.n_shown == nt.count.value() and not grid.caption.elided
    def laid_out():  # the panels' sizes follow the fonts a few events later
        for _ in range(3):
            qtbot.waitUntil(lambda: not window.window_layout.pending, timeout=TIMEOUT)
            qtbot.wait(20)

    window.features.presentation.set_active(True, fullscreen=False)   # fonts x 1.6
    laid_out()
    check()
    assert grid.caption.elided and nt.n_shown < nt.count.value()
    window.features.presentation.set_active(False)
    laid_out()
    check()
    assert nt.n_shown == nt.count.value()


# ---------------------------------------------------------------------- themes
def test_theme_follows_the_system_unless_overridden(qtbot, window):
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    from gptviz_app.views.theme import DARK, LIGHT

    ap = window.features.appearance
    assert ap.mode == "system" and window.actions["theme_system"].isChecked()

    def window_colour():
        return QApplication.instance().palette().color(QPalette.ColorRole.Window)

    try:
        ap.pretend_system_scheme("light")
        assert window.theme.name == "light" and window_colour() == QColor(LIGHT.window)
        assert window.attention.glw.backgroundBrush().color() == QColor(LIGHT.plot_bg)
        ap.pretend_system_scheme("dark")
        assert window.theme.name == "dark" and window_colour() == QColor(DARK.window)
        # manual override: the system no longer decides
        window.actions["theme_light"].trigger()
        assert ap.mode == "light" and window.theme.name == "light"
        ap.pretend_system_scheme("dark")
        assert window.theme.name == "light"
        window.actions["theme_dark"].trigger()
        assert window.theme.name == "dark" and window.actions["theme_dark"].isChecked()
        # back to following the system
        ap.pretend_system_scheme("light")
        window.actions["theme_system"].trigger()
        assert window.theme.name == "light"
        # the theme keeps the font scale and colormap
        ap.set_colormap("magma")
        ap.set_font_scale(1.2)
        window.actions["theme_dark"].trigger()
        assert (window.theme.name, window.theme.colormap, window.theme.font_scale) == \
            ("dark", "magma", pytest.approx(1.2))
    finally:
        ap.pretend_system_scheme(None)
        ap.set_mode("system")


def test_colormap_menu_and_view_menu_stay_in_step(qtbot, window):
    ap = window.features.appearance
    cm = window.menus["colormap"]
    magma = next(a for a in cm.actions() if a.text().startswith("magma"))
    magma.trigger()
    assert window.theme.colormap == "magma" and ap.colormap == "magma"
    ap.set_colormap("cividis")
    checked = [a.text() for a in cm.actions() if a.isChecked()]
    assert len(checked) == 1 and checked[0].startswith("cividis")


# ---------------------------------------------------------------------- sample prompts
def test_sample_prompts_menu(qtbot, window):
    from gptviz.io.prompts import SamplePrompt, load_sample_prompts

    c = window.controller
    lec = window.features
    samples = load_sample_prompts()
    menu = window.menus["sample_prompts"]
    acts = [a for a in menu.actions() if not a.isSeparator()]
    assert [a.text() for a in acts] == [p.title for p in samples]
    assert [a.toolTip() for a in acts] == [p.shows for p in samples]
    assert [a.statusTip() for a in acts] == [p.shows for p in samples]
    assert menu.toolTipsVisible()
    assert menu.menuAction() in window.menus["generate"].actions()
    # a plain sample prompt
    induction = next(i for i, p in enumerate(samples) if "induction" in p.title)
    settle_n = c.snapshot.n_tokens
    with qtbot.waitSignal(lec.samples.applied, timeout=TIMEOUT):
        acts[induction].trigger()
    snap = settle(qtbot, window)
    assert window.prompt_editor.text() == samples[induction].text
    assert snap.n_generated == 0 and snap.n_tokens != settle_n
    assert snap.tokens == [window.controller.client.worker.session.display(i)
                           for i in snap.ids]
    # the random-repeat recipe is expanded against the model's tokenizer (4 words fit the
    # tiny tokenizer; 24 do not: a clear message)
    rr = next(i for i, p in enumerate(samples) if p.text.startswith("@random-repeat"))
    lec.samples.prompts[rr] = SamplePrompt(samples[rr].title, "@random-repeat:4",
                                           samples[rr].shows)
    with qtbot.waitSignal(lec.samples.applied, timeout=TIMEOUT) as sig:
        acts[rr].trigger()
    text = sig.args[0]
    snap = settle(qtbot, window)
    assert window.prompt_editor.text() == text and not text.startswith("@")
    half = len(text) // 2
    assert text[:half] == text[half:]
    ids = snap.ids.tolist()
    assert len(ids) == 8 and ids[:4] == ids[4:]
    lec.samples.prompts[rr] = SamplePrompt(samples[rr].title, "@random-repeat:24", "")
    n = c.snapshot.n_tokens
    acts[rr].trigger()
    qtbot.waitUntil(lambda: window.last_error_box is not None
                    and window.last_error_box.isVisible(), timeout=TIMEOUT)
    assert "whole-word tokens" in window.last_error_box.text()
    window.last_error_box.close()
    assert c.snapshot.n_tokens == n


def test_recent_prompts_menu(qtbot, window):
    c = window.controller
    lec = window.features
    for text in ("The quick brown fox", "Hello, world!"):
        window.prompt_editor.set_text(text)
        window.prompt_editor.submit()
        settle(qtbot, window)
    lec.samples.rebuild_recent()
    acts = lec.samples.recent_menu.actions()
    assert [a.toolTip() for a in acts] == ["Hello, world!", "The quick brown fox"]
    acts[1].trigger()
    snap = settle(qtbot, window)
    assert window.prompt_editor.text() == "The quick brown fox"
    assert snap.n_generated == 0
    assert lec.prefs.recent("prompts")[0] == "The quick brown fox"
    assert window.menus["recent_prompts"].menuAction() in window.menus["file"].actions()
    assert c.model is not None


def test_presentation_in_a_small_window_keeps_values_and_layer_labels_readable(qtbot, window):
    """Presentation fonts in a 1024 x 640 window (the window grows to what its panels need):
    every bar's value label ends inside the narrow chart, and the thumbnails' layer labels
    are thinned so that no two overlap (rows of a few pixels stacked "L0 L1 L2 L3")."""
    from PySide6.QtGui import QFontMetricsF

    c = window.controller
    c.step(2)
    settle(qtbot, window)
    window.resize(1024, 640)
    window.features.presentation.set_active(True, fullscreen=False)
    try:
        for _ in range(3):
            qtbot.waitUntil(lambda: not window.window_layout.pending, timeout=TIMEOUT)
            qtbot.wait(20)
        nt, grid = window.next_token, window.grid
        qtbot.waitUntil(lambda: nt.vb.width() > 20 and grid.vb.height() > 10, timeout=TIMEOUT)
        # (a label wider than the chart's plot starts at its left and is cut at its right:
        # the column is that narrow only when the window is smaller than its panels need)
        box = nt.vb.sceneBoundingRect()
        shown = nt.rows.label_rects()
        assert shown
        for _text, rect in shown:
            assert rect.right() <= box.right() + 1 or abs(rect.left() - box.left()) <= 1, \
                (box, rect)
        ticks = sorted(v for level in grid.plot.getAxis("left")._tickLevels for v, _ in level)
        (_, _), (y0, y1) = grid.vb.viewRange()
        px = grid.vb.height() / (y1 - y0)
        line = QFontMetricsF(grid.plot.getAxis("left").style["tickFont"]).height()
        assert ticks and all((b - a) * px >= line - 0.5 for a, b in zip(ticks, ticks[1:])), \
            ([round(t * px) for t in ticks], line)
    finally:
        window.features.presentation.set_active(False)


@pytest.mark.parametrize("height", [110, 160, 400])
def test_layer_labels_of_short_thumbnail_rows_never_overlap(qtbot, height):
    """Twelve layers in a short panel: every ``step``-th layer labelled, the labels at least
    a line apart; in a tall panel every layer."""
    from types import SimpleNamespace

    from gptviz_app.views.head_grid import HeadGrid

    grid = HeadGrid()
    qtbot.addWidget(grid)
    grid.resize(420, height)
    grid.show()
    qtbot.waitExposed(grid)
    grid.set_model(SimpleNamespace(n_layer=12, n_head=12, kv_heads=12))
    qtbot.waitUntil(lambda: grid.vb.height() > 10, timeout=TIMEOUT)
    grid._fit()
    axis = grid.plot.getAxis("left")
    ticks = sorted(v for level in axis._tickLevels for v, _ in level)
    _, (y0, y1) = grid.vb.viewRange()
    px = grid.vb.height() / (y1 - y0)
    line = QFontMetricsF(axis.style["tickFont"]).height()
    gaps = [(b - a) * px for a, b in zip(ticks, ticks[1:])]
    assert ticks and all(g >= line - 0.5 for g in gaps), (gaps, line)
    assert (len(ticks) == 12) == (grid.pitch * px >= line)
