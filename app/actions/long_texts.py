"""Long texts: find a token (Ctrl+F) and go to a position (Ctrl+G) in the token strip, and the
model's window as it slides over the text (View ▸ Window slide).

* The find bar (:class:`~gptviz_app.views.token_find.FindBar`) sits over the token strip's
  chips, hidden until Ctrl+F or Ctrl+G.
* The window: the model sees at most ``block_size`` tokens; once the text is longer the
  window slides by a stride (half the block by default). The first slide is told once, in
  the status bar, in words; the token strip marks where the window starts and the map's title
  says it. The stride is a preference (``window/stride_divisor``: the block divided by 2, 4,
  8 or 16), sent to the worker (``set_stride``) for every model opened.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QActionGroup, QKeySequence

from gptviz_app.runtime.window_commands import STRIDE_DIVISORS
from gptviz_app.views.token_find import FindBar

#: What each stride is called in the menu.
STRIDE_NAMES = {2: "half the window", 4: "a quarter", 8: "an eighth", 16: "a sixteenth"}


class LongTexts(QObject):
    """Adds find / go to and the window-slide preference to ``window``."""

    def __init__(self, window, prefs) -> None:
        super().__init__(window)
        self.win = window
        self.prefs = prefs
        strip = window.token_strip
        self.bar = FindBar(strip)
        strip.layout().insertWidget(1, self.bar)  # over the chips, under the legend
        self.find_action = self._action("find", "Find token…", "Ctrl+F", self.bar.open_find,
                                        "Find text in the tokens; Enter / Shift+Enter: "
                                        "next / previous match")
        self.goto_action = self._action("goto", "Go to position…", "Ctrl+G",
                                        self.bar.open_goto,
                                        "Make the token at a position the query")
        self.told_slide = False  # the first slide of this window's life is explained once
        self._last_start = 0
        try:
            d = int(prefs.value("window/stride_divisor", 2))
        except (TypeError, ValueError):
            d = 2
        self.divisor = d if d in STRIDE_DIVISORS else 2
        self.block_size = 0
        menu = window.menus["view"].addMenu("Window slide")
        menu.setToolTipsVisible(True)
        self.stride_menu = menu
        group = QActionGroup(self)
        self.stride_actions: dict[int, QAction] = {}
        for div in STRIDE_DIVISORS:
            a = menu.addAction(f"By {STRIDE_NAMES[div]} (block / {div})")
            a.setCheckable(True)
            a.setChecked(div == self.divisor)
            a.setToolTip("Smaller strides keep more of the text in view after a slide, and "
                         "slide more often (each slide recomputes the whole window)")
            a.triggered.connect(lambda _=False, v=div: self.set_divisor(v))
            group.addAction(a)
            self.stride_actions[div] = a
        c = window.controller
        c.modelChanged.connect(self._on_model)
        c.applied.connect(self._on_applied)

    def _action(self, key: str, text: str, keys: str, slot, tip: str) -> QAction:
        a = QAction(text, self.win)
        a.setShortcut(QKeySequence(keys))
        a.setStatusTip(tip)
        a.triggered.connect(slot)
        self.win.addAction(a)
        self.win.menus["view"].addAction(a)
        self.win.actions[key] = a
        return a

    # ------------------------------------------------------------------ the stride
    def set_divisor(self, divisor: int) -> None:
        """Slide by ``block_size / divisor`` from now on (kept in the preferences)."""
        if divisor not in STRIDE_DIVISORS:
            raise ValueError(f"no stride 1/{divisor}")
        self.divisor = divisor
        self.stride_actions[divisor].setChecked(True)
        self.prefs.set_value("window/stride_divisor", divisor)
        if self.win.controller.model is not None:
            self.win.controller.request("set_stride", divisor=divisor)
        if self.block_size:
            self.win.status.showMessage(
                f"The window now slides by {max(1, self.block_size // divisor)} tokens "
                f"({STRIDE_NAMES[divisor]} of {self.block_size})", 6000)

    def _on_model(self, info) -> None:
        self.block_size = int(info.block_size)
        for div, a in self.stride_actions.items():
            a.setText(f"By {max(1, self.block_size // div)} tokens ({STRIDE_NAMES[div]})")
        self._last_start = 0
        if self.divisor != 2:  # a new session starts with the default
            self.win.controller.request("set_stride", divisor=self.divisor)

    # ------------------------------------------------------------------ telling
    def _on_applied(self, snap) -> None:
        ws = int(snap.window_start)
        slid = ws > self._last_start  # a step, a redo, a long prompt, a smaller stride
        self._last_start = ws
        if self.bar.isVisible():
            self.bar.refresh()
        if not slid:
            return
        B = snap.block_size
        if not self.told_slide:
            self.told_slide = True
            self.win.status.showMessage(
                f"The text outgrew the model's window of {B} tokens: the window slid to start "
                f"at token {ws}. The model no longer sees the dimmed tokens before the bar in "
                f"the token strip; positions restart at 0 there (View ▸ Window slide sets "
                f"how far it moves).", 15000)
        else:
            self.win.status.showMessage(f"The window slid: it starts at token {ws}", 4000)
