"""A token axis lays each label out once and draws that layout at every paint: its pixels stay
pyqtgraph's (each label drawn by its own ``drawText``, moved to start on whole device pixels)
for labels of any script, right-to-left ones, combining marks and characters of fallback
fonts, at their first paint and at later ones, in the chart's and the map's fonts. (A label
with a tab is drawn by ``drawText`` itself, as pyqtgraph draws it: ``drawText`` draws a tab
as a space, a text layout moves on to a tab stop.)"""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from . import test_label_axis as base  # noqa: E402

#: Token labels as the app shows them (quoted, bytes as ``<0x..>``) and raw ones: Greek,
#: Cyrillic, Hebrew and Arabic (right to left, alone and quoted), a combining accent,
#: characters no installed font has (drawn from a fallback), a zero-width space.
SCRIPTS = ["'Ωμέγα'", "привет", "שלום", "'שלום'", "مرحبا", "'e\u0301t\u00e9'", "漢字",
           "'<0xE2><0x80>'", "\ufffd", "'⇥]'", "a\u200bb", "'·the'", "'ɩ' #21", "Ꭰꮳ", "ๆ",
           "'<0x15>O'"]


@pytest.mark.parametrize("orientation", ["left", "top"])
def test_labels_of_any_script_look_as_pyqtgraphs(qtbot, monkeypatch, orientation):
    from PySide6.QtGui import QFont

    from gptviz_app.views.label_axis import LabelAxis

    monkeypatch.setattr(base, "WORDS", SCRIPTS)
    reference = base._whole_pixel_axis()
    for font, dpr in ((QFont("DejaVu Sans Mono", 11), 1), (QFont("DejaVu Sans", 9), 1),
                      (QFont("DejaVu Sans", 7), 2)):
        # painted twice: the labels laid out at the first paint, drawn again at the second
        ours = base._axis_shot(qtbot, LabelAxis, orientation, font, dpr)
        theirs = base._axis_shot(qtbot, reference, orientation, font, dpr)
        assert len(ours) == 2 and ours[0] == ours[1]
        assert ours == theirs, (font.family(), font.pointSizeF(), dpr)
        none = base._axis_shot(qtbot, base._no_labels_axis(), orientation, font, dpr)
        assert ours != none  # (the labels were drawn)


def test_an_axis_lays_each_label_out_once(qtbot):
    """Labels painted again are drawn from the layout of their first paint: new ticks with
    some of the same labels lay out only the new ones."""
    from gptviz_app.views.label_axis import LabelAxis

    glw, axis, plot = base._axis_plot(qtbot, LabelAxis, "left", (300, 260))
    axis.setWidth(160)  # room for every label (a narrower axis leaves the wider ones out)
    axis.setTicks([[(i, w) for i, w in enumerate(SCRIPTS[:6])]])
    plot.setRange(xRange=(0, 1), yRange=(-1, 7), padding=0)
    qtbot.wait(20)  # (the new width laid out)
    glw.grab()
    assert [lab[-1] for _x, _y, lab in axis._layout.labels] == SCRIPTS[:6]
    first = {t: axis._laid[t] for t in SCRIPTS[:6]}
    axis.setTicks([[(i, w) for i, w in enumerate([*SCRIPTS[3:9], "x\ty"])]])
    glw.grab()
    for t in SCRIPTS[3:6]:  # the same layout object, not a new one
        assert axis._laid[t] is first[t]
    assert all(axis._laid[t] is not None for t in SCRIPTS[6:9])
    assert axis._laid["x\ty"] is None  # (a tab: drawn by drawText, as pyqtgraph)


def test_labels_are_laid_out_again_in_another_painters_font(qtbot):
    """An axis with no tick font draws in its painter's font: a label laid out for a painter
    of one font is laid out again for a painter of another (it looks as on a fresh axis
    painted in that one). (The painter's layout direction is kept with the layouts too; a
    graphics scene paints its items left to right whatever its view's direction.)"""
    import pyqtgraph as pg
    from PySide6.QtGui import QFont

    from gptviz_app.views.label_axis import LabelAxis

    small, big = QFont("DejaVu Sans", 8), QFont("DejaVu Sans", 13)
    words = ["'Ωμέγα'", "שלום 12", "abc", "漢字", "x 3"]

    def axis_in(*fonts):
        glw, axis, plot = base._axis_plot(qtbot, LabelAxis, "left", (300, 220), show=False)
        axis.setWidth(150)
        axis.setPen(pg.mkPen("#888"))
        axis.setTextPen(pg.mkPen("#eee"))
        axis.setTicks([[(i, w) for i, w in enumerate(words)]])
        plot.setRange(xRange=(0, 1), yRange=(-1, len(words)), padding=0)
        glw.show()
        qtbot.waitExposed(glw)
        shots = []
        for font in fonts:  # the view's painter starts with its viewport's font
            glw.viewport().setFont(font)
            shots.append(glw.viewport().grab().toImage())
        assert axis.style["tickFont"] is None
        glw.close()
        return shots

    again = axis_in(small, big)
    assert again[0] != again[1]  # (the two fonts draw the labels differently)
    assert again[1] == axis_in(big)[0]
