"""The short ways of the labels that change at every step give what the long ways gave: a
header's token shown whole when it fits (as ``elidedText`` says, measured independently by a
document), an elided label given its own text again not set again (but elided again at
another width), a font changed by a style sheet measured again, and the fonts of a line
told as each character's own test tells them."""

from __future__ import annotations

import html

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QFont, QFontMetricsF  # noqa: E402
from PySide6.QtWidgets import QLabel  # noqa: E402

from gptviz_app.views.elided_label import ElidedLabel  # noqa: E402
from gptviz_app.views.rich_runs import line_fonts  # noqa: E402
from tests.gui.test_elided_label import _px  # noqa: E402
from tests.gui.test_steady_lines import boxes  # noqa: E402

TEMPLATE = "<b>Step 12</b>: <span style='color:#ffb000'><b>{}</b></span> · after position 99"
SHORTER = (TEMPLATE.replace("position ", ""), TEMPLATE.replace(" · after position 99", ""))


def _expected(part: str, width: int, font: QFont) -> str:
    """The header a label ``width`` wide shows, every width measured by a document and the
    token always elided by ``elidedText`` (what the label did before it skipped a fit)."""
    w = width - 2
    slot = QFont(font)
    slot.setBold(True)
    fm = QFontMetricsF(slot)
    part_px = fm.horizontalAdvance(part)
    for chosen in (TEMPLATE, *SHORTER):
        if _px(chosen.replace("{}", ""), font) + part_px <= w:
            break
    fixed = _px(chosen.replace("{}", ""), font)
    assert fixed <= w  # (the widths below leave room for the shortest template)
    shown = fm.elidedText(part, Qt.TextElideMode.ElideRight, w - fixed)
    if shown != part and _px(chosen.replace("{}", html.escape(shown)), font) > w:
        shown = ""
    return chosen.replace("{}", html.escape(shown))


@pytest.mark.parametrize("part", ["'him'", "' a rather long token'", "'漢字 ∑'", ""])
def test_a_token_is_shown_whole_where_elided_text_shows_it_whole(qtbot, part):
    label = ElidedLabel()
    qtbot.addWidget(label)
    font = label.font()
    slot = QFont(font)
    slot.setBold(True)
    part_px = QFontMetricsF(slot).horizontalAdvance(part)
    edges = [_px(t.replace("{}", ""), font) + part_px + 2 for t in (TEMPLATE, *SHORTER)]
    least = int(_px(SHORTER[-1].replace("{}", ""), font)) + 4
    # each pixel around each template's fit (and the token's elision after the last)
    widths = sorted({w for e in edges for w in range(int(e) - 3, int(e) + 4) if w >= least}
                    | {least, least + 5, least + 17})
    label.set_rich(TEMPLATE, part, bold=True, shorter=SHORTER)
    label.show()
    qtbot.waitExposed(label)
    seen = set()
    for width in widths:
        label.resize(width, 24)
        assert label.text() == _expected(part, width, font), width
        seen.add(label.text())
    assert len(seen) >= (3 if part else 2)


def test_an_elided_label_given_its_text_again_is_not_set_again(qtbot, monkeypatch):
    long = "row of the newest query, thirty keys on a line and more words than fit"
    box, alone, _hosts = boxes(qtbot, lambda: ElidedLabel(""))
    for w in (box, alone):
        w.setText(long)
        w.setFixedWidth(150)
    qtbot.wait(20)
    assert box.label.elided and box.label.text() == alone.text() != long
    calls = []
    real = box._set_text
    monkeypatch.setattr(box, "_set_text", lambda *a, **k: (calls.append(a), real(*a, **k))[1])
    sets = []
    real_set = QLabel.setText
    monkeypatch.setattr(QLabel, "setText", lambda lab, t: (sets.append(t), real_set(lab, t))[1])
    shown = box.label.text()
    for _ in range(3):
        box.setText(long)
    assert not calls and not sets and box.label.text() == shown
    # other contents margins: elided again at once (Qt sends the label a resize), the same
    # text not set again
    for w in (box.label, alone):
        w.setContentsMargins(30, 0, 0, 0)
    assert box.label.text() == alone.text() != shown
    box.setText(long)
    assert not calls
    # another margin (no resize): elided again when the text is given again
    shown = box.label.text()
    for w in (box.label, alone):
        w.setMargin(10)
    assert box.label.text() == shown
    box.setText(long)
    alone.setText(long)
    assert calls and box.label.text() == alone.text() != shown
    assert box.label.elided and box.label.toolTip().startswith(long)
    calls.clear()
    box.setText("short")                       # another text: set, shown whole
    assert calls and box.label.text() == "short" and not box.label.elided
    assert box.label.toolTip() == ""


def test_a_font_a_style_sheet_gives_is_measured_again(qtbot, monkeypatch):
    box, alone, _hosts = boxes(qtbot, lambda: QLabel("step 0 / 0"))
    for w in (box, alone):  # as wide in every font: the font alone tells the lines apart
        w.setFixedWidth(300)
    measured = []
    real = box._measures
    monkeypatch.setattr(box, "_measures", lambda *a: (measured.append(1), real(*a))[1])

    def show(text: str) -> int:
        measured.clear()
        box.setText(text)
        alone.setText(text)
        qtbot.wait(20)
        assert box.label.text() == text
        assert box.geometry() == alone.geometry(), text
        assert box.label.geometry() == box.rect()
        return len(measured)

    show("step 10 / 10")
    show("step 20 / 20")
    assert show("step 21 / 21") == 0                 # as wide: not measured
    for w in (box, alone):
        w.setStyleSheet("font-size: 31px")
    qtbot.wait(20)
    assert box.label.font().pixelSize() == alone.font().pixelSize() == 31
    assert show("step 22 / 22") > 0                  # another font: measured
    assert show("step 23 / 23") == 0
    for w in (box, alone):
        w.setStyleSheet("")
    qtbot.wait(20)
    assert show("step 24 / 24") > 0
    assert show("step 25 / 25") == 0


def test_the_fonts_of_a_line_are_each_characters_own(qtbot):
    font = QFont()
    bold = QFont(font)
    bold.setBold(True)
    key = font.key()
    texts = ["step 12 / 12", "漢字", "step 13 / 13", "a 🙂 b", "step 12 / 12", "∑ x", "abc",
             "abc 漢", "abc", "", "Ω ж ñ"]

    def own(text: str, runs) -> frozenset | None:
        """Each character's font tested alone (no cache)."""
        styles = set()
        pos = 0
        looks = [(start, length, look[0]) for start, length, look in runs]
        cuts = []
        for start, length, b in looks:
            if start > pos:
                cuts.append((text[pos:start], False))
            cuts.append((text[start:start + length], b))
            pos = start + length
        if pos < len(text):
            cuts.append((text[pos:], False))
        for seg, b in cuts:
            styles.add((b, False))
            fm = QFontMetricsF(bold if b else font)
            if not all(fm.inFontUcs4(ord(ch)) for ch in seg):
                return None
        return frozenset(styles)

    for _ in range(2):  # the second time from what the first kept
        for text in texts:
            assert line_fonts(text, (), font, key) == own(text, ()), text
            if len(text) > 3:
                runs = ((1, 2, (True, False, None, None)),)
                assert line_fonts(text, runs, font, key) == own(text, runs), text
