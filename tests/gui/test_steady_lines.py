"""A steady plain label given a line as wide as the one it measured, in the same fonts (a
figure that changes every step), is not measured again; any other text, font or width is,
and the box is always laid out as the label alone would be."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtGui import QFont  # noqa: E402
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget  # noqa: E402

from gptviz_app.views.steady_label import SteadyLabel  # noqa: E402


def boxes(qtbot, make, size=(420, 60)):
    """A steady box and the same label alone (``make()``), each in a row of its own (shown,
    ``size``), and the rows (kept by the caller: a row let go deletes its label)."""
    shown, hosts = [], []
    for steady in (True, False):
        host = QWidget()
        qtbot.addWidget(host)
        row = QHBoxLayout(host)
        label = make()
        widget = SteadyLabel(label=label) if steady else label
        row.addWidget(widget)
        row.addWidget(QLabel("beside"))
        row.addStretch(1)
        host.resize(*size)
        host.show()
        qtbot.waitExposed(host)
        shown.append(widget)
        hosts.append(host)
    return (*shown, hosts)


def test_a_line_as_wide_is_set_without_measuring_and_laid_out_as_the_label(qtbot, monkeypatch):
    *shown, hosts = boxes(qtbot, lambda: QLabel("step 0 / 0"), (400, 40))
    box = shown[0]
    measured = []
    real = box._measures
    monkeypatch.setattr(box, "_measures", lambda *a: (measured.append(1), real(*a))[1])

    def show(text: str) -> int:
        measured.clear()
        for w in shown:
            w.setText(text)
        qtbot.wait(20)
        assert box.label.text() == text
        assert box.geometry() == shown[1].geometry(), text
        assert box.label.geometry() == box.rect()
        return len(measured)

    def settled(text: str) -> None:
        """``text``, then another as wide (the first after a change of width is measured
        once more: the box has another size since)."""
        assert show(text) > 0
        show(text.replace("1", "2"))

    settled("step 10 / 10")               # another width: measured
    assert show("step 11 / 11") == 0      # as wide (the font's digits), the same font: not
    assert show("step 12 / 13") == 0
    settled("step 12 / 130")              # wider: measured, laid out again
    assert show("step 13 / 130") == 0
    assert show("step 漢 / 130") > 0       # a fallback font's character: measured
    settled("step 14 / 130")
    assert show("step 15 / 130") == 0
    font = QFont(box.label.font())
    font.setPointSizeF(font.pointSizeF() * 2)
    for w in shown:
        w.setFont(font)
    qtbot.wait(20)
    settled("step 16 / 130")              # another font: measured
    assert show("step 17 / 130") == 0
    assert show("step <b>1</b>") > 0      # rich text: measured
