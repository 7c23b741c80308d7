"""Generate ▸ Sample prompts (from ``resources/prompts.json``) and File ▸ Recent prompts.

Each sample prompt was chosen to show something; its ``shows`` text is the menu entry's
tooltip and status tip. A ``@random-repeat:N`` recipe (N random tokens, then the same N
again: induction heads light up on the second copy) is expanded against the current model's
tokenizer on the worker thread (:func:`gptviz_app.runtime.file_commands.sample_prompt`); the prompt
editor then shows the expanded text.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from gptviz.io.prompts import SamplePrompt, load_sample_prompts
from gptviz_app.actions.preferences import Preferences


def _short(text: str, n: int = 60) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


class SamplePrompts(QObject):
    """Signals: ``applied(text)`` when a sample prompt is on screen (expanded)."""

    applied = Signal(str)

    def __init__(self, window, prefs: Preferences,
                 prompts: list[SamplePrompt] | None = None) -> None:
        super().__init__(window)
        self.win = window
        self.prefs = prefs
        self.prompts = load_sample_prompts() if prompts is None else list(prompts)
        self.actions: list[QAction] = []
        self.seed = 0
        self._submitted: str | None = None
        menu = QMenu("Sample prompts", window)
        menu.setToolTipsVisible(True)
        for i, p in enumerate(self.prompts):
            a = QAction(p.title, window)
            tip = p.shows or _short(p.text)
            a.setToolTip(tip)
            a.setStatusTip(tip)
            a.setData(i)
            a.triggered.connect(lambda _=False, k=i: self.use(k))
            menu.addAction(a)
            self.actions.append(a)
        if not self.prompts:
            none = menu.addAction("(resources/prompts.json not found)")
            none.setEnabled(False)
        self.menu = menu
        window.menus["sample_prompts"] = menu
        gen_menu = window.menus["generate"]
        gen_menu.addSeparator()
        gen_menu.addMenu(menu)
        self.recent_menu = QMenu("Recent prompts", window)
        self.recent_menu.setToolTipsVisible(True)
        self.recent_menu.aboutToShow.connect(self.rebuild_recent)
        window.menus["recent_prompts"] = self.recent_menu
        self.rebuild_recent()
        c = window.controller
        c.client.result.connect(self._on_result)
        c.applied.connect(self._on_applied)
        c.errorOccurred.connect(self._on_error)
        window.prompt_editor.promptSubmitted.connect(self._on_submitted)

    # ------------------------------------------------------------------ sample prompts
    def use(self, index: int) -> int:
        """Start over from sample prompt ``index``; returns the request's generation."""
        p = self.prompts[index]
        c = self.win.controller
        if c.model is None:
            return -1
        c.set_playing(False)
        c.view = replace(c.view, query=None)
        gen = c.request("sample_prompt", text=p.text, seed=self.seed, title=p.title)
        self.win.status.showMessage(f"{p.title}: {p.shows}" if p.shows else p.title, 10000)
        return gen

    def _on_result(self, gen: int, command: str, result: dict) -> None:
        if command == "sample_prompt":
            self.win.prompt_editor.set_text(result["text"])
            self.applied.emit(result["text"])

    def _on_error(self, command: str, message: str) -> None:
        if command == "sample_prompt":
            self.win.show_error("Sample prompt not available", message.split("\n\n")[0])

    # ------------------------------------------------------------------ recent prompts
    def _on_submitted(self, text: str) -> None:
        self._submitted = text

    def _on_applied(self, snap) -> None:
        if snap.command == "set_prompt" and self._submitted:
            self.prefs.add_recent("prompts", self._submitted)
            self._submitted = None

    def rebuild_recent(self) -> None:
        m = self.recent_menu
        m.clear()
        items = self.prefs.recent("prompts")
        for text in items:
            a = m.addAction(_short(text))
            a.setToolTip(text)
            a.triggered.connect(lambda _=False, t=text: self.use_recent(t))
        if not items:
            a = m.addAction("(none yet)")
            a.setEnabled(False)

    def use_recent(self, text: str) -> int:
        c = self.win.controller
        self.win.prompt_editor.set_text(text)
        self._submitted = text
        return c.set_prompt(text)
