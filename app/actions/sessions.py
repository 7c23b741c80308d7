"""File ▸ Open session… (Ctrl+O), Save session (Ctrl+S), Save session as… (Ctrl+Shift+S),
File ▸ Recent sessions.

A session file (``.gptviz.json``, :mod:`gptviz.io.session_file`) is written and read on the
worker thread (:mod:`gptviz_app.runtime.file_commands`). Its ``view`` object holds what is on
screen: selected layer, head, query, average of heads, thumbnail mode, square-root scale, colormap,
font scale (and, for information, the theme and whether presentation mode was on). Opening a
file restores the same tokens, maps and view; it loads the session's model when the current
one has other weights. A corrupt, truncated or future-version file, a missing model or one
with other weights is refused with a message, and the open session stays as it was.

A long open (a big file, a model to load, many tokens to replay) shows its progress (tokens
replayed n / N) in the status bar and, after a moment, in a small dialog whose Cancel button
(or Escape) stops it: the open session stays exactly as it was.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QMenu,
    QProgressBar,
    QVBoxLayout,
)

from gptviz.io.session_file import SUFFIX
from gptviz_app.actions.preferences import Preferences
from gptviz_app.runtime.file_commands import view_to_dict

FILE_FILTER = f"gptviz sessions (*{SUFFIX});;JSON files (*.json);;All files (*)"
#: How long an open runs before its progress dialog shows (ms): a small file never flashes it.
PROGRESS_DELAY_MS = 400


class OpenProgressDialog(QDialog):
    """The progress of a session open: what it does, tokens replayed n / N, Cancel.

    Non-modal, like the Open model dialog: the window stays usable (and closable) behind it.
    Cancel or Escape emit ``cancelRequested()`` once.
    """

    cancelRequested = Signal()

    def __init__(self, parent, name: str) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Opening {name}")
        self.label = QLabel(f"Opening {name}…")
        self.label.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy until the replay's length is known
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.cancel_button = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        self.cancel_button.clicked.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(360)
        self.cancelling = False

    def set_progress(self, stage: str, done: int, total: int) -> None:
        if self.cancelling:
            return
        if total:
            self.bar.setRange(0, total)
            self.bar.setValue(done)
            self.label.setText(f"{stage}: {done:,} / {total:,}")
        else:
            self.bar.setRange(0, 0)
            self.label.setText(f"{stage}…")

    def reject(self) -> None:
        """Cancel and Escape: ask the worker to stop; the dialog closes when it has."""
        if not self.cancelling:
            self.cancelling = True
            self.label.setText("Cancelling…")
            self.cancel_button.setEnabled(False)
            self.cancelRequested.emit()


class SessionActions(QObject):
    """Signals: ``saved(path)``, ``opened(path)``, ``cancelled(path)``,
    ``failed(command, message)``."""

    saved = Signal(str)
    opened = Signal(str)
    cancelled = Signal(str)
    failed = Signal(str, str)

    def __init__(self, window, prefs: Preferences, appearance=None, presentation=None) -> None:
        super().__init__(window)
        self.win = window
        self.prefs = prefs
        self.appearance = appearance
        self.presentation = presentation
        self.path: str | None = None        # the file last saved or opened
        self.gen = -1                       # the open in progress (-1: none)
        self._cancel: threading.Event | None = None
        self.progress: OpenProgressDialog | None = None
        self._escape: QShortcut | None = None  # Escape in the window while an open runs
        self._show_progress = QTimer(self)
        self._show_progress.setSingleShot(True)
        self._show_progress.timeout.connect(self._progress_due)
        window.installEventFilter(self)  # a window that closes takes the progress with it
        self.directory = str(Path.home())
        self.actions: dict[str, QAction] = {}
        for key, text, keys, tip, slot in (
                ("open_session", "Open session…", "Ctrl+O",
                 "Open a saved .gptviz.json session: same tokens, maps and view",
                 self.choose_open),
                ("save_session", "Save session", "Ctrl+S",
                 "Save the session (model, prompt, settings, tokens, view) to a file",
                 self.save),
                ("save_session_as", "Save session as…", "Ctrl+Shift+S",
                 "Save the session to another file", self.choose_save)):
            a = QAction(text, window)
            a.setShortcut(QKeySequence(keys))
            a.setStatusTip(tip)
            a.triggered.connect(slot)
            window.addAction(a)
            self.actions[key] = a
            window.actions[key] = a
        self.recent_menu = QMenu("Recent sessions", window)
        self.recent_menu.aboutToShow.connect(self.rebuild_recent)
        window.menus["recent_sessions"] = self.recent_menu
        self.rebuild_recent()
        c = window.controller
        c.client.result.connect(self._on_result)
        c.client.errored.connect(self._on_error)  # with its generation: see _on_error

    # ------------------------------------------------------------------ state
    def view_state(self) -> dict:
        """The ``view`` object saved with the session."""
        theme = self.win.theme
        extra = {"colormap": theme.colormap, "font_scale": float(theme.font_scale),
                 "theme": theme.name}
        if self.appearance is not None:
            extra["theme_mode"] = self.appearance.mode
        if self.presentation is not None:
            extra["presentation"] = bool(self.presentation.active)
        return view_to_dict(self.win.controller.view, **extra)

    # ------------------------------------------------------------------ save
    def save_to(self, path: str) -> int:
        """Save to ``path`` on the worker; returns the request's generation (``saved``
        follows on success, ``failed`` otherwise)."""
        c = self.win.controller
        if c.model is None:
            self._fail("save_session", "No model is loaded: there is no session to save.")
            return -1
        path = str(path)
        self.directory = str(Path(path).parent)
        return c.request("save_session", path=path, view_state=self.view_state())

    def save(self) -> int:
        if self.path:
            return self.save_to(self.path)
        return self.choose_save()

    def choose_save(self) -> int:
        start = self.path or str(Path(self.directory) / f"session{SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(self.win, "Save session", start, FILE_FILTER)
        if not path:
            return -1
        if not path.endswith(".json"):
            path += SUFFIX
        return self.save_to(path)

    # ------------------------------------------------------------------ open
    @property
    def opening(self) -> bool:
        """A session open is in progress."""
        return self._cancel is not None

    def open_path(self, path: str) -> int:
        """Open a session file on the worker; returns the request's generation (``opened``
        follows on success, ``cancelled`` after :meth:`cancel`, ``failed`` otherwise: the
        current session is unchanged)."""
        c = self.win.controller
        c.set_playing(False)
        path = str(path)
        self.directory = str(Path(path).parent)
        self.cancel()  # a newer open replaces one in progress
        self._close_progress()
        self._cancel = threading.Event()
        self.progress = OpenProgressDialog(self.win, Path(path).name)
        self.progress.cancelRequested.connect(self.cancel)
        self._escape_cancels(True)
        self._show_progress.start(PROGRESS_DELAY_MS)
        self.win.status.showMessage(f"Opening {path}…")
        self.gen = c.request("open_session", path=path, cancel=self._cancel)
        return self.gen

    def cancel(self) -> None:
        """Stop the session open in progress (at its next token); nothing else changes."""
        if self._cancel is not None:
            self._cancel.set()

    def _progress_due(self) -> None:
        if self.progress is not None and self.opening:
            self.progress.show()

    def _escape_cancels(self, on: bool) -> None:
        """While an open runs, Escape in the window cancels it (as in its dialog, which
        need not have the focus); the window's own Escape (the query follows the newest
        token) is back when the open ends."""
        follow = self.win.actions.get("follow")
        if on and self._escape is None:
            self._escape = QShortcut(QKeySequence(Qt.Key.Key_Escape), self.win)
            self._escape.activated.connect(self._escape_pressed)
            if follow is not None:
                follow.setEnabled(False)  # one action a key: two would block each other
        elif not on and self._escape is not None:
            self._escape.setEnabled(False)
            self._escape.deleteLater()
            self._escape = None
            if follow is not None:
                follow.setEnabled(True)

    def _escape_pressed(self) -> None:
        if self.progress is not None:
            self.progress.reject()  # says "Cancelling…", as its own Escape does
        else:
            self.cancel()

    def _close_progress(self) -> None:
        self._escape_cancels(False)
        self._show_progress.stop()
        if self.progress is not None:
            self.progress.hide()
            self.progress.deleteLater()
            self.progress = None

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt name
        if obj is self.win and event.type() == QEvent.Type.Close and self.opening:
            self._finish_open()  # the worker stops; no answer will come
        return False

    def _finish_open(self) -> None:
        self._cancel = None
        self.gen = -1
        self._close_progress()

    def choose_open(self) -> int:
        path, _ = QFileDialog.getOpenFileName(self.win, "Open session", self.directory,
                                              FILE_FILTER)
        return self.open_path(path) if path else -1

    # ------------------------------------------------------------------ replies
    def _on_result(self, gen: int, command: str, result: dict) -> None:
        if command == "save_session":
            path = result["path"]  # the worker echoes the request's path
            self.path = path
            self.prefs.add_recent("sessions", path)
            self.win.status.showMessage(f"Saved the session to {path}", 6000)
            self.saved.emit(path)
        elif command == "open_session":
            if gen != self.gen:
                return  # an open that a newer one replaced
            path = result["path"]  # the worker echoes the request's path
            if "progress" in result:
                done, total = result["progress"]
                if self.progress is not None:
                    self.progress.set_progress(result["stage"], done, total)
                self.win.status.showMessage(  # short: the status bar's right side is full
                    f"Opening {Path(path).name}: " + (f"{done:,} / {total:,} tokens" if total
                                                      else f"{result['stage'].lower()}…"))
                return
            self._finish_open()
            if result.get("cancelled"):
                self.win.status.showMessage("Opening cancelled; the current session is "
                                            "unchanged", 6000)
                self.cancelled.emit(path)
                return
            self._apply_opened(result)
            self.path = path
            self.prefs.add_recent("sessions", path)
            self.win.status.showMessage(
                f"Opened {Path(path).name}: {result['n_generated']} generated tokens"
                + (f", model {result['model']}" if result.get("model_changed") else ""), 8000)
            self.opened.emit(path)

    def _apply_opened(self, result: dict) -> None:
        w = self.win
        c = w.controller
        # The worker built the session's snapshot with this view; the controller adopts it
        # so that the next requests keep it.
        c.view = result["viewspec"]
        w.prompt_editor.set_text(result["prompt"])
        w.sampling.set_settings(result["settings"])
        view = result.get("view") or {}
        ap = self.appearance
        if ap is not None:
            cmap = view.get("colormap")
            scale = view.get("font_scale")
            changed = False
            from gptviz_app.views.theme import COLORMAPS

            if isinstance(cmap, str) and cmap in COLORMAPS and cmap != ap.current_colormap:
                if ap.presenting:
                    ap.presentation_colormap = cmap
                else:
                    ap.colormap = cmap
                changed = True
            if isinstance(scale, (int, float)) and not isinstance(scale, bool) \
                    and 0.5 <= scale <= 4.0 and abs(scale - ap.scale) > 1e-9:
                if ap.presenting:
                    ap.presentation_scale = float(scale)
                else:
                    ap.font_scale = float(scale)
                changed = True
            if changed:
                ap.apply()

    def _on_error(self, gen: int, command: str, message: str) -> None:
        if command not in ("save_session", "open_session"):
            return
        if command == "open_session":
            if gen != self.gen:  # an open the user replaced or cancelled: not the one shown
                return
            self._finish_open()
        self._fail(command, message.split("\n\n")[0])

    def _fail(self, command: str, message: str) -> None:
        if command == "open_session":
            title = "Could not open the session"
            text = f"{message}\n\nThe current session is unchanged."
        else:
            title = "Could not save the session"
            text = f"{message}\n\nNothing was written; an earlier file is intact."
            if message.startswith("No model"):
                text = message
        self.win.status.showMessage(title, 8000)
        self.win.show_error(title, text)
        self.failed.emit(command, message)

    # ------------------------------------------------------------------ recent
    def rebuild_recent(self) -> None:
        m = self.recent_menu
        m.clear()
        items = self.prefs.recent("sessions")
        for i, path in enumerate(items):
            label = f"&{i + 1} {Path(path).name}" if i < 9 else Path(path).name
            a = m.addAction(label)
            a.setToolTip(path)
            a.setStatusTip(path)
            a.triggered.connect(lambda _=False, p=path: self._open_recent(p))
        if not items:
            a = m.addAction("(none yet)")
            a.setEnabled(False)
        else:
            m.addSeparator()
            m.addAction("Clear list", self._clear_recent)
        m.setToolTipsVisible(True)

    def _open_recent(self, path: str) -> None:
        if not Path(path).exists():
            self.prefs.remove_recent("sessions", path)
            self._fail("open_session", f"{path}: no such file (removed from the recent list)")
            return
        self.open_path(path)

    def _clear_recent(self) -> None:
        self.prefs.clear_recent("sessions")
        self.rebuild_recent()
