"""The tokens as chips, wrapped like text, painted by one widget (fast at 1000+ tokens).

* prompt chips are plain, generated chips are tinted with a coloured edge, forced ones have
  a pink edge; tokens outside the model's window are dimmed;
* the query chip has a thick accent outline; the query's attention (selected head) over
  the earlier tokens is drawn as the chips' background intensity (scaled to the row's
  maximum so long texts stay visible; the tooltip gives the exact weight). Other weights can
  take its place (:meth:`TokenStrip.set_shading`, e.g. attention rollout); the legend and the
  tooltips then say what is shown;
* hovering shows position, id, string, the probability it had when chosen; clicking a chip
  makes it the query (``chipClicked(position)``).
"""

from __future__ import annotations

import bisect

import numpy as np
from PySide6.QtCore import (
    QPoint,
    QPointF,
    QRect,
    QRectF,
    QSignalBlocker,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetrics,
    QFontMetricsF,
    QImage,
    QPainter,
    QPen,
    QRegion,
    QStaticText,
    QTransform,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QToolTip,
    QWidget,
)

from gptviz_app.runtime.snapshot import ModelInfo, Snapshot, tokens_kept
from gptviz_app.views.panel_layout import controls_row, stack
from gptviz_app.views.steady_label import SteadyLabel
from gptviz_app.views.strip_legend import LegendKeys, LegendRow, legend_keys, legend_says
from gptviz_app.views.theme import DARK, Theme

#: Whole lines of chips the strip always shows (the newest line and the one before it).
MIN_LINES = 2

#: Pixels around a chip repainted with it (its thickest outline, the query's 3 px pen on a
#: box inset half a pixel, reaches 1 px out; the gaps between chips are 4 px and 5 px).
CHIP_BLEED = 2

#: Marks drawn in place of the tokenizer's: its carriage return "␍" has no glyph in common
#: fonts (an empty box), and must not look like the line feed "↵": CR is drawn "⇤" (back to
#: the line's start), LF stays "↵"; the tooltips name both.
DRAWN_MARKS = {"␍": "⇤"}
_MARK_NAMES = (("␍", "CR (carriage return, \\r)"), ("↵", "LF (line feed, \\n)"),
               ("⇥", "tab (\\t)"))


def drawn_text(token: str) -> str:
    """How a token's display string is drawn on its chip (see :data:`DRAWN_MARKS`)."""
    for mark, drawn in DRAWN_MARKS.items():
        token = token.replace(mark, drawn)
    return token


#: A fill's channels (int64, 0..255) to ``0xRRGGBB``: ``fill @ _RGB_SHIFTS`` (exact).
_RGB_SHIFTS = np.array([1 << 16, 1 << 8, 1], np.int64)


class ChipCanvas(QWidget):
    """The painted chips. Height follows the wrapped content (for a scroll area)."""

    chipClicked = Signal(int)

    PAD_X, PAD_Y, GAP_X, GAP_Y, MARGIN = 5, 3, 4, 5, 6

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)
        self.theme = DARK
        self.tokens: list[str] = []
        self.ids = np.zeros(0, np.int64)
        self.chosen_probs = np.zeros(0, np.float32)
        self.forced = np.zeros(0, bool)
        self.greedy = np.zeros(0, bool)
        self.prompt_len = 0
        self.window_start = 0
        self.query = -1
        self.weights = np.zeros(0, np.float32)  # attention of the query over the window
        self.weight_max = 0.0
        self.weights_label = ""  # what the shading shows, for the tooltips
        self.rects: list[QRect] = []
        self._ys: list[int] = []  # top of every rect, for finding chips by position
        # left, top and right (exclusive) of every rect, for the chips a region meets (rows
        # beyond the chips: room to grow)
        self._boxes = np.zeros((0, 3), np.int64)
        self._drawing = _ChipDrawing()
        self._asked: QRegion | None = None  # the regions updates asked for since the last paint
        self._asked_chips: set[int] = set()  # and the chips in them
        self._tokens_rev = None  # revision of `tokens` (Snapshot.tokens_rev)
        self.found: list[int] = []   # positions the find bar matched, in order
        self.found_current = -1      # the one the find bar is on
        self._widths: dict[str, int] = {}
        # the look each chip was last painted with (see _chip_codes; -1: to be painted)
        self._shown = np.zeros(0, np.int64)
        self._looks_key: tuple | None = None
        self._looks: dict = {}
        self._codes: tuple | None = None  # (first, last, codes) of the data shown
        self._halves = np.zeros(0)
        self._layout_width = -1
        self._content_height = 40
        self.apply_theme(self.theme)

    # ------------------------------------------------------------------ data
    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.setFont(theme.font(1.1, mono=False))
        self._widths.clear()
        self._looks_key = None  # colours and pens made again
        self._codes = None
        self._relayout()
        self._update_chips(full=True)

    def set_data(self, snap: Snapshot) -> None:
        # Lay out only the chips after the tokens that stayed (a step: one chip); the
        # snapshot's revision says how many did, without comparing 400,000 strings.
        kept = tokens_kept(snap, self._tokens_rev)
        if kept is None:
            kept = _common_prefix(snap.tokens, self.tokens)
        tokens_changed = kept < len(self.tokens) or kept < len(snap.tokens)
        # chips taken away, or the window's start moved (its bar): all painted again
        full = kept < len(self.tokens) or snap.window_start != self.window_start
        self._tokens_rev = snap.tokens_rev
        self.tokens = snap.tokens
        self.ids = snap.ids
        self.chosen_probs = snap.chosen_probs
        self.forced = snap.forced
        self.greedy = snap.greedy
        self.prompt_len = snap.prompt_len
        self.window_start = snap.window_start
        self.query = snap.query
        q_rel = snap.query - snap.window_start
        row = snap.attn[q_rel] if 0 <= q_rel < snap.attn.shape[0] else np.zeros(0, np.float32)
        self._set_weights(np.nan_to_num(row[:q_rel + 1], nan=0.0),
                          f"attention from query {snap.query}")
        if tokens_changed:
            full |= not self._relayout(kept)
        self._codes = None
        self._update_chips(full)

    def set_weights(self, weights: np.ndarray, label: str) -> None:
        """Shade the chips of the window with ``weights`` instead of the query's attention
        (until the next :meth:`set_data`); ``label`` says what they are in the tooltips."""
        self._set_weights(np.asarray(weights, np.float32), label)
        self._codes = None
        self._update_chips(full=False)

    def _set_weights(self, w: np.ndarray, label: str) -> None:
        self.weights = w
        self.weight_max = float(w.max()) if w.size else 0.0
        self.weights_label = label

    # ------------------------------------------------------------------ layout
    def _chip_width(self, fm: QFontMetrics, text: str) -> int:
        w = self._widths.get(text)
        if w is None:
            w = fm.horizontalAdvance(drawn_text(text) or " ") + 2 * self.PAD_X
            self._widths[text] = w
        return w

    def chip_height(self) -> int:
        """Height of one chip (one line of text) in pixels."""
        return QFontMetrics(self.font()).height() + 2 * self.PAD_Y

    def height_for_rows(self, n: int) -> int:
        """Viewport height that shows exactly ``n`` whole lines of chips (margins included)."""
        return n * self.chip_height() + (n - 1) * self.GAP_Y + 2 * self.MARGIN

    def _relayout(self, keep: int = 0) -> bool:
        """Place the chips; the first ``keep`` stay where they are when the width did not
        change (the chips after them are placed from there on). True when they stayed."""
        fm = QFontMetrics(self.font())
        h = self.chip_height()
        width = max(100, self.width())
        kept = width == self._layout_width and 0 < keep <= len(self.rects)
        if not kept:
            keep = 0
        rects, ys = self.rects, self._ys
        del rects[keep:], ys[keep:]  # in place: a copy of 400,000 rects costs more than a step
        if self._shown.shape[0] < len(self.tokens):  # room for twice as many (a long text)
            shown = np.full(2 * len(self.tokens), -1, np.int64)
            shown[:keep] = self._shown[:keep]
            self._shown = shown
            boxes = np.zeros((shown.shape[0], 3), np.int64)
            boxes[:keep] = self._boxes[:keep]
            self._boxes = boxes
        self._shown[keep:] = -1  # the chips placed anew: not painted yet
        self._forget_asked()
        self._codes = None
        x, y = self.MARGIN, self.MARGIN
        if rects:
            last = rects[-1]
            x, y = last.x() + last.width() + self.GAP_X, last.y()
        placed = []
        for t in self.tokens[keep:]:
            w = min(self._chip_width(fm, t), width - 2 * self.MARGIN)
            if x + w > width - self.MARGIN and x > self.MARGIN:
                x, y = self.MARGIN, y + h + self.GAP_Y
            rects.append(QRect(x, y, w, h))
            ys.append(y)
            placed.append((x, y, x + w))
            x += w + self.GAP_X
        if placed:
            self._boxes[keep:len(rects)] = placed
        self._layout_width = width
        content = (y + h + self.MARGIN) if rects else h + 2 * self.MARGIN
        if content != self._content_height:
            self._content_height = content
            self.setMinimumHeight(content)
            self.updateGeometry()
        return kept

    def sizeHint(self) -> QSize:
        return QSize(600, self._content_height)

    def resizeEvent(self, e) -> None:  # noqa: N802 - Qt name
        if e.size().width() != self._layout_width:
            self._relayout()
        super().resizeEvent(e)

    def chip_at(self, pos: QPoint) -> int:
        """Index of the chip under ``pos`` (widget coordinates), -1 if none."""
        if not self.rects:
            return -1
        # rows are sorted: binary search on y, then scan the row
        ys = self._ys
        i = bisect.bisect_right(ys, pos.y()) - 1
        if i < 0:
            return -1
        row_y = self.rects[i].y()
        j = bisect.bisect_left(ys, row_y)
        while j < len(self.rects) and self.rects[j].y() == row_y:
            if self.rects[j].contains(pos):
                return j
            j += 1
        return -1

    # ------------------------------------------------------------------ paint
    def _chip_looks(self) -> dict:
        """What the chips are painted with (colours, pens), made once per theme and font."""
        th = self.theme
        fm = QFontMetricsF(self.font())

        def rgb(c: str) -> np.ndarray:
            q = QColor(c)
            return np.array([q.red(), q.green(), q.blue()], np.int64)

        return {
            "inks": (QColor(th.text_dim), QColor("#000000"), QColor(th.text)),
            "prompt": rgb(th.prompt_chip), "gen": rgb(th.generated_chip),
            "tint": rgb(th.attention_tint),
            "pens": (Qt.PenStyle.NoPen, QPen(QColor(th.generated_edge), 1.5),
                     QPen(QColor(th.forced_edge), 2.0, Qt.PenStyle.DashLine),
                     QPen(QColor(th.accent), 3.0)),
            "text_h": fm.ascent() + fm.descent(),  # the line drawText centres in the chip
        }

    def _ensure_looks(self) -> None:
        looks = (self.theme, self.font().key())
        if self._looks_key != looks:
            self._looks_key, self._looks = looks, self._chip_looks()
            self._codes = None
            self._drawing.restart(self.font(), self.PAD_X, self._looks)

    def _codes_of(self, first: int, last: int) -> np.ndarray:
        """:meth:`_chip_codes`, kept until the chips' data change (a step's update asks
        for the chips in view, its paint for those in the dirty part of them)."""
        got = self._codes
        if got is not None and got[0] <= first and last <= got[1]:
            return got[2][first - got[0]:last - got[0]]
        codes = self._chip_codes(first, last)
        self._codes = (first, last, codes)
        return codes

    def _chip_codes(self, first: int, last: int) -> np.ndarray:
        """The looks of chips ``first..last-1`` (n,). A code holds everything a chip's
        pixels depend on besides its token and place (which only :meth:`_relayout`
        changes): ``rgb << 4 | outline << 2 | ink`` (``rgb``: its fill, 8 bits a channel);
        the outline indexes the pens (none, generated, forced, query), the ink the inks
        (dim, black, text)."""
        self._ensure_looks()
        looks, q, pl, ws = self._looks, self.query, self.prompt_len, self.window_start
        n = last - first
        # (slices of the range, not masks: the prompt, the window, the forced flags and
        # the chips up to the query are each one run of it)
        g = min(max(pl - first, 0), n)  # the first generated chip
        fill = np.empty((n, 3), np.int64)
        fill[:g], fill[g:] = looks["prompt"], looks["gen"]
        pen = np.zeros(n, np.int64)
        pen[g:] = 1
        lo, hi = first + g, min(last, self.forced.shape[0])
        if hi > lo:
            pen[lo - first:hi - first] += self.forced[lo:hi]  # forced: 2
        if first <= q < last:
            pen[q - first] = 3
        lo, hi = max(first, ws), min(last, ws + self.weights.shape[0])
        if q >= 0 and hi > lo:
            # square-root scale: 0.01 -> 10 %, 0.25 -> 50 %, 1 -> full; pow as Python's
            # `x ** 0.5` (numpy's `** 0.5` is a sqrt, which may round otherwise). A weight
            # that is not above 0 (or NaN) gives t = 0: the fill unchanged, exactly
            x = self.weights[lo - ws:hi - ws].astype(np.float64)
            np.fmin(np.fmax(x, 0.0, out=x), 1.0, out=x)
            t = np.power(x, self._half(hi - lo), out=x)
            t *= 0.9
            run = fill[lo - first:hi - first]
            run[:] = run + (looks["tint"] - run) * t[:, None]  # (truncated, as int())
        ink = np.zeros(n, np.int64)  # dim: outside the window and after the query
        lo, hi = max(first, ws), min(last, q + 1)
        if hi > lo:
            f = fill[lo - first:hi - first]
            luma = 0.299 * f[:, 0] + 0.587 * f[:, 1] + 0.114 * f[:, 2]  # theme.luma's
            ink[lo - first:hi - first] = 2 - (luma > 150)
        return (fill @ _RGB_SHIFTS) << 4 | pen << 2 | ink

    def _half(self, n: int) -> np.ndarray:
        """``n`` halves (the exponent of the shading's square root), kept."""
        if self._halves.shape[0] < n:
            self._halves = np.full(2 * n, 0.5)
        return self._halves[:n]

    def _visible_chips(self, area: QRect) -> tuple[int, int]:
        """The chips whose rows meet ``area`` (rows are sorted by y): ``first, last``."""
        h = self.rects[0].height() if self.rects else 0
        return (bisect.bisect_left(self._ys, area.top() - h),
                bisect.bisect_right(self._ys, area.bottom()))

    def _update_chips(self, full: bool) -> None:
        """Ask for a repaint of the chips whose pixels changed since they were painted (all
        of them when ``full``): a step changes a few chips' look (the new one, the query's
        outline, the shading where its colour moved) and the rest of the strip stays."""
        if full:
            self._shown[:] = -1
            self._forget_asked()
            self.update()
            return
        vis = self.visibleRegion().boundingRect()
        if vis.isEmpty() or not self.rects:
            return  # hidden: a full paint when shown
        first, last = self._visible_chips(vis)
        codes = self._codes_of(first, last)
        changed = (np.flatnonzero(self._shown[first:last] != codes) + first).tolist()
        if changed:
            region = self._bleed_region(changed)  # one update for them all: each costs more
            # the next paint draws these chips alone when its region is within theirs
            self._asked = region if self._asked is None else self._asked + region
            self._asked_chips.update(changed)
            self.update(region)

    def _forget_asked(self) -> None:
        """The next paint finds the chips its region meets itself (chips were placed anew,
        or all are painted again)."""
        self._asked = None
        self._asked_chips.clear()

    def _bleed_region(self, chips: list[int]) -> QRegion:
        """The boxes of ``chips`` (sorted indices) and the :data:`CHIP_BLEED` around them, as
        one rectangle for each run of them side by side on a line (their bleeds touch: the
        same pixels as a rectangle each, in fewer unions; a few dozen chips a step, faster
        in plain Python than in numpy's calls)."""
        b = CHIP_BLEED
        h = self.rects[chips[0]].height() + 2 * b
        region = QRegion()
        run: list[int] = []  # the run: its first chip's left and top, its last's index, right
        for i, (x, y, right) in zip(chips, self._boxes[chips].tolist()):
            if run and i == run[2] + 1 and y == run[1] and x - b <= run[3] + b:
                run[2:] = i, right
                continue
            if run:
                region += QRect(run[0] - b, run[1] - b, run[3] - run[0] + 2 * b, h)
            run = [x, y, i, right]
        region += QRect(run[0] - b, run[1] - b, run[3] - run[0] + 2 * b, h)
        return region

    def _chips_meeting(self, region: QRegion, first: int, last: int) -> list[int]:
        """Which of chips ``first..last-1`` meet ``region`` with the :data:`CHIP_BLEED` around
        them: ``QRegion.intersects`` of each, for all at once."""
        if last <= first:
            return []
        b = CHIP_BLEED
        x, y, right = self._boxes[first:last].T
        h = self.rects[first].height()
        boxes = np.array([(r.x(), r.y(), r.x() + r.width(), r.y() + r.height())
                          for r in region], np.int64).reshape(-1, 4)[:, :, None]  # (k, 4, 1)
        meet = ((x - b < boxes[:, 2]) & (boxes[:, 0] < right + b)
                & (y - b < boxes[:, 3]) & (boxes[:, 1] < y + h + b))  # (k, n)
        return (np.flatnonzero(meet.any(axis=0)) + first).tolist()

    def paintEvent(self, e) -> None:  # noqa: N802 - Qt name
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setFont(self.font())
        clip, region = e.rect(), e.region()
        asked = self._asked
        if asked is not None and region.subtracted(asked).isEmpty():
            # what the last updates asked for, alone (the bleeds of chips never share a
            # pixel: no other chip meets the region)
            chips = sorted(self._asked_chips)
        else:  # exposed, scrolled, resized...: only the chips in the clip (a long text has
            # 100,000s)
            chips = self._chips_meeting(region, *self._visible_chips(clip))
        self._forget_asked()
        if chips:
            got = self._codes_of(chips[0], chips[-1] + 1).tolist()
            looks = [got[i - chips[0]] for i in chips]
            self._drawing.draw(p, self.rects, self.tokens, chips, looks)
            self._shown[chips] = looks  # what the screen shows there now
        self._paint_marks(p, clip)
        p.end()

    def _paint_marks(self, p: QPainter, clip: QRect) -> None:
        """The window's start (a bar before its first chip, once the window slid) and the
        find bar's matches (underlined; the current one boxed)."""
        th = self.theme
        ws = self.window_start
        if 0 < ws < len(self.rects):
            r = self.rects[ws]
            x = r.left() - (self.GAP_X + 1) // 2
            p.setPen(QPen(QColor(th.accent), 2.0))
            p.drawLine(x, r.top() - 2, x, r.bottom() + 2)
        if not self.found:
            return
        mark = QPen(QColor(th.accent), 2.0)
        for i in self.found:
            if i >= len(self.rects):
                break
            r = self.rects[i]
            if r.bottom() < clip.top() or r.top() > clip.bottom():
                continue
            p.setPen(mark)
            p.drawLine(r.left() + 2, r.bottom() + 2, r.right() - 2, r.bottom() + 2)
            if i == self.found_current:
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.setPen(QPen(QColor(th.accent), 1.5, Qt.PenStyle.DotLine))
                p.drawRoundedRect(QRectF(r).adjusted(-2, -2, 2, 2), 5, 5)

    # ------------------------------------------------------------------ events
    def mousePressEvent(self, e) -> None:  # noqa: N802 - Qt name
        if e.button() == Qt.MouseButton.LeftButton:
            i = self.chip_at(e.position().toPoint())
            if i >= 0:
                self.chipClicked.emit(i)
                return
        super().mousePressEvent(e)

    def tooltip_text(self, i: int) -> str:
        """What hovering chip ``i`` shows."""
        tok = self.tokens[i]
        lines = [f"position {i} · id {int(self.ids[i])}", f"token  {drawn_text(tok)!r}"]
        marks = [name for mark, name in _MARK_NAMES if mark in tok]
        if marks:
            lines.append("holds " + ", ".join(marks))
        if i < self.prompt_len:
            lines.append("prompt token")
        else:
            p = float(self.chosen_probs[i]) if i < self.chosen_probs.shape[0] else float("nan")
            how = ("forced" if i < self.forced.shape[0] and self.forced[i] else
                   "greedy" if i < self.greedy.shape[0] and self.greedy[i] else "sampled")
            lines.append(f"{how}, p = {p:.4f} when chosen" if p == p else how)
        k = i - self.window_start
        if i < self.window_start:
            lines.append("outside the model's window")
        elif i == self.window_start > 0:
            lines.append("the model's window starts here (the window slid)")
        elif 0 <= k < self.weights.shape[0]:
            lines.append(f"{self.weights_label}: {float(self.weights[k]):.4f}")
        return "\n".join(lines)

    def event(self, e) -> bool:
        from PySide6.QtCore import QEvent

        if e.type() == QEvent.Type.ToolTip:
            i = self.chip_at(e.pos())
            if i >= 0:
                QToolTip.showText(e.globalPos(), self.tooltip_text(i), self, self.rects[i])
            else:
                QToolTip.hideText()
                e.ignore()
            return True
        return super().event(e)


class _ChipDrawing:
    """What the chips are drawn with, made once and kept (a step draws every chip in view
    again: the query's attention shades them all): their fills by colour, their texts laid
    out by token, each chip's places, and each outline drawn once for a chip of its size."""

    def __init__(self) -> None:
        self.font = QFont()
        self.pad = 0
        self.looks: dict = {}
        self._statics: dict[str, tuple[QStaticText, float]] = {}  # by token, with its width
        self._brushes: dict[int, QBrush] = {}  # by rgb
        self._outlines: dict[tuple[int, int, int], QImage] = {}  # by chip size and pen
        #: by chip: (its rect, box, text origin, text or None, outline origin); the rect
        #: tells a chip placed anew (a new rect) from one kept
        self._places: dict[int, tuple[QRect, QRectF, QPointF, QStaticText | None, QPoint]] = {}

    def restart(self, font: QFont, pad: int, looks: dict) -> None:
        """Another font or other colours (:meth:`ChipCanvas._chip_looks`): all made again."""
        self.font, self.pad, self.looks = QFont(font), pad, looks
        for kept in (self._statics, self._brushes, self._outlines, self._places):
            kept.clear()

    def static_text(self, token: str, room: float) -> QStaticText | None:
        """The chip text of ``token`` laid out once (None when it is wider than ``room``:
        drawText cuts it there)."""
        got = self._statics.get(token)
        if got is None:
            st = QStaticText(drawn_text(token) or " ")
            st.setTextFormat(Qt.TextFormat.PlainText)
            st.setPerformanceHint(QStaticText.PerformanceHint.AggressiveCaching)
            st.prepare(QTransform(), self.font)
            if len(self._statics) > 50_000:  # a long text of many distinct tokens
                self._statics.clear()
            got = self._statics[token] = (st, st.size().width())
        return got[0] if got[1] <= room else None

    def _place(self, i: int, r: QRect, token: str) -> tuple:
        """Where chip ``i`` (rect ``r``) is drawn, kept: see ``_places``. The box is the
        outline's centre line; the text sits where drawText centres it."""
        pad, b = self.pad, CHIP_BLEED
        if len(self._places) > 20_000:  # a long text scrolled through
            self._places.clear()
        got = self._places[i] = (
            r, QRectF(r).adjusted(0.5, 0.5, -0.5, -0.5),
            QPointF(r.x() + pad, r.y() + (r.height() - self.looks["text_h"]) / 2),
            self.static_text(token, r.width() - 2 * pad + 1), QPoint(r.x() - b, r.y() - b))
        return got

    def _brush(self, rgb: int) -> QBrush:
        """The fill of colour ``rgb`` (0xRRGGBB)."""
        brush = self._brushes.get(rgb)
        if brush is None:
            if len(self._brushes) > 4096:
                self._brushes.clear()
            brush = self._brushes[rgb] = QBrush(QColor((rgb >> 16) & 255, (rgb >> 8) & 255,
                                                       rgb & 255))
        return brush

    def _outline(self, r: QRect, k: int) -> QImage:
        """Outline ``k`` (an index of the pens) of a chip of ``r``'s size alone on a
        transparent image, :data:`CHIP_BLEED` pixels around it. Drawn at a whole pixel, it
        gives the pixels of the outline drawn there: the raster engine blends a pen of colour
        ``c`` covering a pixel by ``a`` as ``a·c + (1 - a)·under``; the image holds ``a·c``
        (premultiplied), which source-over blends the same way."""
        w, h = r.width(), r.height()
        key = (w, h, k)
        img = self._outlines.get(key)
        if img is None:
            b = CHIP_BLEED
            img = QImage(w + 2 * b, h + 2 * b, QImage.Format.Format_ARGB32_Premultiplied)
            img.fill(0)
            q = QPainter(img)
            q.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            q.setPen(self.looks["pens"][k])
            q.drawRoundedRect(QRectF(b, b, w, h).adjusted(0.5, 0.5, -0.5, -0.5), 4, 4)
            q.end()
            if len(self._outlines) > 1000:
                self._outlines.clear()
            self._outlines[key] = img
        return img

    def draw(self, p: QPainter, rects: list[QRect], tokens: list[str], chips: list[int],
             codes: list[int]) -> None:
        """Chips ``chips`` with their looks ``codes`` (:meth:`ChipCanvas._chip_codes`): their
        boxes' fills, their outlines, then their texts, one ink at a time. A box filled and
        then outlined is the box drawn with both at once, and chips never overlap: the order
        changes no pixel, and each pen is set once (a change costs more than a box)."""
        looks, kept, brushes = self.looks, self._places, self._brushes
        places = []
        for i in chips:  # (the lookups inline: a call costs as much as a chip's fill)
            got = kept.get(i)
            places.append(got if got is not None and got[0] is rects[i] else
                          self._place(i, rects[i], tokens[i]))
        outlines: dict[int, list[int]] = {}  # chips (their order in `chips`) by pen, by ink
        inks: dict[int, list[int]] = {}
        p.setPen(Qt.PenStyle.NoPen)
        for j, (code, place) in enumerate(zip(codes, places)):
            rgb = code >> 4
            brush = brushes.get(rgb)
            p.setBrush(brush if brush is not None else self._brush(rgb))
            p.drawRoundedRect(place[1], 4, 4)
            if code & 12:
                outlines.setdefault((code >> 2) & 3, []).append(j)
            inks.setdefault(code & 3, []).append(j)
        stamp = _whole_pixel_offset(p)  # (else: drawn there, e.g. on a high-DPI screen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        for k, js in outlines.items():
            p.setPen(looks["pens"][k])
            for j in js:
                if stamp:
                    p.drawImage(places[j][4], self._outline(places[j][0], k))
                else:
                    p.drawRoundedRect(places[j][1], 4, 4)
        pad = self.pad
        for k, js in inks.items():
            p.setPen(looks["inks"][k])
            for j in js:
                r, _, origin, static, _ = places[j]
                if static is not None:  # laid out once
                    p.drawStaticText(origin, static)
                else:  # a chip narrower than its text (cut at the strip's width)
                    p.drawText(r.adjusted(pad, 0, -pad + 1, 0),
                               Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                               drawn_text(tokens[chips[j]]))


def _whole_pixel_offset(p: QPainter) -> bool:
    """Whether ``p`` draws at a whole-pixel offset and unscaled (where a picture drawn once
    lands on the same pixels; not on a high-DPI screen)."""
    t = p.deviceTransform()
    return (t.type().value <= QTransform.TransformationType.TxTranslate.value
            and t.dx() == int(t.dx()) and t.dy() == int(t.dy()))


def _common_prefix(a: list[str], b: list[str]) -> int:
    """Length of the common prefix of two token lists (equal lists: their length)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class TokenStrip(QWidget):
    """Header (legend, follow-newest switch) over a scrolling :class:`ChipCanvas`.

    Signals
    -------
    queryChosen(int)   a chip was clicked (global position)
    followLatest()     the user asked the query to follow the newest token again
    """

    queryChosen = Signal(int)
    followLatest = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = ChipCanvas()
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.canvas)
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        # the legend: its colour keys, set with the theme, and what the shading shows, a new
        # text every step (the query) in a steady label, which lays the window out again only
        # when it needs another height (a second line)
        self.legend_keys = LegendKeys()
        # (its tallest height kept: a query token of a taller fallback font does not move
        # the chips under it)
        self.legend = SteadyLabel(label=QLabel(), steady_height=True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.legend.setWordWrap(True)  # big presentation fonts: a second line, not a clip
        self.follow = QCheckBox("Follow newest")
        self.follow.setToolTip("The query (the token whose attention is shown) follows the "
                               "newest token; clicking a chip pins it there instead")
        self.follow.setChecked(True)
        self.follow.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.follow.toggled.connect(self._on_follow)
        # the legend's two labels as tall as their text, centred in the row as the one label
        # was (the switch is taller than a line), the keys on its first line
        self.legend_row = LegendRow(self.legend_keys, self.legend)
        head = controls_row((self.legend_row, 1, Qt.AlignmentFlag.AlignVCenter), self.follow)
        lay = stack(self, head, self.scroll)
        lay.addStretch(0)  # the few pixels below the last whole line of chips
        self.canvas.chipClicked.connect(self._on_chip)
        self.scroll.verticalScrollBar().rangeChanged.connect(self._on_range)
        self._stick_bottom = True
        self._n = 0
        self.theme = DARK
        self._snap: Snapshot | None = None
        self._shading: str | None = None  # legend text of other shading than attention
        self._update_legend()

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.canvas.apply_theme(theme)
        self._update_legend()
        # After the layout has placed the scroll area under the (re-sized) legend.
        QTimer.singleShot(0, self, self._fit_whole_lines)

    def resizeEvent(self, e) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(e)
        self._fit_whole_lines()

    def _fit_whole_lines(self) -> None:
        """Show a whole number of chip lines, at least :data:`MIN_LINES`.

        Scrolled to the newest token, a viewport that is not a multiple of the line height
        cuts the top line in half (seen at 1280x800 in presentation mode); with this cap the
        lines shown are whole and the remainder is blank space below them."""
        c = self.canvas
        least = c.height_for_rows(MIN_LINES)
        if self.scroll.minimumHeight() != least:
            self.scroll.setMinimumHeight(least)
        avail = self.height() - self.scroll.y()  # the layout has placed the header already
        n = (avail - 2 * c.MARGIN + c.GAP_Y) // (c.chip_height() + c.GAP_Y)
        cap = c.height_for_rows(max(n, MIN_LINES))
        if cap != self.scroll.maximumHeight():
            self.scroll.setMaximumHeight(cap)

    def height_for_lines(self, n: int) -> int:
        """Height of the strip (legend and chips) that shows ``n`` whole lines of chips: what
        the window's layout gives it, so that no blank band is left under the chips."""
        c = self.canvas
        top = self.scroll.y()  # the legend row and the spacing under it, once laid out
        if top <= 0:
            lay = self.layout()
            top = lay.itemAt(0).sizeHint().height() + lay.spacing()
        return top + c.height_for_rows(max(n, MIN_LINES))

    def set_model(self, info: ModelInfo) -> None:
        self.follow.setChecked(True)

    def _on_chip(self, i: int) -> None:
        with QSignalBlocker(self.follow):
            self.follow.setChecked(False)
        self.queryChosen.emit(i)

    def choose_query(self, i: int) -> None:
        """Make the token at position ``i`` the query, as a click on its chip does."""
        self._on_chip(i)

    def _on_follow(self, on: bool) -> None:
        if on:
            self.followLatest.emit()

    def set_shading(self, weights: np.ndarray, label: str, legend: str) -> None:
        """Shade the chips with ``weights`` over the window instead of the selected head's
        attention, until the next snapshot: ``label`` (plain text) names them in the chips'
        tooltips, ``legend`` (rich text) after "shading =" in the legend."""
        self.canvas.set_weights(weights, label)
        self._shading = legend
        self._update_legend()

    def _update_legend(self) -> None:
        """The legend's texts after a step, a shading or a theme: a label is set again only
        when its text changed (the keys' with the theme alone)."""
        th = self.theme
        self.legend_row.set_texts(legend_keys(th), legend_says(th, self._snap, self._shading))

    def apply_snapshot(self, snap: Snapshot) -> None:
        grew = snap.n_tokens > self._n
        self._n = snap.n_tokens
        self.canvas.set_data(snap)
        with QSignalBlocker(self.follow):
            self.follow.setChecked(snap.view.query is None)
        self._snap, self._shading = snap, None
        self._update_legend()
        self._stick_bottom = snap.view.query is None
        if self._stick_bottom and grew:
            bar = self.scroll.verticalScrollBar()
            bar.setValue(bar.maximum())

    def reveal(self, i: int) -> None:
        """Scroll chip ``i`` into view (the strip stops following the newest line)."""
        c = self.canvas
        if 0 <= i < len(c.rects):
            self._stick_bottom = False
            r = c.rects[i]
            self.scroll.ensureVisible(r.center().x(), r.center().y(), 0, r.height())

    def _on_range(self, lo: int, hi: int) -> None:
        # The canvas grows after layout; keep the newest line in view while following.
        if self._stick_bottom:
            self.scroll.verticalScrollBar().setValue(hi)
