"""The widths and plain texts of short rich texts, measured without a ``QTextDocument``.

A label that elides a rich header (:class:`~gptviz_app.views.elided_label.ElidedLabel`) measures
the header's fixed words to choose what to show; the header changes at every step ("Step 12"),
and a document set to each new text cost more than the label's own drawing. The headers use
only a few tags (``<b>``, ``<i>``, ``<span style='color: …; background: …'>``) and entities:
:func:`parse` turns such a text into plain text and formatted runs, and :func:`line_width`
sums the runs' advances, each run shaped alone as the document's layout shapes it (its items
end where the formats change): the document's ideal width, exactly (tests compare them), with
the runs kept, so that only a new figure is measured. A text with anything else (a table, an
image, a font size, a link) is left to the document.
"""

from __future__ import annotations

import html
import re

from PySide6.QtGui import QColor, QFont, QFontMetricsF

#: A tag or the text between tags.
_TOKEN = re.compile(r"<(/?)([a-zA-Z]+)((?:[^>'\"]|'[^']*'|\"[^\"]*\")*)>|([^<]+)")
_STYLE = re.compile(r"style\s*=\s*(?:'([^']*)'|\"([^\"]*)\")")
_SPACE = re.compile(r"[ \t\n\r\f]+")

#: (bold, italic, colour, background) of a run; None: the label's own.
Look = tuple[bool, bool, str | None, str | None]

_PARSED: dict[str, tuple[str, tuple[tuple[int, int, Look], ...]] | None] = {}
_PARSED_MAX = 4000


def parse(text: str) -> tuple[str, tuple[tuple[int, int, Look], ...]] | None:
    """``(plain text, runs)`` of rich ``text``: runs ``(start, length, look)`` of the plain
    text that are not in the label's own look; None when ``text`` holds a tag or a style other
    than those this module draws. Spaces collapse as the document collapses them."""
    got = _PARSED.get(text, False)
    if got is not False:
        return got  # type: ignore[return-value]
    got = _parse(text)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[text] = got
    return got


def _span_look(attrs: str, look: Look) -> Look | None:
    """The look inside ``<span attrs>`` within ``look`` (None: a style not drawn here)."""
    bold, italic, color, back = look
    rest = _STYLE.sub("", attrs).strip()
    if rest:
        return None
    m = _STYLE.search(attrs)
    if m is None:
        return look
    for decl in (m.group(1) or m.group(2) or "").split(";"):
        if not decl.strip():
            continue
        name, _, value = decl.partition(":")
        name, value = name.strip().lower(), value.strip()
        if not value or not QColor.isValidColorName(value):
            return None
        if name == "color":
            color = value
        elif name in ("background", "background-color"):
            back = value
        else:
            return None
    return bold, italic, color, back


_TAGS: dict[tuple[str, Look], tuple[str, Look] | None] = {}  # (tag, look) -> (name, inside)
_PLAIN = (False, False, None, None)


def _open_tag(tag: str, attrs: str, look: Look) -> tuple[str, Look] | None:
    """``(name, look inside)`` of an opening tag within ``look`` (None: not drawn here)."""
    key = (tag + attrs, look)
    got = _TAGS.get(key, False)
    if got is not False:
        return got  # type: ignore[return-value]
    name = tag.lower()
    got = None
    if name in ("b", "strong", "i", "em"):
        if not attrs.strip():
            bold, italic, color, back = look
            got = (name, (bold or name in ("b", "strong"), italic or name in ("i", "em"),
                          color, back))
    elif name == "span":
        inner = _span_look(attrs, look)
        got = (name, inner) if inner is not None else None
    if len(_TAGS) > 2000:
        _TAGS.clear()
    _TAGS[key] = got
    return got


def _parse(text: str) -> tuple[str, tuple[tuple[int, int, Look], ...]] | None:
    plain: list[str] = []
    runs: list[tuple[int, int, Look]] = []
    stack: list[tuple[str, Look]] = []
    look: Look = _PLAIN
    n = 0
    space_before = True  # a space at the line's start is dropped, as the document drops it
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() != pos:
            return None  # a stray "<"
        pos = m.end()
        raw = m.group(4)
        if raw is not None:
            if "\n" in raw or "\t" in raw or "  " in raw or "\r" in raw or "\f" in raw:
                raw = _SPACE.sub(" ", raw)
            if space_before and raw.startswith(" "):
                raw = raw[1:]
            part = html.unescape(raw) if "&" in raw else raw
            if not part:
                continue
            space_before = raw.endswith(" ")
            plain.append(part)
            if look != _PLAIN:
                if runs and runs[-1][2] == look and runs[-1][0] + runs[-1][1] == n:
                    # one run: the document's format does not change between two tags alike
                    # (``<i>a</i><i>b</i>``), so its layout shapes them together
                    runs[-1] = (runs[-1][0], runs[-1][1] + len(part), look)
                else:
                    runs.append((n, len(part), look))
            n += len(part)
        elif m.group(1):
            if not stack or stack[-1][0] != m.group(2).lower():
                return None
            look = stack.pop()[1]
        else:
            got = _open_tag(m.group(2), m.group(3), look)
            if got is None:
                return None
            stack.append((got[0], look))
            look = got[1]
    if pos != len(text) or stack:
        return None
    return "".join(plain), tuple(runs)


_METRICS: dict[tuple[str, bool, bool], QFontMetricsF] = {}
_ADVANCES: dict[tuple[str, str, bool, bool], float] = {}
#: The characters looked up in each font (key, bold, italic): those in it, those not (a line
#: of characters all found before: one set test)
_IN_FONT: dict[tuple[str, bool, bool], tuple[set[str], set[str]]] = {}


def _segments(plain: str, runs: tuple[tuple[int, int, Look], ...]):
    """``(text, look)`` of each run and of the plain text between them, in order."""
    pos = 0
    for start, length, look in (*runs, (len(plain), 0, _PLAIN)):
        if start > pos:
            yield plain[pos:start], _PLAIN
        if length:
            yield plain[start:start + length], look
        pos = start + length


def metrics(font: QFont, key: str, bold: bool, italic: bool) -> QFontMetricsF:
    """The metrics of ``font`` (``key``: its ``key()``) made bold and/or italic, kept."""
    fm = _METRICS.get((key, bold, italic))
    if fm is None:
        f = QFont(font)
        f.setBold(bold or font.bold())
        f.setItalic(italic or font.italic())
        fm = _METRICS[(key, bold, italic)] = QFontMetricsF(f)
    return fm


def line_width(plain: str, runs: tuple[tuple[int, int, Look], ...], font: QFont,
               key: str) -> float:
    """The width of a parsed text on one line in ``font`` (``key``: its ``key()``): the sum
    of its runs' advances, each run shaped alone as the layout shapes it (its items end where
    the formats change), kept by run: a header's fixed words are measured once, its figures
    at each change."""
    total = 0.0
    for seg, (bold, italic, _, _) in _segments(plain, runs):
        k = (key, seg, bold, italic)
        w = _ADVANCES.get(k)
        if w is None:
            if len(_ADVANCES) > 8000:
                _ADVANCES.clear()
            w = _ADVANCES[k] = metrics(font, key, bold, italic).horizontalAdvance(seg)
        total += w
    return total


def line_fonts(plain: str, runs: tuple[tuple[int, int, Look], ...], font: QFont,
               key: str) -> frozenset[tuple[bool, bool]] | None:
    """The styles (bold, italic) of ``font`` a parsed text is drawn in, when each of its
    characters is in the font of its style (None: a character is drawn in a fallback font,
    whose ascent and descent may be others). Two lines of text of the same styles, all in
    their fonts, are as high."""
    styles = set()
    for seg, (bold, italic, _, _) in _segments(plain, runs):
        styles.add((bold, italic))
        found, missing = _IN_FONT.setdefault((key, bold, italic), (set(), set()))
        if found.issuperset(seg):
            continue  # every character seen in the font already
        for ch in seg:
            if ch in found:
                continue
            if ch in missing:
                return None
            if len(found) + len(missing) > 4000:
                found.clear()
                missing.clear()
            if not metrics(font, key, bold, italic).inFontUcs4(ord(ch)):
                missing.add(ch)
                return None
            found.add(ch)
    return frozenset(styles)
