"""Feed-forward neurons at the query: each layer's most active neurons and what they promote.

One row per layer and rank: the neuron's index, its activation at the query (after the
nonlinearity; act(gate)·up for gated layers) and the tokens its value vector promotes (its
output weights through the unembedding, Geva et al. 2022). Clicking a row shades the token
chips with that neuron's activation over the whole text. Computed on the worker (the
``"neurons"`` analysis, :class:`gptviz.analysis.live_neurons.NeuronsAtQuery`).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QWidget,
)

from gptviz.analysis.live_neurons import NeuronSettings, NeuronsView
from gptviz.analysis.runner import AnalysisResult
from gptviz_app.panels.head_writes import item, signed_item, table_widget
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.panels.widgets import esc, top_k_box, wrapped_label
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.panel_layout import stack
from gptviz_app.views.theme import DARK, Theme


class NeuronsPanel(AnalysisPanel):
    """The most active feed-forward neurons of every layer at the query."""

    title = "Feed-forward neurons"
    button = "Neurons"
    analyses = ("neurons",)
    token_strip = None  # the window's token strip (install)

    def __init__(self, parent: QWidget | None = None, k: int = 3) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.header = wrapped_label()
        self.k_box = top_k_box(k, 20, "Neurons shown per layer", suffix=" / layer")
        self.k_box.valueChanged.connect(lambda _k: self.settingsChanged.emit())
        top = QHBoxLayout()
        top.setContentsMargins(4, 0, 4, 0)
        top.addWidget(self.header, 1)
        top.addWidget(self.k_box, 0, Qt.AlignmentFlag.AlignTop)
        self.table = table_widget(
            "Each layer's most active feed-forward neurons at the query (activation after the "
            "nonlinearity) and the tokens each one's output weights promote (W_out row through "
            "the unembedding). Click a row: shade the token strip with its activation.")
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setColumnCount(4)
        self.table.setHorizontalHeaderLabels(["layer", "neuron", "activation", "promotes"])
        self.table.verticalHeader().setVisible(False)
        hh = self.table.horizontalHeader()
        for c in range(3):  # the numbers as wide as they need, the tokens take the rest
            hh.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.cellClicked.connect(self._on_click)
        self.footer = QLabel("Click a neuron to shade the token strip with its activation.")
        self.footer.setWordWrap(True)
        self.footer.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        stack(self, top, self.table, self.footer)
        self.view: NeuronsView | None = None
        self.selected: tuple[int, int] | None = None
        self.rows: list[tuple[int, int]] = []  # (layer, rank) of every table row
        self.apply_theme(self.theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.header.setFont(theme.font(1.0))
        self.footer.setFont(theme.font(0.9))
        self.table.setFont(theme.font(0.9, mono=True))
        self.table.verticalHeader().setDefaultSectionSize(int(theme.pt(0.9) * 2.1))
        self._redraw()

    def install(self, ui) -> None:
        self.token_strip = ui.window.token_strip

    def set_model(self, info: ModelInfo) -> None:
        self.view, self.selected = None, None
        self.table.setRowCount(0)
        self.header.setText("Feed-forward neurons: waiting for the model…")

    def requests(self, visible: bool) -> dict:
        if not visible:
            return {}
        return {"neurons": NeuronSettings(k=self.k_box.value(), m=5, neuron=self.selected)}

    def select(self, layer: int, neuron: int | None) -> None:
        """Shade the strip with ``neuron`` of ``layer`` (``None``: stop)."""
        self.selected = None if neuron is None else (int(layer), int(neuron))
        self.settingsChanged.emit()

    def _on_click(self, row: int, _col: int) -> None:
        if self.view is None or not 0 <= row < len(self.rows):
            return
        layer, rank = self.rows[row]
        n = int(self.view.top.ids[layer, rank])
        self.select(layer, None if self.selected == (layer, n) else n)

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        if "neurons" in res.errors:
            self.header.setText("Feed-forward neurons: " + esc(res.errors["neurons"]))
            return
        view: NeuronsView | None = res.get("neurons")
        if view is None:
            return
        if self.view is None or view.top is not self.view.top:
            self.view = view
            self._redraw()
        self.view = view
        self._shade(view, snap)

    def _shade(self, view: NeuronsView, snap: Snapshot) -> None:
        if view.shading is None or view.neuron is None or self.token_strip is None:
            self.footer.setText("Click a neuron to shade the token strip with its activation.")
            self._mark_selected()
            return
        layer, n = view.neuron
        a = np.asarray(view.shading, np.float64)
        top = float(a.max()) if a.size else 0.0
        w = np.clip(a / top, 0.0, 1.0) if top > 0 else np.zeros_like(a)
        q = snap.query - snap.window_start
        self.token_strip.set_shading(
            w.astype(np.float32), f"L{layer} N{n} activation ÷ its max {top:.3g}",
            f"<b>L{layer} N{n}</b> activation (max {top:.3g}; negative values unshaded)")
        here = f"{float(a[q]):+.3f}" if 0 <= q < a.size else "?"
        self.footer.setText(f"L{layer} N{n} shades the tokens: {here} here, max {top:.3f}, "
                            f"min {float(a.min()):.3f}")
        self._mark_selected()

    def _mark_selected(self) -> None:
        """The selected neuron's row in bold (every other row plain)."""
        v = self.view
        if v is None:
            return
        for row, (layer, r) in enumerate(self.rows):
            on = self.selected == (layer, int(v.top.ids[layer, r]))
            for c in range(4):
                it = self.table.item(row, c)
                if it is not None and it.font().bold() != on:
                    f = it.font()
                    f.setBold(on)
                    it.setFont(f)

    def _redraw(self) -> None:
        v = self.view
        if v is None:
            return
        th = self.theme
        t = v.top
        L, k = t.ids.shape
        self.rows = [(layer, r) for layer in range(L) for r in range(k)]
        self.table.setRowCount(len(self.rows))
        vmax = float(np.abs(t.acts).max()) if t.acts.size else 1.0
        base, fg = QColor(th.panel), QColor(th.text)
        for row, (layer, r) in enumerate(self.rows):
            n, act = int(t.ids[layer, r]), float(t.acts[layer, r])
            item(self.table, row, 0).setText(f"L{layer}" if r == 0 else "")
            item(self.table, row, 1).setText(f"N{n}")
            signed_item(item(self.table, row, 2), f"{act:+.3f}", act, vmax, base, fg)
            toks = v.promoted_tokens[layer][r]
            it = item(self.table, row, 3)
            it.setText("  ".join(repr(s) for s in toks))
            it.setToolTip("\n".join(f"{s!r}  W_U·v = {float(x):+.3f}"
                                    for s, x in zip(toks, t.promoted[layer, r])))
        self.header.setText(
            f"<b>Neurons</b> at position {v.position} {esc(v.token)}: the {k} most active of "
            f"{t.d_ff} per layer")
