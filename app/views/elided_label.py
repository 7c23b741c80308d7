"""A one-line label that never asks for more width than it gets: what does not fit is elided.

:class:`ElidedLabel` shows plain text (:meth:`~ElidedLabel.setText`) or rich text with one
elidable slot (:meth:`~ElidedLabel.set_rich`, e.g. a token in bold colour inside a fixed
sentence). When the text has to be shortened, the tooltip shows it whole (above the tooltip set
with ``setToolTip``). Used for panel headers and captions that would otherwise wrap onto many
lines or be clipped at presentation font sizes.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QFont, QFontMetricsF, QTextDocument
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from gptviz_app.views.rich_runs import line_width, metrics, parse

SLOT = "{}"


class ElidedLabel(QLabel):
    """A ``QLabel`` on one line that elides its text to its width (``Qt.ElideRight``)."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(False)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._template: str | None = None   # rich text with one SLOT, or None: plain text
        self._part = ""                     # the plain text (or the slot's text)
        self._slot_bold = False
        self._shorter: tuple[str, ...] = ()  # fallback templates of set_rich
        self._tip = ""
        self.elided = False                 # whether the text shown is shortened
        self._shown_for: tuple | None = None  # what the text shown was made from (see _refresh)
        self.setText(text)

    # ------------------------------------------------------------------ content
    def setText(self, text: str) -> None:  # noqa: N802 - Qt name
        """Plain text, elided on the right when it does not fit."""
        self._template, self._part, self._shorter = None, str(text), ()
        self._refresh(again=False)

    def set_rich(self, template: str, part: str = "", *, bold: bool = False,
                 shorter: tuple[str, ...] = ()) -> None:
        """Rich text ``template`` whose ``{}`` is replaced by the plain text ``part`` (escaped
        here), which is elided first; ``bold`` when the slot sits inside ``<b>``. ``shorter``:
        templates to fall back on, in order, before ``part`` is elided (the slot is the point
        of the line: "Step 5: 'him'" rather than "Step 5: · after position 16"). A template
        that does not fit even with an empty slot is shown as elided plain text."""
        self._template, self._part, self._slot_bold = template, str(part), bold
        self._shorter = tuple(shorter)
        self._refresh(again=False)

    def full_text(self) -> str:
        """The whole text as plain text (what the tooltip shows when elided)."""
        if self._template is None:
            return self._part
        return _plain(self._template.replace(SLOT, html.escape(self._part)), self.font())

    def setToolTip(self, tip: str) -> None:  # noqa: N802 - Qt name
        if tip != self._tip:
            self._tip = tip
            self._set_tip()

    # ------------------------------------------------------------------ layout
    def minimumSizeHint(self):  # noqa: N802 - Qt name
        s = super().minimumSizeHint()
        s.setWidth(0)
        return s

    def resizeEvent(self, e) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(e)
        self._refresh()

    def changeEvent(self, e) -> None:  # noqa: N802 - Qt name
        super().changeEvent(e)
        if e.type() == QEvent.Type.FontChange:
            self._refresh()

    def shows(self, text: str) -> bool:
        """Whether :meth:`setText` of ``text`` would change nothing: the plain text shown (or
        elided) is ``text``'s, at the label's width and in its font."""
        return self._template is None and self._part == text and self._made_of() == \
            self._shown_for

    def _made_of(self) -> tuple:
        """What the text shown is made of: text, slot, templates, width and font."""
        width = self.contentsRect().width() - 2 * self.margin() - 2  # 2: rounding, cursor
        if width <= 0:  # not laid out yet: show everything, elide at the first resize
            width = 1 << 20
        # the font itself: equal fonts measure alike, and a key is made anew at every call
        return (self._template, self._part, self._slot_bold, self._shorter, width,
                self.font())

    def _refresh(self, again: bool = True) -> None:
        """Elide the text to the label's width; not ``again`` when the text, the width and
        the font are those of the text shown (a view sets the same header every step)."""
        made_of = self._made_of()
        if not again and made_of == self._shown_for:
            return
        self._shown_for = made_of
        width, font = made_of[4], made_of[5]
        mode = Qt.TextElideMode.ElideRight
        if self._template is None:
            self.setTextFormat(Qt.TextFormat.PlainText)
            shown = QFontMetricsF(font).elidedText(self._part, mode, width)
            self.elided = shown != self._part
            QLabel.setText(self, shown)
        else:
            # the slot's font (the metrics kept by font and style)
            slot = metrics(font, _font_key(font), self._slot_bold or font.bold(), False)
            part = self._part
            part_px = slot.horizontalAdvance(part)
            template = self._template
            if self._shorter:  # the first template the whole part fits in, else the last
                for t in (self._template, *self._shorter):
                    template = t
                    if _html_width(t.replace(SLOT, ""), font) + part_px <= width:
                        break
            fixed = _html_width(template.replace(SLOT, ""), font)
            if fixed <= width:
                # a part that fits is what elidedText gives (it measures it alike, and shows
                # it whole when it fits; a "\x9c" separates variants of the text there)
                shown = (part if fixed + part_px <= width and "\x9c" not in part
                         else slot.elidedText(part, mode, width - fixed))
                self.elided = shown != self._part or template != self._template
                if shown != self._part and _html_width(template.replace(SLOT, html.escape(shown)),
                                                       font) > width:
                    shown = ""     # rounding of the two measures: leave the slot out
                self.setTextFormat(Qt.TextFormat.RichText)
                QLabel.setText(self, template.replace(SLOT, html.escape(shown)))
            else:
                full = self.full_text()
                self.elided = True
                self.setTextFormat(Qt.TextFormat.PlainText)
                QLabel.setText(self, QFontMetricsF(font).elidedText(full, mode, width))
        self._set_tip()

    def _set_tip(self) -> None:
        tip = self._tip
        if self.elided:
            tip = self.full_text() + (f"\n{tip}" if tip else "")
        if tip != QLabel.toolTip(self):  # the same tooltip: no ToolTipChange for nothing
            QLabel.setToolTip(self, tip)


_DOC: list[QTextDocument] = []  # one document measures every label (made once, on first use)
_DOC_FONT: list[QFont] = []     # its default font (setting the same one again costs a layout)
_KEYS: list[tuple[QFont, str]] = []  # the last font measured and its key (made at each call)
#: What the document measured, by (rich text, font key): a header's fixed words are measured
#: at every change of its slot, mostly the same few templates.
_MEASURED: dict[tuple[str, str], tuple[float, str]] = {}
_MEASURED_MAX = 2000


def _font_key(font: QFont) -> str:
    """``font.key()``, made once for the fonts measured one after the other (the same one)."""
    if not _KEYS or _KEYS[0][0] != font:
        _KEYS[:] = [(QFont(font), font.key())]
    return _KEYS[0][1]


def _measure(text: str, font: QFont) -> tuple[float, str]:
    """``(width on one line, plain text)`` of rich ``text`` in ``font``."""
    key = (text, _font_key(font))
    got = _MEASURED.get(key)
    if got is None:
        if not _DOC:
            _DOC.append(QTextDocument())
            _DOC[0].setDocumentMargin(0)
        doc = _DOC[0]
        if not _DOC_FONT or _DOC_FONT[0] != font:
            doc.setDefaultFont(font)
            _DOC_FONT[:] = [QFont(font)]
        doc.setHtml(text)
        got = (doc.idealWidth(), doc.toPlainText())
        if len(_MEASURED) >= _MEASURED_MAX:
            _MEASURED.clear()
        _MEASURED[key] = got
    return got


_WIDTHS: dict[tuple[str, str], float] = {}


def _html_width(text: str, font: QFont) -> float:
    """Width in pixels of rich ``text`` on one line in ``font``: the document's ideal width,
    measured without a document for the texts :func:`~gptviz_app.views.rich_runs.parse`
    reads (a step's new header: only its new figures measured)."""
    key = (text, _font_key(font))
    got = _WIDTHS.get(key)
    if got is None:
        parsed = parse(text)
        got = (line_width(*parsed, font, key[1]) if parsed is not None
               else _measure(text, font)[0])
        if len(_WIDTHS) >= _MEASURED_MAX:
            _WIDTHS.clear()
        _WIDTHS[key] = got
    return got


def _plain(text: str, font: QFont) -> str:
    """Rich ``text`` as plain text (the document's: no-break spaces as spaces)."""
    parsed = parse(text)
    if parsed is not None:
        return parsed[0].replace("\u00a0", " ")
    return _measure(text, font)[1]
