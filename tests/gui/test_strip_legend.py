"""The token strip's legend in two labels: its colour keys, set with the theme alone, and what
the shading shows, set at a step only when it says something else. After any number of steps
it reads, and shows, what a fresh legend made for the last step reads and shows."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from .chip_pictures import flush, on_screen  # noqa: E402
from .conftest import close_window, settle, show_window  # noqa: E402


def _plain(rich: str) -> str:
    """What a rich text reads (as a label shows it), its no-break spaces as spaces."""
    from PySide6.QtGui import QTextDocument

    doc = QTextDocument()
    doc.setHtml(rich)
    return doc.toPlainText().replace("\u00a0", " ")


def _reads(strip) -> str:
    """The whole legend as one reads it (its keys where they are shown), spaces collapsed."""
    keys = "" if strip.legend_keys.isHidden() else _plain(strip.legend_keys.text())
    return " ".join((keys + _plain(strip.legend.text())).split())


def _fresh_strip(qtbot, win, snap):
    """A new strip as wide as the window's, in its theme, shown with ``snap`` alone."""
    from gptviz_app.views.token_strip import TokenStrip

    strip = TokenStrip()
    qtbot.addWidget(strip)
    strip.apply_theme(win.theme)
    strip.resize(win.token_strip.size())
    strip.show()
    qtbot.waitExposed(strip)
    strip.apply_snapshot(snap)
    flush()
    qtbot.wait(30)
    return strip


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_the_legend_after_steps_is_a_fresh_legend_of_the_last_step(qtbot, tiny_bundle, theme):
    from gptviz_app.views.theme import DARK, LIGHT

    win = show_window(qtbot, tiny_bundle)
    try:
        win.set_theme(DARK if theme == "dark" else LIGHT)
        c = win.controller
        for layer, head in ((0, 1), (1, 0), (1, 1)):
            settle(qtbot, win, c.step(1))
            c.set_view(layer=layer, head=head)
            snap = settle(qtbot, win)
        flush()
        qtbot.wait(30)
        strip = win.token_strip
        tok = snap.tokens[snap.query]
        assert _reads(strip) == (f"prompt generated forced ▣ query · shading = attention from "
                                 f"query {snap.query} {tok!r} (L1 H1)")
        fresh = _fresh_strip(qtbot, win, snap)
        assert fresh.legend_keys.text() == strip.legend_keys.text()
        assert fresh.legend.text() == strip.legend.text()
        # what the screen shows of the legend (painted at each step where it changed) is
        # what the fresh one shows
        row, fresh_row = strip.legend.parentWidget(), fresh.legend.parentWidget()
        assert row.size() == fresh_row.size()
        assert on_screen(row) == on_screen(fresh_row)
    finally:
        close_window(win)


def test_the_keys_are_set_with_the_theme_alone_and_the_rest_when_it_changed(qtbot,
                                                                             tiny_bundle):
    from gptviz_app.views.theme import LIGHT

    win = show_window(qtbot, tiny_bundle)
    try:
        strip = win.token_strip
        keys, says = strip.legend_keys, strip.legend.label
        set_keys, set_says = [], []
        real_keys, real_says = keys.setText, says.setText
        keys.setText = lambda t: (set_keys.append(t), real_keys(t))
        says.setText = lambda t: (set_says.append(t), real_says(t))
        for _ in range(3):
            snap = settle(qtbot, win, win.controller.step(1))
            assert f"query <b>{snap.query}</b>" in strip.legend.text()
        assert set_keys == [] and len(set_says) == 3
        strip.apply_snapshot(snap)  # the same step again: nothing it says changed
        assert len(set_says) == 3
        win.set_theme(LIGHT)
        assert len(set_keys) == 1 and LIGHT.prompt_chip in keys.text()
        # the other shading (e.g. rollout) in the legend, then the attention again
        strip.set_shading(snap.attn[-1, :snap.T], "rollout", "<b>rollout</b>")
        assert "shading = rollout" in _reads(strip)
        assert "attention from" not in strip.legend.text()
        strip.apply_snapshot(snap)
        assert f"attention from query {snap.query}" in _reads(strip)
        assert len(set_keys) == 1
    finally:
        close_window(win)


def test_a_legend_that_wraps_keeps_its_keys_on_its_first_line(qtbot, tiny_bundle):
    """Presentation fonts at 1024x640: the rest of the legend takes two lines, all of it shown;
    the keys are whole, on the first of them, and the row is as tall as the legend."""
    from PySide6.QtCore import Qt

    win = show_window(qtbot, tiny_bundle, size=(1024, 640))
    try:
        settle(qtbot, win, win.controller.step(1))
        win.features.presentation.set_active(True, fullscreen=False)
        strip = win.token_strip
        keys, says = strip.legend_keys, strip.legend
        line = says.fontMetrics().height()
        qtbot.waitUntil(lambda: says.height() >= 2 * line)
        flush()
        qtbot.wait(50)
        assert says.height() >= says.heightForWidth(says.width())
        assert keys.width() == keys.sizeHint().width()
        assert keys.y() == says.y() and keys.x() + keys.width() == says.x()
        assert keys.alignment() & Qt.AlignmentFlag.AlignTop
        win.features.presentation.set_active(False)
        qtbot.waitUntil(lambda: says.height() < 2 * line)
    finally:
        close_window(win)


def test_a_narrow_strip_shows_the_legend_as_one_wrapped_text(qtbot, tiny_bundle):
    """Too narrow for the keys and a few words beside them: the keys go in front of the rest,
    which wraps as one text (not a column of single words beside the keys); wider again, the
    keys have their own label again. It reads the same at every width."""
    from gptviz_app.views.token_strip import TokenStrip

    win = show_window(qtbot, tiny_bundle)
    try:
        snap = settle(qtbot, win, win.controller.step(1))
        strip = TokenStrip()
        qtbot.addWidget(strip)
        strip.apply_theme(win.theme)
        strip.apply_snapshot(snap)
        strip.resize(1000, 200)
        strip.show()
        qtbot.waitExposed(strip)
        wide = _reads(strip)
        assert wide.startswith("prompt generated forced ▣ query · shading = attention")
        keys, says = strip.legend_keys, strip.legend
        for width in (500, 300, 1000):
            strip.resize(width, 200)
            qtbot.waitUntil(lambda w=width: strip.legend_row.width() < w)
            flush()
            assert _reads(strip) == wide, width
            line = says.fontMetrics().height()
            if width < 1000:
                assert keys.isHidden()
                assert says.x() == 0 and says.height() >= 2 * line
                assert says.height() >= says.heightForWidth(says.width())
            else:
                assert not keys.isHidden() and says.height() < 2 * line
                assert keys.x() + keys.width() == says.x()
    finally:
        close_window(win)
