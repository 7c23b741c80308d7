"""The T x T causal attention map of the selected layer and head (or their average).

Rows are queries, columns keys, token labels on both axes (thinned out when crowded so
they never overlap), a colour bar, the upper (future) triangle hatched grey, the query row
outlined. Hovering a cell shows the head, query token, key token and weight (redrawn when
the map changes under a still mouse: another head, a new step or prompt); clicking a row makes
it the query. Plot items are created once; a snapshot only calls ``setImage`` and, when the
tokens change, re-labels the axes.

The stage selector (:data:`gptviz.analysis.stages.STAGES`; ``stageChanged(str)``) shows the
head's weights, its raw scores q·k/√d (the future included), its masked scores (the future
at -inf, drawn in a colour of its own) or its value-weighted attention ‖α v W_O‖; scores on a
diverging colour scale centred on 0 with a colour bar in score units.

The range: T rounded up to a multiple of one step of a few tokens (:func:`snapped_range`),
the same on both sides so that they move together: the blank margin beyond the newest token is
at most :data:`MARGIN_PX` device pixels, and the range (with it where the axes, their labels
and the image sit) stays put for several steps. Pooled on both sides (more tokens than device
pixels: ``MapPlot(pool=True)`` draws max-pooled blocks of ``f`` tokens) the range never holds
more tokens than blocks of ``f`` fit; unpooled (a pixel or more a token on both sides: the
bundled model's 256 tokens) never more than a pixel a token holds; a token of more pixels
than the margin, or a map pooled on one side only, shows the window's T x T exactly. A range that
moved at every step made pyqtgraph move every item, lay both token axes out again and repaint
the whole map for a one-token change; now such a step repaints the image's new block row and
column, the backdrop's new strips and the query's outline, and the key axis keeps its ticks
(and its picture) while they stay. The steps need not be whole blocks: the blocks start at 0
whatever the range, so a step keeps (does not pool or colour again) every block but the new
row's and column's anyway; the range only never holds more tokens than blocks of ``f`` fit
(the block size stays). The margin shows the plot's background (no cells there: hovering it
shows nothing); a double click returns to this range; a zoomed or panned (user) range is left
as it is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRectF, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFontMetrics
from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QWidget

from gptviz.analysis.stages import STAGES
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot, tokens_kept
from gptviz_app.views import header_fit
from gptviz_app.views.axes import pt_px, shorten, text_px, thin_ticks, tick_step
from gptviz_app.views.header_fit import HeaderFit
from gptviz_app.views.panel_layout import (
    choice_box,
    controls_row,
    panel_layout,
    set_choice,
    shrinkable_label,
)
from gptviz_app.views.plots import MapPlot, plot_widget, sqrt_ticks
from gptviz_app.views.steady_label import SteadyLabel
from gptviz_app.views.theme import DARK, Theme, colormap, diverging_colormap

#: The most device pixels of blank margin a pooled map's range leaves beyond its newest token.
MARGIN_PX = 4.0
#: Numbers the lists of axis labels (what the axes' ticks were last made of).
_LABEL_LISTS = itertools.count()
#: Characters of a token label on the map's axes.
LABEL_CHARS = 10
#: Colour of the masked (-inf) cells in the masked-scores stage.
MINUS_INF_COLOR = "#b0307a"
#: The stage selector's texts in a narrow map (:class:`~gptviz_app.views.header_fit.HeaderFit`).
STAGE_SHORT = {"weights": "Weights", "raw": "Raw", "masked": "Masked", "value": "Value"}
#: The colour bar's title per stage.
STAGE_UNITS = {"weights": "weight", "raw": "score q·k·scale", "masked": "score (−∞ masked)",
               "value": "‖α·v W_O‖"}


def _title_choices(full: str, short: str) -> list[str]:
    """The titles :class:`HeaderFit` may show for ``full`` and ``short``, in its order."""
    shorter = getattr(header_fit, "abbreviations", None)
    return [full, *(shorter(short or full) if shorter is not None else [short or full])]


def snapped_range(T: int, w_px: float, h_px: float,
                  margin_px: float = MARGIN_PX) -> tuple[int, int]:
    """(keys, queries): the fitted range of ``T`` tokens in a view of ``w_px`` x ``h_px``
    device pixels.

    * Unpooled on both sides (at least a pixel a token): ``T`` rounded up to a multiple of
      ``1 + margin_px * T / px`` tokens (``px`` the larger side: the margin is at most
      ``margin_px`` pixels), no more than the smaller side's pixels.
    * Pooled on one side only: ``T``.
    * Pooled on both sides (``f = ceil(T / px)`` tokens a block): both show ``T`` rounded up
      to a multiple of one step of tokens, so that the range stays for that many steps,
      on both sides at once, with at most ``margin_px`` pixels blank beyond ``T`` on either
      (a token is at most ``px / T`` pixels: the step is at most ``1 + margin_px * T / px``
      tokens, with the fewest tokens that blocks of ``f`` hold, ``(f - 1) px``, for ``T``:
      the step stays while the blocks do), and never more tokens than ``f`` blocks a pixel
      hold (``f * px``: the block size stays ``f``).
    """
    pooled = [px for px in (w_px, h_px) if px + 1e-9 < T]
    if not pooled:
        # a pixel or more a token (px / T): (step - 1) tokens of margin are at most
        # margin_px pixels on the larger side, and the range holds no more tokens than
        # pixels on the smaller (the map stays unpooled)
        step = max(1, int(1 + margin_px * T / max(w_px, h_px) + 1e-9))
        extent = max(T, min(-(-T // step) * step, math.floor(min(w_px, h_px) + 1e-9)))
        return extent, extent
    if len(pooled) < 2:
        return T, T
    # the fewest tokens these block sizes hold, in place of T: one step while they stay
    fewest = max((math.ceil(T / px - 1e-9) - 1) * px for px in pooled)
    step = max(1, int(1 + margin_px * fewest / max(pooled) + 1e-9))
    extent = -(-T // step) * step
    for px in pooled:  # no more than f blocks fit, f the smallest that shows T
        extent = min(extent, max(T, math.floor(math.ceil(T / px - 1e-9) * px + 1e-9)))
    return extent, extent


class AttentionMapView(QWidget):
    """Signals: ``layerChanged(int)``, ``headChanged(int)`` (-1 = average of heads),
    ``queryClicked(int)`` (global position)."""

    layerChanged = Signal(int)
    headChanged = Signal(int)
    queryClicked = Signal(int)
    scaleChanged = Signal(bool)
    stageChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.layer_box = QComboBox()
        self.head_box = QComboBox()
        self.layer_box.setToolTip("Layer (Up/Down in the grid's order)")
        self.head_box.setToolTip("Head, or the average of the layer's heads")
        # As wide as "H11" (the list opens as wide as its longest item): sized for "Average of
        # heads" the box took a third of the map's width at presentation font sizes.
        for box in (self.layer_box, self.head_box):
            box.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(4)
        self.layer_box.currentIndexChanged.connect(self._on_layer)
        self.head_box.currentIndexChanged.connect(self._on_head)
        self.sqrt_box = QCheckBox("√ scale")
        self.sqrt_box.setChecked(True)
        self.sqrt_box.setToolTip("Square-root colour scale: small weights (long texts) stay "
                                 "visible; the colour bar shows true weights")
        self.sqrt_box.toggled.connect(self.scaleChanged)
        self.stage_box = choice_box(
            STAGES, self.stageChanged.emit,
            "What the map shows (Alt+1..4): the softmax weights; the raw scores q·k·scale, "
            "future keys included; the masked scores (future keys at −∞, as before the "
            "softmax); the value-weighted attention ‖α·v W_O‖")
        # As wide as its longest item when there is room, down to a few letters when not: the
        # map's minimum width (and so its near-square share at 1024 x 640) stays as it was.
        self.stage_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.stage_box.setMinimumContentsLength(1)
        # a new title every step ("18 tokens"): a steady label does not lay the window out
        # again for it
        self.title = SteadyLabel(label=shrinkable_label(""), steady_height=True)
        words = (QLabel("Layer"), QLabel("Head"))
        top = controls_row(words[0], self.layer_box, 8, words[1], self.head_box, 8,
                           self.stage_box, 4, self.sqrt_box, 8, (self.title, 1))
        # a narrow map drops "Layer", "Head", "scale" and long stage names: the title stays whole
        self.header_fit = HeaderFit(self, top, self.title, words, self.sqrt_box, "√",
                                    self.stage_box, [STAGE_SHORT.get(k, t) for k, t in STAGES],
                                    narrow=(self.layer_box, self.head_box))

        self.glw = plot_widget()
        # Not aspect-locked: the map fills the panel, so the axis labels sit right at its edges.
        # The range is this view's (kept while the user has zoomed): no fit on a new shape.
        # The future (masked) triangle: NaN pixels of the image are transparent and let the
        # map's hatched backdrop show through.
        # Drawn at the view's resolution (max-pooled blocks once a pixel holds several cells:
        # 1,024 tokens in a 600-pixel panel): painting all cells cost more than a step.
        self.map = MapPlot(self.glw.addPlot(row=0, col=0), aspect=False, mouse=True, fit=False,
                           tick_factor=0.9, tick_length=-4, pool=True)
        self.plot: pg.PlotItem = self.map.plot
        self.vb: pg.ViewBox = self.map.vb
        self.image = self.map.image
        self.query_box = self.map.box
        self.plot.setLabel("left", "query")
        self.plot.setLabel("top", "key")
        # keys, not quantities: no SI prefix, and none of the title's re-layout that looking
        # for one costs at every range change (every step)
        for name in ("left", "top", "bottom", "right"):
            self.plot.getAxis(name).enableAutoSIPrefix(False)
        self.colorbar = self.map.add_colorbar(14, label="weight", font_factor=0.85,
                                              title_factor=0.85)
        self.readout = panel_layout(self, top, self.glw)
        self.readout.setTextFormat(Qt.TextFormat.PlainText)

        self.tokens: list[str] = []
        self.sqrt_scale = True
        self.window_start = 0
        self.T = 0
        self.query_rel = -1
        self.data = np.zeros((0, 0), np.float32)
        self.stage = "weights"  # what the image shows now (a stage that failed: weights)
        self.levels = (0.0, 1.0)
        self._ticks_key: tuple | None = None  # (stage, sqrt scale, levels) of the bar's ticks
        self.shown = "head 0 of layer 0"   # what the map shows, named in the hover readout
        self._hover: QPointF | None = None  # scene position of the mouse over the map
        self._labels_key = None
        self._user_range = False
        self._fitted: tuple[int, int] | None = None  # (keys, queries) the range was fitted to
        self._rev: tuple | None = None  # (snapshot's attn_rev, stage shown) of the map drawn
        self._rev_T = 0
        self._ticks_drawn: tuple | None = None  # what the axes' ticks were made of
        #: (window start, its shortened labels, their lengths, the token list they are of, a
        #: number of its own)
        self._short: tuple | None = None
        self._wide: tuple[int, int] | None = None  # (labels' number, the 90 % label length)
        self._kept_tokens: int | None = None  # tokens the newest snapshot kept (tokens_kept)
        self._tokens_rev = None
        self._title_texts: tuple[str, str] | None = None  # (full, short) shown by _set_title
        self._title_widths: tuple[int, ...] = ()
        self.vb.sigRangeChangedManually.connect(self._on_manual_range)
        self.vb.sigResized.connect(self._refit)  # another size: another rounding of the range
        self.vb.sigResized.connect(self._relabel)
        self.vb.sigRangeChanged.connect(self._relabel)
        # the cell under a still mouse changes when the map moves (zoom, resize, wider labels)
        self.vb.sigResized.connect(self._show_hover)
        self.vb.sigRangeChanged.connect(self._show_hover)
        self.glw.scene().sigMouseMoved.connect(self._on_move)
        self.glw.scene().sigMouseClicked.connect(self._on_click)
        self.glw.viewport().installEventFilter(self)  # the mouse leaving clears the readout
        self.apply_theme(self.theme)

    # ------------------------------------------------------------------ look
    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.glw.setBackground(theme.plot_bg)
        # the colour bar's title ("weight") scales with presentation mode too
        self.map.apply_theme(theme)
        if self.stage != "weights":
            self._stage_look(self.stage)
        for name in ("left", "top"):
            self.plot.getAxis(name).label.setFont(theme.font(0.9))
        self.plot.setLabel("left", "query", color=theme.text_dim)
        self.plot.setLabel("top", "key", color=theme.text_dim)
        self._colorbar_ticks()
        self.readout.setFont(theme.font(1.0, mono=True))
        self.title.setFont(theme.font(1.0, bold=True))
        self._labels_key = self._ticks_drawn = None
        self._short = None  # the labels' widths in the new font
        self._relabel()

    def _colorbar_ticks(self) -> None:
        if self.stage != "weights":
            self._stage_ticks()
            return
        if self.sqrt_scale:
            ticks = sqrt_ticks((0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1))
        else:
            ticks = [(v, f"{v:g}") for v in (0, 0.2, 0.4, 0.6, 0.8, 1)]
        self.colorbar.axis.setTicks([ticks])
        self.colorbar.getAxis("left").setLabel("weight (√ scale)" if self.sqrt_scale else "weight")

    def display_data(self, attn: np.ndarray) -> np.ndarray:
        """What the image shows for a map: the weights, or their square roots."""
        return np.sqrt(attn) if self.sqrt_scale else attn

    # ------------------------------------------------------------------ stages
    def _stage_ticks(self) -> None:
        lo, hi = self.levels
        # two digits: wider labels do not fit the bar's axis at presentation font sizes
        ticks = [(float(v), f"{v:.2g}") for v in np.linspace(lo, hi, 5)]
        self.colorbar.axis.setTicks([ticks])
        self.colorbar.getAxis("left").setLabel(STAGE_UNITS[self.stage])

    def _stage_look(self, stage: str) -> None:
        """Colormap, masked-cell colour and colour-bar title of ``stage``."""
        th = self.theme
        cmap = diverging_colormap(th) if stage in ("raw", "masked") else colormap(th.colormap)
        self.image.setColorMap(cmap)
        self.colorbar.setColorMap(cmap)
        if stage == "masked":  # -inf: a colour of its own, no hatching
            self.map.backdrop.setBrush(QBrush(Qt.BrushStyle.NoBrush))
            self.map.backdrop_fill.setBrush(QBrush(QColor(MINUS_INF_COLOR)))
        else:
            self.map.backdrop.setBrush(QBrush(QColor(th.masked_hatch),
                                              Qt.BrushStyle.BDiagPattern))
            self.map.backdrop_fill.setBrush(QBrush(QColor(th.masked)))

    def _stage_image(self, stage: str, m: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """What the image draws of a stage map ``m`` and its colour levels: scores centred on
        0 (symmetric), -inf as NaN (the masked colour shows through); value-weighted from 0."""
        finite = m[np.isfinite(m)]
        top = float(np.abs(finite).max()) if finite.size else 1.0
        top = top if top > 0 else 1.0
        if stage == "value":
            return m, (0.0, top)
        shown = np.where(np.isneginf(m), np.nan, m).astype(np.float32)
        return shown, (-top, top)

    # ------------------------------------------------------------------ model
    def set_model(self, info: ModelInfo) -> None:
        for box, items in ((self.layer_box, [f"L{i}" for i in range(info.n_layer)]),
                           (self.head_box, [f"H{i}" for i in range(info.n_head)]
                            + ["Average of heads"])):
            with QSignalBlocker(box):
                box.clear()
                box.addItems(items)
        self._labels_key = self._ticks_drawn = None
        self._user_range = False
        self._fitted = None

    def _on_layer(self, i: int) -> None:
        if i >= 0:
            self.layerChanged.emit(i)

    def _on_head(self, i: int) -> None:
        if i >= 0:
            self.headChanged.emit(-1 if i == self.head_box.count() - 1 else i)

    # ------------------------------------------------------------------ data
    def apply_snapshot(self, snap: Snapshot) -> None:
        a = snap.attn
        T = a.shape[0]
        self.data = a
        if snap.tokens is not self.tokens:
            self._kept_tokens = tokens_kept(snap, self._tokens_rev)
        self._tokens_rev = snap.tokens_rev
        self.tokens = snap.tokens
        self.window_start = snap.window_start
        self.T = T
        self.query_rel = snap.query - snap.window_start
        v = snap.view
        if v.sqrt_scale != self.sqrt_scale:
            self.sqrt_scale = v.sqrt_scale
            self._colorbar_ticks()
        if self.sqrt_box.isChecked() != v.sqrt_scale:
            with QSignalBlocker(self.sqrt_box):
                self.sqrt_box.setChecked(v.sqrt_scale)
        stage, m = snap.extra.get("map_stage", ("weights", None))
        if stage != self.stage:
            self.stage = stage
            self._stage_look(stage)
        set_choice(self.stage_box, v.map_stage)
        extent = None if self._user_range else self._extent()
        if extent is not None and extent != self._fitted:
            # fitted before the image is set: drawn once, for the new range
            with self.map.drawing_held():
                self._fit(extent)
        # the cells the previous map already held (a token appended): not pooled again. Only
        # for the weights, read back from the history as they were stored: the other stages
        # are computed again over the whole window, and may round an old cell otherwise
        rev = None if snap.attn_rev is None or stage != "weights" else (snap.attn_rev, stage)
        kept = (min(self._rev_T, T),) * 2 if rev is not None and rev == self._rev else (0, 0)
        self._rev, self._rev_T = rev, T
        if m is None:
            self.levels = (0.0, 1.0)
            # the square root after pooling: it keeps each block's maximum, on fewer cells
            self.map.set_image(a, self.levels, transform=np.sqrt if self.sqrt_scale else None,
                               kept=kept)
        else:
            self.data = m
            shown, self.levels = self._stage_image(stage, m)
            self.map.set_image(m, self.levels, display=shown, kept=kept)
            self.colorbar.setLevels(self.levels)
        ticks_key = (self.stage, self.sqrt_scale, self.levels)
        if ticks_key != self._ticks_key:  # the bar's title re-lays the plot out: on a change
            self._ticks_key = ticks_key
            self._colorbar_ticks()
        err = snap.extra.get("map_stage_error")
        self.map.set_box(QRectF(0, self.query_rel, max(1, self.query_rel + 1), 1))
        for box, idx in ((self.layer_box, v.layer),
                         (self.head_box, self.head_box.count() - 1 if v.average else v.head)):
            if box.currentIndex() != idx:
                with QSignalBlocker(box):
                    box.setCurrentIndex(idx)
        who = "average of heads" if v.average else f"head {v.head}"
        self.shown = f"L{v.layer} " + ("average of heads" if v.average else f"H{v.head}")
        label = dict(STAGES).get(stage, stage).lower()
        # the map shows the window only: say where it starts once it slid
        slid = f" from position {snap.window_start}" if snap.window_start else ""
        failed = " · stage failed" if err else ""
        full = f"{T} tokens{slid}" + ("" if stage == "weights" else f" · {label}") + failed
        # the stage box names the stage too: a narrow map's title may leave it out
        self._set_title(full, f"{T} tokens{slid}{failed}")
        self.title.setToolTip(f"layer {v.layer}, {who}: {T} tokens in the model's window"
                              f" (positions {snap.window_start}–{snap.window_start + T - 1})"
                              + (f"\n{err}" if err else ""))
        key = (snap.window_start, T, self.query_rel, hash(snap.ids.tobytes()))
        if key != self._labels_key:
            self._labels_key = key
            self._relabel()
        # The mouse may rest on a cell while the map changes under it (], a step, a new
        # prompt): the readout follows the map, not the last mouse move.
        self._show_hover()

    def _set_title(self, full: str, short: str) -> None:
        """The title through the header's fit, or, when each text the fit may choose is as
        wide as before ("19 tokens" after "18 tokens"), in place of the one it chose: the
        row's fit stands, and fitting it again would lay the window out again."""
        texts = (full, short)
        if texts == self._title_texts:
            return
        fit = self.header_fit
        fm = QFontMetrics(self.title.font())
        choices = _title_choices(full, short)
        widths = tuple(fm.horizontalAdvance(t) for t in choices)
        old = self._title_texts
        shown = self.title.text()
        olds = _title_choices(*old) if old is not None else []
        if (old is not None and widths == self._title_widths and len(olds) == len(choices)
                and (fit.full_title, fit.short_title) == old and shown in olds):
            fit.full_title, fit.short_title = full, short
            self.title.setText(choices[olds.index(shown)])
        else:
            fit.set_title(full, short)
        self._title_texts, self._title_widths = texts, widths

    def showEvent(self, e) -> None:  # noqa: N802 - Qt name
        super().showEvent(e)
        self.map.redraw()  # a snapshot that came while hidden was not drawn

    def _extent(self) -> tuple[int, int]:
        """(keys, queries) the fitted range shows: :func:`snapped_range`."""
        return snapped_range(max(1, self.T), *self.map.device_size())

    def _fit(self, extent: tuple[int, int] | None = None) -> None:
        self._fitted = kx, qy = self._extent() if extent is None else extent
        self.vb.setRange(QRectF(0, 0, kx, qy), padding=0.0)
        # pyqtgraph moves the map's items to the new range only when it paints them next, and
        # moving them there asks for a second paint of the whole map: moved now, painted once
        self.vb.updateMatrix()

    def _refit(self, *_) -> None:
        if not self._user_range and (extent := self._extent()) != self._fitted:
            self._fit(extent)

    @contextmanager
    def exact_range(self) -> Iterator[None]:
        """Inside, the fitted map shows its T x T exactly, without the blank margin of its
        rounded range (an export's picture ends at the newest token); a range the user
        zoomed or panned to stays. The fitted range is back after."""
        exact = (max(1, self.T), max(1, self.T))
        fitted = self._fitted
        if self._user_range or fitted == exact:
            yield
            return
        self._fit(exact)
        try:
            yield
        finally:
            if not self._user_range:
                self._fit(fitted)

    def _on_manual_range(self, *_):
        self._user_range = True

    def reset_zoom(self) -> None:
        self._user_range = False
        self._fit()
        self._relabel()

    # ------------------------------------------------------------------ axes
    def _relabel(self, *_):
        T = self.T
        if T <= 0:
            for name in ("left", "top"):
                self.plot.getAxis(name).setTicks([[]])
            self._ticks_drawn = None
            return
        (x0, x1), (y0, y1) = self.vb.viewRange()
        w_px, h_px = max(1.0, self.vb.width()), max(1.0, self.vb.height())
        px_x = w_px / max(1e-9, x1 - x0)   # pixels per token horizontally
        px_y = h_px / max(1e-9, y1 - y0)
        ws = self.window_start
        labels, lens = self._window_labels(ws, T)
        # 90 % of the labels fit (once per list of labels: a resize or zoom keeps it)
        if self._wide is None or self._wide[0] != self._short[4]:
            k = int(0.9 * (len(lens) - 1))
            self._wide = (self._short[4], int(np.partition(lens, k)[k]))
        wide = self._wide[1]
        font_pt = self.theme.pt(0.9)
        step_y = tick_step(pt_px(font_pt) * 1.25, px_y)
        step_x = tick_step(text_px(font_pt, wide + 2), px_x)
        # a step moves the range and brings new tokens: relabelled once, not for each
        key = (self._short[4], step_x, step_y, self.query_rel)
        if key == self._ticks_drawn:
            return
        self._ticks_drawn = key
        left = thin_ticks(labels, step_y, keep=self.query_rel)
        top = thin_ticks(labels, step_x)
        # as wide as the window's widest label: the map keeps its width as tokens scroll by
        self.plot.getAxis("left").reserve(self._short[5])
        for name, ticks in (("left", left), ("top", top)):
            axis = self.plot.getAxis(name)
            if axis._tickLevels != [ticks]:  # the same again: the axis keeps its picture
                axis.setTicks([ticks])

    def _window_labels(self, ws: int, T: int) -> tuple[list[str], np.ndarray]:
        """The window's token labels (shortened) and their lengths; a step shortens only its
        new token (the list is kept while the tokens before it stay). Also keeps the widest
        label's width, for the query axis' width (:meth:`LabelAxis.reserve`)."""
        tokens = self.tokens
        cached = self._short
        axis = self.plot.getAxis("left")
        if cached is not None and cached[0] == ws and cached[3] is tokens:
            labels, lens, widest = cached[1], cached[2], cached[5]
            if len(labels) == T:
                return labels, lens
        else:
            labels, lens, widest = [], np.zeros(0, np.int32), 0.0
            kept = self._kept_tokens
            if cached is not None and cached[0] == ws and kept is not None:
                n = max(0, min(len(cached[1]), kept - ws, T))
                labels, lens = cached[1][:n], cached[2][:n]
                widest = cached[5] if n == len(cached[1]) else axis.widest(labels)
        n = len(labels)
        if n > T:
            labels, lens = labels[:T], lens[:T]
            widest = axis.widest(labels)
        elif n < T:
            new = [shorten(t, LABEL_CHARS) for t in tokens[ws + n:ws + T]]
            labels = labels + new
            lens = np.concatenate([lens, np.fromiter(map(len, new), np.int32, len(new))])
            widest = max(widest, axis.widest(new))
        self._short = (ws, labels, lens, tokens, next(_LABEL_LISTS), widest)
        return labels, lens

    # ------------------------------------------------------------------ mouse
    def cell_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """(query, key) window positions under a scene point, or None."""
        if not self.vb.sceneBoundingRect().contains(scene_pos) or self.T <= 0:
            return None
        p = self.vb.mapSceneToView(scene_pos)
        k, q = int(math.floor(p.x())), int(math.floor(p.y()))
        if 0 <= q < self.T and 0 <= k < self.T:
            return q, k
        return None

    def describe(self, q: int, k: int) -> str:
        """The hover text of cell (query q, key k) in window positions."""
        ws = self.window_start
        qt, kt = self.tokens[ws + q], self.tokens[ws + k]
        if k > q and self.stage == "raw":  # before the mask: the future has a score too
            return (f"{self.shown} · query {ws + q} {qt!r} → key {ws + k} {kt!r}: score "
                    f"{float(self.data[q, k]):.4f} (future token: set to −∞ by the mask)")
        if k > q:
            return (f"{self.shown} · query {ws + q} {qt!r} → key {ws + k} {kt!r}: masked "
                    + ("−∞ " if self.stage == "masked" else "") + "(future token)")
        w = float(self.data[q, k])
        where = f"{self.shown} · query {ws + q} {qt!r} → key {ws + k} {kt!r}"
        if self.stage in ("raw", "masked"):
            return f"{where}: score {w:.4f}"
        if self.stage == "value":
            return f"{where}: ‖α·v W_O‖ {w:.4f}"
        return f"{where}: weight {w:.4f}"

    def _on_move(self, pos) -> None:
        self._hover = QPointF(pos)
        self._show_hover()

    def _show_hover(self, *_) -> None:
        c = None if self._hover is None else self.cell_at(self._hover)
        self.readout.setText(self.describe(*c) if c else " ")

    def eventFilter(self, obj, e) -> bool:  # noqa: N802 - Qt name
        if e.type() == QEvent.Type.Leave and obj is self.glw.viewport():
            self._hover = None
            self._show_hover()
        return False

    def _on_click(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        if ev.double():
            self.reset_zoom()
            return
        c = self.cell_at(ev.scenePos())
        if c is not None:
            self.queryClicked.emit(self.window_start + c[0])
