"""The model's block diagram, drawn from its live config, with the selected layer and head.

Bottom to top, as in the paper's figure: the tokens, the embedding (W_e, plus W_p with
learned positions), the ``n_layer`` decoder blocks, the final norm, the output through
W_e^T (tied) or a matrix of its own, and the fine-tuning head W_y when the model has one
(:func:`gptviz.analysis.architecture.architecture`, computed on the worker as the
``"architecture"`` analysis). The selected layer is drawn open, its parts in the order the
model runs them (norms, attention, feed-forward, residual additions), its heads as squares
with the selected one lit; the other layers are one row each. A click on a layer selects it,
a click on a head square selects that head (the view state stays in the Controller's
``ViewSpec``). The window's layer and head keys (↑/↓ previous/next layer, 1–9 and [ ] the
head) move the highlight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetricsF, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QVBoxLayout, QWidget

from gptviz.analysis.architecture import Diagram, DiagramBlock
from gptviz.analysis.runner import AnalysisResult
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.panel_layout import shrinkable_label
from gptviz_app.views.theme import DARK, Theme

#: Box fill per kind (the text is drawn in the theme's text colour over a darkened fill).
KIND_COLORS = {
    "tokens": "#6b7280", "embedding": "#c77d2e", "positions": "#a8672a", "norm": "#7c6fb0",
    "attention": "#3f7fd0", "mlp": "#3a9a6a", "add": "#8a8f98", "output": "#2a9aa8",
    "classifier": "#c0508a",
}


@dataclass
class Hit:
    """A clickable region: ``layer`` (and ``head``, -1 for the whole layer) it selects,
    ``tip`` its tooltip."""

    rect: QRectF
    layer: int
    head: int
    tip: str


class DiagramView(QWidget):
    """The painted diagram. ``picked(layer, head)`` is called on a click."""

    def __init__(self, picked: Callable[[int, int], None]) -> None:
        super().__init__()
        self.picked = picked
        self.theme = DARK
        self.diagram: Diagram | None = None
        self.layer, self.head, self.average = 0, 0, False
        self.hits: list[Hit] = []
        self.tips: list[tuple[QRectF, str]] = []
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAccessibleName("Block diagram")

    # ------------------------------------------------------------------ geometry
    def _line(self) -> float:
        return QFontMetricsF(self.theme.font(0.95)).height()

    def heights(self) -> tuple[float, float]:
        """(height of everything but the closed layers, height of the open layer) in pixels,
        for the current font; the painter and the size hints share them."""
        d, line = self.diagram, self._line()
        if d is None:
            return line * 4, 0.0
        parts = 3 if d.parallel else len(d.block)
        open_h = line * (1.3 + 1.45 * parts + (1.4 if d.parallel else 0.0))
        tops = len(d.top) - (2 if d.top and d.top[-1].kind == "classifier" else 1) + 1
        fixed = (line * 1.45 * (len(d.bottom) + tops) + open_h + line * 1.2
                 + line * 1.4 * len(d.notes))
        return fixed, open_h

    def _height_for(self, row_lines: float) -> int:
        fixed, _ = self.heights()
        closed = self.diagram.n_layer - 1 if self.diagram is not None else 0
        return int(fixed + closed * self._line() * row_lines)

    def sizeHint(self) -> QSize:
        return QSize(int(self._line() * 22), self._height_for(1.35))

    def minimumSizeHint(self) -> QSize:
        # closed layers keep a readable label at the least
        return QSize(int(self._line() * 16), self._height_for(0.95))

    def set_state(self, diagram: Diagram | None, layer: int, head: int, average: bool) -> None:
        changed = diagram is not self.diagram
        if (not changed and (layer, head, average) == (self.layer, self.head, self.average)):
            return
        self.diagram = diagram
        self.layer, self.head, self.average = layer, head, average
        if changed:
            self.updateGeometry()
        self.update()

    # ------------------------------------------------------------------ painting
    def paintEvent(self, _ev) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(self.theme.plot_bg))
        self.hits, self.tips = [], []
        d = self.diagram
        if d is None:
            p.setPen(QColor(self.theme.text_dim))
            p.setFont(self.theme.font())
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No model yet")
            return
        _Painter(self, p, d).draw()
        p.end()

    # ------------------------------------------------------------------ input
    def _hit_at(self, pos: QPointF) -> Hit | None:
        # head squares lie inside the open layer's frame: the smaller region wins
        found = [h for h in self.hits if h.rect.contains(pos)]
        return min(found, key=lambda h: h.rect.width() * h.rect.height()) if found else None

    def mousePressEvent(self, ev: QMouseEvent) -> None:
        hit = self._hit_at(ev.position())
        if hit is None or ev.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(ev)
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        head = hit.head if hit.head >= 0 else min(self.head, max(0, self._n_head() - 1))
        self.picked(hit.layer, head)

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:
        pos = ev.position()
        hit = self._hit_at(pos)
        tip = next((t for r, t in self.tips if r.contains(pos)), None)
        text = hit.tip if hit is not None and (tip is None or hit.head >= 0) else tip
        self.setCursor(Qt.CursorShape.PointingHandCursor if hit is not None
                       else Qt.CursorShape.ArrowCursor)
        if text:
            QToolTip.showText(ev.globalPosition().toPoint(), text, self)
        else:
            QToolTip.hideText()

    def _n_head(self) -> int:
        return self.diagram.n_head if self.diagram is not None else 1


class _Painter:
    """One paint of a :class:`DiagramView` (the layout is recomputed for the widget's size)."""

    def __init__(self, view: DiagramView, p: QPainter, d: Diagram) -> None:
        self.v, self.p, self.d, self.t = view, p, d, view.theme
        self.font = self.t.font(0.95)
        self.small = self.t.font(0.8)
        self.bold = self.t.font(0.95, bold=True)
        self.line = QFontMetricsF(self.font).height()
        w = view.width()
        self.margin = self.line * 0.6
        self.x0, self.x1 = self.margin, w - self.margin
        # the residual stream runs down the left; boxes stand right of it
        self.stream_x = self.x0 + self.line * 0.5
        self.bx0 = self.x0 + self.line * 1.6
        self.bottom_y = float(view.height())

    def draw(self) -> None:
        d, line = self.d, self.line
        fixed, open_h = self.v.heights()
        spare = self.v.height() - fixed
        closed = d.n_layer - 1
        row = max(line * 0.35, min(line * 1.35, spare / closed)) if closed else 0.0
        top_y = self._notes()
        # the diagram hangs under the notes; what is left over stays below it
        content = fixed - line * 1.4 * len(d.notes) - self.margin + row * closed
        y = min(self.v.height() - self.margin, top_y + content)
        self.bottom_y = y
        y = self._bottom(y)
        for layer in range(d.n_layer):
            y = self._open_layer(y, layer, open_h) if layer == self.v.layer \
                else self._closed_layer(y, layer, row)
        y = self._top(y, top_y)

    # ---------------------------------------------------------------- pieces
    def _box(self, rect: QRectF, block: DiagramBlock, lit: bool = False,
             right: float = 0.0) -> None:
        """A box with its label (``right``: pixels kept free on the right, for the heads)."""
        fill = QColor(KIND_COLORS.get(block.kind, "#777"))
        fill.setAlpha(235 if lit else 150)
        self.p.setPen(QPen(QColor(self.t.accent if lit else self.t.grid_line), 2 if lit else 1))
        self.p.setBrush(fill)
        self.p.drawRoundedRect(rect, 5, 5)
        self.p.setPen(QColor(self.t.text))
        self.p.setFont(self.font)
        text_rect = rect.adjusted(0, 0, -right, 0)
        text = QFontMetricsF(self.font).elidedText(block.label, Qt.TextElideMode.ElideRight,
                                                  text_rect.width() - 8)
        self.p.drawText(text_rect, Qt.AlignmentFlag.AlignCenter, text)
        self.v.tips.append((rect, block.detail or block.label))

    def _arrow(self, x: float, y_from: float, y_to: float) -> None:
        """A short upward connector from ``y_from`` (below) to ``y_to``."""
        self.p.setPen(QPen(QColor(self.t.text_dim), 1.5))
        self.p.drawLine(QPointF(x, y_from), QPointF(x, y_to))

    def _add(self, cx: float, cy: float, block: DiagramBlock) -> None:
        r = self.line * 0.42
        self.p.setPen(QPen(QColor(self.t.text), 1.5))
        self.p.setBrush(QColor(self.t.panel))
        self.p.drawEllipse(QPointF(cx, cy), r, r)
        self.p.drawLine(QPointF(cx - r * 0.55, cy), QPointF(cx + r * 0.55, cy))
        self.p.drawLine(QPointF(cx, cy - r * 0.55), QPointF(cx, cy + r * 0.55))
        # the residual branch joins from the stream on the left
        self.p.setPen(QPen(QColor(self.t.text_dim), 1.2, Qt.PenStyle.DashLine))
        self.p.drawLine(QPointF(self.stream_x, cy), QPointF(cx - r, cy))
        self.v.tips.append((QRectF(cx - r, cy - r, 2 * r, 2 * r), block.detail))

    def _notes(self) -> float:
        """The notes at the very top; returns where the diagram may start."""
        y = self.margin
        self.p.setFont(self.small)
        self.p.setPen(QColor(self.t.text_dim))
        for note in self.d.notes:
            r = QRectF(self.x0, y, self.x1 - self.x0, self.line * 1.3)
            self.p.drawText(r, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                            note)
            y += self.line * 1.4
        return y

    def _bottom(self, y: float) -> float:
        h = self.line * 1.2
        for block in self.d.bottom:
            rect = QRectF(self.bx0, y - h, self.x1 - self.bx0, h)
            self._box(rect, block)
            y -= self.line * 1.45
        return y

    def _closed_layer(self, y: float, layer: int, row: float) -> float:
        rect = QRectF(self.bx0, y - row, self.x1 - self.bx0, max(2.0, row - 2))
        self.p.setPen(QPen(QColor(self.t.grid_line), 1))
        self.p.setBrush(QColor(self.t.panel))
        self.p.drawRoundedRect(rect, 4, 4)
        kind = self.d.layer_kinds[layer] if layer < len(self.d.layer_kinds) else "global"
        if row >= self.line * 0.9:
            self.p.setPen(QColor(self.t.text))
            self.p.setFont(self.font)
            extra = " · local" if kind == "local" else ""
            self.p.drawText(rect.adjusted(8, 0, -8, 0),
                            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                            f"Block {layer}: attention + feed-forward{extra}")
        self.v.hits.append(Hit(rect, layer, -1, f"Block {layer}: click to select this layer"))
        return y - row

    def _open_layer(self, y: float, layer: int, h: float) -> float:
        d, line = self.d, self.line
        frame = QRectF(self.bx0 - line * 0.3, y - h, self.x1 - self.bx0 + line * 0.3, h - 3)
        self.p.setPen(QPen(QColor(self.t.accent), 2))
        self.p.setBrush(Qt.BrushStyle.NoBrush)
        self.p.drawRoundedRect(frame, 6, 6)
        self.v.hits.append(Hit(frame, layer, -1, f"Block {layer} (selected)"))
        yy = y - line * 0.25
        inner0, inner1 = self.bx0 + line * 0.4, self.x1 - line * 0.3
        if d.parallel:
            yy = self._parallel_parts(yy, layer, inner0, inner1)
        else:
            for block in d.block:
                if block.kind == "add":
                    self._add((inner0 + inner1) / 2, yy - line * 0.6, block)
                    self._arrow((inner0 + inner1) / 2, yy, yy - line * 0.18)
                else:
                    rect = QRectF(inner0, yy - line * 1.2, inner1 - inner0, line * 1.2)
                    self._attention_or_box(rect, block, layer)
                yy -= line * 1.45
        self.p.setFont(self.bold)
        self.p.setPen(QColor(self.t.accent))
        kind = d.layer_kinds[layer] if layer < len(d.layer_kinds) else "global"
        title = (f"Block {layer} of {d.n_layer} · {d.ln_placement}-{d.norm}"
                 + (" · parallel" if d.parallel else "") + (" · local" if kind == "local"
                                                             else ""))
        self.p.drawText(QRectF(inner0, frame.top() + 2, inner1 - inner0, line * 1.1),
                        Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, title)
        return y - h

    def _parallel_parts(self, yy: float, layer: int, x0: float, x1: float) -> float:
        line = self.line
        mid = (x0 + x1) / 2
        cols = {"attn": (x0, mid - line * 0.2), "mlp": (mid + line * 0.2, x1)}
        ys = {"attn": yy, "mlp": yy}
        add = None
        for block in self.d.block:
            if block.kind == "add":
                add = block
                continue
            a, b = cols[block.branch]
            rect = QRectF(a, ys[block.branch] - line * 1.2, b - a, line * 1.2)
            self._attention_or_box(rect, block, layer)
            ys[block.branch] -= line * 1.45
        yy = min(ys.values())
        if add is not None:
            self._add(mid, yy - line * 0.6, add)
            yy -= line * 1.45
        return yy - line * 1.4

    def _attention_or_box(self, rect: QRectF, block: DiagramBlock, layer: int) -> None:
        if block.kind != "attention":
            self._box(rect, block)
            return
        side = self._head_side(rect)
        used = self.d.n_head * (side + 2) + 6 if side >= 3 else 0.0
        self._box(rect, block, lit=True, right=used)
        if side >= 3:
            self._heads(rect, layer, side)

    def _head_side(self, rect: QRectF) -> float:
        """Side of a head's square: up to 0.7 lines, the heads filling at most half the box."""
        n = max(1, self.d.n_head)
        return min(self.line * 0.7, (rect.width() / 2) / n - 2)

    def _heads(self, rect: QRectF, layer: int, side: float) -> None:
        """The heads as squares at the attention box's right end; the selected one lit."""
        n = self.d.n_head
        x = rect.right() - 4 - n * (side + 2)
        y = rect.center().y() - side / 2
        for h in range(n):
            r = QRectF(x + h * (side + 2), y, side, side)
            lit = layer == self.v.layer and (self.v.average or h == self.v.head)
            self.p.setPen(QPen(QColor(self.t.text if lit else self.t.grid_line), 1))
            self.p.setBrush(QColor(self.t.accent) if lit else QColor(self.t.panel))
            self.p.drawRect(r)
            self.v.hits.append(Hit(r.adjusted(-1, -2, 1, 2), layer, h,
                                   f"head {h} of layer {layer}: click to select"))

    def _top(self, y: float, top_y: float) -> float:
        line = self.line
        blocks = list(self.d.top)
        heads = [b for b in blocks if b.kind in ("output", "classifier")]
        for block in [b for b in blocks if b not in heads]:
            rect = QRectF(self.bx0, y - line * 1.2 - 2, self.x1 - self.bx0, line * 1.2)
            self._box(rect, block)
            y -= line * 1.45
        # the output head and W_y both read the last hidden state: side by side
        width = (self.x1 - self.bx0 - line * 0.4 * (len(heads) - 1)) / max(1, len(heads))
        for i, block in enumerate(heads):
            x = self.bx0 + i * (width + line * 0.4)
            self._box(QRectF(x, y - line * 1.2 - 2, width, line * 1.2), block)
        y -= line * 1.45
        # the residual stream, from the embedding to the top
        self.p.setPen(QPen(QColor(self.t.text_dim), 2))
        self.p.drawLine(QPointF(self.stream_x, self.bottom_y - line * 1.2),
                        QPointF(self.stream_x, max(top_y, y + line * 1.3)))
        return y


class BlockDiagramPanel(AnalysisPanel):
    """The block diagram of the model (see the module docstring)."""

    title = "Block diagram"
    button = "Blocks"
    in_toolbar = False
    analyses = ("architecture",)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.view = DiagramView(self._pick)
        self.info = shrinkable_label(" ")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.info)
        self.apply_theme(self.theme)

    def _pick(self, layer: int, head: int) -> None:
        self.headSelected.emit(int(layer), int(head))

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.view.theme = theme
        self.info.setFont(theme.font(0.9))
        self.view.updateGeometry()
        self.view.update()

    def set_model(self, info: ModelInfo) -> None:
        self.view.set_state(None, 0, 0, False)
        self.info.setText(f"{info.name}: {info.n_layer} blocks × {info.n_head} heads, "
                          f"{info.n_embd} wide")

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        if "architecture" in res.errors:
            self.info.setText("Block diagram failed: " + res.errors["architecture"])
            return
        d: Diagram | None = res.get("architecture")
        if d is None:
            return
        v = snap.view
        self.view.set_state(d, v.layer, v.head, v.average)
        head = "all heads (mean)" if v.average else f"head {v.head}"
        self.info.setText(f"Selected: block {v.layer}, {head} · {d.n_layer} blocks × "
                          f"{d.n_head} heads · click a block or a head; ↑/↓ layer, "
                          f"1–9 or [ ] head")
