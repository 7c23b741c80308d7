"""A row of controls that makes room for its title: a narrow panel (1024 x 640, presentation
fonts) drops the words the controls do not need, so the title is never cut off.

The attention map's row reads ``Layer [L0]  Head [H0]  [Weights]  ☑ √ scale  18 tokens``. When
the title does not fit the width, :class:`HeaderFit` makes the row compact: the words
"Layer" and "Head" go (the boxes say "L0" and "H0"; their tooltips name them), the check box
says "√", the choice box shows short item texts and the layer and head boxes are a letter
narrower, the gaps smaller. When even the short title does not fit beside the compact row,
:data:`TITLE_ABBREVIATIONS` shorten it step by step ("231 tokens from position 256" becomes
"231 from 256" once the window slid; the title's tooltip says it in full). The full row comes
back when the panel is wide enough again.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSpacerItem,
    QWidget,
)

#: Pixels kept free after the title (its text must fit, not touch the panel's edge).
TITLE_MARGIN = 4
#: Qt's largest widget size (QWIDGETSIZE_MAX): no maximum.
WIDGET_MAX = 16777215
#: Pixels of the row's gaps in the compact row.
COMPACT_GAP = 3
#: Replacements that shorten a title which does not fit even beside the compact row, tried
#: one after the other (each on the result of the ones before).
TITLE_ABBREVIATIONS = ((" from position ", " from "), (" tokens from ", " from "))


class HeaderFit(QObject):
    """Keeps ``title`` (the stretching label of ``row``, a row of ``host``) whole.

    ``words``: labels hidden in the compact row; ``button``: a check box with a ``short``
    text; ``box``: a combo box and its items' short texts (by index); ``narrow``: combo boxes
    one character narrower (``minimumContentsLength``) in the compact row."""

    def __init__(self, host: QWidget, row: QHBoxLayout, title: QLabel,
                 words: Sequence[QLabel] = (), button: QAbstractButton | None = None,
                 short: str = "", box: QComboBox | None = None,
                 box_short: Sequence[str] = (), narrow: Sequence[QComboBox] = ()) -> None:
        super().__init__(host)
        self.host, self.row, self.title = host, row, title
        self.words = tuple(words)
        self.button, self.short = button, short
        self.long = button.text() if button is not None else ""
        self.box = box
        self.box_short = tuple(box_short)
        self.box_long = tuple(box.itemText(i) for i in range(box.count())) if box else ()
        self.narrow = {b: b.minimumContentsLength() for b in narrow}
        self.gaps: list[tuple[QSpacerItem, int]] = []
        for i in range(row.count()):
            item = row.itemAt(i)
            gap = item.spacerItem() if item is not None else None
            if gap is not None:
                self.gaps.append((gap, gap.sizeHint().width()))
        self.compact = False
        self.full_title = self.short_title = ""
        self._busy = False  # measuring shows and hides the words: no fit inside a fit
        host.installEventFilter(self)
        title.installEventFilter(self)

    def eventFilter(self, obj, e) -> bool:  # noqa: N802 - Qt name
        # the host's size and the title's font (the title's own resizes follow the row's)
        t = e.type()
        if (obj is self.host and t in (QEvent.Type.Resize, QEvent.Type.Show)) or (
                obj is self.title and t == QEvent.Type.FontChange):
            self.fit()
        return False

    def title_width(self) -> int:
        """Pixels the title's text needs."""
        fm = QFontMetrics(self.title.font())
        return fm.horizontalAdvance(self.title.text()) + TITLE_MARGIN

    def row_width(self, compact: bool) -> int:
        """Width the row's controls (all but the title) need, full or compact."""
        self._set(compact)
        self.row.invalidate()
        return self.row.sizeHint().width()  # the title's policy is Ignored: 0 of it

    def set_title(self, text: str, short: str = "") -> None:
        """Show ``text`` as the title; ``short`` (default: ``text``) when even the compact
        row leaves too little room for it (e.g. without what the controls already say), and
        shorter still (:func:`abbreviations`) when that one does not fit either."""
        self.full_title, self.short_title = text, short or text
        self.title.setText(text)
        self.fit()

    def fit(self) -> None:
        """Full row when the title fits beside it, else the compact one (and the short title
        when the full one does not fit beside that either)."""
        if self._busy or not self.host.isVisible():
            return
        self._busy = True
        try:
            if self.full_title and self.title.text() != self.full_title:
                self.title.setText(self.full_title)
            need = self.row_width(False) + self.title_width()
            compact = need > self.host.width()
            if compact and self.full_title:
                room = self.host.width() - self.row_width(True)
                for text in (self.full_title, *abbreviations(self.short_title)):
                    self.title.setText(text)
                    if self.title_width() <= room:
                        break
            self._set(compact)
        finally:
            self._busy = False

    def _set(self, compact: bool) -> None:
        for w in self.words:
            w.setVisible(not compact)
        if self.button is not None and self.short:
            self.button.setText(self.short if compact else self.long)
        if self.box is not None and len(self.box_short) == self.box.count():
            texts = self.box_short if compact else self.box_long
            for i, t in enumerate(texts):
                if self.box.itemText(i) != t:
                    self.box.setItemText(i, t)
        for b, n in self.narrow.items():
            b.setMinimumContentsLength(max(1, n - 1) if compact else n)
            # Qt keeps the box's minimum size hint of the longer length: fix the width instead
            if compact:
                b.setFixedWidth(b.sizeHint().width())
            else:
                b.setMinimumWidth(0)
                b.setMaximumWidth(WIDGET_MAX)
        for gap, px in self.gaps:
            gap.changeSize(min(px, COMPACT_GAP) if compact else px, 0,
                           QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Minimum)
        self.compact = compact
        self.row.invalidate()  # hidden words: Qt would keep the row's measures with them

    def fits(self) -> bool:
        """The title's whole text is inside its label (what a test measures)."""
        return self.title_width() - TITLE_MARGIN <= self.title.width()


def abbreviations(title: str) -> list[str]:
    """``title`` and the shorter ones :data:`TITLE_ABBREVIATIONS` make of it, longest first
    (no repeats)."""
    out = [title]
    for long, short in TITLE_ABBREVIATIONS:
        nxt = out[-1].replace(long, short)
        if nxt != out[-1]:
            out.append(nxt)
    return out
