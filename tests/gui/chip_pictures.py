"""The token chips as their definition draws them, and what the screen shows of a widget:
the independent pictures the token strip's paint tests compare with."""

from __future__ import annotations


def reference_chips(canvas, scale: float = 1.0, shift: float = 0.0):
    """Every chip of ``canvas`` (a ``ChipCanvas``) drawn on its own with QPainter's rounded
    box (fill and outline at once): the prompt / generated fill tinted towards the attention
    tint by 0.9·sqrt(weight), the query's, a forced and a generated chip's outline, dim text
    outside the window and after the query, black text on a bright fill; then the window's
    start bar; on a painter scaled by ``scale`` and moved by ``shift`` pixels (a high-DPI
    screen)."""
    from PySide6.QtCore import QPointF, QRectF, Qt
    from PySide6.QtGui import QColor, QFontMetricsF, QImage, QPainter, QPen

    from gptviz_app.views.token_strip import drawn_text

    th = canvas.theme
    img = QImage(int(canvas.width() * scale), int(canvas.height() * scale),
                 QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(canvas.palette().color(canvas.backgroundRole()))
    p = QPainter(img)
    p.translate(shift, shift)
    p.scale(scale, scale)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    p.setFont(canvas.font())
    fm = QFontMetricsF(canvas.font())
    text_h = fm.ascent() + fm.descent()
    for i, r in enumerate(canvas.rects):
        base = QColor(th.generated_chip if i >= canvas.prompt_len else th.prompt_chip)
        tint, fill = QColor(th.attention_tint), QColor(base)
        k = i - canvas.window_start
        if canvas.query >= 0 and 0 <= k < canvas.weights.shape[0] and canvas.weights[k] > 0:
            t = 0.9 * min(1.0, float(canvas.weights[k])) ** 0.5
            fill = QColor(*(int(getattr(base, c)() + (getattr(tint, c)() - getattr(base, c)())
                                * t) for c in ("red", "green", "blue")))
        if i == canvas.query:
            p.setPen(QPen(QColor(th.accent), 3.0))
        elif i < canvas.prompt_len:
            p.setPen(Qt.PenStyle.NoPen)
        elif i < canvas.forced.shape[0] and canvas.forced[i]:
            p.setPen(QPen(QColor(th.forced_edge), 2.0, Qt.PenStyle.DashLine))
        else:
            p.setPen(QPen(QColor(th.generated_edge), 1.5))
        p.setBrush(fill)
        p.drawRoundedRect(QRectF(r).adjusted(0.5, 0.5, -0.5, -0.5), 4, 4)
        bright = 0.299 * fill.red() + 0.587 * fill.green() + 0.114 * fill.blue() > 150
        p.setPen(QColor(th.text_dim) if i < canvas.window_start or i > canvas.query
                 else QColor("#000000") if bright else QColor(th.text))
        text = drawn_text(canvas.tokens[i]) or " "
        if fm.horizontalAdvance(text) <= r.width() - 2 * canvas.PAD_X + 1:
            p.drawText(QPointF(r.x() + canvas.PAD_X,
                               r.y() + (r.height() - text_h) / 2 + fm.ascent()), text)
        else:
            p.drawText(r.adjusted(canvas.PAD_X, 0, -canvas.PAD_X + 1, 0),
                       Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
    ws = canvas.window_start
    if 0 < ws < len(canvas.rects):
        r = canvas.rects[ws]
        x = r.left() - (canvas.GAP_X + 1) // 2
        p.setPen(QPen(QColor(th.accent), 2.0))
        p.drawLine(x, r.top() - 2, x, r.bottom() + 2)
    p.end()
    return img


def on_screen(widget):
    """The pixels of ``widget`` as the window's backing store holds them (what the screen
    shows), not a new rendering of it."""
    from PySide6.QtGui import QGuiApplication

    top = widget.window()
    at = widget.mapTo(top, widget.rect().topLeft())
    shot = QGuiApplication.primaryScreen().grabWindow(top.winId()).toImage()
    return shot.copy(at.x(), at.y(), widget.width(), widget.height())


def flush() -> None:
    """Deliver every posted event (the paints among them), and what they post."""
    from PySide6.QtCore import QCoreApplication

    for _ in range(4):
        QCoreApplication.sendPostedEvents(None, 0)



class PaintSpy:
    """The regions of ``widget``'s paint events from now until :meth:`stop`, in
    :attr:`regions` (clear it between steps)."""

    def __init__(self, widget) -> None:
        from PySide6.QtCore import QEvent, QObject
        from PySide6.QtGui import QRegion

        self.widget, self.regions = widget, []
        regions = self.regions

        class Exposed(QObject):
            def eventFilter(self, obj, e):  # noqa: N802 - Qt name
                if e.type() == QEvent.Type.Paint:
                    regions.append(QRegion(e.region()))
                return False

        self._filter = Exposed()
        widget.installEventFilter(self._filter)

    def stop(self) -> None:
        self.widget.removeEventFilter(self._filter)
