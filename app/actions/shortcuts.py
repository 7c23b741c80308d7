"""Keyboard control for live demos, and the Help ▸ Keyboard shortcuts dialog.

The keys are ordinary window-wide ``QAction`` shortcuts (they also work in floating
panels). Two things make them dependable whatever has the keyboard focus:

* :class:`KeyRouter` follows ``QApplication.focusChanged`` and puts an event filter on the
  focused widget of this window only (no application-wide filter that would see every event).
  On a key that is one of the navigation shortcuts it decides who gets it, through the
  ``ShortcutOverride`` event Qt sends before any shortcut fires:

  - text editors (the prompt editor, any line edit): the editor, so typing a space, a digit
    or an arrow key edits the text and never steps. Escape leaves the editor (the attention
    map takes the focus) so that Space steps again. One exception: the prompt editor when the
    focus only passed into it (Tab from the Seed box) and nothing is edited there
    (:meth:`~gptviz_app.views.prompt_editor.PromptEditor.is_editing`): the stepping keys
    (:data:`EDITOR_YIELDS`) step; a click or any other key starts editing;
  - number boxes (temperature, seed, ...): their own arrows, digits and Home; but Space,
    Shift+Space, ``[`` and ``]`` (nothing a number needs) go to the shortcuts;
  - anything else (buttons, check boxes, combo boxes, plots, tables): the shortcuts.

* Dialogs and menus are other windows: the window's shortcuts never fire there.

:func:`shortcut_rows` lists the shortcuts from the window's actual actions, so the dialog
cannot drift from what the keys do.
"""

from __future__ import annotations

import contextlib
import re

import shiboken6
from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

#: Keys a number box gives up to the shortcuts.
NUMBER_BOX_YIELDS = ("Space", "Shift+Space", "[", "]")
#: Keys the prompt editor gives up to the shortcuts while it has the focus without being
#: edited: the stepping keys.
EDITOR_YIELDS = ("Space", "Shift+Space", "Left", "Right", "Home")
#: Window actions whose keys the router protects (plus the layer/head ones made here).
NAV_ACTIONS = ("step", "play", "back", "forward", "reset")


def _combo(seq: QKeySequence) -> int:
    return seq[0].toCombined() if seq.count() else 0


class Navigation(QObject):
    """Up/Down = previous/next layer; 1-9 = head 0-8; ``[`` / ``]`` = previous/next head
    (the average of the layer's heads comes after the last head)."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.win = window
        self.actions: dict[str, QAction] = {}
        menu = window.menus["view"].addMenu("Layer and head")
        window.menus["navigate"] = menu

        def act(key: str, text: str, shortcut: str, slot, group: str = "") -> QAction:
            a = QAction(text, window)
            a.setShortcut(QKeySequence(shortcut))
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            a.setStatusTip(text)
            if group:
                a.setProperty("shortcutGroup", group)
            a.triggered.connect(slot)
            window.addAction(a)
            menu.addAction(a)
            self.actions[key] = a
            window.actions[key] = a
            return a

        act("layer_prev", "Previous layer", "Up", lambda: self.move_layer(-1))
        act("layer_next", "Next layer", "Down", lambda: self.move_layer(+1))
        act("head_prev", "Previous head", "[", lambda: self.move_head(-1))
        act("head_next", "Next head (after the last: average of heads)", "]",
            lambda: self.move_head(+1))
        menu.addSeparator()
        for i in range(1, 10):
            act(f"head_{i}", f"Head {i - 1}", str(i), lambda _=False, h=i - 1: self.select_head(h),
                group="Select head 0-8 (1 = head 0)")

    @property
    def _c(self):
        return self.win.controller

    def move_layer(self, delta: int) -> int:
        c = self._c
        if c.model is None:
            return -1
        layer = min(max(0, c.view.layer + delta), c.model.n_layer - 1)
        return c.set_view(layer=layer)

    def select_head(self, head: int) -> int:
        c = self._c
        if c.model is None or not 0 <= head < c.model.n_head:
            return -1
        return c.set_view(head=head, average=False)

    def move_head(self, delta: int) -> int:
        c = self._c
        if c.model is None:
            return -1
        H = c.model.n_head
        pos = H if c.view.average else c.view.head   # position H = the average
        pos = min(max(0, pos + delta), H)
        if pos == H:
            return c.set_view(average=True)
        return c.set_view(head=pos, average=False)


class KeyRouter(QObject):
    """Decides, for the focused widget of ``window``, whether a navigation key is the
    widget's or the shortcuts' (see the module docstring)."""

    def __init__(self, window, action_keys: list[str]) -> None:
        super().__init__(window)
        self.win = window
        self._action_keys = action_keys
        self._watched: QWidget | None = None
        self.routed = 0            # keys handed to the shortcuts against the widget (tests)
        from PySide6.QtWidgets import QApplication

        QApplication.instance().focusChanged.connect(self._on_focus)
        fw = QApplication.focusWidget()
        if fw is not None:
            self._on_focus(None, fw)

    # ------------------------------------------------------------------ focus tracking
    def _ours(self, w: QWidget | None) -> bool:
        if w is None or not shiboken6.isValid(w) or not shiboken6.isValid(self.win):
            return False
        top = w.window()
        if top is self.win:
            return True
        # a floating dock of this window
        return any(top is d for d in self.win.docks.values())

    def _on_focus(self, old, new) -> None:
        if self._watched is not None and shiboken6.isValid(self._watched):
            self._watched.removeEventFilter(self)
        self._watched = None
        if self._ours(new):
            new.installEventFilter(self)
            self._watched = new

    def detach(self) -> None:
        from PySide6.QtWidgets import QApplication

        with contextlib.suppress(RuntimeError, TypeError):
            QApplication.instance().focusChanged.disconnect(self._on_focus)
        if self._watched is not None and shiboken6.isValid(self._watched):
            self._watched.removeEventFilter(self)
        self._watched = None

    # ------------------------------------------------------------------ routing
    def nav_keys(self) -> set[int]:
        keys = set()
        for name in self._action_keys:
            a = self.win.actions.get(name)
            if a is not None:
                keys.update(_combo(s) for s in a.shortcuts())
        keys.discard(0)
        return keys

    @staticmethod
    def kind(w: QWidget) -> str:
        """``"text"``, ``"number"`` or ``"other"``."""
        p = w
        while p is not None:
            if isinstance(p, QAbstractSpinBox):
                return "number"
            p = p.parentWidget() if isinstance(p, QLineEdit) else None
        if isinstance(w, (QPlainTextEdit, QTextEdit, QLineEdit)):
            return "text"
        if isinstance(w, QComboBox) and w.isEditable():
            return "text"
        return "other"

    def eventFilter(self, obj, e) -> bool:  # noqa: N802 - Qt name
        if e.type() != QEvent.Type.ShortcutOverride:
            return False
        combo = e.keyCombination()
        key = combo.toCombined()
        kind = self.kind(obj)
        if kind == "text":
            plain = combo.keyboardModifiers() == Qt.KeyboardModifier.NoModifier
            if combo.key() == Qt.Key.Key_Escape and plain:
                QTimer.singleShot(0, self._leave_editor)
            if not self._editor_yields(obj, key):
                return False
            e.ignore()  # a stepping key in the prompt editor nobody is editing: it steps
            self.routed += 1
            return True
        if key not in self.nav_keys():
            return False
        if kind == "number":
            yields = {_combo(QKeySequence(k)) for k in NUMBER_BOX_YIELDS}
            if key not in yields:
                # The number box's own key (arrows step the value, digits type): claim it,
                # so the shortcut does not fire and the box gets the key press.
                e.accept()
                return True
        # Hand the key to the shortcuts: the widget does not get to override it.
        e.ignore()
        self.routed += 1
        return True

    def _editor_yields(self, obj, key: int) -> bool:
        editor = getattr(self.win, "prompt_editor", None)
        if editor is None or obj is not editor.edit or editor.is_editing():
            return False
        return key in self.nav_keys() and key in {_combo(QKeySequence(k)) for k in EDITOR_YIELDS}

    def _leave_editor(self) -> None:
        if shiboken6.isValid(self.win):
            self.win.attention.glw.setFocus(Qt.FocusReason.ShortcutFocusReason)


# ---------------------------------------------------------------------- help dialog
def _all_actions(window) -> list[QAction]:
    seen: list[QAction] = []
    ids: set[int] = set()

    def add(a: QAction) -> None:
        if id(a) not in ids and not a.isSeparator():
            ids.add(id(a))
            seen.append(a)

    def walk(menu) -> None:
        for a in menu.actions():
            if a.menu() is not None:
                walk(a.menu())
            else:
                add(a)

    for m in window.menuBar().actions():
        if m.menu() is not None:
            walk(m.menu())
    for a in window.actions.values():
        add(a)
    for a in window.findChildren(QAction):
        add(a)
    return seen


def _clean(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…").strip()


def describe(a: QAction) -> str:
    """What an action does, from its text and tooltip (``Step: generate one token``)."""
    name = _clean(a.text())
    if name in ("Play", "Pause") and a.isCheckable():
        name = "Play / pause"
    raw = a.toolTip() or ""
    if not raw or _clean(raw) == _clean(a.text()):
        return name
    tip = re.sub(r"\s*\([^()]*\)$", "", raw).strip()
    if tip and tip != name:
        return f"{name}: {tip[:1].lower()}{tip[1:]}"
    return name


def shortcut_rows(window) -> list[tuple[str, str]]:
    """``(what it does, keys)`` for every action of ``window`` that has a shortcut, in menu
    order; actions sharing a ``shortcutGroup`` property make one row (``1 … 9``)."""
    rows: list[tuple[str, str]] = []
    groups: dict[str, list[str]] = {}
    fmt = QKeySequence.SequenceFormat.NativeText
    for a in _all_actions(window):
        keys = [s.toString(fmt) for s in a.shortcuts() if not s.isEmpty()]
        if not keys:
            continue
        g = a.property("shortcutGroup")
        if g:
            if g not in groups:
                groups[g] = []
                rows.append((str(g), ""))
            groups[g].extend(keys)
            continue
        rows.append((describe(a), " or ".join(keys)))
    out = []
    for text, keys in rows:
        if text in groups:
            ks = groups[text]
            keys = f"{ks[0]} … {ks[-1]}" if len(ks) > 2 else " or ".join(ks)
        out.append((text, keys))
    return out


class ShortcutsDialog(QDialog):
    """Help ▸ Keyboard shortcuts: a table built by :func:`shortcut_rows`."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.setWindowTitle("Keyboard shortcuts")
        rows = shortcut_rows(window)
        self.rows = rows
        t = QTableWidget(len(rows), 2)
        t.setHorizontalHeaderLabels(["Action", "Keys"])
        t.verticalHeader().setVisible(False)
        t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        t.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        t.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for i, (what, keys) in enumerate(rows):
            t.setItem(i, 0, QTableWidgetItem(what))
            k = QTableWidgetItem(keys)
            f = k.font()
            f.setBold(True)
            k.setFont(f)
            t.setItem(i, 1, k)
        t.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        t.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        t.resizeRowsToContents()
        self.table = t
        note = QLabel("Space, digits and arrows type as usual in the prompt editor once you "
                      "click or type in it (until then, as when Tab brings you there, the "
                      "stepping keys step); Escape leaves it. In number boxes, Space and [ ] "
                      "still step and pick heads.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(t, 1)
        lay.addWidget(note)
        lay.addWidget(buttons)
        fm = self.fontMetrics()
        table_h = t.horizontalHeader().sizeHint().height() + t.verticalHeader().length() + 8
        want = table_h + note.sizeHint().height() * 2 + buttons.sizeHint().height() + 40
        screen = window.screen().availableGeometry().height() if window.screen() else 1000
        self.resize(max(560, fm.horizontalAdvance("M") * 48), min(want, int(screen * 0.9)))
