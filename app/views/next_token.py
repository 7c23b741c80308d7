"""Next-token panel: horizontal bars of the top-k candidates, the chosen one highlighted.

After a step it shows the distribution the newest token was drawn from (the chosen bar in
the accent colour); clicking another bar replaces that token with the clicked one (a
branch). Before any step it shows the distribution after the prompt, and clicking a bar
forces it as the next token. The header is two short lines (the token, then its probability
and the entropy) that elide rather than wrap, and the chart shows only as many bars as stay
readable at the current font size, and says so ("only 8 fit" beside the "top 12" box).
Items are created once.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontMetricsF
from PySide6.QtWidgets import QLabel, QSpinBox, QVBoxLayout, QWidget

from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.elided_label import ElidedLabel
from gptviz_app.views.panel_layout import controls_row, stack
from gptviz_app.views.plots import set_label_ticks, style_axis
from gptviz_app.views.theme import DARK, Theme

#: Height of one bar's row in tick-font line heights: fewer bars are shown than asked for when
#: the chart is too short for this (big fonts, a short panel).
ROW_LINES = 1.15
MIN_ROWS = 3


#: Candidate spacings of the probability axis' labelled ticks, smallest first.
TICK_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0)


class NextTokenView(QWidget):
    """``candidateClicked(token_id, replace_last)`` when a bar is clicked."""

    candidateClicked = Signal(int, bool)

    def __init__(self, parent: QWidget | None = None, shown: int = 12) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.header = ElidedLabel(" ")     # "Step 5: 'x'" / "Next token after the prompt"
        self.detail = ElidedLabel(" ")     # "sampled, p = 0.123 · entropy 4.56 bits"
        self.count = QSpinBox()
        self.count.setRange(MIN_ROWS, 20)
        self.count.setValue(shown)
        self.count.setPrefix("top ")
        self.count.setToolTip("How many candidates to show (fewer while the panel is too "
                              "short for them)")
        self.count.valueChanged.connect(self._redraw)
        top = QVBoxLayout()
        top.setContentsMargins(4, 0, 4, 0)
        top.setSpacing(0)
        top.addWidget(self.header)
        top.addWidget(self.detail)
        self.glw = pg.GraphicsLayoutWidget()
        self.plot: pg.PlotItem = self.glw.addPlot(row=0, col=0)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.vb = self.plot.getViewBox()
        self.vb.invertY(True)
        self.vb.setMouseEnabled(x=False, y=False)
        self.plot.setLabel("bottom", "probability")
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.75, width=[], brushes=[])
        self.plot.addItem(self.bars)
        self.values: list[pg.TextItem] = []
        self.n_shown = 0
        self._drawn_width = 0.0  # view-box width the x extent was computed for
        self.tick_step = 0.1  # spacing of the labelled probability ticks
        self.hint = ElidedLabel(" ")
        # "only 8 fit": shown when the chart is too short for the bars asked for
        self.fit_note = QLabel("")
        self.fit_note.hide()
        self.fit_note.setToolTip("The panel is too short for more readable bars: make it "
                                 "taller (or the font smaller) to see them all")
        bottom = controls_row((self.hint, 1), self.fit_note, self.count)
        stack(self, top, self.glw, bottom)
        self.glw.scene().sigMouseClicked.connect(self._on_click)
        self.vb.sigResized.connect(self._on_resize)
        self.candidates = None
        self.apply_theme(self.theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.glw.setBackground(theme.plot_bg)
        for name, font in (("left", theme.font(1.0, mono=True)), ("bottom", theme.font(0.85))):
            style_axis(self.plot.getAxis(name), theme, font)
        self.plot.setLabel("bottom", "probability", color=theme.text_dim)  # readable colour
        self.plot.getAxis("bottom").label.setFont(theme.font(0.85))
        self.header.setFont(theme.font(1.0))
        self.detail.setFont(theme.font(0.9))
        self.detail.setStyleSheet(f"color: {theme.text_dim}")
        self.hint.setStyleSheet(f"color: {theme.text_dim}")
        self.fit_note.setStyleSheet(f"color: {theme.accent}")
        for t in self.values:
            t.setFont(theme.font(0.85))
            t.setColor(theme.text)
        # The chart never gets shorter than MIN_ROWS readable bars plus its probability axis
        # (two lines): with big presentation fonts the dock layout shrinks the panels below
        # this one instead of overlapping the token labels.
        self.glw.setMinimumHeight(int(self._line_px() * (MIN_ROWS * ROW_LINES + 2.1)))
        self._redraw()

    def set_model(self, info: ModelInfo) -> None:
        self.candidates = None
        self._redraw()

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.candidates = snap.candidates
        self._redraw()

    def _ensure_values(self, n: int) -> None:
        while len(self.values) < n:
            t = pg.TextItem("", anchor=(0, 0.5), color=self.theme.text)
            t.setFont(self.theme.font(0.85))
            self.plot.addItem(t)
            self.values.append(t)

    def rows_that_fit(self) -> int:
        """How many bars stay readable in the chart's height (at least :data:`MIN_ROWS`; any
        number before the chart is laid out)."""
        h = self.vb.height()
        if h <= 1:
            return 1 << 30
        return max(MIN_ROWS, int(h // (self._line_px() * ROW_LINES)))

    def _line_px(self) -> float:
        """Line height of the token labels (the left axis' tick font), in pixels."""
        return QFontMetricsF(self.plot.getAxis("left").style["tickFont"]).height()

    def _x_extent(self, p_max: float, labels: list[str]) -> float:
        """Right end of the x axis: the longest bar plus room for its value label, measured
        in pixels (a fixed 25% margin clipped "6.4%" in presentation mode at 1280x800)."""
        width = self.vb.width()
        if width <= 1 or not labels:
            return max(0.05, p_max * 1.25)
        fm = QFontMetricsF(self.theme.font(0.85))
        # TextItem pads its text by a few pixels on each side; 1.3 em covers it and a gap.
        label_px = max(fm.horizontalAdvance(t) for t in labels) + 1.3 * fm.height()
        frac = min(0.6, label_px / width)  # share of the width kept for the labels
        return max(0.05, p_max / (1.0 - frac) * 1.02)

    def _space_x_ticks(self, xmax: float) -> None:
        """Probability ticks far enough apart that their labels never run together (pyqtgraph
        spaced 0.02 apart wrote "0.020.040.06" in a narrow presentation column)."""
        axis = self.plot.getAxis("bottom")
        width = self.vb.width()
        if width <= 1:
            return
        font = axis.style.get("tickFont") or self.theme.font(0.85)
        label_px = QFontMetricsF(font).horizontalAdvance("0.00") * 1.8
        # The axis runs past the longest bar to make room for its value label, past 1.0 when
        # a token is near certain: no probability ticks there ("1.5" was drawn).
        top = min(xmax, 1.0)
        # Too narrow for any spacing: still one labelled tick (the largest step under the top)
        below = [s for s in TICK_STEPS if s <= top + 1e-9] or [TICK_STEPS[0]]
        step = next((s for s in TICK_STEPS if xmax / s * label_px <= width), below[-1])
        step = min(step, below[-1])
        n = int(top / step + 1e-9)
        major = [round(i * step, 6) for i in range(1, n + 1)]
        # half steps: labelled where pyqtgraph finds room for them, as with setTickSpacing
        minor = [round((i + 0.5) * step, 6) for i in range(n + 1)
                 if (i + 0.5) * step <= top + 1e-9]
        axis.setTicks([[(v, f"{v:g}") for v in level] for level in (major, minor)])
        self.tick_step = step

    def _show_fit(self, shown: int, asked: int) -> None:
        """Say how many bars are shown when it is fewer than the "top N" box asks for."""
        text = f"only {shown} fit" if shown < asked else ""
        if self.fit_note.text() != text:
            self.fit_note.setText(text)
            self.fit_note.setVisible(bool(text))

    def _on_resize(self, *_) -> None:
        c = self.candidates
        if c is not None and (min(self.count.value(), len(c.ids), self.rows_that_fit())
                              != self.n_shown or abs(self.vb.width() - self._drawn_width) > 1):
            self._redraw()  # more or fewer rows fit, or the labels need another x extent

    def _redraw(self, *_):
        c = self.candidates
        th = self.theme
        if c is None:
            self.bars.setOpts(x0=[], y=[], width=[], brushes=[])
            for t in self.values:
                t.setText("")
            self.n_shown = 0
            self._show_fit(0, 0)
            self.header.setText(" ")
            self.detail.setText(" ")
            return
        n = min(self.count.value(), len(c.ids), self.rows_that_fit())
        self.n_shown = n
        self._show_fit(n, min(self.count.value(), len(c.ids)))
        self._drawn_width = self.vb.width()
        idx = list(range(n))
        if c.chosen >= n:  # the chosen token ranks lower: show it as the last bar
            idx[-1] = c.chosen
        probs = np.asarray([float(c.probs[i]) for i in idx])
        brushes = [pg.mkBrush(th.bar_chosen if i == c.chosen else th.bar) for i in idx]
        ys = np.arange(n, dtype=float)
        self.bars.setOpts(x0=np.zeros(n), y=ys, width=probs, height=0.75, brushes=brushes,
                          pens=[pg.mkPen(None)] * n)
        ticks = []
        for row, i in enumerate(idx):
            rank = f"#{i + 1}" if i >= n - 1 and i == c.chosen and c.chosen >= n else ""
            ticks.append((row, f"{c.tokens[i]!r}{(' ' + rank) if rank else ''}"))
        set_label_ticks(self.plot, "left", ticks)  # widened first: no label left out
        self._ensure_values(n)  # grows only
        labels = [f"{p:.1%}" for p in probs]
        xmax = self._x_extent(float(probs.max()) if n else 1.0, labels)
        for row, t in enumerate(self.values):
            if row < n:
                t.setText(labels[row])
                t.setPos(float(probs[row]) + xmax * 0.01, row)
            else:
                t.setText("")
        self._space_x_ticks(xmax)
        self.vb.setRange(xRange=(0, xmax), yRange=(-0.6, n - 0.4), padding=0)
        token = f"<span style='color:{th.bar_chosen}'><b>{{}}</b></span>"
        if c.kind == "last":
            how = "forced" if c.chosen_forced else "greedy" if c.chosen_greedy else "sampled"
            self.header.set_rich(f"<b>Step {c.step}</b>: {token}",
                                 repr(c.tokens[c.chosen]) if c.chosen >= 0 else "?", bold=True)
            self.detail.set_rich(f"{how}, p = {c.chosen_prob:.3f} · entropy "
                                 f"<b>{c.entropy:.2f}</b> bits")
            self.hint.setText("Click a bar to take that token instead (branch).")
        else:
            self.header.set_rich("<b>Next token</b> after the prompt")
            if c.chosen >= 0:
                self.detail.set_rich(f"entropy <b>{c.entropy:.2f}</b> bits · taken next: {token}",
                                     repr(c.tokens[c.chosen]), bold=True)
            else:
                self.detail.set_rich(f"entropy <b>{c.entropy:.2f}</b> bits")
            self.hint.setText("Click a bar to force that token as the next one.")

    def row_position(self, row: int):
        """Scene position of the middle of bar ``row`` (tests click there)."""
        c = self.candidates
        p = float(c.probs[row]) / 2 if c is not None and row < len(c.probs) else 0.01
        return self.vb.mapViewToScene(pg.Point(max(p, 0.002), row))

    def _on_click(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or self.candidates is None:
            return
        if not self.vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        row = int(round(self.vb.mapSceneToView(ev.scenePos()).y()))
        c = self.candidates
        n = self.n_shown
        if not 0 <= row < n:
            return
        i = c.chosen if (row == n - 1 and c.chosen >= n) else row
        self.candidateClicked.emit(int(c.ids[i]), c.kind == "last")

