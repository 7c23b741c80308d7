"""A steady label made with ``steady_height`` keeps the tallest height it was asked for: a text
with characters of a taller fallback font (a token in Devanagari beside a Latin font) makes it
taller once, and the next ordinary text does not make it shorter again (the window is not laid
out twice and what lies under the label does not move). A new font, or ``reset_sizes``, measures
afresh; a wrapped label keeps the tallest height for each width. Without ``steady_height`` the
same texts move what is under the label both ways (the test tells the two apart)."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QFont  # noqa: E402
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget  # noqa: E402

from gptviz_app.views.elided_label import ElidedLabel  # noqa: E402
from gptviz_app.views.steady_label import SteadyLabel  # noqa: E402

PLAIN = "Step 5: ' the', drawn from the prediction after 'of'"


def _tall_text(make) -> str:
    """A text like :data:`PLAIN` whose label is taller than :data:`PLAIN`'s (a token from a
    taller fallback font), found among a few scripts in this machine's fonts."""
    plain = make(PLAIN).sizeHint().height()
    for ch in "कअਕકଅகకಕകංกཀကᄀ":
        text = PLAIN.replace("' the'", f"'{ch * 3}'")
        if make(text).sizeHint().height() > plain:
            return text
    pytest.skip("no script here is drawn taller than Latin (one font for all)")


def _column(qtbot, label: QWidget) -> tuple[QWidget, QWidget]:
    """``label`` above a widget that takes the rest of a 420 x 200 column: (host, below)."""
    host = QWidget()
    qtbot.addWidget(host)
    lay = QVBoxLayout(host)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(0)
    below = QWidget()
    below.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
    lay.addWidget(label)
    lay.addWidget(below, 1)
    host.resize(420, 200)
    host.show()
    qtbot.waitExposed(host)
    return host, below


def _settled(qtbot) -> None:
    qtbot.wait(30)  # (the posted layout requests delivered)


def _wide_plain(text: str) -> QLabel:
    """A plain label whose width the layout ignores (it takes the row, as the legend)."""
    lab = QLabel(text)
    lab.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return lab


@pytest.mark.parametrize("make", [ElidedLabel, _wide_plain], ids=["elided", "plain"])
def test_a_taller_token_makes_the_line_taller_once(qtbot, make):
    tall = _tall_text(make)
    tops = {}
    for steady in (True, False):
        box = SteadyLabel(label=make(PLAIN), steady_height=steady)
        box.setSizePolicy(box.label.sizePolicy())
        host, below = _column(qtbot, box)
        _settled(qtbot)
        top0, h0 = below.y(), box.height()
        box.setText(tall)
        _settled(qtbot)
        grown = box.height()
        assert grown > h0 and below.y() == top0 + (grown - h0)
        assert box.label.geometry() == box.rect()
        relayouts = box.relayouts
        for text in (PLAIN, PLAIN.replace("5", "6"), tall, PLAIN.replace("5", "7")):
            box.setText(text)
            _settled(qtbot)
            assert box.label.text() == text or make is ElidedLabel
        tops[steady] = (below.y(), box.height(), box.relayouts - relayouts, top0)
    kept_top, kept_h, kept_relayouts, _ = tops[True]
    assert kept_h == grown and kept_top == tops[True][3] + (grown - h0)
    assert kept_relayouts == 0  # the window was not laid out again
    back_top, back_h, back_relayouts, top0 = tops[False]
    assert back_h == h0 and back_top == top0 and back_relayouts == 3  # (down, up, down)


def test_a_new_font_or_a_reset_measures_the_height_afresh(qtbot):
    tall = _tall_text(ElidedLabel)
    box = SteadyLabel(label=ElidedLabel(PLAIN), steady_height=True)
    _host, _below = _column(qtbot, box)
    _settled(qtbot)
    h0 = box.height()
    box.setText(tall)
    box.setText(PLAIN)
    _settled(qtbot)
    assert box.height() > h0
    box.reset_sizes()
    _settled(qtbot)
    assert box.height() == h0
    box.setText(tall)
    box.setText(PLAIN)
    _settled(qtbot)
    assert box.height() > h0
    small = QFont(box.label.font())
    small.setPointSizeF(small.pointSizeF() * 0.6)
    box.setFont(small)
    _settled(qtbot)
    alone = ElidedLabel(PLAIN)
    alone.setFont(small)
    assert box.height() == alone.sizeHint().height() < h0  # not the old font's tall line


def test_a_wrapped_label_keeps_a_taller_line_but_not_a_line_more(qtbot):
    """The strip legend's label: rich text, wrapped, as wide as the layout makes it. A taller
    token's few pixels are kept (at that width); a text of three lines after one of one line
    gives its room back."""
    def legend() -> QLabel:
        lab = QLabel()
        lab.setTextFormat(Qt.TextFormat.RichText)
        lab.setWordWrap(True)
        return lab

    box = SteadyLabel(label=legend(), steady_height=True)
    box.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    host, below = _column(qtbot, box)
    one = "shading = attention from query <b>12</b> ' the' (L0 H3)"
    three = " ".join([one] * 3)
    box.setText(one)
    _settled(qtbot)
    h1, top1 = box.height(), below.y()
    box.setText(three)
    _settled(qtbot)
    h3 = box.height()
    assert h3 > h1 and below.y() > top1
    box.setText(one)
    _settled(qtbot)
    assert box.height() == h1 and below.y() == top1  # two lines fewer: not kept
    for ch in "कअਕકଅகకಕകංกཀကᄀ":
        tall = one.replace("' the'", f"'{ch * 3}'")
        if QLabel(tall).sizeHint().height() > QLabel(one).sizeHint().height():
            break
    else:
        pytest.skip("no script here is drawn taller than Latin (one font for all)")
    box.setText(tall)
    _settled(qtbot)
    bumped = box.height()
    assert h1 < bumped < h1 + box.label.fontMetrics().lineSpacing()
    box.setText(one)
    _settled(qtbot)
    assert box.height() == bumped == box.heightForWidth(box.width())  # kept at this width
    host.resize(900, 200)  # another width: measured for it alone
    _settled(qtbot)
    assert box.height() == box.label.heightForWidth(box.width()) < bumped


def test_a_taller_token_in_the_chart_header_or_the_strip_legend_moves_nothing_back(qtbot):
    """In the views: the next-token chart's plot and the token strip's chips stay where a
    taller token's line put them when the next token is an ordinary one, and the window is
    not laid out again."""
    from gptviz_app.views.next_token import NextTokenView
    from gptviz_app.views.token_strip import TokenStrip

    tall = _tall_text(ElidedLabel)
    chart, strip = NextTokenView(), TokenStrip()
    for view, label, under in ((chart, chart.header, chart.glw), (strip, strip.legend,
                                                                 strip.scroll)):
        qtbot.addWidget(view)
        view.resize(700, 420)
        view.show()
        qtbot.waitExposed(view)
        label.setText(PLAIN)
        _settled(qtbot)
        first = under.geometry()
        label.setText(tall)
        _settled(qtbot)
        moved, relayouts = under.geometry(), label.relayouts
        # (the taller line took a few pixels from the chart's plot; the strip's legend row
        # is about as tall as its switch: the chips may stay)
        assert moved != first or view is strip
        for text in (PLAIN, PLAIN.replace("5", "6")):
            label.setText(text)
            _settled(qtbot)
            assert under.geometry() == moved, type(view).__name__
        assert label.relayouts == relayouts
