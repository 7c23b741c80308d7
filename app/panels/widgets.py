"""Small pieces the analysis panels share.

* :func:`esc` — a token for rich text;
* the map building blocks live in :mod:`gptviz_app.views.plots` (:class:`MapPlot`,
  :func:`cross_path`, :func:`rects_path`) and the colours in :mod:`gptviz_app.views.theme`
  (:data:`ABLATED_COLOR`); they are importable from here too.
"""

from __future__ import annotations

import html

from gptviz_app.views.plots import cross_path, rects_path
from gptviz_app.views.theme import ABLATED_COLOR

__all__ = ["ABLATED_COLOR", "cross_path", "esc", "rects_path"]


def esc(s: str) -> str:
    """HTML-escape a token for rich text (shown as its repr, like the next-token panel)."""
    return html.escape(repr(s))
