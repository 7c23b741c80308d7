"""A steady label measures a one-line label whose width the layout ignores by its height for
its width alone: the same heights as the label's size hints, and the same layout as the label
on its own in that layout."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QFont  # noqa: E402
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget  # noqa: E402

from gptviz_app.views.elided_label import ElidedLabel  # noqa: E402
from gptviz_app.views.steady_label import SteadyLabel  # noqa: E402

TEXTS = [
    "",
    "step 12 / 12",
    "two\nlines",
    "漢字とかな · 한국어",          # fallback fonts: other ascents and descents
    "emoji 🙂 and ∑ ∫ math",
    "عربي mixed",
    "<b>Step 5</b>: <span style='color:#ff8800'><b>'him'</b></span> · after 16",
    "<b>big</b> <span style='font-size:30pt'>tall</span> words",
    "<i>italic</i> &amp; <code>code</code>",
]


def _hints(label: QLabel, least) -> tuple[tuple[int, int], tuple[int, int]]:
    """The hints a layout takes of ``label`` (``Ignored`` width), from its own size hints."""
    h = min(max(label.sizeHint().height(), least.height()), label.maximumSize().height())
    return (0, h), (0, max(label.minimumSizeHint().height(), least.height()))


def _label(kind: str, text: str, font: QFont) -> QLabel:
    if kind == "elided":
        label = ElidedLabel()
        if "<" in text:
            label.set_rich(text)
        else:
            label.setText(text)
    else:
        label = QLabel(text)
        label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setFont(font)
    return label


@pytest.mark.parametrize("kind", ["elided", "plain"])
@pytest.mark.parametrize("size", [8.0, 11.0, 27.5])
@pytest.mark.parametrize("bold", [False, True])
def test_a_line_is_measured_as_its_size_hints_say(qtbot, kind, size, bold):
    font = QFont()
    font.setPointSizeF(size)
    font.setBold(bold)
    for text in TEXTS:
        for margins, least in ((0, 0), (5, 0), (0, 60)):
            box = SteadyLabel(label=_label(kind, text, font))
            qtbot.addWidget(box)
            box.label.setContentsMargins(margins, margins, margins, margins)
            box.label.setIndent(margins)
            if least:
                box.label.setMinimumHeight(least)
            box.resize(140, 30)
            hint, low, hfw, *_ = box._measures()
            alone = _label(kind, text, font)  # the same label, measured by its size hints
            qtbot.addWidget(alone)
            alone.setContentsMargins(margins, margins, margins, margins)
            alone.setIndent(margins)
            if least:
                alone.setMinimumHeight(least)
            alone.resize(140, 30)
            assert (hint, low) == _hints(alone, alone.minimumSize()), (text, margins, least)
            assert hfw == -1


@pytest.mark.parametrize("text", TEXTS)
def test_the_box_is_laid_out_as_the_label_alone(qtbot, text):
    """Two columns, one with the label in a steady box, one with the same label alone: the
    same heights, after a first text and after a new one."""
    font = QFont()
    font.setPointSizeF(13.0)
    hosts, shown = [], []
    for steady in (True, False):
        host = QWidget()
        qtbot.addWidget(host)
        col = QVBoxLayout(host)
        label = _label("elided", "first", font)
        widget = SteadyLabel(label=label) if steady else label
        col.addWidget(widget)
        col.addStretch(1)
        host.resize(200, 300)
        host.show()
        hosts.append(host)
        shown.append(widget)
    qtbot.waitExposed(hosts[1])
    for new in ("first", text, "again, the end"):
        for widget in shown:
            if "<" in new:
                widget.set_rich(new)
            else:
                widget.setText(new)
        qtbot.wait(30)
        assert shown[0].height() == shown[1].height(), new
        assert shown[0].label.geometry() == shown[0].rect()


def test_a_label_without_text_is_measured_by_its_hints(qtbot):
    """A picture label (no line of text) keeps the hints' measures."""
    from PySide6.QtGui import QPixmap

    label = QLabel()
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    pix = QPixmap(20, 37)
    pix.fill(Qt.GlobalColor.red)
    label.setPixmap(pix)
    box = SteadyLabel(label=label)
    qtbot.addWidget(box)
    box.resize(100, 50)
    hint, low, *_ = box._measures()
    assert hint == (0, label.sizeHint().height()) and hint[1] >= 37
    assert low == (0, label.minimumSizeHint().height())
