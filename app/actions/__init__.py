"""The window's features beyond the views: presentation mode, themes, keyboard control,
sessions, export, sample prompts and preferences, installed on every
:class:`~gptviz_app.views.main_window.MainWindow` (as ``window.features``).

:func:`install` adds, without changing how the window is laid out:

* :mod:`gptviz_app.actions.presentation`: View ▸ Presentation mode (F11), View ▸ Presentation ▸ …
* :mod:`gptviz_app.actions.appearance`: View ▸ Theme (system / light / dark), View ▸ Font size
* :mod:`gptviz_app.actions.shortcuts`: Up/Down, 1-9, [ ] keys, View ▸ Layer and head, the focus
  rules that keep Space for the prompt editor, Help ▸ Keyboard shortcuts (F1)
* :mod:`gptviz_app.actions.sessions`: File ▸ Open session… / Save session / Save session as… /
  Recent sessions
* :mod:`gptviz_app.actions.export`: File ▸ Export… (Ctrl+Shift+E), File ▸ Export trace (Ctrl+E)
* :mod:`gptviz_app.actions.open_model`: File ▸ Open model… (Ctrl+Shift+O): bundled, recent
  and cached models, device and precision
* :mod:`gptviz_app.actions.sample_prompts`: Generate ▸ Sample prompts, File ▸ Recent prompts
* :mod:`gptviz_app.actions.preferences`: preferences (QSettings) restored at start, saved on
  close
* :mod:`gptviz_app.actions.help_docs`: Help ▸ Analysis definitions (docs/analysis.md, offline)
* :mod:`gptviz_app.actions.long_texts`: find a token (Ctrl+F), go to a position (Ctrl+G),
  View ▸ Window slide (the stride), the first slide told once
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QKeySequence

from gptviz_app.actions.appearance import Appearance
from gptviz_app.actions.export import Exporter
from gptviz_app.actions.help_docs import HelpDocs
from gptviz_app.actions.long_texts import LongTexts
from gptviz_app.actions.open_model import ModelOpener
from gptviz_app.actions.preferences import Preferences
from gptviz_app.actions.presentation import PresentationMode
from gptviz_app.actions.sample_prompts import SamplePrompts
from gptviz_app.actions.sessions import SessionActions
from gptviz_app.actions.shortcuts import NAV_ACTIONS, KeyRouter, Navigation, ShortcutsDialog


class WindowFeatures(QObject):
    """Everything :func:`install` added to one window (``window.features``)."""

    def __init__(self, window, prefs: Preferences | None = None) -> None:
        super().__init__(window)
        self.win = window
        self.prefs = prefs if prefs is not None else Preferences.in_memory()
        self.appearance = Appearance(window, self.prefs)
        self.presentation = PresentationMode(window, self.appearance)
        self.navigation = Navigation(window)
        self.exporter = Exporter(window, self.prefs)
        self.help_docs = HelpDocs(window)
        self.long_texts = LongTexts(window, self.prefs)
        self.models = ModelOpener(window, self.prefs)
        self.sessions = SessionActions(window, self.prefs, self.appearance, self.presentation)
        self.samples = SamplePrompts(window, self.prefs)
        self.router = KeyRouter(window, list(NAV_ACTIONS) + list(self.navigation.actions))
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self._build_menus()
        c = window.controller
        c.modelChanged.connect(self._on_model)
        window.prompt_editor.promptSubmitted.connect(self._after_submit)
        window.installEventFilter(self)
        self.appearance.apply()
        if self.prefs.persistent:
            self.restore_window()

    # ------------------------------------------------------------------ menus
    def _build_menus(self) -> None:
        w = self.win
        file = w.menus["file"]
        acts = file.actions()
        first = acts[0] if acts else None
        s = self.sessions.actions
        for key in ("open_session", "save_session", "save_session_as"):
            file.insertAction(first, s[key])
        file.insertMenu(first, self.sessions.recent_menu)
        file.insertMenu(first, self.samples.recent_menu)
        file.insertSeparator(first)
        file.insertAction(first, self.exporter.action)
        file.insertAction(first, self.exporter.trace_action)
        file.insertSeparator(first)
        help_menu = w.menus["help"]
        a = QAction("Keyboard shortcuts", w)
        a.setShortcut(QKeySequence(QKeySequence.StandardKey.HelpContents))
        a.setStatusTip("Every keyboard shortcut and what it does")
        a.triggered.connect(self.show_shortcuts)
        w.addAction(a)
        help_acts = help_menu.actions()
        help_menu.insertAction(help_acts[0] if help_acts else None, a)
        help_menu.insertAction(help_acts[0] if help_acts else None, self.help_docs.action)
        w.actions["shortcuts"] = a

    def show_shortcuts(self) -> ShortcutsDialog:
        if self.shortcuts_dialog is not None:
            self.shortcuts_dialog.close()
        self.shortcuts_dialog = ShortcutsDialog(self.win)
        self.shortcuts_dialog.open()
        return self.shortcuts_dialog

    # ------------------------------------------------------------------ behaviour
    def _after_submit(self, text: str) -> None:
        # After "Use prompt" the keys are for stepping again (Space, arrows...).
        self.win.attention.glw.setFocus(Qt.FocusReason.OtherFocusReason)

    def _on_model(self, info) -> None:
        src = str(info.source or "")
        if src and not src.startswith("<") and Path(src).exists():
            self.prefs.last_model = src

    # ------------------------------------------------------------------ window state
    def restore_window(self) -> None:
        w = self.win
        geo, state = self.prefs.geometry, self.prefs.window_state
        if geo is not None:
            w.restoreGeometry(geo)
        if state is not None:
            w.restoreState(state)

    def save_window(self) -> None:
        w = self.win
        if self.presentation.active:
            self.presentation.set_active(False)
        self.prefs.set_window(w.saveGeometry(), w.saveState())
        self.prefs.sync()

    def eventFilter(self, obj, e) -> bool:  # noqa: N802 - Qt name
        if obj is self.win and e.type() == QEvent.Type.Close:
            if self.prefs.persistent:
                self.save_window()
            self.router.detach()
        return False


def install(window, preferences: Preferences | None = None) -> WindowFeatures:
    """Add the features to ``window``; ``preferences`` defaults to an
    in-memory store (nothing read from or written to the user's settings)."""
    return WindowFeatures(window, preferences)
