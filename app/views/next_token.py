"""Next-token panel: horizontal bars of the top-k candidates, the chosen one highlighted.

After a step it shows the distribution the newest token was drawn from (the chosen bar in
the accent colour); clicking another bar replaces that token with the clicked one (a
branch). Before any step it shows the distribution after the prompt, and clicking a bar
forces it as the next token. The header is two short lines (the token, then its probability
and the entropy) that elide rather than wrap, and the chart shows only as many bars as stay
readable at the current font size, and says so ("only 8 fit" beside the "top 12" box).
Items are created once.

Words, as in every panel: the chart shows the *prediction after position t* (the model's
distribution over the token at t + 1); a generated token was *drawn from* the prediction after
the position before it. When the sampling settings change the distribution (temperature,
top-k, top-p, greedy), each row shows two bars: a thin grey one, the model's own probability
(temperature 1), and beside it the distribution the token is drawn from (renormalised after
the cuts); a token the cuts remove keeps only its grey bar and says "cut"
(:mod:`gptviz.engine.knobs` computes the numbers on the worker).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QFont, QFontMetricsF
from PySide6.QtWidgets import QLabel, QSpinBox, QVBoxLayout, QWidget

from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.bar_rows import BarRows
from gptviz_app.views.elided_label import ElidedLabel
from gptviz_app.views.panel_layout import controls_row, stack
from gptviz_app.views.plots import label_axes, plot_widget, set_label_ticks, style_axis
from gptviz_app.views.steady_label import SteadyLabel
from gptviz_app.views.theme import DARK, Theme
from gptviz_app.views.token_strip import drawn_text

#: Height of one bar's row in tick-font line heights: fewer bars are shown than asked for when
#: the chart is too short for this (big fonts, a short panel).
ROW_LINES = 1.15
MIN_ROWS = 3
#: Steps in a row whose token labels leave the axis more than 10 pixels too wide before it
#: narrows (each new width lays the chart out and paints all of it afresh).
NARROW_AFTER = 12


#: Candidate spacings of the probability axis' labelled ticks, smallest first.
TICK_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0)


def steady(text: str) -> SteadyLabel:
    """An :class:`ElidedLabel` in a :class:`SteadyLabel` that keeps its tallest height (a
    token of a taller fallback font in the header does not move the chart)."""
    return SteadyLabel(label=ElidedLabel(text), steady_height=True)


class NextTokenView(QWidget):
    """``candidateClicked(token_id, replace_last)`` when a bar is clicked;
    ``compareChosen(token_id)`` (-1: none) when Shift+click or the right-click menu picks a
    token to compare the chosen one with (the logit attribution's "target - other"), kept in
    :attr:`compare_id`."""

    candidateClicked = Signal(int, bool)
    compareChosen = Signal(int)
    compare_id: int | None = None

    def __init__(self, parent: QWidget | None = None, shown: int = 12) -> None:
        super().__init__(parent)
        self.theme = DARK
        # new texts every step: steady labels do not lay the window out again for them
        self.header = steady(" ")     # "Step 5: 'x', drawn from the prediction after …"
        self.detail = steady(" ")     # "sampled, p = 0.123 · entropy 4.56 bits"
        self.knob_note = steady(" ")  # "T=0.5 · top-k 5: 5 tokens keep 93% of the mass"
        self.knob_note.hide()
        self.knob_note.setToolTip("Grey bars: the model's probabilities (temperature 1); "
                                  "coloured: the distribution the token is drawn from after "
                                  "temperature, top-k and top-p (renormalised)")
        self.prompt_len = 0
        self.n_tokens = 0
        self.vocab_size = 0
        # what was drawn last: a redraw only touches what changed (12 x 12 heads at 1,024
        # tokens left a few ms per step for this panel)
        self._brushes: dict[str, object] = {}
        self._said: dict[int, tuple] = {}
        self._raw_shown = False
        self._in_redraw = False
        # what the last redraw drew, and in what (see apply_snapshot)
        self._drawn: tuple | None = None
        self._laid_out: tuple = ()
        # measures a step asks for again and again: the token labels' drawn texts, the tick
        # font's line height and the probability ticks' label widths, by font
        self._drawn_texts: dict[str, str] = {}
        self._line: tuple[QFont, float] | None = None
        self._tick_widths: tuple[QFont, float, float, dict[str, float]] | None = None
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
        top.addWidget(self.knob_note)
        self.glw = plot_widget()
        self.plot: pg.PlotItem = self.glw.addPlot(row=0, col=0)
        label_axes(self.plot)  # laid out again every step: the cheaper axes
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.vb = self.plot.getViewBox()
        self.vb.invertY(True)
        self.vb.setMouseEnabled(x=False, y=False)
        self.plot.setLabel("bottom", "probability")
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        # token labels: no SI prefix (looking for one sets the axis title again at every step)
        for name in ("left", "top", "right"):
            self.plot.getAxis(name).enableAutoSIPrefix(False)
        # the bars and their value labels, one item (see bar_rows)
        self.rows = BarRows(self.theme.font(0.85), self.theme.text)
        self.plot.addItem(self.rows)
        self.bars = self.rows.bars
        # the model's own probabilities (temperature 1) while the knobs change them
        self.raw_bars = self.rows.raw_bars
        self.n_shown = 0
        self._drawn_width = 0.0  # view-box width the x extent was computed for
        self.tick_step = 0.1  # spacing of the labelled probability ticks
        self.hint = steady(" ")
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
        self._brushes.clear()
        self._said.clear()
        self.glw.setBackground(theme.plot_bg)
        for name, font in (("left", theme.font(1.0, mono=True)), ("bottom", theme.font(0.85))):
            style_axis(self.plot.getAxis(name), theme, font)
        self.plot.setLabel("bottom", "probability", color=theme.text_dim)  # readable colour
        self.plot.getAxis("bottom").label.setFont(theme.font(0.85))
        self.header.setFont(theme.font(1.0))
        self.detail.setFont(theme.font(0.9))
        self.detail.setStyleSheet(f"color: {theme.text_dim}")
        self.knob_note.setFont(theme.font(0.9))
        self.knob_note.setStyleSheet(f"color: {theme.text_dim}")
        self.hint.setStyleSheet(f"color: {theme.text_dim}")
        self.fit_note.setStyleSheet(f"color: {theme.accent}")
        self.rows.set_style(theme.font(0.85), theme.text)
        # The chart never gets shorter than MIN_ROWS readable bars plus its probability axis
        # (two lines): with big presentation fonts the dock layout shrinks the panels below
        # this one instead of overlapping the token labels.
        self.glw.setMinimumHeight(int(self._line_px() * (MIN_ROWS * ROW_LINES + 2.1)))
        self._redraw()

    def set_model(self, info: ModelInfo) -> None:
        self.candidates = None
        self.vocab_size = info.vocab_size
        self._redraw()

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.candidates = snap.candidates
        self.prompt_len, self.n_tokens = snap.prompt_len, snap.n_tokens
        # A new layer, head or query brings the same candidates again: the chart as drawn
        # stays (its texts, bars and axes are all made of what the keys hold).
        drawing = self._drawing()
        layout = self._layout()
        if drawing is None or drawing != self._drawn or layout != self._laid_out:
            # a step keeps the token axis' width while its labels fit (see set_label_ticks);
            # a chart laid out anew fits it to its labels, as a fresh one
            self._draw(narrow_after=NARROW_AFTER if layout == self._laid_out else 1)
            self._drawn, self._laid_out = drawing, self._layout()

    def _drawing(self) -> tuple | None:
        """What a redraw draws, as it stands now (``None``: no candidates)."""
        c = self.candidates
        if c is None:
            return None
        knobs = c.knobs
        if knobs is not None:  # KnobEffect: its arrays, and what its note says
            knobs = (np.asarray(knobs.final).tobytes(), np.asarray(knobs.kept).tobytes(),
                     knobs.describe(self.vocab_size or None))
        return (c.kind, np.asarray(c.ids).tobytes(), tuple(c.tokens),
                np.asarray(c.probs).tobytes(), c.entropy, c.chosen, c.chosen_id,
                str(c.chosen_prob), c.chosen_forced, c.chosen_greedy, c.step, knobs,
                self.prompt_len, self.n_tokens, self.vocab_size)

    def _layout(self) -> tuple:
        """What a redraw draws it in: the rows asked for, the chart's size, the theme."""
        return self.count.value(), self.vb.width(), self.vb.height(), id(self.theme)

    def _brush(self, color: str):
        b = self._brushes.get(color)
        if b is None:
            b = self._brushes[color] = pg.mkBrush(color)
        return b

    def _say(self, label: SteadyLabel, text: str, part: str | None = None,
             bold: bool = False, tip: str | None = None, shorter: tuple[str, ...] = ()) -> None:
        """Set a header line (rich when ``part`` is given; ``shorter``: its fallback
        templates, see ``ElidedLabel.set_rich``) only when it changed."""
        key = (text, part, bold, tip, shorter)
        if self._said.get(id(label)) == key:
            return
        self._said[id(label)] = key
        if part is None and "<" not in text:
            label.setText(text)
        else:
            label.set_rich(text, part or "", bold=bold, shorter=shorter)
        if tip is not None:
            label.setToolTip(tip)

    def _no_raw_bars(self) -> None:
        if self._raw_shown:
            self.raw_bars.setOpts(x0=[], y=[], width=[], brushes=[])
            self._raw_shown = False
        self.knob_note.hide()

    def rows_that_fit(self) -> int:
        """How many bars stay readable in the chart's height (at least :data:`MIN_ROWS`; any
        number before the chart is laid out)."""
        h = self.vb.height()
        if h <= 1:
            return 1 << 30
        return max(MIN_ROWS, int(h // (self._line_px() * ROW_LINES)))

    def _line_px(self) -> float:
        """Line height of the token labels (the left axis' tick font), in pixels."""
        font = self.plot.getAxis("left").style["tickFont"]
        if self._line is None or self._line[0] != font:
            self._line = (QFont(font), QFontMetricsF(font).height())
        return self._line[1]

    def _x_extent(self, p_max: float, labels: list[str]) -> float:
        """Right end of the x axis: the longest bar plus room for its value label, measured
        in pixels (a fixed 25% margin clipped "6.4%" in presentation mode at 1280x800)."""
        width = self.vb.width()
        if width <= 1 or not labels:
            return max(0.05, p_max * 1.25)
        # a label is padded by a few pixels on each side; 1.3 em covers it and a gap.
        label_px = (max(self.rows.text_width(t) for t in labels)
                    + 1.3 * self.rows.line_height())
        # share of the width kept for the labels: most of a narrow column (presentation
        # fonts at 1024 x 640 clipped "13.1%" at 60%), the bars keep a fifth
        frac = min(0.8, label_px / width)
        return max(0.05, p_max / (1.0 - frac) * 1.02)

    def _space_x_ticks(self, xmax: float) -> None:
        """Probability ticks far enough apart that their labels never run together (pyqtgraph
        spaced 0.02 apart wrote "0.020.040.06" in a narrow presentation column)."""
        axis = self.plot.getAxis("bottom")
        width = self.vb.width()
        if width <= 1:
            return
        font = axis.style.get("tickFont") or self.theme.font(0.85)
        label_px, digit_px, widths = self._tick_measures(font)
        # The axis runs past the longest bar to make room for its value label, past 1.0 when
        # a token is near certain: no probability ticks there ("1.5" was drawn).
        top = min(xmax, 1.0)
        # Too narrow for any spacing: still one labelled tick (the largest step under the top)
        below = [s for s in TICK_STEPS if s <= top + 1e-9] or [TICK_STEPS[0]]
        step = next((s for s in TICK_STEPS if xmax / s * label_px <= width), below[-1])
        step = min(step, below[-1])
        n = int(top / step + 1e-9)
        major = [round(i * step, 6) for i in range(1, n + 1)]
        # half steps: shorter ticks (pyqtgraph's second level, which a LabelAxis lays out as
        # it does), labelled when every label then stands at least a digit's width from its
        # neighbours (centres half a step apart, each label at most the widest: "0.025"),
        # and pyqtgraph finds them not too crowded (its rule alone let "0.01" touch "0.015"
        # in a narrow chart)
        minor = [round((i + 0.5) * step, 6) for i in range(n + 1)
                 if (i + 0.5) * step <= top + 1e-9]
        texts = [f"{v:g}" for v in major], [f"{v:g}" for v in minor]
        widest = 0.0
        for text in (*texts[0], *texts[1]):
            w = widths.get(text)
            if w is None:  # as the axis measures it: centred in a box
                w = widths[text] = QFontMetricsF(font).boundingRect(
                    QRectF(0, 0, 100, 100), Qt.AlignmentFlag.AlignCenter, text).width()
            widest = max(widest, w)
        room = step / 2 / xmax * width >= widest + digit_px
        ticks = [list(zip(major, texts[0], strict=True)),
                 [(v, t if room else "") for v, t in zip(minor, texts[1], strict=True)]]
        if ticks != axis._tickLevels:  # the same ticks keep the axis' picture
            axis.setTicks(ticks)
        self.tick_step = step

    def _tick_measures(self, font: QFont) -> tuple[float, float, dict[str, float]]:
        """The room a probability label needs, a digit's width and the labels' widths (filled
        by :meth:`_space_x_ticks`), in ``font``: measured once per font."""
        if self._tick_widths is None or self._tick_widths[0] != font:
            fm = QFontMetricsF(font)
            self._tick_widths = (QFont(font), fm.horizontalAdvance("0.00") * 1.8,
                                 fm.horizontalAdvance("0"), {})
        return self._tick_widths[1:]

    def _show_fit(self, shown: int, asked: int) -> None:
        """Say how many bars are shown when it is fewer than the "top N" box asks for."""
        text = f"only {shown} fit" if shown < asked else ""
        if self.fit_note.text() != text:
            self.fit_note.setText(text)
            self.fit_note.setVisible(bool(text))

    def _on_resize(self, *_) -> None:
        if self._in_redraw:
            return
        c = self.candidates
        if c is not None and (min(self.count.value(), len(c.ids), self.rows_that_fit())
                              != self.n_shown or abs(self.vb.width() - self._drawn_width) > 1):
            self._redraw()  # more or fewer rows fit, or the labels need another x extent

    def _redraw(self, *_):
        try:
            self._draw()
        finally:
            self._drawn, self._laid_out = self._drawing(), self._layout()

    def _draw(self, narrow_after: int = 1) -> None:
        c = self.candidates
        th = self.theme
        if c is None:
            self.bars.setOpts(x0=[], y=[], width=[], brushes=[])
            self._no_raw_bars()
            self.rows.set_labels([])
            self.n_shown = 0
            self._show_fit(0, 0)
            self._say(self.header, " ")
            self._say(self.detail, " ")
            return
        n = min(self.count.value(), len(c.ids), self.rows_that_fit())
        self.n_shown = n
        self._show_fit(n, min(self.count.value(), len(c.ids)))
        self._drawn_width = self.vb.width()
        idx = list(range(n))
        if c.chosen >= n:  # the chosen token ranks lower: show it as the last bar
            idx[-1] = c.chosen
        probs = np.asarray(c.probs)[idx].astype(float)
        brushes = [self._brush(th.bar_chosen if i == c.chosen else th.bar) for i in idx]
        ys = np.arange(n, dtype=float)
        labels = [f"{p:.1%}" for p in probs.tolist()]
        ends = probs  # where each row's value label goes
        if c.knobs is not None and len(c.knobs.final) == len(c.ids):
            ends, labels = self._draw_knobs(c.knobs, idx, probs, brushes)
        else:
            self._no_raw_bars()
            self.bars.setOpts(x0=np.zeros(n), y=ys, width=probs, height=0.75, brushes=brushes)
        ticks = [(row, self._token_label(c.tokens[i])) for row, i in enumerate(idx)]
        if c.chosen >= n:  # the chosen token, ranked lower, says its rank
            ticks[-1] = (n - 1, f"{ticks[-1][1]} #{c.chosen + 1}")
        # widened first: no label left out; the resize that causes is this redraw's own
        self._in_redraw = True
        try:
            set_label_ticks(self.plot, "left", ticks, narrow_after)
        finally:
            self._in_redraw = False
        self._drawn_width = self.vb.width()
        xmax = self._x_extent(float(ends.max()) if n else 1.0, labels)
        # after its bar, or as far right as the chart lets it end inside (a column narrower
        # than a bar and its label: the label over the bar's end, not cut off)
        per_px = xmax / max(1.0, self.vb.width())
        self.rows.set_labels([
            (t, max(0.0, min(float(e) + xmax * 0.01,
                             xmax - (self.rows.text_box(t)[0] + 1) * per_px)),
             row)
            for row, (t, e) in enumerate(zip(labels, ends, strict=True))])
        # the range first: a new one lays the probability axis out afresh at the paint, which
        # its new ticks then do not lay out in the range it leaves
        self._set_range(xmax, n)
        self._space_x_ticks(xmax)
        self.rows.set_extent(QRectF(0, -0.6, xmax, n + 0.2))
        # the new range (or the width the token labels took) moves the bars now, not in the
        # paint: pyqtgraph moves them there, which asked for a second paint of the chart
        self.vb.updateMatrix()
        token = f"<span style='color:{th.bar_chosen}'><b>{{}}</b></span>"
        if c.kind == "last":
            how = "forced" if c.chosen_forced else "greedy" if c.chosen_greedy else "sampled"
            pos = self.prompt_len + c.step - 2  # the newest token is at pos + 1
            # short enough for a narrow column; the tooltip says it in the panels' words
            self._say(self.header, f"<b>Step {c.step}</b>: {token} · after position {pos}",
                      repr(c.tokens[c.chosen]) if c.chosen >= 0 else "?", bold=True,
                      shorter=(f"<b>Step {c.step}</b>: {token} · after {pos}",
                               f"<b>Step {c.step}</b>: {token}"),
                      tip=f"Step {c.step}'s token (position {pos + 1}) was "
                      + ("forced in place of a token drawn from" if c.chosen_forced
                         else "drawn from") + f" the prediction after position {pos}: the "
                      "distribution below")
            self._say(self.detail, f"{how}, p = {c.chosen_prob:.3f} · entropy "
                                   f"<b>{c.entropy:.2f}</b> bits")
            self._say(self.hint, "Click a bar to take that token instead (branch).")
        else:
            pos = self.n_tokens - 1
            self._say(self.header, f"<b>Prediction after position {pos}</b> (the prompt's end)",
                      tip=f"The prediction after position {pos}: the distribution the token at "
                      f"position {pos + 1} will be drawn from")
            if c.chosen >= 0:
                self._say(self.detail, f"entropy <b>{c.entropy:.2f}</b> bits · token at "
                          f"position {pos + 1}: {token}", repr(c.tokens[c.chosen]), bold=True)
            else:
                self._say(self.detail, f"entropy <b>{c.entropy:.2f}</b> bits")
            self._say(self.hint, "Click a bar to force that token as the next one.")

    def _token_label(self, token: str) -> str:
        """A token's label on the left axis: its drawn text, quoted (made once a token)."""
        label = self._drawn_texts.get(token)
        if label is None:
            if len(self._drawn_texts) > 4096:
                self._drawn_texts.clear()
            label = self._drawn_texts[token] = repr(drawn_text(token))
        return label

    def _set_range(self, xmax: float, n: int) -> None:
        """The view's range: ``xmax`` across, ``n`` rows down (the range it already has, as
        pyqtgraph would set it with no padding, is left as it is)."""
        vb, y_range = self.vb, [-0.6, n - 0.4]
        state = vb.state
        if (state["targetRange"] == [[0.0, xmax], y_range] and state["autoRange"] == [False, False]
                and not state["aspectLocked"] and state["viewRange"] == state["targetRange"]):
            return
        vb.setRange(xRange=(0, xmax), yRange=y_range, padding=0)

    def _draw_knobs(self, k, idx: list[int], probs: np.ndarray,
                    brushes: list) -> tuple[np.ndarray, list[str]]:
        """Two bars per row: the model's probability (thin, grey, above) and the renormalised
        distribution the token is drawn from (below it; none for a cut token). Returns where
        each row's label goes and the labels ("12.3% → 30.1%", "4.0% · cut")."""
        th = self.theme
        n = len(idx)
        final = np.asarray([float(k.final[i]) for i in idx])
        kept = [bool(k.kept[i]) for i in idx]
        ys = np.arange(n, dtype=float)
        grey = self._brush(th.text_dim)
        self.raw_bars.setOpts(x0=np.zeros(n), y=ys - 0.22, width=probs, height=0.3,
                              brushes=[grey] * n)
        self._raw_shown = True
        self.bars.setOpts(x0=np.zeros(n), y=ys + 0.12, width=final, height=0.5,
                          brushes=brushes)
        labels = [f"{p:.1%} → {f:.1%}" if on else f"{p:.1%} · cut"
                  for p, f, on in zip(probs, final, kept, strict=True)]
        self.knob_note.setText(k.describe(self.vocab_size or None)
                               + " (grey: the model, T = 1)")
        self.knob_note.show()
        return np.maximum(probs, final), labels

    def row_position(self, row: int):
        """Scene position of the middle of bar ``row`` (tests click there)."""
        c = self.candidates
        p = float(c.probs[row]) / 2 if c is not None and row < len(c.probs) else 0.01
        return self.vb.mapViewToScene(pg.Point(max(p, 0.002), row))

    def set_compare(self, token_id: int | None) -> None:
        """Compare the chosen token with ``token_id`` (``None``: stop comparing)."""
        self.compare_id = token_id
        self.compareChosen.emit(-1 if token_id is None else int(token_id))

    def _compare_menu(self, token_id: int, token: str, screen_pos) -> None:
        from PySide6.QtWidgets import QMenu

        menu = QMenu(self)
        menu.addAction(f"Compare the chosen token with {token!r} (logit attribution)",
                       lambda: self.set_compare(token_id))
        if self.compare_id is not None:
            menu.addAction("Stop comparing", lambda: self.set_compare(None))
        self.last_menu = menu
        menu.popup(screen_pos.toPoint())

    def _on_click(self, ev) -> None:
        right = ev.button() == Qt.MouseButton.RightButton
        if not (right or ev.button() == Qt.MouseButton.LeftButton) or self.candidates is None:
            return
        if not self.vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        row = int(round(self.vb.mapSceneToView(ev.scenePos()).y()))
        c = self.candidates
        n = self.n_shown
        if not 0 <= row < n:
            return
        i = c.chosen if (row == n - 1 and c.chosen >= n) else row
        if right:
            self._compare_menu(int(c.ids[i]), c.tokens[i], ev.screenPos())
        elif ev.modifiers() & Qt.KeyboardModifier.ShiftModifier:  # toggles the comparison
            self.set_compare(None if self.compare_id == int(c.ids[i]) else int(c.ids[i]))
        else:
            self.candidateClicked.emit(int(c.ids[i]), c.kind == "last")

