"""Shared fixtures and helpers of the GUI tests (pytest-qt, offscreen).

Every test in this folder fails on a Qt warning and on a worker thread left running at the end:
:func:`pytest_collection_modifyitems` gives each of them the ``qt_log_level_fail("WARNING")``
mark and a ``qt_log_ignore`` mark for the offscreen platform's "does not support
propagateSizeHints()", which says nothing about the app. A test that has to ignore more names
every message in its own ``qt_log_ignore`` mark (the mark closest to the test wins).

The tiny models (``tiny_bundle``, ``tiny_bundle_factory``) come from ``tests/conftest.py``. The
helpers below are plain functions; the test modules import them
(``from .conftest import TIMEOUT, settle``). Nothing here imports Qt at import time, so that a
module's ``pytest.importorskip("pytestqt")`` still skips it where pytest-qt is missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

#: How long (ms) a test waits for the worker, a signal or the screen before failing.
TIMEOUT = 20000
DEFAULT_PROMPT = "Once upon a time there was"
WINDOW_SIZE = (1280, 800)

QT_MARKS = (pytest.mark.qt_log_level_fail("WARNING"),
            pytest.mark.qt_log_ignore(r".*propagateSizeHints.*"))

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """Put :data:`QT_MARKS` on every test of this folder (the hook sees the whole session's
    items). Appended after the test's own marks, so that a test's ``qt_log_ignore`` wins."""
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            for mark in QT_MARKS:
                item.add_marker(mark)


class EventCounts:
    """Counts the events of some types each widget receives while entered (an application
    event filter; ``with counts: ...``, then ``counts.of(widget)``)."""

    def __init__(self, *types):
        from PySide6.QtCore import QObject
        from PySide6.QtWidgets import QApplication

        counts: dict[int, list] = {}
        self.counts = counts

        class Filter(QObject):
            def eventFilter(self, obj, e):  # noqa: N802 - Qt name
                if e.type() in types:
                    counts.setdefault(id(obj), [obj, 0])[1] += 1
                return False

        self._filter = Filter()
        self._app = QApplication.instance()

    def __enter__(self):
        self.counts.clear()
        self._app.installEventFilter(self._filter)
        return self

    def __exit__(self, *exc):
        self._app.removeEventFilter(self._filter)

    def of(self, widget) -> int:
        return self.counts.get(id(widget), [None, 0])[1]


# ---------------------------------------------------------------------- worker threads
def running_threads():
    """The worker threads (of every window made so far) that are still running."""
    from gptviz_app.runtime.worker import THREADS

    return [t for t in list(THREADS) if t.isRunning()]


@pytest.fixture(autouse=True)
def no_thread_left_running():
    yield
    assert running_threads() == [], "a worker thread is still running after the test"


@pytest.fixture(autouse=True)
def no_window_left_behind(qapp):
    """Delete the test's closed windows now, at a safe point. pytest-qt only closes them and
    calls ``deleteLater``; left alone, the C++ windows stay in ``QApplication.allWidgets()``
    and their Python wrappers (kept in reference cycles) are freed by the garbage collector at
    any later moment, e.g. while the next window's ``QApplication.setStyle`` walks through
    every widget: a crash (segmentation fault in ``QFusionStyle::unpolish``)."""
    yield
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


# ---------------------------------------------------------------------- windows
def show_window(qtbot, bundle, prompt: str = DEFAULT_PROMPT, *, preferences=None,
                size: tuple[int, int] | None = WINDOW_SIZE, activate: bool = False):
    """A :class:`~gptviz_app.views.main_window.MainWindow` on ``bundle``, shown, once its first
    snapshot is on screen. ``size=None`` keeps the window's own size (e.g. restored preferences);
    ``activate`` also waits until it is the active window (keyboard tests). The caller closes
    it (:func:`close_window`); ``qtbot`` closes it at the latest at the end of the test."""
    from gptviz_app.views.main_window import MainWindow

    win = MainWindow(bundle=bundle, prompt=prompt, preferences=preferences)
    qtbot.addWidget(win)
    if size:
        win.resize(*size)
    win.show()
    qtbot.waitUntil(lambda: win.controller.snapshot is not None, timeout=TIMEOUT)
    # the head grid asks for its thumbnails at the size it shows them (redrawn when the
    # worker is idle): start from a snapshot drawn at it
    settle(qtbot, win)
    if activate:
        win.activateWindow()
        qtbot.waitUntil(win.isActiveWindow, timeout=TIMEOUT)
    return win


def close_window(win) -> None:
    """Close ``win``; its worker thread must have stopped by the time ``close`` returns."""
    win.close()
    assert not win.controller.client.thread.isRunning()


@pytest.fixture
def window_options():
    """Keyword arguments of :func:`show_window` for the ``window`` fixture. A test module that
    wants another window overrides this fixture (e.g. ``{"prompt": ..., "activate": True}``)."""
    return {}


@pytest.fixture
def window(qtbot, tiny_bundle, window_options):
    """The app on the tiny model, 1280x800, with :data:`DEFAULT_PROMPT` and its first
    snapshot on screen; closed (worker stopped) after the test."""
    win = show_window(qtbot, tiny_bundle, **window_options)
    yield win
    close_window(win)


# ---------------------------------------------------------------------- waiting, clicking
def settle(qtbot, win, gen: int | None = None):
    """Wait until request ``gen`` (default: the newest one) has finished, nothing is running
    and its snapshot is on screen; return that snapshot."""
    c = win.controller

    def done():
        want = c.client.latest if gen is None else gen
        return (c.client.latest == want and not c.client.busy
                and c.snapshot is not None and c.snapshot.gen == want)

    qtbot.waitUntil(done, timeout=TIMEOUT)
    return c.snapshot


def click_scene(qtbot, glw, scene_pt, button=None, modifier=None):
    """Click a pyqtgraph ``GraphicsLayoutWidget`` at a scene point (default: left button, no
    modifier)."""
    from PySide6.QtCore import Qt

    qtbot.mouseClick(glw.viewport(),
                     Qt.MouseButton.LeftButton if button is None else button,
                     Qt.KeyboardModifier.NoModifier if modifier is None else modifier,
                     glw.mapFromScene(scene_pt))


# ---------------------------------------------------------------------- comparing states
def same_state(a, b):
    """Two snapshots show the same tokens, maps, thumbnails and candidates."""
    assert a.ids.tolist() == b.ids.tolist()
    assert a.tokens == b.tokens
    np.testing.assert_array_equal(a.attn, b.attn)      # NaN above the diagonal in both
    np.testing.assert_array_equal(a.grid, b.grid)
    np.testing.assert_array_equal(a.candidates.ids, b.candidates.ids)
    np.testing.assert_array_equal(a.candidates.probs, b.candidates.probs)
    assert a.candidates.chosen == b.candidates.chosen
    np.testing.assert_array_equal(a.chosen_probs, b.chosen_probs)
