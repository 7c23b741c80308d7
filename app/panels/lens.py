"""Logit lens at the selected query: what the model would predict after each layer.

A table with one row per read-out point (``embed``, ``L0 out`` … ``L{L-1} out``, 0-based like
the layers, and with "Mid points" also ``L{l} mid`` between each layer's attention and its
feed-forward layer; the last row is the model's output) and the top-k tokens of each as
columns, every cell coloured by its probability; two more columns give the probability and
rank of the token that actually comes next, when the text goes on. The query is the one
selected in the token strip / attention map (the newest token by default: its row predicts
the token about to be generated). Computed on the worker with the session's ablation
(:func:`gptviz.analysis.logit_lens`; the ``"lens"`` analysis,
:class:`gptviz.analysis.live_lens.LogitLensAtQuery`).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from gptviz.analysis.live_lens import LensSettings, LensView
from gptviz.analysis.runner import AnalysisResult
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.panels.widgets import ABLATED_COLOR, esc, top_k_box, wrapped_label
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.panel_layout import stack
from gptviz_app.views.theme import DARK, Theme, colormap, luma


class LensPanel(AnalysisPanel):
    """``kChanged(int)``: the user wants another number of top tokens per layer."""

    title = "Logit lens"
    analyses = ("lens",)

    kChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None, k: int = 5) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.header = wrapped_label()
        self.k_box = top_k_box(k, 10, "Tokens shown per layer")
        self.k_box.valueChanged.connect(self.kChanged)
        self.k_box.valueChanged.connect(lambda _k: self.settingsChanged.emit())
        self.mid_box = QCheckBox("Mid points")
        self.mid_box.setToolTip("Also read the stream between each layer's attention and its "
                                "feed-forward layer (resid_mid: after the attention's output "
                                "is added)")
        self.mid_box.toggled.connect(lambda _on: self.settingsChanged.emit())
        top = QHBoxLayout()
        top.setContentsMargins(4, 0, 4, 0)
        top.addWidget(self.header, 1)
        top.addWidget(self.mid_box, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.k_box, 0, Qt.AlignmentFlag.AlignTop)
        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.setToolTip("Rows: the residual stream after each layer (0-based; 'mid': "
                              "after its attention, before its feed-forward), read through the "
                              "final LayerNorm and the unembedding; the last row is the model's "
                              "output. Columns: the most probable tokens, coloured by probability"
                              "; 'p(t+1)' and 'rank': the token at position t + 1, the one "
                              "that follows the query.")
        stack(self, top, self.table)
        self.lens: LensView | None = None
        self.apply_theme(self.theme)

    @property
    def k(self) -> int:
        return self.k_box.value()

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.header.setFont(theme.font(1.0))
        self.table.setFont(theme.font(0.9, mono=True))
        self.table.verticalHeader().setDefaultSectionSize(int(theme.pt(0.9) * 2.1))
        self._redraw()

    def set_model(self, info: ModelInfo) -> None:
        self.lens = None
        self.table.setRowCount(0)
        self.header.setText("Logit lens: waiting for the model…")

    def requests(self, visible: bool) -> dict:
        return ({"lens": LensSettings(k=self.k, mid=self.mid_box.isChecked())} if visible
                else {})

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        if "lens" in res.errors:
            self.header.setText("Logit lens failed: " + esc(res.errors["lens"]))
            return
        lens = res.get("lens")
        if lens is not None and lens is not self.lens:
            self.lens = lens
            self._redraw()

    # ------------------------------------------------------------------ drawing
    def _item(self, r: int, c: int) -> QTableWidgetItem:
        it = self.table.item(r, c)
        if it is None:
            it = QTableWidgetItem()
            it.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            self.table.setItem(r, c, it)
        return it

    def _redraw(self) -> None:
        lv = self.lens
        if lv is None:
            return
        th = self.theme
        n_rows, k = lv.top_ids.shape
        has_t = lv.target is not None and lv.target_probs is not None
        cols = k + (2 if has_t else 0)
        if self.table.rowCount() != n_rows or self.table.columnCount() != cols:
            self.table.clear()
            self.table.setRowCount(n_rows)
            self.table.setColumnCount(cols)
        heads = [f"#{i + 1}" for i in range(k)]
        if has_t:
            heads += ["p(t+1)", "rank"]
        self.table.setHorizontalHeaderLabels(heads)
        rows = list(lv.layers)
        rows[-1] = rows[-1] + " = model"
        self.table.setVerticalHeaderLabels(rows)
        cmap = colormap(th.colormap)
        base = QColor(th.panel)
        for r in range(n_rows):
            probs = lv.top_probs[r]
            colors = cmap.map(np.sqrt(np.clip(probs, 0, 1)).astype(np.float64),
                              mode="qcolor")
            for c in range(k):
                it = self._item(r, c)
                p = float(probs[c])
                tok = lv.top_tokens[r][c]
                it.setText(f"{tok}  {p:.0%}" if p >= 0.01 else f"{tok}  <1%")
                col = colors[c]
                it.setBackground(col)
                it.setForeground(QColor("#000000") if luma(col) > 140 else QColor("#ffffff"))
                hit = has_t and int(lv.top_ids[r, c]) == lv.target
                f = it.font()
                f.setBold(bool(hit))
                it.setFont(f)
                at = f" — the token at position {lv.position + 1}" if hit else ""
                it.setToolTip(f"{lv.layers[r]}: #{c + 1} {tok!r} (id {int(lv.top_ids[r, c])}) "
                              f"p = {p:.4f}{at}")
            if has_t:
                tp = float(lv.target_probs[r])
                rank = int(lv.target_ranks[r])
                it = self._item(r, k)
                it.setText(f"{tp:.1%}" if tp >= 0.001 else f"{tp:.1e}")
                it.setBackground(base)
                it.setForeground(QColor(th.text))
                it.setToolTip(f"{lv.layers[r]}: p({lv.target_token!r}) = {tp:.5f}")
                it = self._item(r, k + 1)
                it.setText(str(rank + 1))
                it.setBackground(base)
                it.setForeground(QColor(th.accent) if rank == 0 else QColor(th.text))
                it.setToolTip(f"{lv.layers[r]}: {lv.target_token!r} ranks {rank + 1}")
        nxt = (f" · token at position {lv.position + 1}: "
               f"<b style='color:{th.accent}'>{esc(lv.target_token)}</b>"
               if lv.target_token is not None else
               f" · position {lv.position + 1} not generated yet")
        abl = f" · <span style='color:{ABLATED_COLOR}'>{lv.n_ablated} head(s) ablated</span>" \
            if lv.n_ablated else ""
        self.header.setText(f"<b>Logit lens</b> at query {lv.position} {esc(lv.token)}: the "
                            f"prediction after position {lv.position}{nxt}{abl}")
