"""Live head ablation: the heads switched off, how, and what it changes.

Heads are toggled from the head grid (Ctrl+click a thumbnail, or its right-click menu), from the
diagnostics panel, or here ("Ablate selected head": the head shown in the attention map). The
engine recomputes at once (next-token distribution, later layers' maps, logit lens). This panel
lists the ablated heads (select some and "Restore", or "Clear all"), the mode (zero-ablation,
or the head's mean output over the text up to the step, causally, or over a reference text),
and the effect at the current step: the change in log-probability of the clean model's top
token and of the token actually chosen, KL divergence and total variation, and the top tokens
with and without the heads — the numbers of :func:`gptviz.analysis.ablation_effect`.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gptviz.analysis.runner import AnalysisResult
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.panels.widgets import ABLATED_COLOR, esc
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.panel_layout import choice_box, set_choice, stack
from gptviz_app.views.theme import DARK, Theme

MODE_ITEMS = (("zero", "Zero output"), ("mean", "Mean output"))
TOP_ROWS = 8


class AblationPanel(AnalysisPanel):
    """Signals: ``modeChanged(str)``, ``clearRequested()``, ``restoreRequested(list)`` (heads),
    ``toggleSelectedRequested()``, ``headSelected(layer, head)``."""

    title, in_toolbar = "Ablation", True
    analyses = ("effect",)

    modeChanged = Signal(str)
    clearRequested = Signal()
    restoreRequested = Signal(list)
    toggleSelectedRequested = Signal()
    referenceChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.mode_box = choice_box(
            MODE_ITEMS, self.modeChanged.emit,
            "Zero: the head outputs nothing. Mean: it outputs its average over the text up to "
            "the step's prediction, or over the reference text below (measured on the clean "
            "model), losing only what depends on the position.")
        self.toggle_btn = QPushButton("Ablate selected head")
        self.toggle_btn.setToolTip("Switch the head shown in the attention map off (or on)")
        self.toggle_btn.clicked.connect(self.toggleSelectedRequested)
        self.restore_btn = QPushButton("Restore")
        self.restore_btn.setToolTip("Switch the heads selected in the list back on")
        self.restore_btn.clicked.connect(self._on_restore)
        self.clear_btn = QPushButton("Clear all")
        self.clear_btn.clicked.connect(self.clearRequested)
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.itemClicked.connect(self._on_item)
        self.list.itemDoubleClicked.connect(lambda it: self.restoreRequested.emit([it.data(
            Qt.ItemDataRole.UserRole)]))
        self.list.setToolTip("Click: show the head · double-click: restore it")
        self.list_label = QLabel("Ablated heads")
        top = QHBoxLayout()
        top.setContentsMargins(4, 0, 4, 0)
        top.addWidget(QLabel("Mode"))
        top.addWidget(self.mode_box)
        top.addWidget(self.toggle_btn)
        top.addStretch(1)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(4, 0, 4, 0)
        ll.setSpacing(2)
        ll.addWidget(self.list_label)
        ll.addWidget(self.list, 1)
        # under the list they act on (the row above stays narrow at presentation font sizes)
        ll.addWidget(self.restore_btn)
        ll.addWidget(self.clear_btn)
        self.reference = QLineEdit()
        self.reference.setPlaceholderText("reference text")
        self.reference.setClearButtonEnabled(True)
        self.reference.setToolTip(
            "Mean-ablation replaces a head's output by its mean on the clean model over the "
            "positions up to the step's prediction (causal: later tokens never change it). "
            "Type a reference text and press Enter to take the means over it instead; clear "
            "it to go back.")
        self.reference.returnPressed.connect(
            lambda: self.referenceChanged.emit(self.reference.text()))
        ll.addWidget(self.reference)

        self.summary = QLabel(" ")
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setWordWrap(True)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.delta_table = QTableWidget(2, 4)
        self.delta_table.setHorizontalHeaderLabels(["token", "log p clean", "ablated", "Δ"])
        self.delta_table.setVerticalHeaderLabels(["top", "chosen"])
        self.delta_table.setToolTip("Log-probability (natural log) of the clean model's top "
                                    "token and of the token actually chosen, without and with "
                                    "the ablated heads; Δ = ablated − clean")
        self.top_table = QTableWidget(TOP_ROWS, 4)
        self.top_table.setHorizontalHeaderLabels(["clean", "p", "ablated", "p"])
        self.top_table.verticalHeader().setVisible(False)
        self.top_table.setToolTip("Most probable tokens without and with the ablated heads "
                                  "(highlighted: not in the other list)")
        for t in (self.delta_table, self.top_table):
            t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            t.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
            t.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        hh = self.top_table.horizontalHeader()
        for c, mode in enumerate((QHeaderView.ResizeMode.Stretch,
                                  QHeaderView.ResizeMode.ResizeToContents,
                                  QHeaderView.ResizeMode.Stretch,
                                  QHeaderView.ResizeMode.ResizeToContents)):
            hh.setSectionResizeMode(c, mode)
        hh = self.delta_table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tables = QSplitter(Qt.Orientation.Horizontal)
        self.tables.addWidget(self.delta_table)
        self.tables.addWidget(self.top_table)
        self.tables.setStretchFactor(0, 3)
        self.tables.setStretchFactor(1, 2)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(4, 0, 4, 0)
        rl.setSpacing(3)
        rl.addWidget(self.summary)
        rl.addWidget(self.tables, 1)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(left)
        self.split.addWidget(right)
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 3)
        self.split.setSizes([120, 700])
        stack(self, top, self.split)
        self.ablated: tuple[tuple[int, int], ...] = ()
        self.effect: dict | None = None
        self.selected = (0, 0)
        self.apply_theme(self.theme)
        self._show_empty()

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.summary.setFont(theme.font(1.0))
        self.list.setFont(theme.font(1.0, mono=True))
        for t in (self.top_table, self.delta_table):
            t.setFont(theme.font(0.9, mono=True))
            t.verticalHeader().setDefaultSectionSize(int(theme.pt(0.9) * 2.1))
            t.horizontalHeader().setFont(theme.font(0.85))
        if self.effect is not None:
            self._show_effect(self.effect)

    def install(self, ui) -> None:
        """The buttons act on the session's ablation (the AnalysisUI's); the panel shows up
        when a head is toggled from anywhere."""
        self.modeChanged.connect(ui.set_mode)
        self.clearRequested.connect(ui.clear)
        self.restoreRequested.connect(ui.restore)
        self.toggleSelectedRequested.connect(lambda: ui.toggle_head(*ui.selected))
        self.referenceChanged.connect(lambda text: ui.send("set_reference", text=text))
        self.reference.textChanged.connect(
            lambda text: None if text else self.referenceChanged.emit(""))
        ui.actions["ablation_mean"].toggled.connect(
            lambda on: self.set_mode("mean" if on else "zero"))
        ui.headToggled.connect(lambda _layer, _head: ui.show_quietly(self.key))

    def set_model(self, info: ModelInfo) -> None:
        self.ablated = ()
        self.effect = None
        self.list.clear()
        self._show_empty()

    @property
    def mode(self) -> str:
        return self.mode_box.currentData()

    def set_mode(self, mode: str) -> None:
        set_choice(self.mode_box, mode)

    # ------------------------------------------------------------------ data
    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        v = snap.view
        self.selected = (v.layer, v.head)
        off = self.selected in set(res.ablated)
        self.toggle_btn.setText(f"{'Restore' if off else 'Ablate'} selected head "
                                f"(L{v.layer} H{v.head})")
        self.set_mode(res.ablation_mode)
        if tuple(res.ablated) != self.ablated:
            self.ablated = tuple(res.ablated)
            self.list.clear()
            for layer, head in self.ablated:
                it = QListWidgetItem(f"✗ L{layer} H{head}")
                it.setToolTip(f"layer {layer}, head {head}")
                it.setData(Qt.ItemDataRole.UserRole, (layer, head))
                it.setForeground(QColor(ABLATED_COLOR))
                self.list.addItem(it)
        mode = res.ablation_mode
        ref = "the reference text" if self.reference.text().strip() else "the text up to the step"
        how = "zeroed" if mode == "zero" else (
            f"mean over {res.means_tokens} tokens of {ref}" if res.means_tokens
            else "mean output")
        self.list_label.setText(f"Ablated: {len(self.ablated)}")
        self.list_label.setToolTip(how if self.ablated else "no head is ablated")
        self.restore_btn.setEnabled(bool(self.ablated))
        self.clear_btn.setEnabled(bool(self.ablated))
        if not self.ablated:
            self.effect = None
            self._show_empty()
        elif "effect" in res.errors:
            self.summary.setText("Effect failed: " + esc(res.errors["effect"]))
        elif res.get("effect") is not None:
            self.effect = res.get("effect")
            self._show_effect(self.effect)

    def _show_empty(self) -> None:
        self.summary.setText(
            "<b>No head is ablated.</b><br>Ctrl+click a thumbnail in <i>All heads</i> (or "
            "use its right-click menu, or a head in <i>Head diagnostics</i>) to switch it off, "
            "or use "
            "the button on the left for the head in the attention map.")
        self.top_table.clearContents()
        self.delta_table.clearContents()

    def _show_effect(self, e: dict) -> None:
        th = self.theme
        step = e.get("step", 0)
        where = f"<b>Step {step}</b>" if step else "<b>After the prompt</b>"
        self.summary.setText(
            f"{where} · prediction after position {e['position']} · KL(clean ‖ ablated) "
            f"<b>{e['kl_bits']:.4f}</b> bits · total variation <b>{e['total_variation']:.3f}</b>")
        self.summary.setToolTip(
            f"The prediction after position {e['position']} (" + (
                "the newest token was drawn from it" if step else "the prompt's end") + ")" +
            ", with and without the ablated heads")
        rows = [("top", e["top_token_str"], e["top_logprob_before"], e["top_logprob_after"],
                 e["top_logprob_change"])]
        if e.get("chosen_token") is not None:
            rows.append(("chosen", e["chosen_token_str"], e["chosen_logprob_before"],
                         e["chosen_logprob_after"], e["chosen_logprob_change"]))
        self.delta_table.clearContents()
        for r, (name, tok, before, after, d) in enumerate(rows):
            cells = [repr(tok), f"{before:.3f}", f"{after:.3f}", f"{d:+.3f}"]
            for c, text in enumerate(cells):
                it = QTableWidgetItem(text)
                if c:
                    it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                it.setToolTip(f"{name} token {tok!r}: p {math.exp(before):.2%} → "
                              f"{math.exp(after):.2%}")
                if c == 3 and math.isfinite(d) and d != 0:
                    it.setForeground(QColor("#4cc38a" if d > 0 else "#ff6b6b"))
                self.delta_table.setItem(r, c, it)
        if len(rows) == 1:
            it = QTableWidgetItem("none yet")
            it.setForeground(QColor(th.text_dim))
            self.delta_table.setItem(1, 0, it)
        before, after = e["top_before"], e["top_after"]
        ids_before = {d["id"] for d in before}
        ids_after = {d["id"] for d in after}
        for r in range(TOP_ROWS):
            for c, (side, others) in enumerate(((before, ids_after), (after, ids_before))):
                tok_item = QTableWidgetItem()
                p_item = QTableWidgetItem()
                if r < len(side):
                    d = side[r]
                    tok_item.setText(repr(d["token"]))
                    p_item.setText(f"{d['prob']:.1%}")
                    p_item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                            | Qt.AlignmentFlag.AlignVCenter)
                    if d["id"] not in others:  # new in / dropped out of the top list
                        tok_item.setForeground(QColor(th.accent))
                        tok_item.setToolTip("not in the other side's top list")
                    if d["id"] == e.get("chosen_token"):
                        f = tok_item.font()
                        f.setBold(True)
                        tok_item.setFont(f)
                self.top_table.setItem(r, 2 * c, tok_item)
                self.top_table.setItem(r, 2 * c + 1, p_item)

    # ------------------------------------------------------------------ events
    def _on_item(self, it: QListWidgetItem) -> None:
        layer, head = it.data(Qt.ItemDataRole.UserRole)
        self.headSelected.emit(int(layer), int(head))

    def _on_restore(self) -> None:
        heads = [tuple(it.data(Qt.ItemDataRole.UserRole)) for it in self.list.selectedItems()]
        if heads:
            self.restoreRequested.emit(heads)
