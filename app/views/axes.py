"""Axis labels of the plots: token strings cut to a width, ticks thinned so labels never touch.

Plain Python (no Qt): the plots measure their axes in pixels and pass the numbers in.

* :func:`shorten` — a display string cut to ``width`` characters, the cut marked with '…';
* :func:`tick_step` — label every how-many-th item so that labels do not overlap;
* :func:`thin_ticks` — the ``(position, label)`` ticks of every ``step``-th item, one of them
  (the query) always labelled;
* :func:`pt_px` / :func:`text_px` — a font size in pixels, and a rough width of a label in
  pixels (no font metrics: good enough to space ticks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Average advance of one character in font sizes (a rough estimate for proportional fonts).
CHAR_WIDTH = 0.62
#: Characters of a token label on the axes of the analysis panels' (small) maps.
MAP_LABEL_CHARS = 8


def shorten(text: str, width: int) -> str:
    """``text`` itself when it has at most ``width`` characters, else its first ``width - 1``
    characters and '…' (``width`` characters in all)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def pt_px(pt: float) -> float:
    """A font size in points as pixels on a 96 dpi screen."""
    return pt * 96 / 72


def text_px(pt: float, chars: float) -> float:
    """Rough width in pixels of ``chars`` characters of a ``pt``-point font."""
    return pt_px(pt) * CHAR_WIDTH * chars


def tick_step(label_px: float, item_px: float) -> int:
    """Label every ``step``-th item (at least 1) so that labels ``label_px`` long, on items
    ``item_px`` apart along the axis, never overlap."""
    return max(1, math.ceil(label_px / max(1e-9, item_px)))


def thin_ticks(labels: Sequence[str], step: int, keep: int | None = None, offset: float = 0.5,
               pitch: float = 1.0) -> list[tuple[float, str]]:
    """Ticks ``(i * pitch + offset, labels[i])`` for every ``step``-th label from the first.

    ``keep`` (e.g. the query's row) is always labelled; the regular labels closer than
    ``step`` to it are left out so that none overlaps it.
    """
    n = len(labels)
    ticks = [(i * pitch + offset, labels[i]) for i in range(0, n, step)
             if keep is None or abs(i - keep) >= step or i == keep]
    if keep is not None and 0 <= keep < n and all(p != keep * pitch + offset for p, _ in ticks):
        ticks.append((keep * pitch + offset, labels[keep]))
    return ticks
