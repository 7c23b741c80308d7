"""What the selected head writes at the query: the tokens its output promotes and suppresses.

A table of the selected head's ``k`` most promoted and most suppressed tokens (its output
through its slice of W_O, the final norm frozen at the query, the unembedding: the direct
logit contribution, :mod:`gptviz.analysis.head_writes`), each cell shaded by its size, and the
heads that push the text's next token most. Hovering a cell of the head grid shows the same
summary for that head. Computed on the worker (the ``"head_writes"`` analysis,
:class:`gptviz.analysis.live_head_writes.HeadWritesAtQuery`).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from gptviz.analysis.live_head_writes import HeadWritesSettings, HeadWritesView
from gptviz.analysis.runner import AnalysisResult
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.panels.widgets import ABLATED_COLOR, esc, top_k_box, wrapped_label
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.panel_layout import stack
from gptviz_app.views.theme import DARK, Theme, luma

#: Cell colours of raised and lowered logits (blue / vermilion: distinct for colour-blind eyes).
UP_COLOR, DOWN_COLOR = QColor("#3b82c4"), QColor("#d55e00")


def shade(base: QColor, to: QColor, t: float) -> QColor:
    """``base`` mixed towards ``to`` by ``t`` in 0..1."""
    t = float(min(1.0, max(0.0, t)))
    return QColor(int(base.red() + (to.red() - base.red()) * t),
                  int(base.green() + (to.green() - base.green()) * t),
                  int(base.blue() + (to.blue() - base.blue()) * t))


def signed_item(it: QTableWidgetItem, text: str, value: float, vmax: float, base: QColor,
                fg: QColor) -> None:
    """Write ``text`` into ``it``, its background shaded by ``value / vmax`` (blue raises,
    vermilion lowers)."""
    it.setText(text)
    col = shade(base, UP_COLOR if value >= 0 else DOWN_COLOR, abs(value) / max(vmax, 1e-12))
    it.setBackground(col)
    it.setForeground(QColor("#000000") if luma(col) > 140 else
                     (fg if col == base else QColor("#ffffff")))


def table_widget(tip: str) -> QTableWidget:
    """A read-only table with stretched columns, as the analysis panels use."""
    t = QTableWidget()
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    t.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    t.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    t.setToolTip(tip)
    return t


def item(table: QTableWidget, r: int, c: int) -> QTableWidgetItem:
    """The table's item at ``(r, c)``, created centred when missing."""
    it = table.item(r, c)
    if it is None:
        it = QTableWidgetItem()
        it.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        table.setItem(r, c, it)
    return it


class HeadWritesPanel(AnalysisPanel):
    """The selected head's promoted and suppressed tokens at the query."""

    title = "What a head writes"
    button = "Head writes"
    analyses = ("head_writes",)

    def __init__(self, parent: QWidget | None = None, k: int = 8) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.header = wrapped_label()
        self.k_box = top_k_box(k, 20, "Tokens shown each way")
        self.k_box.valueChanged.connect(lambda _k: self.settingsChanged.emit())
        top = QHBoxLayout()
        top.setContentsMargins(4, 0, 4, 0)
        top.addWidget(self.header, 1)
        top.addWidget(self.k_box, 0, Qt.AlignmentFlag.AlignTop)
        self.table = table_widget(
            "The head's output z at the query through its slice of W_O, the final norm with "
            "its scale frozen at the query, and the unembedding: how much it raises (blue) or "
            "lowers (vermilion) each token's logit by itself (the direct path).")
        self.footer = wrapped_label()
        stack(self, top, self.table).insertWidget(1, self.footer)  # under the header
        self.view: HeadWritesView | None = None
        self.layer = self.head = 0
        self.average = False
        self.apply_theme(self.theme)

    @property
    def k(self) -> int:
        return self.k_box.value()

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.header.setFont(theme.font(1.0))
        self.footer.setFont(theme.font(0.9))
        self.table.setFont(theme.font(0.9, mono=True))
        self.table.verticalHeader().setDefaultSectionSize(int(theme.pt(0.9) * 2.1))
        self._redraw()

    def install(self, ui) -> None:
        """Hovering a head-grid cell shows what that head writes at the query."""
        ui.window.grid.cell_note = self.note

    def note(self, layer: int, head: int) -> str:
        """One line for the head grid's hover read-out ("" before any result)."""
        v = self.view
        if v is None or not (0 <= layer < len(v.promoted_tokens)
                             and 0 <= head < len(v.promoted_tokens[layer])):
            return ""
        return v.summary(layer, head)

    def set_model(self, info: ModelInfo) -> None:
        self.view = None
        self.table.setRowCount(0)
        self.header.setText("What a head writes: waiting for the model…")

    def requests(self, visible: bool) -> dict:
        return {"head_writes": HeadWritesSettings(k=self.k)} if visible else {}

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        if "head_writes" in res.errors:
            self.header.setText("What a head writes: " + esc(res.errors["head_writes"]))
            self.table.setRowCount(0)
            return
        v = snap.view
        sel = (v.layer, v.head, v.average)
        view = res.get("head_writes")
        if view is None:
            return
        if view is not self.view or sel != (self.layer, self.head, self.average):
            self.view = view
            self.layer, self.head, self.average = sel
            self._redraw()

    def _redraw(self) -> None:
        hv = self.view
        if hv is None:
            return
        th = self.theme
        layer, head = self.layer, self.head
        w = hv.writes
        k = w.promoted_ids.shape[-1]
        self.table.setRowCount(k)
        self.table.setColumnCount(4)
        self.table.setHorizontalHeaderLabels(["promotes", "logit", "suppresses", "logit"])
        self.table.setVerticalHeaderLabels([f"#{i + 1}" for i in range(k)])
        up, dn = w.promoted[layer, head], w.suppressed[layer, head]
        vmax = float(max(np.abs(up).max(), np.abs(dn).max(), 1e-12))
        base, fg = QColor(th.panel), QColor(th.text)
        for r in range(k):
            for c, (toks, vals) in enumerate(((hv.promoted_tokens, up),
                                              (hv.suppressed_tokens, dn))):
                tok, val = toks[layer][head][r], float(vals[r])
                signed_item(item(self.table, r, 2 * c), repr(tok), val, vmax, base, fg)
                signed_item(item(self.table, r, 2 * c + 1), f"{val:+.3f}", val, vmax, base, fg)
        abl = ""
        if (layer, head) in hv.ablated:
            abl = (f" · <span style='color:{ABLATED_COLOR}'>ablated: this is what its "
                   "replacement writes</span>")
        avg = f" (the layer's mean is selected: showing H{head})" if self.average else ""
        self.header.setText(
            f"<b>L{layer} H{head}</b> writes at position {hv.position} {esc(hv.token)}"
            f" · |W_O z| = {float(w.write_norm[layer, head]):.3f}{avg}{abl}")
        self._footer()

    def _footer(self) -> None:
        hv = self.view
        assert hv is not None
        w, th = hv.writes, self.theme
        if w.target_logit is None or hv.target_token is None:
            self.footer.setText(" ")
            return
        flat = w.target_logit.reshape(-1)
        H = w.target_logit.shape[1]
        order = np.argsort(-flat)[:4]
        best = ", ".join(f"L{o // H} H{o % H} {flat[o]:+.2f}" for o in order)
        mine = float(w.target_logit[self.layer, self.head])
        what = "Predicted next token" if hv.target_predicted else "Next token"
        self.footer.setText(
            f"{what} <b style='color:{th.accent}'>{esc(hv.target_token)}</b>: "
            f"this head {mine:+.3f} · most for it: {best}")
