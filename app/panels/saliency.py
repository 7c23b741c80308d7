"""Gradient saliency of the prediction after the query: which input tokens move it most.

Input × gradient or integrated gradients (a chosen number of steps, zero baseline) of the
log-probability of the token after the query, with respect to the input token embeddings; a
token's score is the L2 norm of its attribution. The table lists every token up to the query
(score and signed sum, shaded), the header the completeness check of integrated gradients,
and the token strip is shaded by the scores. Computed on the worker with autograd (the
``"saliency"`` analysis, :class:`gptviz.analysis.live_saliency.SaliencyAtQuery`).
"""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QSpinBox, QWidget

from gptviz.analysis.live_saliency import SaliencySettings, SaliencyView
from gptviz.analysis.runner import AnalysisResult
from gptviz_app.panels.head_writes import item, signed_item, table_widget
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.panels.widgets import esc, wrapped_label
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.panel_layout import choice_box, stack
from gptviz_app.views.theme import DARK, Theme

METHOD_ITEMS = (("grad", "Input × grad"), ("ig", "Integrated grad."))


class SaliencyPanel(AnalysisPanel):
    """Input × gradient / integrated gradients of the next token's log-probability."""

    title = "Gradient saliency"
    button = "Saliency"
    analyses = ("saliency",)
    token_strip = None  # the window's token strip (install)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.method = choice_box(METHOD_ITEMS, self._on_method,
                                 "Input × gradient: E ⊙ ∂f/∂E. Integrated gradients: E ⊙ the "
                                 "mean gradient from the zero embedding to E (Sundararajan "
                                 "et al. 2017)")
        self.steps = QSpinBox()
        self.steps.setRange(1, 1024)
        self.steps.setValue(32)
        self.steps.setSuffix(" steps")
        self.steps.setToolTip("Integration steps (trapezoidal rule); more steps, smaller "
                              "completeness gap, proportionally slower")
        self.steps.setEnabled(False)
        self.steps.valueChanged.connect(lambda _v: self.settingsChanged.emit())
        self.strip = QCheckBox("Shade strip")
        self.strip.setChecked(True)
        self.strip.setToolTip("The token chips show the saliency instead of the attention")
        self.strip.toggled.connect(lambda _on: self.settingsChanged.emit())
        self.header = wrapped_label()
        controls = QHBoxLayout()
        controls.setContentsMargins(4, 0, 4, 0)
        for w in (self.method, self.steps, self.strip):
            controls.addWidget(w)
        controls.addStretch(1)
        self.table = table_widget(
            "Every input token up to the query: the L2 norm of its attribution (what shades "
            "the chips) and its signed sum over the embedding (positive: raises the log-"
            "probability). f = log p(target) after the query.")
        self.table.setColumnCount(4)
        self.table.setHorizontalHeaderLabels(["position", "token", "saliency", "signed"])
        self.table.verticalHeader().setVisible(False)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addLayout(controls)
        lay = stack(self, top, self.table)
        lay.insertWidget(1, self.header)
        self.view: SaliencyView | None = None
        self.apply_theme(self.theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.header.setFont(theme.font(1.0))
        self.table.setFont(theme.font(0.9, mono=True))
        self.table.verticalHeader().setDefaultSectionSize(int(theme.pt(0.9) * 2.1))
        self._redraw()

    def install(self, ui) -> None:
        self.token_strip = ui.window.token_strip

    def set_model(self, info: ModelInfo) -> None:
        self.view = None
        self.table.setRowCount(0)
        self.header.setText("Gradient saliency: waiting for the model…")

    def _on_method(self, key: str) -> None:
        self.steps.setEnabled(key == "ig")
        self.settingsChanged.emit()

    def requests(self, visible: bool) -> dict:
        if not visible:
            return {}
        return {"saliency": SaliencySettings(method=str(self.method.currentData()),
                                             steps=self.steps.value())}

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        if "saliency" in res.errors:
            self.header.setText("Gradient saliency: " + esc(res.errors["saliency"]))
            return
        view: SaliencyView | None = res.get("saliency")
        if view is None:
            return
        if view is not self.view:
            self.view = view
            self._redraw()
        if self.strip.isChecked() and self.token_strip is not None:
            r = view.result
            top = float(r.scores.max()) if r.scores.size else 0.0
            w = r.scores / top if top > 0 else r.scores
            how = "integrated gradients" if r.method == "ig" else "input × gradient"
            self.token_strip.set_shading(
                np.asarray(w, np.float32), f"{how} ÷ its max {top:.3g}",
                f"<b>{how}</b> of log p({esc(view.target_token)}) after position "
                f"{view.position}")

    def _redraw(self) -> None:
        v = self.view
        if v is None:
            return
        th = self.theme
        r = v.result
        n = r.scores.shape[0]
        ws = v.position - r.position
        self.table.setRowCount(n)
        smax = float(r.scores.max()) if n else 1.0
        gmax = float(np.abs(r.signed).max()) if n else 1.0
        base, fg = QColor(th.panel), QColor(th.text)
        for i in range(n):
            item(self.table, i, 0).setText(str(ws + i))
            item(self.table, i, 1).setText(repr(v.tokens[i]))
            signed_item(item(self.table, i, 2), f"{float(r.scores[i]):.4f}",
                        float(r.scores[i]), smax, base, fg)
            signed_item(item(self.table, i, 3), f"{float(r.signed[i]):+.4f}",
                        float(r.signed[i]), gmax, base, fg)
        order = np.argsort(-r.scores)[:3]
        best = ", ".join(f"{v.tokens[j]!r}" for j in order)
        head = (f"log p(<b style='color:{th.accent}'>{esc(v.target_token)}</b> | …position "
                f"{v.position}) = {r.value:.3f} · most salient: {html.escape(best)}")
        if r.method == "ig" and r.baseline_value is not None:
            diff = r.value - r.baseline_value
            head += (f"<br>completeness: Σ attributions {r.attribution_sum:+.4f} vs "
                     f"f(x) − f(0) {diff:+.4f} (gap {r.completeness_gap:+.1e}, "
                     f"{r.steps} steps)")
        self.header.setText(head)
