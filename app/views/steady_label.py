"""A label whose new texts do not lay the window out again unless its size hint changed.

``QLabel.setText`` always calls ``updateGeometry()``: the layout holding the label is
invalidated, and Qt's re-layout then climbs from parent to parent up to the main window
(``QLayout.activate`` ends with the holder's own ``updateGeometry()``), even when the new text
("step 12 / 12" after "step 11 / 11") needs exactly the room the old one had. Laying out
the main window with its docks and toolbars cost more per step than painting the labels.

:class:`SteadyLabel` holds the label in a box without a layout, as large as the box: the
label's own requests stop at the box, and the box asks its layout to follow only when the
label's size hint, minimum size hint or height for the box's width changed. It looks and
lays out as the label would (the box takes the label's size policy and hints), and passes
every other attribute on to the label: ``setText``, ``set_rich`` (an
:class:`~gptviz_app.views.elided_label.ElidedLabel`'s), ``setAlignment``, ``text()``… Fonts,
style sheets and tooltips go to the label itself (a font also to the box: it lays the window
out again, as it should; :meth:`SteadyLabel.set_bold` changes the label's weight alone).

A label made with ``steady_height`` keeps the tallest height it was asked for while its font
(and, for a wrapped one, the width asked about) stays: a token whose characters come from a
taller fallback font (Devanagari, Bengali, Myanmar… beside a Latin font) shown for one step
would otherwise make the line a few pixels taller and then shorter again, laying the window
out twice and moving the view under it (the chart's plot) by those pixels, both ways. A text
a line or more shorter (a wrapped text on fewer lines) is as tall as it is; a new font or style
sheet measures afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from gptviz_app.views.elided_label import ElidedLabel
from gptviz_app.views.rich_runs import line_fonts, line_width


class SteadyLabel(QWidget):
    """``label`` (default: a new ``QLabel(text)``) in a box that keeps the layout still."""

    def __init__(self, text: str = "", parent: QWidget | None = None,
                 label: QLabel | None = None, grow_only: bool = False,
                 steady_height: bool = False) -> None:
        super().__init__(parent)
        self.label = label if label is not None else QLabel(text)
        self.label.setParent(self)
        self.setSizePolicy(self.label.sizePolicy())
        #: keep the widest width hint seen (a figure whose digits come and go, e.g. "9.8 ms"
        #: and "10.2 ms": the fields beside it stay where they are)
        self.grow_only = grow_only
        self._widest = self._widest_min = 0
        #: keep the tallest height asked for (see the module notes)
        self.steady_height = steady_height
        #: the label's font the tallest heights were seen in and its line spacing, and those
        #: heights: the size hint's and the minimum's (by their key, -1 and -2) and for each
        #: width asked about
        self._tall_font: tuple[QFont, int] | None = None
        self._tallest: dict[int, int] = {}
        self._last: tuple | None = None  # (the label's state, its measures then)
        #: (text, its line, the state it was measured in) last measured (see _same_line)
        self._line: tuple | None = None
        #: an ElidedLabel: it says itself whether a text is the one it shows (rich or not)
        self._elided = isinstance(self.label, ElidedLabel)
        self.relayouts = 0  # times a change asked the layout to follow (tests read it)

    # ------------------------------------------------------------------ size
    def sizeHint(self) -> QSize:  # noqa: N802 - Qt name
        hint = self.label.sizeHint()
        if self.grow_only:
            self._widest = max(self._widest, hint.width())
            hint.setWidth(self._widest)
        if self.steady_height:
            hint.setHeight(self._tall(-1, hint.height()))
        return hint

    def reset_sizes(self) -> None:
        """Forget the widest width (``grow_only``) and the tallest heights (``steady_height``)
        seen: e.g. after a font change, or another kind of text."""
        self._widest = self._widest_min = 0
        self._tallest = {}
        self._last = None
        self.updateGeometry()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt name
        hint = self.label.minimumSizeHint()
        if self.grow_only:
            self._widest_min = max(self._widest_min, hint.width())
            hint.setWidth(self._widest_min)
        if self.steady_height:
            hint.setHeight(self._tall(-2, hint.height()))
        return hint

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt name
        return self.label.hasHeightForWidth()

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt name
        h = self.label.heightForWidth(width)
        return self._tall(max(0, width), h) if self.steady_height else h

    def _tall(self, key: int, h: int) -> int:
        """The tallest of ``h`` and the heights seen for ``key`` (a width, or -1 / -2: the
        size hint, the minimum) in the label's font now (``steady_height``); -1 (no height
        for a width: not a text) stays. A label that does not wrap is one line high at any
        width: one key for all."""
        if h < 0:
            return h
        lab = self.label
        if not lab.hasHeightForWidth():
            key = -1
        font = lab.font()
        tallest = self._tallest
        # a new font measures afresh; so do more widths than a few resizes ask about
        if self._tall_font is None or font != self._tall_font[0] or len(tallest) > 64:
            tallest.clear()
            self._tall_font = (font, lab.fontMetrics().lineSpacing())
        kept = tallest.get(key, 0)
        # a few pixels shorter (a line without the taller font's characters) keeps the
        # height; a line or more shorter is a shorter text (a wrapped one on fewer lines)
        if kept - h >= self._tall_font[1]:
            kept = 0
        h = max(h, kept)
        tallest[key] = h
        return h

    def resizeEvent(self, e) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(e)
        self.label.setGeometry(self.rect())

    def _state(self) -> tuple:
        """What the label's measures depend on, as far as they change without the box (a
        resize, a font, a new elision); every change through the box is measured after it."""
        lab = self.label
        # the font itself, not its key(): equal fonts measure alike, and a key is made anew
        # at every call (a third of the time this took at each new text)
        return (self.width(), lab.font(), lab.text(), lab.textFormat(), lab.minimumSize(),
                lab.maximumSize())

    def _measures(self, state: tuple | None = None) -> tuple:
        """What the layout reads of the label, as it reads it: a side of ``Ignored`` policy
        counts none of its hints, a label that wraps its height for the box's width. The
        last ones are kept (rich text is laid out for each measure); ``state``: the label's
        :meth:`_state`, when the caller has it."""
        if state is None:
            state = self._state()
        if self._last is not None and self._last[0] == state:
            return self._last[1]
        lab = self.label
        policy = self.sizePolicy()
        ignored = QSizePolicy.Policy.Ignored
        keep_w = policy.horizontalPolicy() != ignored
        keep_h = policy.verticalPolicy() != ignored
        hfw = lab.hasHeightForWidth()
        least, most = lab.minimumSize(), lab.maximumSize()

        def side(s: QSize, for_height: bool = True) -> tuple[int, int]:
            return (s.width() if keep_w else 0,
                    s.height() if keep_h and for_height else 0)

        if not keep_w and keep_h and not hfw:
            # text on one line whose width the layout ignores: the hint's and the minimum
            # hint's heights are the height of that line (QLabel's sizeForWidth), whatever
            # the width asked for, which heightForWidth gives in one measure (sizeHint and
            # minimumSizeHint take three: -1, 0 and the largest width); -1: not a text
            line = self.heightForWidth(max(1, self.width()))
            if line >= 0:
                out = ((0, min(max(line, least.height()), most.height())),
                       (0, max(line, least.height())), -1, least, most)
                self._last = (state, out)
                return out
        # as a layout item takes them: the hint within the label's minimum and maximum size
        hint = (side(self.sizeHint().expandedTo(least).boundedTo(most), not hfw)
                if keep_w or (keep_h and not hfw) else (0, 0))
        # a wrapped label as wide as its layout makes it: its height for that width is what
        # the layout takes (its minimum, every word on a line of its own, is not worth the
        # rich text's layout at every change)
        wrapped = hfw and not keep_w
        out = (hint, (0, 0) if wrapped else side(self.minimumSizeHint().expandedTo(least)),
               self.heightForWidth(max(1, self.width())) if hfw else -1, least, most)
        self._last = (state, out)
        return out

    def _follow(self, before: tuple, state: tuple | None = None) -> None:
        """Ask the layout to follow when the measures differ from ``before`` (measured again:
        ``state``, the label's state now, or a change the state may miss)."""
        self._last = None
        if self._measures(state) != before:
            self.relayouts += 1
            self.updateGeometry()

    @contextmanager
    def steady(self) -> Iterator[None]:
        """Changes of the label inside re-lay the window out only if its measures changed
        (measured again after any change: see :meth:`_set_text` for a text's)."""
        before = self._measures()
        try:
            yield
        finally:
            self._follow(before)

    def _set_text(self, setter: Callable, *args, **kwargs) -> None:
        """``setter(*args, **kwargs)``, a change of the label's text (and format), which the
        state sees: the same state after it is the same measures, not measured again. Run at
        every step by every label that shows a figure."""
        before = self._measures()
        state = self._last[0] if self._last is not None else None
        try:
            setter(*args, **kwargs)
        finally:
            now = self._state()
            if now != state:
                self._follow(before, now)

    # ------------------------------------------------------------------ the label's API
    def setText(self, text: str) -> None:  # noqa: N802 - Qt name
        lab = self.label
        if self._elided:
            if lab.shows(text):  # the plain text it shows (or elides) already
                return
        else:
            shown = lab.text()
            if text == shown or self._same_line(text, shown):
                return
        self._set_text(lab.setText, text)
        line = self._line_of(text)
        last = self._last
        self._line = None if line is None or last is None else (text, line, last[0])

    def _line_of(self, text: str) -> tuple | None:
        """``(font key, width, styles)`` of plain ``text`` on one line of a plain ``QLabel``
        in its font; None: not such a label, not such a text, or a character of a fallback
        font."""
        lab = self.label
        if type(lab) is not QLabel or lab.textFormat() == Qt.TextFormat.RichText:
            return None
        font = lab.font()
        return self._plain_line(text, font, font.key())

    def _plain_line(self, text: str, font: QFont, key: str) -> tuple | None:
        """:meth:`_line_of` for the label's ``font`` (``key``: its key)."""
        if (not text or "<" in text or "&" in text or "\t" in text or "\n" in text
                or text[-1] == " " or self.label.wordWrap()):
            return None
        styles = line_fonts(text, (), font, key)
        return None if styles is None else (key, line_width(text, (), font, key), styles)

    def _same_line(self, text: str, shown: str) -> bool:
        """Set ``text`` without measuring it when the label's measures cannot change: a
        plain line of a plain label as wide as the line last measured (``shown``, the text
        it shows), every character in the font of that one, all else as it was (a figure
        that changes every step: "step 12 / 12" after "step 11 / 11"). Its size hints are
        those of a line of that width and of the font's height."""
        last, line = self._last, self._line
        # the line measured in the state last measured (any measure since replaced it)
        if last is None or line is None or line[2] is not last[0] or shown != line[0]:
            return False
        before = last[0]
        lab = self.label
        if (self.width() != before[0] or lab.font() != before[1]
                or lab.textFormat() != before[3] or lab.minimumSize() != before[4]
                or lab.maximumSize() != before[5]):
            return False  # resized, another font, format or size limits
        # the font is the one the line was measured in: its key, kept with the line
        now = self._plain_line(text, before[1], line[1][0])
        if now is None or now != line[1]:
            return False
        lab.setText(text)
        state = (*before[:2], text, *before[3:])
        self._last = (state, last[1])
        self._line = (text, now, state)
        return True

    def set_rich(self, *args, **kwargs) -> None:
        """The label's :meth:`~gptviz_app.views.elided_label.ElidedLabel.set_rich` (a label
        that has one)."""
        set_rich = getattr(self.label, "set_rich")  # noqa: B009 - a QLabel has none
        self._set_text(set_rich, *args, **kwargs)

    def setFont(self, font: QFont) -> None:  # noqa: N802 - Qt name
        # the label's own (a child styled by a style sheet would not take the box's)
        super().setFont(font)
        with self.steady():
            self.label.setFont(font)

    def setStyleSheet(self, sheet: str) -> None:  # noqa: N802 - Qt name
        self._tallest = {}  # (another padding or font: measured afresh)
        with self.steady():
            self.label.setStyleSheet(sheet)

    def set_bold(self, on: bool) -> None:
        """The label's text in bold (or not), without a font change of the box."""
        if self.label.font().bold() == bool(on):
            return
        font = QFont(self.label.font())
        font.setBold(bool(on))
        with self.steady():
            self.label.setFont(font)

    def setToolTip(self, tip: str) -> None:  # noqa: N802 - Qt name
        if self._elided or tip != self.label.toolTip():
            self.label.setToolTip(tip)

    def toolTip(self) -> str:  # noqa: N802 - Qt name
        return self.label.toolTip()

    def setMinimumWidth(self, w: int) -> None:  # noqa: N802 - Qt name
        super().setMinimumWidth(w)
        self.label.setMinimumWidth(w)

    def __getattr__(self, name: str) -> Any:
        if name == "label" or name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self.label, name)
        if name.startswith("set") and callable(attr):
            return self._steady_call(attr)
        return attr

    def _steady_call(self, fn: Callable) -> Callable:
        def call(*args, **kwargs):
            with self.steady():
                return fn(*args, **kwargs)
        return call
