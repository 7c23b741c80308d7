"""The prompt editor: a few lines of text and a button (Ctrl+Enter) that starts over from it.

It knows the prompt the session runs on (every snapshot carries it) and shows in its corner
when its text differs: "edited, not applied". While it has the focus without being edited (the
focus came by Tab, nothing typed yet) the stepping keys step
(:class:`gptviz_app.actions.shortcuts.KeyRouter` asks :meth:`PromptEditor.is_editing`); a
click in it or any other key starts editing, and then every key is the editor's.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QFontMetricsF, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.theme import DARK, Theme


class PromptEditor(QWidget):
    """Edit the prompt; ``promptSubmitted(text)`` when the user applies it."""

    promptSubmitted = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QPlainTextEdit()
        self.edit.setPlaceholderText("Type a prompt, then Ctrl+Enter")
        self.edit.setTabChangesFocus(True)
        self.button = QPushButton("Use prompt")
        self.button.setToolTip("Tokenise this prompt and start over (Ctrl+Enter)")
        self.button.clicked.connect(self.submit)
        QShortcut(QKeySequence("Ctrl+Return"), self.edit, self.submit,
                  context=Qt.ShortcutContext.WidgetShortcut)
        QShortcut(QKeySequence("Ctrl+Enter"), self.edit, self.submit,
                  context=Qt.ShortcutContext.WidgetShortcut)
        side = QVBoxLayout()
        side.addWidget(self.button)
        side.addStretch(1)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.addWidget(self.edit, 1)
        lay.addLayout(side)
        self._loaded_prompt = None
        self.lines = 2
        #: The prompt the session runs on (``None`` before the first snapshot).
        self.running: str | None = None
        self._editing = False
        # The state shows in the editor's corner, over the text: no room taken from the layout.
        self.badge = QLabel("", self.edit)
        self.badge.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.badge.hide()
        self.edit.installEventFilter(self)
        self.edit.viewport().installEventFilter(self)
        self.edit.textChanged.connect(self._show_state)
        self.apply_theme(DARK)

    def apply_theme(self, theme: Theme) -> None:
        self.edit.setFont(theme.font(1.05))
        self.set_lines(self.lines)
        self.badge.setFont(theme.font(0.8, bold=True))
        self._theme = theme
        self._show_state()

    def height_for_lines(self, n: int) -> int:
        """Height of the editor when it shows exactly ``n`` whole lines (a part of a line
        would be cut in half, as the third one was at 2.4 lines)."""
        line = math.ceil(QFontMetricsF(self.edit.font()).lineSpacing())
        margin = self.edit.document().documentMargin()
        return int(n * line + 2 * margin + 2 * self.edit.frameWidth())

    def set_lines(self, n: int) -> None:
        """Show ``n`` whole lines of the prompt (a longer one scrolls); the window's layout
        picks ``n`` for the window's height."""
        self.lines = max(1, int(n))
        self.edit.setFixedHeight(self.height_for_lines(self.lines))

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        self._editing = False
        self.edit.setPlainText(text)

    def submit(self) -> None:
        self._editing = False
        self.promptSubmitted.emit(self.text())

    # ------------------------------------------------------------------ editing state
    def is_edited(self) -> bool:
        """The text differs from the prompt the session runs on (edited, not applied)."""
        return self.running is not None and self.text() != self.running

    def is_editing(self) -> bool:
        """Keys are the editor's: it was clicked or typed in since it got the focus, or its
        text is edited and not applied. ``False`` right after Tab brought the focus."""
        return self._editing or self.is_edited()

    def restore_running(self) -> None:
        """Put the running prompt back into the editor."""
        if self.running is not None:
            self.set_text(self.running)

    def on_error(self, command: str, message: str) -> None:
        """A prompt was refused: an empty one gives way to the running prompt again (a
        refused text with something in it stays, to be corrected)."""
        if command == "set_prompt" and not self.text().strip():
            self.restore_running()

    def _show_state(self) -> None:
        theme = getattr(self, "_theme", DARK)
        if self.is_edited():
            text, color = "edited, not applied", theme.accent
            tip = ("The session still runs on the previous prompt: Ctrl+Enter or Use prompt "
                   "starts over from this text")
        elif self.edit.hasFocus() and not self._editing:
            text, color = "Space steps · type to edit", theme.text_dim
            tip = "The stepping keys step until you click in the prompt or type"
        else:
            self.badge.hide()
            return
        self.badge.setText(text)
        self.badge.setToolTip(tip)
        self.badge.setStyleSheet(f"color: {color}; background: {theme.plot_bg}; "
                                 "padding: 0px 4px; border-radius: 3px")
        self.badge.adjustSize()
        self._place_badge()
        self.badge.show()

    def _place_badge(self) -> None:
        vp = self.edit.viewport().geometry()
        b = self.badge
        b.move(vp.right() - b.width() - 2, vp.bottom() - b.height() - 1)

    def eventFilter(self, obj, e) -> bool:  # noqa: N802 - Qt name
        t = e.type()
        if obj is self.edit:
            if t == QEvent.Type.FocusIn:
                # Tab (keyboard navigation) lands without editing; a click, a buddy key or
                # the program putting the focus there means editing.
                keyboard = (Qt.FocusReason.TabFocusReason, Qt.FocusReason.BacktabFocusReason)
                if e.reason() in keyboard:
                    self._editing = False
                elif e.reason() not in (Qt.FocusReason.ActiveWindowFocusReason,
                                        Qt.FocusReason.PopupFocusReason):
                    self._editing = True
                self._show_state()
            elif t == QEvent.Type.FocusOut:
                if e.reason() not in (Qt.FocusReason.ActiveWindowFocusReason,
                                      Qt.FocusReason.PopupFocusReason):
                    self._editing = False
                self._show_state()
            elif t == QEvent.Type.KeyPress and not self._editing and e.key() not in (
                    Qt.Key.Key_Shift, Qt.Key.Key_Control, Qt.Key.Key_Alt, Qt.Key.Key_Meta,
                    Qt.Key.Key_Escape, Qt.Key.Key_Tab, Qt.Key.Key_Backtab):
                self._editing = True  # a key the shortcuts did not take: typing starts
                self._show_state()
            elif t == QEvent.Type.Resize:
                self._place_badge()
        elif t == QEvent.Type.MouseButtonPress and not self._editing:
            self._editing = True  # a click in the text
            self._show_state()
        return False

    def set_model(self, info: ModelInfo) -> None:
        if info.prompt and info.prompt != self._loaded_prompt:
            self._loaded_prompt = info.prompt
            if not self.text():
                self.set_text(info.prompt)

    def apply_snapshot(self, snap: Snapshot) -> None:
        if snap.prompt != self.running:
            old, self.running = self.running, snap.prompt
            # A new running prompt (applied here, a sample prompt, a session, another model)
            # replaces the editor's text unless that holds edits of its own.
            if (old is None or self.text() in (old, "")) and self.text() != snap.prompt:
                self.set_text(snap.prompt)
        self._show_state()
