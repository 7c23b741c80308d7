"""Comparisons: the selected head in two states side by side, and A − B.

Sources:

* **Pinned A vs current B** — "Pin current as A" keeps the current text and attention; change
  the text (another prompt, or go back and take another token: a branch) and the panel shows
  the selected head on both and their difference where the tokens align.
* **Clean A vs ablated B** — the model without and with the ablated heads, on the current text.
* **Branch A vs current B** — another branch of the branch tree (chosen in the box, or with
  "Compare" in the Branches panel) against the current branch; A is one forward of that
  branch's window.

Alignment: the common token prefix (two branches), or position by position (two prompts of
the same length, e.g. minimal pairs). With the same model and settings, causal attention over a
shared prefix is identical, so the prefix difference of two branches is 0; differences show
for other prompts aligned by position, or for clean vs ablated (later layers change).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import QComboBox, QPushButton, QWidget

from gptviz.analysis.live_compare import CompareSettings, CompareView
from gptviz.analysis.runner import AnalysisResult
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.axes import MAP_LABEL_CHARS, shorten, thin_ticks, tick_step
from gptviz_app.views.panel_layout import (
    choice_box,
    controls_row,
    panel_layout,
    set_choice,
    shrinkable_label,
)
from gptviz_app.views.plots import MapPlot
from gptviz_app.views.theme import DARK, Theme, colormap, diverging_colormap

SOURCE_ITEMS = (("pinned", "Pinned A vs current B"), ("ablation", "Clean A vs ablated B"),
                ("branch", "Branch A vs current B"))
ALIGN_ITEMS = (("prefix", "Common prefix"), ("position", "By position"))


class ComparePanel(AnalysisPanel):
    """Signals: ``pinRequested()``, ``sourceChanged(str)``, ``alignChanged(str)``."""

    title = "Compare A/B"
    analyses = ("compare",)

    pinRequested = Signal()
    sourceChanged = Signal(str)
    alignChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.source_box = choice_box(SOURCE_ITEMS, self.sourceChanged.emit)
        self.sourceChanged.connect(lambda _s: self.settingsChanged.emit())
        self.align_box = choice_box(
            ALIGN_ITEMS, self.alignChanged.emit,
            "Common prefix: positions where both texts have the same tokens from the start "
            "(branches). By position: the first min(Ta, Tb) positions whatever the tokens "
            "(two prompts).")
        self.alignChanged.connect(lambda _s: self.settingsChanged.emit())
        self.branch_box = QComboBox()
        self.branch_box.setToolTip("The branch shown as A (source: Branch A vs current B)")
        self.branch_box.currentIndexChanged.connect(lambda _i: self.settingsChanged.emit())
        self.branch_box.setVisible(False)
        # long first-token texts must not widen the dock: the box shows ~10 characters
        self.branch_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.branch_box.setMinimumContentsLength(10)
        self.sourceChanged.connect(lambda k: self.branch_box.setVisible(k == "branch"))
        self.branches: tuple = ()
        self.pin_btn = QPushButton("Pin current as A")
        self.pin_btn.setToolTip("Keep the current text and attention as side A")
        self.pin_btn.clicked.connect(self.pinRequested)
        self.info = shrinkable_label(" ")
        # the two choice boxes may show their texts cut (their lists open whole) rather than
        # widen the panel past its dock at presentation font sizes
        for box in (self.source_box, self.align_box):
            box.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(9)
        top = controls_row((self.source_box, 2), self.branch_box, (self.align_box, 1),
                           self.pin_btn, 6, (self.info, 1))
        self.glw = pg.GraphicsLayoutWidget()
        self.maps: list[MapPlot] = []
        for col in range(3):
            plot = self.glw.addPlot(row=0, col=col)
            self.maps.append(MapPlot(plot, aspect=True, top_axis=False))
        # the difference's colour bar, in a column of its own right of the three maps
        self.colorbar = self.maps[2].add_colorbar(10, values=(-1.0, 1.0),
                                                  cmap=diverging_colormap(DARK),
                                                  cell=(self.glw, 0, 3))
        self.readout = panel_layout(self, top, self.glw)
        self.view: CompareView | None = None
        self.note = " "
        self.glw.scene().sigMouseMoved.connect(self._on_move)
        self.apply_theme(self.theme)

    @property
    def source(self) -> str:
        return self.source_box.currentData()

    @property
    def align(self) -> str:
        return self.align_box.currentData()

    def set_source(self, key: str) -> None:
        set_choice(self.source_box, key, quiet=False)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.glw.setBackground(theme.plot_bg)
        for i, m in enumerate(self.maps):
            m.apply_theme(theme, diverging_colormap(theme) if i == 2 else colormap(theme.colormap))
        self.readout.setFont(theme.font(0.95, mono=True))
        for box in (self.source_box, self.align_box):  # no wider than its longest text
            fm = box.fontMetrics()
            longest = max(fm.horizontalAdvance(box.itemText(i)) for i in range(box.count()))
            box.setMaximumWidth(longest + 3 * fm.height())
        if self.view is not None:
            self._draw(self.view)

    @property
    def branch(self) -> int:
        bid = self.branch_box.currentData()
        return -1 if bid is None else int(bid)

    def requests(self, visible: bool) -> dict:
        return {"compare": CompareSettings(self.source, self.align, self.branch)} \
            if visible else {}

    def compare_branch(self, bid: int) -> None:
        """Show branch ``bid`` as A against the current branch, aligned by position (over a
        shared prefix causal attention is the same, so the prefix difference is 0)."""
        i = self.branch_box.findData(int(bid))
        if i >= 0:
            with QSignalBlocker(self.branch_box):
                self.branch_box.setCurrentIndex(i)
        set_choice(self.align_box, "position", quiet=False)
        self.set_source("branch")
        self.settingsChanged.emit()
        self.ui.reveal(self.key)

    def _fill_branches(self, branches: tuple) -> None:
        """The branch box: every branch but the current one (filled again only when what it
        lists changed, not when the current branch grew)."""
        listed = tuple((b.id, b.at, b.head) for b in branches if not b.current)
        if listed == self.branches:
            return
        self.branches = listed
        keep = self.branch_box.currentData()
        with QSignalBlocker(self.branch_box):
            self.branch_box.clear()
            for b in branches:
                if not b.current:
                    self.branch_box.addItem(f"#{b.id} from step {b.at + 1}: {b.head!r}", b.id)
            i = self.branch_box.findData(keep) if keep is not None else -1
            self.branch_box.setCurrentIndex(i if i >= 0 else self.branch_box.count() - 1)
        if self.branch_box.currentData() != keep and self.source == "branch":
            self.settingsChanged.emit()

    def install(self, ui) -> None:
        """Analysis ▸ Pin current state as A (also under "More ▾") and Compare clean (A) with
        ablated (B)."""
        self.ui = ui
        self.pinRequested.connect(self.pin)
        ui.add_action("compare_pin", "Pin current state as A (compare)", self.pin, more=True)
        ui.add_action("compare_ablation", "Compare clean (A) with ablated (B)",
                      self.compare_clean_vs_ablated)

    def pin(self) -> int:
        """Keep the current state as side A (and show the panel)."""
        gen = self.ui.send("compare.pin")
        self.ui.reveal(self.key)
        return gen

    def compare_clean_vs_ablated(self) -> None:
        self.set_source("ablation")
        self.ui.reveal(self.key)

    def set_model(self, info: ModelInfo) -> None:
        self.view = None
        for m in self.maps:
            m.set_image(None, (0, 1))
            m.plot.getAxis("left").setTicks([[]])

    def follow(self, res: AnalysisResult, snap: Snapshot) -> None:
        """The branch box, also while hidden (filled only when the branches listed changed;
        which one it keeps depends on each change): the branch tree's Compare uses it."""
        self._fill_branches(tuple(getattr(snap, "branches", ()) or ()))

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        if "compare" in res.errors:
            self.info.setText("Comparison failed: " + res.errors["compare"])
            return
        cv = res.get("compare")
        if cv is not None:
            self.pin_btn.setText("Pin current as A" if not cv.pinned else "Re-pin current as A")
            self.view = cv
            self._draw(cv)

    # ------------------------------------------------------------------ drawing
    def _ticks(self, m: MapPlot, tokens: list[str], n: int) -> None:
        labels = [shorten(t, MAP_LABEL_CHARS) for t in tokens[:n]]
        # the rows' height on screen: an aspect-locked map fills only part of its view box
        _, per_px = m.vb.viewPixelSize()
        row_px = 1.0 / per_px if per_px > 0 else max(1.0, m.vb.height()) / max(1, len(labels))
        m.plot.getAxis("left").setTicks(
            [thin_ticks(labels, tick_step(self.theme.pt(0.8) * 1.7, row_px))])

    def _draw(self, cv: CompareView) -> None:
        th = self.theme
        who = f"layer {cv.layer} " + ("average" if cv.average else f"head {cv.head}")
        sq = np.sqrt
        for m, data, title, toks in ((self.maps[0], cv.a, "A: " + cv.label_a, cv.tokens_a),
                                     (self.maps[1], cv.b, "B: " + cv.label_b, cv.tokens_b)):
            m.set_title(shorten(title, 34), th)
            m.plot.setToolTip(title)
            if data is None:  # nothing to show: no axis numbers of an empty plot either
                m.set_image(None, (0, 1))
                m.plot.getAxis("left").setTicks([[]])
                continue
            m.set_image(data, (0.0, 1.0), display=sq(data))
            self._ticks(m, toks, data.shape[0])
        d = cv.diff
        if d is None or d.size == 0:
            self.maps[2].set_image(None, (-1, 1))
            self.maps[2].plot.getAxis("left").setTicks([[]])
            self.maps[2].set_title("A − B", th)
            peak = 0.0
        else:
            finite = np.abs(d[np.isfinite(d)])
            peak = float(finite.max()) if finite.size else 0.0
            lim = max(peak, 1e-3)
            self.maps[2].set_image(d, (-lim, lim))
            self.colorbar.setLevels((-lim, lim))
            self.colorbar.axis.setTicks([[(-lim, f"{-lim:.2g}"), (0.0, "0"),
                                          (lim, f"{lim:.2g}")]])
            self.maps[2].set_title(f"A − B ({cv.n} aligned)", th)
            self._ticks(self.maps[2], cv.tokens_b, cv.n)
        self.maps[2].set_box(None)
        note = cv.message
        if not note:
            note = f"max |A − B| = {peak:.2g}"
            if peak < 1e-5 and cv.n:
                note += (" (unchanged: layers up to the lowest ablated one keep their "
                         "attention)" if cv.source == "ablation" else
                         " (identical: causal attention over a shared prefix does not change)")
        self.info.setText(who)
        self.note = f"{who} · {note}"
        self.info.setToolTip(self.note)
        self.readout.setText(self.note)

    def _on_move(self, pos) -> None:
        cv = self.view
        if cv is None:
            return
        for name, m, toks in (("A", self.maps[0], cv.tokens_a), ("B", self.maps[1], cv.tokens_b),
                              ("A − B", self.maps[2], cv.tokens_b)):
            c = m.cell_at(pos)
            if c is None:
                continue
            q, k = c
            v = float(m.data[q, k])
            qt = toks[q] if q < len(toks) else "?"
            kt = toks[k] if k < len(toks) else "?"
            val = "masked (future)" if not np.isfinite(v) else f"{v:+.4f}" if name == "A − B" \
                else f"{v:.4f}"
            self.readout.setText(f"{name}: query {q} {qt!r} → key {k} {kt!r}: {val}")
            return
        self.readout.setText(self.note)
