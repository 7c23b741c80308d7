"""A small bar over the token strip: find a token (Ctrl+F) or go to a position (Ctrl+G).

Find looks for the typed text in the text as the strip shows it (a space may be typed as a
space or as "·"; case is ignored), across token boundaries: each match is marked under the
chip it starts in, Enter goes to the next one and Shift+Enter to the previous one (scrolled
into view), "3 / 12" says where. Go to takes a position and makes that token the query
(the map and the panels follow it). Escape closes the bar.
"""

from __future__ import annotations

import bisect

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QToolButton, QWidget

from gptviz.io.tokenizer import NEWLINE_MARK, SPACE_MARK, TAB_MARK
from gptviz_app.views.token_strip import TokenStrip


def find_positions(tokens: list[str], query: str) -> list[int]:
    """Positions of the tokens where each occurrence of ``query`` in the joined display
    ``tokens`` starts (case-insensitive; spaces, newlines and tabs match their marks)."""
    q = (query.replace(" ", SPACE_MARK).replace("\n", NEWLINE_MARK)
         .replace("\t", TAB_MARK).casefold())
    if not q:
        return []
    folded = [t.casefold() for t in tokens]  # per token: casefold may change a length
    text = "".join(folded)
    starts, at = [], 0
    for t in folded:  # offset of each token in the joined text
        starts.append(at)
        at += len(t)
    out: list[int] = []
    i = text.find(q)
    while i >= 0:
        tok = bisect.bisect_right(starts, i) - 1
        if not out or out[-1] != tok:
            out.append(tok)
        i = text.find(q, i + 1)
    return out


class FindBar(QWidget):
    """Find (:meth:`open_find`) or go to (:meth:`open_goto`) over ``strip``; hidden until
    asked for."""

    def __init__(self, strip: TokenStrip, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.strip = strip
        self.mode = "find"
        self.what = QLabel("Find")
        self.edit = QLineEdit()
        self.edit.setClearButtonEnabled(True)
        self.count = QLabel("")
        self.prev = QToolButton()
        self.prev.setText("▲")
        self.prev.setToolTip("Previous match (Shift+Enter)")
        self.next = QToolButton()
        self.next.setText("▼")
        self.next.setToolTip("Next match (Enter)")
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setToolTip("Close (Escape)")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 0, 4, 0)
        lay.setSpacing(4)
        for w in (self.what, self.edit, self.count, self.prev, self.next, self.close_button):
            lay.addWidget(w, 1 if w is self.edit else 0)
        self.edit.textChanged.connect(self._on_text)
        self.edit.installEventFilter(self)
        self.prev.clicked.connect(lambda: self.go(-1))
        self.next.clicked.connect(lambda: self.go(+1))
        self.close_button.clicked.connect(self.close_bar)
        self.matches: list[int] = []
        self.current = -1
        self.hide()

    # ------------------------------------------------------------------ opening
    def open_find(self) -> None:
        self._open("find", "Find", "text of a token or several, e.g. ·the")

    def open_goto(self) -> None:
        n = len(self.strip.canvas.tokens)
        self._open("goto", "Go to", f"position 0–{max(0, n - 1)}, then Enter")

    def _open(self, mode: str, label: str, hint: str) -> None:
        changed = mode != self.mode
        self.mode = mode
        self.what.setText(label)
        self.edit.setPlaceholderText(hint)
        self.prev.setVisible(mode == "find")
        self.next.setVisible(mode == "find")
        if changed:
            self.edit.clear()
        self.show()
        self.edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.edit.selectAll()
        self.refresh()

    def close_bar(self) -> None:
        self.hide()
        self._mark([], -1)
        self.strip.scroll.setFocus(Qt.FocusReason.OtherFocusReason)

    # ------------------------------------------------------------------ finding
    def refresh(self) -> None:
        """Find again (the text changed, or the tokens did), staying near the current one."""
        if self.mode != "find" or not self.isVisible():
            self.count.setText("")
            return
        old = self.matches[self.current] if 0 <= self.current < len(self.matches) else -1
        self.matches = find_positions(self.strip.canvas.tokens, self.edit.text())
        cur = -1
        if self.matches:
            cur = next((k for k, i in enumerate(self.matches) if i >= old), 0)
        self._mark(self.matches, cur)

    def go(self, step: int) -> int:
        """Move to the next (``+1``) or previous (``-1``) match; returns its position (-1:
        none)."""
        if self.mode == "goto":
            return self.go_to(self.edit.text())
        if not self.matches:
            return -1
        cur = (self.current + step) % len(self.matches) if self.current >= 0 else 0
        self._mark(self.matches, cur)
        return self.matches[cur]

    def go_to(self, text: str) -> int:
        """Make the token at position ``text`` the query; -1 (and a note) when it is not one."""
        n = len(self.strip.canvas.tokens)
        try:
            pos = int(text.strip().lstrip("#"))
        except ValueError:
            pos = -1
        if not 0 <= pos < n:
            self.count.setText(f"a position in 0–{max(0, n - 1)}")
            return -1
        self.strip.reveal(pos)
        ws = self.strip.canvas.window_start
        if pos < ws:  # no attention to show there: say so, the query stays
            self.count.setText(f"{pos} is before the model's window (from {ws})")
            self._mark([pos], 0)
            return -1
        self.strip.choose_query(pos)
        self.close_bar()
        return pos

    def _mark(self, matches: list[int], current: int) -> None:
        self.matches, self.current = list(matches), current
        c = self.strip.canvas
        c.found, c.found_current = list(matches), (matches[current] if current >= 0 else -1)
        c.update()
        if self.mode == "find" and self.isVisible():
            text = self.edit.text()
            self.count.setText(f"{current + 1} / {len(matches)}" if matches
                               else "no match" if text else "")
        if current >= 0:
            self.strip.reveal(matches[current])

    def _on_text(self, _text: str) -> None:
        if self.mode == "find":
            self.current = -1
            self.refresh()
        else:
            self.count.setText("")

    def eventFilter(self, obj, e) -> bool:  # noqa: N802 - Qt name
        if obj is self.edit and e.type() == QEvent.Type.ShortcutOverride \
                and e.key() in (Qt.Key.Key_Escape, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            e.accept()  # the bar's keys, not the window's shortcuts (Escape: query follows)
            return True
        if obj is self.edit and e.type() == QEvent.Type.KeyPress:
            if e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                shift = bool(e.modifiers() & Qt.KeyboardModifier.ShiftModifier)
                self.go(-1 if shift else +1)
                return True
            if e.key() == Qt.Key.Key_Escape:
                self.close_bar()
                return True
        return False
