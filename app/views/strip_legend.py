"""The token strip's legend, in two labels side by side: the colour keys ("prompt",
"generated", "forced", "▣ query"), which change with the theme alone, and what the shading
shows ("shading = attention from query 12 'him' (L0 H3)"), which changes at every step.

A rich-text label is laid out (a ``QTextDocument``) at every new text, measured again for its
height and painted whole: the keys' spans with their backgrounds were a good part of that work
at every step, for a text that never changed. Drawn side by side the two read as the one line
they were (what the shading shows starts at a whole pixel: less than a pixel from where it was
in the one text). A strip too narrow for both shows them as one text again (:class:`LegendRow`).
"""

from __future__ import annotations

import html

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QWidget

from gptviz_app.runtime.snapshot import Snapshot
from gptviz_app.views.theme import Theme


def legend_keys(th: Theme) -> str:
    """The colour keys of the chips (rich text), in the colours of ``th``. It ends with the
    space that separates it from :func:`legend_says`'s text (a no-break one: a label drops a
    trailing space)."""
    return (f"<span style='background:{th.prompt_chip}'>&nbsp;prompt&nbsp;</span> "
            f"<span style='background:{th.generated_chip}; color:{th.generated_edge}'>"
            f"&nbsp;generated&nbsp;</span> "
            f"<span style='color:{th.forced_edge}'>forced</span> "
            f"<span style='color:{th.accent}'>▣ query</span>&nbsp;")


def legend_says(th: Theme, snap: Snapshot | None, shading: str | None) -> str:
    """What the legend says after its keys (rich text): where the model's window starts, once
    it slid, and what the chips' shading shows: ``shading`` (rich text), else the query's
    attention in ``snap``'s head."""
    text = ""
    if snap is not None and snap.window_start:
        text = f"<span style='color:{th.accent}'>┃</span> window from token {snap.window_start} "
    if shading is not None:
        text += f"&nbsp;·&nbsp; shading = {shading}"
    elif snap is not None:
        qtok = snap.tokens[snap.query] if 0 <= snap.query < len(snap.tokens) else ""
        head = "avg" if snap.view.average else f"H{snap.view.head}"
        text += (f"&nbsp;·&nbsp; shading = attention from query <b>{snap.query}</b> "
                 f"{html.escape(repr(qtok))} (L{snap.view.layer} {head})")
    return text


class LegendKeys(QLabel):
    """The keys' label, as wide as its text; it asks for no least width (a label on one line
    asks for all of it), so that the strip can be narrower than the keys: :class:`LegendRow`
    then shows them in front of the rest."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.RichText)
        # on the first line of the rest when that takes two (large presentation fonts)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt name
        s = super().minimumSizeHint()
        s.setWidth(0)
        return s


class LegendRow(QWidget):
    """The legend: ``keys`` then ``says`` (which takes the width left), side by side with no
    gap (each text brings its spaces). In a strip too narrow for the keys and a few words
    beside them, the keys go in front of the rest in ``says``, which wraps them as one text.
    """

    #: the least width of the rest beside the keys, in average characters of the font
    LEAST_CHARS = 24

    def __init__(self, keys: QLabel, says: QWidget) -> None:
        super().__init__()
        self.keys, self.says = keys, says
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(keys)
        lay.addWidget(says, 1)
        self.joined = False  # the keys in `says`
        self._texts = ("", "")

    def set_texts(self, keys: str, says: str) -> None:
        """The keys' rich text (ending with :func:`legend_keys`'s space) and the rest's; each
        label is set only when its text changed."""
        self._texts = (keys, says)
        if self.joined:
            # (the keys' last space a breaking one again, as in one text)
            self.says.setText(keys.removesuffix("&nbsp;") + " " + says)
            return
        if keys != self.keys.text():
            self.keys.setText(keys)
        self.says.setText(says)

    def _narrow(self) -> bool:
        least = self.fontMetrics().averageCharWidth() * self.LEAST_CHARS
        return self.width() < self.keys.sizeHint().width() + least

    def resizeEvent(self, e) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(e)
        joined = self._narrow()
        if joined != self.joined:
            self.joined = joined
            self.keys.setVisible(not joined)
            self.set_texts(*self._texts)
            reset = getattr(self.says, "reset_sizes", None)
            if reset is not None:  # another text now: not the tallest of the other one
                reset()
