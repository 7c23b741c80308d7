"""Head diagnostics: one score per layer and head for the current text.

An L x H heat map of the chosen score (one ``ImageItem``; hovering shows the value, clicking
selects the head everywhere, Ctrl+click or the right-click menu ablates it) next to a
sortable table of every head and every score (click a row to select the head; sort by any
column). Ablated heads are crossed out in the map and marked in the table.

The scores come from the worker (the ``"heads"`` analysis,
:class:`gptviz.analysis.live_heads.HeadDiagnostics`: a
:class:`gptviz.analysis.heads.HeadScores`), computed only while this panel is visible and only
when the text or the ablation changed. Definitions: ``docs/analysis.md``.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPoint,
    QRectF,
    QSignalBlocker,
    Qt,
)
from PySide6.QtGui import QAction, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHeaderView,
    QLabel,
    QMenu,
    QSplitter,
    QTableView,
    QWidget,
)

from gptviz.analysis.live_heads import CONVENTION_LABELS, SCORES, HeadSettings
from gptviz.analysis.runner import AnalysisResult
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.axes import pt_px, text_px, thin_ticks, tick_step
from gptviz_app.views.panel_layout import choice_box, controls_row, panel_layout, shrinkable_label
from gptviz_app.views.plots import MapPlot
from gptviz_app.views.theme import ABLATED_COLOR, DARK, Theme

#: Short column titles and tooltips (definitions as in docs/analysis.md).
SCORE_INFO: dict[str, tuple[str, str]] = {
    "prev_token": ("Prev", "Previous-token score: mean attention from each token to the one "
                           "right before it (queries 1..T-1)."),
    "first_token": ("Sink", "First-token ('attention sink') score: mean attention to position 0 "
                            "(queries 1..T-1)."),
    "induction": ("Ind.", "Induction score on this text: attention from a token to the "
                             "token after its earlier copies (… A B … A → B); empty when no "
                             "token repeats."),
    "probe_induction": ("Probe", "Induction score on the built-in probe (random tokens repeated "
                                 "twice), computed once per model on the clean model."),
    "duplicate_token": ("Dup", "Duplicate-token score: attention to earlier copies of the same "
                                "token; empty when no token repeats."),
    "entropy": ("Ent.", "Mean attention entropy in bits (queries 1..T-1); low = focused, "
                           "high = spread out. Grows with the text length."),
}


_ROOT = QModelIndex()  # the invalid index: the table's root


class HeadTableModel(QAbstractTableModel):
    """Rows = heads, columns = layer, head, every score, ablated. Sorting is done here (numpy),
    NaN always last."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.columns: list[str] = ["layer", "head"] + [k for k, _ in SCORES] + ["ablated"]
        self.L = self.H = 0
        self.values: dict[str, np.ndarray] = {}
        self.ablated: set[tuple[int, int]] = set()
        self.order = np.zeros(0, np.int64)
        self.sort_col, self.sort_order = -1, Qt.SortOrder.AscendingOrder
        self.theme = DARK

    # ---- data
    def set_shape(self, L: int, H: int) -> None:
        """A new model: no scores and no ablated heads yet (the session starts without)."""
        self.beginResetModel()
        self.L, self.H = L, H
        self.values = {}
        self.ablated = set()
        self.order = np.arange(L * H)
        self.endResetModel()

    def set_scores(self, values: dict[str, np.ndarray], ablated: set[tuple[int, int]]) -> None:
        self.beginResetModel()
        self.values = values
        self.ablated = set(ablated)
        self._sort()
        self.endResetModel()

    def set_ablated(self, ablated: set[tuple[int, int]]) -> None:
        if set(ablated) == self.ablated:
            return
        self.ablated = set(ablated)
        c = self.columns.index("ablated")
        if self.rowCount():
            self.dataChanged.emit(self.index(0, c), self.index(self.rowCount() - 1, c))

    def column_values(self, col: int) -> np.ndarray:
        n = self.L * self.H
        name = self.columns[col]
        if name == "layer":
            return np.arange(n) // max(1, self.H) + 0.0
        if name == "head":
            return np.arange(n) % max(1, self.H) + 0.0
        if name == "ablated":
            return np.asarray([1.0 if divmod(i, self.H) in self.ablated else 0.0
                               for i in range(n)])
        v = self.values.get(name)
        return np.full(n, np.nan) if v is None else np.asarray(v, np.float64).reshape(-1)

    def _sort(self) -> None:
        n = self.L * self.H
        if self.sort_col < 0 or n == 0:
            self.order = np.arange(n)
            return
        v = self.column_values(self.sort_col)
        nan = np.isnan(v)
        desc = self.sort_order == Qt.SortOrder.DescendingOrder
        key = np.where(nan, 0.0, -v if desc else v)
        # stable: NaN last, then by value, ties by (layer, head)
        self.order = np.lexsort((np.arange(n), key, nan))

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:  # noqa: A003
        self.layoutAboutToBeChanged.emit()
        self.sort_col, self.sort_order = column, order
        self._sort()
        self.layoutChanged.emit()

    def head_at(self, row: int) -> tuple[int, int]:
        return divmod(int(self.order[row]), self.H)

    def row_of(self, layer: int, head: int) -> int:
        hits = np.flatnonzero(self.order == layer * self.H + head)
        return int(hits[0]) if hits.size else -1

    # ---- Qt model
    def rowCount(self, parent=_ROOT) -> int:  # noqa: N802
        return 0 if parent.isValid() else self.L * self.H

    def columnCount(self, parent=_ROOT) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation != Qt.Orientation.Horizontal:
            return None
        name = self.columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return {"layer": "L", "head": "H", "ablated": "Off"}.get(name) or SCORE_INFO[name][0]
        if role == Qt.ItemDataRole.ToolTipRole:
            return {"layer": "Layer", "head": "Head",
                    "ablated": "✗ = the head is ablated (switched off)"}.get(name) \
                or SCORE_INFO[name][1]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        layer, head = self.head_at(index.row())
        name = self.columns[index.column()]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter) \
                if name not in ("ablated",) else int(Qt.AlignmentFlag.AlignCenter)
        if name == "layer":
            return layer if role == Qt.ItemDataRole.DisplayRole else None
        if name == "head":
            return head if role == Qt.ItemDataRole.DisplayRole else None
        if name == "ablated":
            off = (layer, head) in self.ablated
            if role == Qt.ItemDataRole.DisplayRole:
                return "✗" if off else ""
            if role == Qt.ItemDataRole.ForegroundRole and off:
                return QColor(ABLATED_COLOR)
            return None
        arr = self.values.get(name)
        v = float(arr[layer, head]) if arr is not None else float("nan")
        if role == Qt.ItemDataRole.DisplayRole:
            return "—" if not np.isfinite(v) else (f"{v:.2f}" if name == "entropy" else f"{v:.3f}")
        if role == Qt.ItemDataRole.BackgroundRole and name != "entropy" and np.isfinite(v):
            c = QColor(self.theme.bar)
            c.setAlphaF(float(min(1.0, max(0.0, v))) * 0.75)
            return c
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"layer {layer}, head {head}: {SCORE_INFO[name][1].split(':')[0]} = " + \
                ("undefined on this text" if not np.isfinite(v) else f"{v:.4f}")
        return None


class DiagnosticsPanel(AnalysisPanel):
    """Signals: ``headSelected(layer, head)``, ``ablateToggled(layer, head)``."""

    title, button, in_toolbar = "Head diagnostics", "Diagnostics", True
    analyses = ("heads", "effect")  # the effect: the one-line summary of the ablation

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.score_box = QComboBox()
        for key, label in SCORES:
            self.score_box.addItem(label, key)
            self.score_box.setItemData(self.score_box.count() - 1, SCORE_INFO[key][1],
                                       Qt.ItemDataRole.ToolTipRole)
        self.score_box.setToolTip("Which score the map shows (the table has all of them)")
        self.score_box.currentIndexChanged.connect(self._on_score)
        self.convention_box = choice_box(
            CONVENTION_LABELS, lambda _key: self.settingsChanged.emit(),
            "How previous-token, duplicate-token and induction scores average. gptviz: over "
            "the queries that have a target (induction targets k <= i - 2). TransformerLens "
            "(detect_head): sum(attention x pattern) / sum(attention), i.e. over all queries, "
            "its induction pattern also counting k = i - 1 and k = i. docs/analysis.md")
        self.info = shrinkable_label(" ")
        top = controls_row(QLabel("Map"), self.score_box, 4, self.convention_box, 8,
                           (self.info, 1))
        self.abl_label = QLabel("")
        self.abl_label.setTextFormat(Qt.TextFormat.RichText)
        self.abl_label.setToolTip("Effect of the ablated heads at the current step (details in "
                                  "the Ablation panel)")
        top.addWidget(self.abl_label)

        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setMinimumWidth(160)
        self.map = MapPlot(self.glw.addPlot(row=0, col=0), aspect=True)
        self.colorbar = self.map.add_colorbar(12)
        self.map.vb.sigResized.connect(self._label_axes)
        self.map.vb.sigRangeChanged.connect(self._label_axes)
        self.table_model = HeadTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        hh = self.table.horizontalHeader()
        # every column as wide as its numbers (a narrow dock scrolls the table sideways
        # rather than show "…" in every cell); the last one takes the spare width
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setStretchLastSection(True)
        self.table.horizontalHeader().setMinimumSectionSize(30)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._on_table_menu)
        self.table.clicked.connect(self._on_table_click)
        self.table.activated.connect(self._on_table_click)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.glw)
        self.split.addWidget(self.table)
        self.split.setStretchFactor(0, 2)
        self.split.setStretchFactor(1, 3)
        self.split.setSizes([300, 500])
        self.readout = panel_layout(self, top, self.split)
        self.L = self.H = 0
        self.scores = None          # HeadScores
        self.ablated: set[tuple[int, int]] = set()
        self.selected = (0, 0)
        self.average = False
        self.last_menu: QMenu | None = None
        self.glw.scene().sigMouseMoved.connect(self._on_move)
        self.glw.scene().sigMouseClicked.connect(self._on_click)
        self.apply_theme(self.theme)
        self._sort_by_score()

    # ------------------------------------------------------------------ look
    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.table_model.theme = theme
        self.glw.setBackground(theme.plot_bg)
        self.map.apply_theme(theme)
        self.readout.setFont(theme.font(0.95, mono=True))
        self.table.setFont(theme.font(0.9))
        self.table.horizontalHeader().setFont(theme.font(0.85))
        self.abl_label.setFont(theme.font(0.9))
        self.table.verticalHeader().setDefaultSectionSize(int(theme.pt(0.9) * 2.1))
        self._redraw()

    @property
    def score(self) -> str:
        return self.score_box.currentData()

    @property
    def convention(self) -> str:
        return str(self.convention_box.currentData())

    def requests(self, visible: bool) -> dict:
        """The scores in the chosen convention (and the ablation effect) while visible."""
        if not visible:
            return {}
        return {"heads": HeadSettings(convention=self.convention), "effect": None}

    # ------------------------------------------------------------------ model
    def set_model(self, info: ModelInfo) -> None:
        self.L, self.H = info.n_layer, info.n_head
        self.scores = None
        self.ablated = set()
        self.table_model.set_shape(self.L, self.H)
        self._label_axes()
        self.map.set_image(None, (0, 1))
        self.map.set_marks(self.ablated)
        self.info.setText("Computing…")

    def _label_axes(self, *_) -> None:
        """Every head and layer named where the map's cells leave room, else every few: the
        labels never touch (a narrow dock, presentation fonts)."""
        if not getattr(self, "L", 0) or not getattr(self, "H", 0):
            return
        plot = self.map.plot
        per_x, per_y = self.map.vb.viewPixelSize()
        cell_x = 1.0 / per_x if per_x > 0 else 1.0  # pixels per cell (the map is square-celled)
        cell_y = 1.0 / per_y if per_y > 0 else 1.0
        pt = self.theme.pt(0.8)
        step = tick_step(text_px(pt, len(f"H{self.H - 1}") + 1), cell_x)
        lstep = tick_step(pt_px(pt) * 1.3, cell_y)
        plot.getAxis("top").setTicks([thin_ticks([f"H{j}" for j in range(self.H)], step)])
        plot.getAxis("left").setTicks([thin_ticks([f"L{i}" for i in range(self.L)], lstep)])

    # ------------------------------------------------------------------ data
    def follow(self, res: AnalysisResult, snap: Snapshot) -> None:
        """While hidden, the table's row still follows the selected head at the step it
        changes (where the table scrolls to depends on each selection on the way); shown,
        :meth:`apply_analysis` does it."""
        v = snap.view
        if not self.isVisible() and (v.layer, v.head, v.average) != (*self.selected,
                                                                      self.average):
            self.selected, self.average = (v.layer, v.head), v.average
            self._select_row()

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        v = snap.view
        sel_changed = (v.layer, v.head, v.average) != (*self.selected, self.average)
        self.selected, self.average = (v.layer, v.head), v.average
        abl = set(res.ablated)
        if "heads" in res.errors:
            self.info.setText("Scores failed: " + res.errors["heads"])
        scores = res.get("heads")
        if scores is not None and scores is not self.scores:  # the same object: unchanged
            self.scores = scores
            self.ablated = abl
            values = {k: self._grid(k) for k, _ in SCORES}
            self.table_model.set_scores(values, abl)
            self._redraw()
            self._select_row()
        elif abl != self.ablated:
            self.ablated = abl
            self.table_model.set_ablated(abl)
        if sel_changed:
            self._select_row()
        self.map.set_marks(self.ablated)
        self._place_box()
        e = res.get("effect") if res.ablated else None
        if e is None:
            self.abl_label.setText("")
        else:
            chosen = e.get("chosen_logprob_change")
            ch = "" if chosen is None else f" · chosen {chosen:+.2f}"
            self.abl_label.setText(
                f"<span style='color:{ABLATED_COLOR}'>{len(res.ablated)} off</span>: Δ log p top "
                f"{e['top_logprob_change']:+.2f}{ch}")

    def _grid(self, key: str) -> np.ndarray | None:
        hs = self.scores
        if hs is None:
            return None
        return getattr(hs, key, None)

    def _redraw(self) -> None:
        hs = self.scores
        if hs is None or not self.L:
            return
        g = self._grid(self.score)
        if g is None:
            self.map.set_image(None, (0, 1))
            return
        g = np.asarray(g, np.float32)
        if self.score == "entropy":
            finite = g[np.isfinite(g)]
            hi = float(finite.max()) if finite.size else 1.0
            levels = (0.0, max(hi, 1e-6))
        else:
            levels = (0.0, 1.0)
        self.map.set_image(g, levels)
        self.colorbar.setLevels(levels)
        n_nan = int(np.isnan(g).sum())
        extra = ""
        if self.score == "induction":
            extra = f" · {hs.induction_queries} queries with an earlier copy"
        elif self.score == "duplicate_token":
            extra = f" · {hs.duplicate_queries} queries with a repeated token"
        elif self.score == "probe_induction":
            extra = " · probe: random tokens repeated twice"
        if n_nan == g.size and self.score in ("induction", "duplicate_token"):
            extra += " — no token repeats in this text yet"
        if getattr(hs, "convention", "gptviz") == "transformer_lens" and self.score in (
                "prev_token", "induction", "duplicate_token"):
            extra += " · TransformerLens convention"
        self.info.setText(f"{hs.n_tokens} tokens{extra}")
        self._place_box()

    def _place_box(self) -> None:
        if not self.L:
            return
        layer, head = self.selected
        if self.average:
            self.map.set_box(QRectF(0, layer, self.H, 1))
        else:
            self.map.set_box(QRectF(head, layer, 1, 1))

    def _select_row(self) -> None:
        row = self.table_model.row_of(*self.selected)
        if row < 0:
            return
        sm = self.table.selectionModel()
        with QSignalBlocker(sm):
            self.table.selectRow(row)
        self.table.scrollTo(self.table_model.index(row, 0))

    def _on_score(self, _i: int) -> None:
        self._redraw()
        self._sort_by_score()

    def _sort_by_score(self) -> None:
        col = self.table_model.columns.index(self.score)
        order = Qt.SortOrder.AscendingOrder if self.score == "entropy" else \
            Qt.SortOrder.DescendingOrder
        self.table.sortByColumn(col, order)
        self._select_row()

    # ------------------------------------------------------------------ mouse
    def describe(self, layer: int, head: int) -> str:
        """The hover text of a head."""
        label = dict(SCORES)[self.score]
        g = self._grid(self.score)
        if g is None:
            return f"layer {layer}, head {head}"
        v = float(g[layer, head])
        val = "undefined on this text" if not np.isfinite(v) else f"{v:.4f}"
        off = " · ablated" if (layer, head) in self.ablated else ""
        return f"L{layer} H{head} · {label}: {val}{off}"

    def _on_move(self, pos) -> None:
        c = self.map.cell_at(pos)
        self.readout.setText(self.describe(*c) + "  (click: select · Ctrl+click: ablate)"
                             if c else " ")

    def _on_click(self, ev) -> None:
        c = self.map.cell_at(ev.scenePos())
        if c is None:
            return
        if ev.button() == Qt.MouseButton.RightButton:
            self.context_menu(*c).popup(ev.screenPos().toPoint())
            ev.accept()
        elif ev.button() == Qt.MouseButton.LeftButton:
            if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
                self.ablateToggled.emit(*c)
            else:
                self.headSelected.emit(*c)

    def _on_table_click(self, index: QModelIndex) -> None:
        if not index.isValid():
            return
        from PySide6.QtWidgets import QApplication

        layer, head = self.table_model.head_at(index.row())
        if QApplication.keyboardModifiers() & Qt.KeyboardModifier.ControlModifier:
            self.ablateToggled.emit(layer, head)
        else:
            self.headSelected.emit(layer, head)

    def _on_table_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if index.isValid():
            layer, head = self.table_model.head_at(index.row())
            self.context_menu(layer, head).popup(self.table.viewport().mapToGlobal(pos))

    def context_menu(self, layer: int, head: int) -> QMenu:
        """The right-click menu of a head (kept in ``last_menu``)."""
        menu = QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        sel = QAction(f"Select L{layer} H{head}", menu)
        sel.triggered.connect(lambda: self.headSelected.emit(layer, head))
        off = (layer, head) in self.ablated
        abl = QAction(f"{'Restore' if off else 'Ablate'} L{layer} H{head}", menu)
        abl.triggered.connect(lambda: self.ablateToggled.emit(layer, head))
        menu.addAction(sel)
        menu.addAction(abl)
        self.last_menu = menu
        return menu
