"""The chips' outlines stamped from pictures show what Qt's antialiased rounded box draws in
place, for many sizes and colours; weights beyond the
shading's range shade the chips as defined."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")


def _box(img, w, h, fill, pen, at=(3, 2)):
    """Qt's own rounded box of the chips (fill and outline at once) on ``img``."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QPainter

    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    p.setPen(pen if pen is not None else Qt.PenStyle.NoPen)
    p.setBrush(fill)
    p.drawRoundedRect(QRectF(at[0], at[1], w, h).adjusted(0.5, 0.5, -0.5, -0.5), 4, 4)
    p.end()


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_stamped_outlines_are_the_outlines_qt_draws(qtbot, theme):
    from PySide6.QtCore import QPoint, QRect, Qt
    from PySide6.QtGui import QColor, QImage, QPainter, QPen

    from gptviz_app.views.theme import DARK, LIGHT
    from gptviz_app.views.token_strip import CHIP_BLEED, _ChipDrawing

    th = DARK if theme == "dark" else LIGHT
    pens = [None, QPen(QColor(th.generated_edge), 1.5),
            QPen(QColor(th.forced_edge), 2.0, Qt.PenStyle.DashLine), QPen(QColor(th.accent), 3.0)]
    drawing = _ChipDrawing()
    drawing.looks = {"pens": pens}
    rng = np.random.default_rng(3)
    b, at = CHIP_BLEED, (3, 2)
    for h in (17, 25, 38):
        for w in [6, 11, 12, 13, 19, 40, 97, 333]:
            for k in (1, 2, 3):
                fill = QColor(*(int(v) for v in rng.integers(0, 256, 3)))
                want = QImage(w + 10, h + 8, QImage.Format.Format_ARGB32_Premultiplied)
                want.fill(QColor(th.panel))
                got = want.copy()
                _box(want, w, h, fill, pens[k], at)
                _box(got, w, h, fill, None, at)
                p = QPainter(got)
                p.drawImage(QPoint(at[0] - b, at[1] - b), drawing._outline(QRect(0, 0, w, h), k))
                p.end()
                assert got == want, (w, h, k)


def test_weights_outside_the_shading_range_shade_as_defined(qtbot):
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QScrollArea

    from gptviz_app.views.token_strip import ChipCanvas

    from .chip_pictures import reference_chips

    canvas = ChipCanvas()
    area = QScrollArea()
    qtbot.addWidget(area)
    area.setWidget(canvas)
    area.setWidgetResizable(True)
    area.resize(420, 300)
    area.show()
    qtbot.waitExposed(area)
    n = 30
    canvas.tokens = ["tok", "a", "·the", "robot", "↵"] * (n // 5)
    canvas.prompt_len, canvas.window_start, canvas.query = 8, 2, n - 3
    canvas.forced = np.zeros(n, bool)
    w = np.array([-0.5, np.inf, 0.0, np.nan, 2.0, 1e-30, -np.inf, 0.5, 1.0] * 4,
                 np.float32)[:n - 2]
    canvas._set_weights(w, "test")
    canvas._relayout()
    canvas.update()
    qtbot.wait(10)
    shot = canvas.grab(canvas.rect()).toImage().convertToFormat(
        QImage.Format.Format_ARGB32_Premultiplied)
    assert shot == reference_chips(canvas)
