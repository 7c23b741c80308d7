"""The prompt editor: a few lines of text and a button (Ctrl+Enter) that starts over from it."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

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
        self.apply_theme(DARK)

    def apply_theme(self, theme: Theme) -> None:
        self.edit.setFont(theme.font(1.05))
        fm = self.edit.fontMetrics()
        # Two and a bit lines when there is room; down to one and a bit when the window is
        # short (presentation at 1280x800), where the token strip below shows the text anyway.
        self.edit.setMinimumHeight(int(fm.lineSpacing() * 1.4 + 12))
        self.edit.setMaximumHeight(int(fm.lineSpacing() * 2.4 + 12))

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        self.edit.setPlainText(text)

    def submit(self) -> None:
        self.promptSubmitted.emit(self.text())

    def set_model(self, info: ModelInfo) -> None:
        if info.prompt and info.prompt != self._loaded_prompt:
            self._loaded_prompt = info.prompt
            if not self.text():
                self.set_text(info.prompt)

    def apply_snapshot(self, snap: Snapshot) -> None:
        pass
