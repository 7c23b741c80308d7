"""Small pieces the analysis panels share.

* :func:`esc` — a token for rich text;
* :func:`wrapped_label` — a rich-text line that wraps and never widens its dock;
* :func:`top_k_box` — the "top k" spin box of the list panels;
* the map building blocks live in :mod:`gptviz_app.views.plots` (:class:`MapPlot`,
  :func:`cross_path`, :func:`rects_path`) and the colours in :mod:`gptviz_app.views.theme`
  (:data:`ABLATED_COLOR`); they are importable from here too.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QSpinBox

from gptviz_app.views.plots import cross_path, rects_path
from gptviz_app.views.theme import ABLATED_COLOR

__all__ = ["ABLATED_COLOR", "cross_path", "esc", "rects_path", "top_k_box", "wrapped_label"]


def esc(s: str) -> str:
    """HTML-escape a token for rich text (shown as its repr, like the next-token panel)."""
    return html.escape(repr(s))


def wrapped_label() -> QLabel:
    """An empty rich-text label that wraps, whose width follows the panel (Ignored: a long
    line never widens the dock)."""
    label = QLabel(" ")
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


def top_k_box(value: int, maximum: int, tooltip: str, suffix: str = "") -> QSpinBox:
    """A "top k" spin box (1 .. ``maximum``)."""
    box = QSpinBox()
    box.setRange(1, maximum)
    box.setValue(value)
    box.setPrefix("top ")
    if suffix:
        box.setSuffix(suffix)
    box.setToolTip(tooltip)
    return box
