"""Texts of a panel no smaller than a share of the theme's font, whatever built them.

Presentation mode scales the theme's font; each panel styles its own texts in
``apply_theme``. A text a panel styles once (an axis title given by ``setLabel``, pyqtgraph's
9-point default) or a child Qt does not pass the font on to (a spin box's line edit, the
viewport a table's header paints its titles on) would stay at the old size on a projector.
:func:`least_text_size` walks a panel after its ``apply_theme`` and brings each such text up to
:data:`LEAST_FACTOR` of the theme's size, leaving larger ones as their panel chose them.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QAbstractScrollArea, QAbstractSpinBox, QWidget

from gptviz_app.views.theme import Theme

#: Least size of a plot's text (tick labels, axis titles, colour-bar titles), as a
#: :meth:`Theme.font` factor.
LEAST_FACTOR = 0.8


def least_text_size(root: QWidget, theme: Theme, factor: float = LEAST_FACTOR) -> int:
    """Raise every plot text under ``root`` smaller than ``factor`` of ``theme``'s font to that
    size, and give every spin box's line edit and every scroll area's viewport (tables,
    their headers, lists) the font of their widget; returns how many plot texts grew."""
    least = theme.pt(factor)
    grown = 0
    views = root.findChildren(pg.GraphicsView)
    if isinstance(root, pg.GraphicsView):
        views.insert(0, root)
    for view in views:
        for item in view.scene().items():
            if isinstance(item, pg.AxisItem):
                grown += _axis(item, theme, factor, least)
    for box in root.findChildren(QAbstractSpinBox):
        edit = box.lineEdit()
        if edit is not None and edit.font() != box.font():
            edit.setFont(box.font())
    for area in root.findChildren(QAbstractScrollArea):
        port = area.viewport()
        if port is not None and port.font() != area.font():
            port.setFont(area.font())
    return grown


def _axis(axis: pg.AxisItem, theme: Theme, factor: float, least: float) -> int:
    # A text raised here keeps its own size beside it: it follows the theme both ways, never
    # below that size (leaving presentation mode gives it back the size its panel chose).
    ours: dict[str, float] = getattr(axis, "_least_text", {})
    grown = 0
    tick = axis.style.get("tickFont")
    if axis.style.get("showValues", True):
        own = ours.get("tick", tick.pointSizeF() if tick is not None else 0.0)
        if "tick" in ours or own < least - 0.05:
            font = theme.font(factor)
            font.setPointSizeF(max(own, least))
            axis.setStyle(tickFont=font)
            ours["tick"] = own
            grown += own < least - 0.05
    if axis.labelText:
        own = ours.get("label", axis.label.font().pointSizeF())
        if "label" in ours or own < least - 0.05:
            font = theme.font(factor)
            font.setPointSizeF(max(own, least))
            axis.label.setFont(font)
            axis._updateLabel()  # the axis makes room for the larger title
            ours["label"] = own
            grown += own < least - 0.05
    axis._least_text = ours
    return grown
