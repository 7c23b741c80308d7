"""A step repaints the labels of the status bar, the stepping controls and the token strip's
legend only where their text changed, each within its own rectangle; a label whose text did
not change is not repainted."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from .chip_pictures import flush  # noqa: E402
from .conftest import close_window, settle, show_window  # noqa: E402


class _Paints:
    """The regions of the paint events of ``widgets`` (by name), while installed."""

    def __init__(self, widgets: dict):
        from PySide6.QtCore import QEvent, QObject

        self.regions: dict[str, list] = {name: [] for name in widgets}
        names = {id(w): name for name, w in widgets.items()}
        log = self.regions

        class Spy(QObject):
            def eventFilter(self, obj, e):  # noqa: N802 - Qt name
                if e.type() == QEvent.Type.Paint and id(obj) in names:
                    log[names[id(obj)]].append(e.region().boundingRect())
                return False

        self.spy = Spy()
        self.widgets = widgets

    def __enter__(self):
        for w in self.widgets.values():
            w.installEventFilter(self.spy)
        return self

    def __exit__(self, *exc):
        for w in self.widgets.values():
            w.removeEventFilter(self.spy)


def test_a_step_repaints_the_changed_labels_alone_within_their_rects(qtbot, tiny_bundle):
    win = show_window(qtbot, tiny_bundle)
    try:
        settle(qtbot, win, win.controller.step(1))
        qtbot.wait(50)
        flush()
        status, steps = win.status, win.stepping
        labels = {"model": status.model.label, "settings": status.settings.label,
                  "context": status.context.label, "timing": status.timing.label,
                  "position": steps.position.label, "legend": win.token_strip.legend.label}
        def seen(w):  # what a repaint follows: its text, and where it is in the window
            return w.text(), w.mapTo(win, w.rect().topLeft()), w.size()

        quiet = 0
        for _ in range(4):
            before = {name: seen(w) for name, w in labels.items()}
            with _Paints(labels) as paints:
                settle(qtbot, win, win.controller.step(1))
                flush()
            for name, w in labels.items():
                changed = seen(w) != before[name]
                assert bool(paints.regions[name]) == changed, (name, before[name], seen(w))
                assert all(w.rect().contains(r) for r in paints.regions[name]), name
            assert paints.regions["context"] and paints.regions["position"]
            # (the time field may grow: the fields beside it move, and are drawn again)
            quiet += not paints.regions["model"] and not paints.regions["settings"]
        assert quiet
    finally:
        close_window(win)


def test_the_status_timing_is_set_once_a_step(qtbot, tiny_bundle):
    """The step's time and the update's, one text a step (the update's figure follows the
    snapshot): the field shows both."""
    win = show_window(qtbot, tiny_bundle)
    try:
        timing = win.status.timing
        texts = []
        real = timing.setText
        timing.setText = lambda text: (texts.append(text), real(text))
        snap = settle(qtbot, win, win.controller.step(1))
        flush()
        assert len(texts) == 1
        assert texts[0] == (f"step {snap.step_ms:.1f} ms · "
                            f"view {win.controller.last_apply_ms:.1f} ms")
        assert timing.text() == texts[0]
    finally:
        close_window(win)
