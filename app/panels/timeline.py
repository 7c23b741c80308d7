"""The training timeline: one prompt run on every snapshot of a training run.

A slider over the run's snapshots (``resources/timeline/`` by default; "Open run…" picks
another folder written by ``python -m gptviz train --snapshot-every N``). For the snapshot
under the slider the panel shows the selected head's attention on the prompt (the window's
layer and head, clamped to the snapshot's model), the induction-probe score of every head
(:func:`gptviz.analysis.heads.induction_scores`), the next-token distribution after the
prompt, and the run's loss curves — L1 (language model) through pre-training and fine-tuning,
L3 = L2 + λ·L1 while fine-tuning — with the snapshot's iteration marked. The snapshot is loaded
and run on the worker (the ``"timeline"`` analysis,
:class:`gptviz.analysis.live_timeline.TrainingTimeline`). Keys, with the slider focused:
PgUp/PgDn or Ctrl+←/→ one snapshot, Ctrl+Home / End the first / last (←, → and Home stay the
window's stepping keys).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSignalBlocker, Qt
from PySide6.QtGui import QColor, QFontMetricsF, QPen
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from gptviz.analysis.live_timeline import TimelineSettings, TimelineView
from gptviz.analysis.runner import AnalysisResult
from gptviz.analysis.timeline import DEFAULT_PROMPT
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.axes import MAP_LABEL_CHARS, pt_px, shorten, thin_ticks, tick_step
from gptviz_app.views.panel_layout import controls_row, shrinkable_label, wrap_lines
from gptviz_app.views.plots import MapPlot, sqrt_ticks, style_axis
from gptviz_app.views.theme import DARK, Theme

#: What the stages are called on the curve and the label.
STAGE_TEXT = {"pretrain": "pre-training (L1)", "induct": "copying stage",
              "anneal": "anneal (L1)", "finetune": "fine-tuning (L3 = L2 + λ·L1)"}
#: The stage marks on the curves.
SHORT_STAGE = {"induct": "copying", "anneal": "anneal", "finetune": "fine-tuning (L3)"}
#: Characters of an error shown below the plots (a path and a reason fit).
MAX_ERROR_CHARS = 400
#: The curves drawn (name in ``losses.json``, legend, colour, dashed).
CURVES = (("l1", "L1 (language model)", "#5b8def", False),
          ("l3", "L3 = L2 + λ·L1", "#ff9d00", False),
          ("copy", "copying loss", "#9aa0a8", True))


class TimelinePanel(AnalysisPanel):
    """The training timeline (see the module docstring)."""

    title = "Training timeline"
    button = "Timeline"
    analyses = ("timeline",)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.directory = ""
        self.view: TimelineView | None = None
        self._shown: tuple[str, TimelineView] | None = None  # the run before "Open run…"
        # why the run opened last was given back, and at how many tokens: said until the text
        # moves on (the recomputed run's readout would hide it at once)
        self._notice: tuple[str, int] | None = None
        self._n_tokens = -1  # of the snapshot being drawn
        self.layer, self.head = 0, 0
        self.open_button = QPushButton("Open run…")
        self.open_button.setToolTip("A folder of snapshots written by python -m gptviz train "
                                    "--snapshot-every N (default: the shipped run)")
        self.open_button.clicked.connect(self._open)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        # ←/→ and Home are the window's stepping keys: PgUp/PgDn move one snapshot
        self.slider.setPageStep(1)
        self.slider.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.slider.setToolTip("Training snapshot: PgUp/PgDn (or Ctrl+←/→) one snapshot, "
                               "Ctrl+Home / End the first / last")
        self.slider.setAccessibleName("Training snapshot")
        self.slider.valueChanged.connect(self._on_slider)
        self.iteration_label = shrinkable_label(" ")
        self.iteration_label.setWordWrap(True)  # a narrow dock: two lines, not a cut one
        self.prompt = QLineEdit(DEFAULT_PROMPT)
        self.prompt.setToolTip("The prompt every snapshot reads (Enter to run it)")
        self.prompt.editingFinished.connect(self._on_prompt)
        self._prompt_sent = DEFAULT_PROMPT
        row0 = controls_row((self.iteration_label, 1), 6, self.open_button)
        row1 = controls_row((self.slider, 1))
        row2 = controls_row(QLabel("Prompt"), 4, (self.prompt, 1))
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        # below this the plots would squeeze into unreadable slivers: the dock scrolls instead
        self.glw.setMinimumSize(340, 420)
        # left: the map over the loss curves; right: the probe over the next-token bars
        self.map = MapPlot(self.glw.addPlot(row=0, col=0), aspect=False)
        self.map_bar = self.map.add_colorbar(10, label="attention (√)")
        self.map.vb.sigResized.connect(self._relabel)
        self.labels: list[str] = []
        self.probe = MapPlot(self.glw.addPlot(row=0, col=1), aspect=False, top_axis=True)
        self.probe_text: list[pg.TextItem] = []
        self.bars_plot = self.glw.addPlot(row=1, col=1)
        self.bars_plot.setMenuEnabled(False)
        self.bars_plot.setMouseEnabled(False, False)
        self.bars_plot.hideButtons()
        self.bars_plot.invertY(True)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[])
        self.bars_plot.addItem(self.bars)
        self.curves = self.glw.addPlot(row=1, col=0)
        self.curves.setMenuEnabled(False)
        self.curves.setMouseEnabled(False, False)
        self.curves.hideButtons()
        self.curves.showGrid(x=False, y=True, alpha=0.2)
        self.curve_items: dict[str, pg.PlotDataItem] = {}
        self.stage_lines: list[pg.InfiniteLine] = []
        self.snap_marks = pg.ScatterPlotItem(size=7)
        self.curves.addItem(self.snap_marks)
        self.current = pg.InfiniteLine(angle=90, movable=False)
        self.curves.addItem(self.current)
        layout = self.glw.ci.layout
        layout.setColumnStretchFactor(0, 3)
        layout.setColumnStretchFactor(1, 2)
        layout.setRowStretchFactor(0, 3)
        layout.setRowStretchFactor(1, 2)
        self.readout = shrinkable_label(" ")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(row0)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addWidget(self.glw, 1)
        lay.addWidget(self.readout)
        self.apply_theme(self.theme)

    # ------------------------------------------------------------------ settings
    def requests(self, visible: bool) -> dict:
        if not visible:
            return {}
        index = self.slider.value() if self.view is not None else -1
        return {"timeline": TimelineSettings(directory=self.directory, index=index,
                                             prompt=self._prompt_sent)}

    def _on_slider(self, _value: int) -> None:
        if self.view is not None:
            self._label(self.slider.value())
            self.settingsChanged.emit()

    def _on_prompt(self) -> None:
        text = self.prompt.text()
        if text.strip() and text != self._prompt_sent:
            self._prompt_sent = text
            self.settingsChanged.emit()

    def _open(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Open a run's snapshots", self.directory)
        if d:
            self.open_directory(d)

    def open_directory(self, directory: str) -> None:
        """Show the run in ``directory`` from its last snapshot (a folder that cannot be shown
        leaves the run on screen as it was, with the reason below it)."""
        if self.view is not None:
            self._shown = (self.directory, self.view)
        self.directory = str(directory)
        self.view = None  # the next result sets the slider's range (index -1: the last)
        self.settingsChanged.emit()

    # ------------------------------------------------------------------ drawing
    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.glw.setBackground(theme.plot_bg)
        self.map.apply_theme(theme)
        self.map_bar.axis.setTicks([sqrt_ticks((0, 0.05, 0.25, 0.5, 1))])
        self.probe.apply_theme(theme)
        font = theme.font(0.8)
        for plot in (self.bars_plot, self.curves):
            for name in ("left", "bottom"):
                style_axis(plot.getAxis(name), theme, font)
        self.bars.setOpts(brush=QColor(theme.bar), pen=pg.mkPen(None))
        pen = QPen(QColor(theme.accent), 2)
        pen.setCosmetic(True)
        self.current.setPen(pen)
        self.iteration_label.setFont(theme.font(1.0, bold=True))
        self.readout.setFont(theme.font(0.9))
        wrap_lines(self.readout)  # two lines rather than a cut one
        if self.view is not None:
            self._draw(self.view)

    def set_model(self, info: ModelInfo) -> None:
        """The window's model changed: the timeline shows its own run, so nothing to forget
        but the selection (followed from the next snapshot)."""

    def _label(self, index: int) -> None:
        v = self.view
        if v is None or not 0 <= index < len(v.iterations):
            return
        self.iteration_label.setText(f"iteration {v.iterations[index]:,} · "
                                     f"{STAGE_TEXT.get(v.stages[index], v.stages[index])} · "
                                     f"{index + 1}/{len(v.iterations)}")

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        self._n_tokens = snap.n_tokens
        if "timeline" in res.errors:
            self._failed(res.errors["timeline"])
            return
        v: TimelineView | None = res.get("timeline")
        if v is None:
            return
        self.layer, self.head = snap.view.layer, snap.view.head
        first = self.view is None
        self.view = v
        n = len(v.iterations)
        with QSignalBlocker(self.slider):
            self.slider.setRange(0, n - 1)
            if first or self.slider.value() >= n:
                self.slider.setValue(v.frame.index)
        self._draw(v)

    def _failed(self, error: str) -> None:
        """Say why the run (or snapshot) cannot be shown, on one line; a run just opened that
        fails gives the screen back to the one shown before."""
        for prefix in ("TimelineError: ", "CheckpointError: "):
            error = error.removeprefix(prefix)  # the type is ours: the message says it all
        line = " ".join(error.split())
        if len(line) > MAX_ERROR_CHARS:
            line = line[:MAX_ERROR_CHARS - 1] + "…"
        if self.view is None and self._shown is not None:
            self.directory, self.view = self._shown
            self._shown = None
            self._notice = (f"Cannot open that run: {line}", self._n_tokens)
            self.readout.setText(self._notice[0])
            self.settingsChanged.emit()  # the worker goes back to that run too
            return
        self.readout.setText("Timeline: " + line)

    def _draw(self, v: TimelineView) -> None:
        f = v.frame
        self._label(f.index)
        L, H = f.attention.shape[:2]
        layer, head = min(self.layer, L - 1), min(self.head, H - 1)
        att = f.attention[layer, head]
        T = att.shape[0]
        m = np.where(np.tri(T, T, dtype=bool), att, np.nan).astype(np.float32)
        self.map.set_image(m, (0.0, 1.0), display=np.sqrt(m))
        self.map.set_title(f"L{layer} H{head} at iteration {f.iteration:,}", self.theme)
        self.labels = [shorten(t, MAP_LABEL_CHARS) for t in f.tokens]
        self._relabel()
        self._draw_probe(f.scores.probe_induction, layer, head)
        self._draw_bars(f)
        self._draw_curves(v)
        probe = f.scores.probe_induction
        prompt_ind = f.scores.induction[layer, head]
        ind_txt = "n/a" if not np.isfinite(prompt_ind) else f"{prompt_ind:.2f}"
        best_txt = "n/a"
        if np.isfinite(probe).any():  # all NaN: no head could be probed
            best = np.unravel_index(np.nanargmax(probe), probe.shape)
            best_txt = f"L{best[0]}H{best[1]} {probe[best]:.2f}"
        self.readout.setText(
            f"iteration {f.iteration:,} ({f.stage}) · L{layer}H{head}: induction on the prompt "
            f"{ind_txt}, probe {probe[layer, head]:.2f}, previous-token "
            f"{f.scores.prev_token[layer, head]:.2f} · best induction head {best_txt}")
        if self._notice is not None:  # the run given back after a failed open
            if self._notice[1] == self._n_tokens:
                self.readout.setText(self._notice[0])
            else:
                self._notice = None

    def _relabel(self, *_) -> None:
        """Token labels on the map's axes, thinned so that none overlaps another."""
        if not self.labels:
            return
        (x0, x1), (y0, y1) = self.map.vb.viewRange()
        col_px = max(1.0, self.map.vb.width()) / max(1e-9, x1 - x0)
        row_px = max(1.0, self.map.vb.height()) / max(1e-9, y1 - y0)
        fpx = pt_px(self.theme.pt(0.8))
        self.map.plot.getAxis("left").setTicks(
            [thin_ticks(self.labels, tick_step(fpx * 1.4, row_px))])
        self.map.plot.getAxis("top").setTicks(
            [thin_ticks(self.labels, tick_step(fpx * 5, col_px))])

    def _draw_probe(self, probe: np.ndarray, layer: int, head: int) -> None:
        L, H = probe.shape
        self.probe.set_image(np.asarray(probe, np.float32), (0.0, 1.0))
        self.probe.set_box(QRectF(head, layer, 1, 1))
        self.probe.set_title("induction probe", self.theme)
        self.probe.plot.getAxis("left").setTicks([[(i + 0.5, f"L{i}") for i in range(L)]])
        self.probe.plot.getAxis("top").setTicks([[(j + 0.5, f"H{j}") for j in range(H)]])
        for item in self.probe_text:
            self.probe.plot.removeItem(item)
        self.probe_text = []
        if L * H <= 64:
            font = self.theme.font(0.8)
            for i in range(L):
                for j in range(H):
                    t = pg.TextItem(f"{probe[i, j]:.2f}", anchor=(0.5, 0.5),
                                    color="#000000" if probe[i, j] > 0.6 else "#ffffff")
                    t.setFont(font)
                    t.setPos(j + 0.5, i + 0.5)
                    self.probe.plot.addItem(t)
                    self.probe_text.append(t)

    def _draw_bars(self, f) -> None:
        k = len(f.top_probs)
        self.bars.setOpts(x0=np.zeros(k), y=np.arange(k), width=f.top_probs, height=0.7)
        # every bar labelled where there is room, else every step-th (labels never overlap)
        step = tick_step(pt_px(self.theme.pt(0.8)) * 1.2, self.bars_plot.vb.height() / max(1, k))
        self.bars_plot.getAxis("left").setTicks(
            [thin_ticks([shorten(t, MAP_LABEL_CHARS) for t in f.top_tokens], step, offset=0)])
        self.bars_plot.setXRange(0, 1, padding=0.02)
        self.bars_plot.setYRange(-0.6, k - 0.4, padding=0)
        self.bars_plot.setTitle("next token", color=self.theme.text,
                                size=f"{self.theme.pt(0.9):.0f}pt")

    def _draw_legend(self) -> None:
        """The curves' legend as their title (nothing drawn over the curves): on one line
        when it takes at most half the plots' width, else a key a line (a one-line legend
        wider than its column starved the probe and the bars beside it on a projector)."""
        keys = getattr(self, "_legend_keys", [])
        size = self.theme.pt(0.8)
        font = self.theme.font(0.8)
        one_line = QFontMetricsF(font).horizontalAdvance("   ".join(t for _, t in keys))
        sep = "&nbsp;&nbsp;" if one_line <= 0.5 * max(1, self.glw.width()) else "<br>"
        html = sep.join(k for k, _ in keys)
        if (html, size) != getattr(self, "_legend_html", None):
            self._legend_html = (html, size)
            self.curves.setTitle(html, size=f"{size:.0f}pt")
            # pyqtgraph keeps a title row 30 px high: room for every line of this one
            lines = html.count("<br>") + 1
            h = max(30, int(lines * QFontMetricsF(font).lineSpacing() * 1.15) + 6)
            self.curves.titleLabel.setMaximumHeight(h)
            self.curves.layout.setRowFixedHeight(0, h)

    def resizeEvent(self, e) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(e)
        self._draw_legend()

    def _draw_curves(self, v: TimelineView) -> None:
        for name, _label, colour, dashed in CURVES:
            pts = v.curves.get(name)
            item = self.curve_items.get(name)
            if pts is None or not len(pts):
                if item is not None:
                    item.setData([], [])
                continue
            if item is None:
                item = self.curves.plot([], [])
                # a long run's curve has far more points than the plot has pixels: drawn from
                # each pixel column's extremes (the same line), and only the part in view
                item.setDownsampling(auto=True, method="peak")
                item.setClipToView(True)
                self.curve_items[name] = item
            item.setPen(pg.mkPen(colour, width=1.5 if dashed else 2,
                                 style=Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine))
            item.setData(pts[:, 0], pts[:, 1])
        self._legend_keys = [(f'<span style="color:{c}">{"╌" if d else "━"} {label}</span>',
                              f'{"╌" if d else "━"} {label}')
                             for name, label, c, d in CURVES if len(v.curves.get(name, ()))]
        self._draw_legend()
        for line in self.stage_lines:
            self.curves.removeItem(line)
        self.stage_lines = []
        for span in v.stage_spans[1:]:
            line = pg.InfiniteLine(pos=span.get("start", 0), angle=90, movable=False,
                                   pen=pg.mkPen(self.theme.text_dim, style=Qt.PenStyle.DashLine),
                                   label=SHORT_STAGE.get(str(span.get("stage")), "") + " →",
                                   labelOpts={"position": 0.85, "color": self.theme.text_dim,
                                              "anchors": [(1, 0.5), (1, 0.5)]})
            self.curves.addItem(line)
            self.stage_lines.append(line)
        it = np.asarray(v.iterations, float)
        l1 = v.curves.get("l1")
        ys = (np.interp(it, l1[:, 0], l1[:, 1]) if l1 is not None and len(l1)
              else np.zeros_like(it))
        self.snap_marks.setData(it, ys, brush=pg.mkBrush(self.theme.text_dim),
                                pen=pg.mkPen(None))
        self.current.setPos(v.iterations[v.frame.index])
        self.curves.setLabel("bottom", "iteration", color=self.theme.text)
        self.curves.setLabel("left", "loss (nats)", color=self.theme.text)
