"""The map building blocks every map of the app uses (gptviz_app.views.plots), offscreen."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")


@pytest.fixture
def layout(qtbot):
    import pyqtgraph as pg

    glw = pg.GraphicsLayoutWidget()
    qtbot.addWidget(glw)
    glw.resize(400, 300)
    return glw


def test_sqrt_ticks_label_true_values_at_their_square_roots():
    from gptviz_app.views.plots import sqrt_ticks

    assert sqrt_ticks((0, 0.01, 0.25, 1)) == [(0.0, "0"), (0.1, "0.01"), (0.5, "0.25"),
                                              (1.0, "1")]


def test_setup_map_plot(layout):
    from gptviz_app.views.plots import setup_map_plot

    plot = layout.addPlot(row=0, col=0)
    vb = setup_map_plot(plot, aspect=True, mouse=False)
    assert vb is plot.getViewBox()
    assert vb.yInverted() and vb.state["aspectLocked"] and vb.state["defaultPadding"] == 0.0
    assert vb.state["mouseEnabled"] == [False, False]
    assert plot.getAxis("top").isVisible() and not plot.getAxis("bottom").isVisible()
    assert plot.buttonsHidden and not plot.menuEnabled()


def test_map_plot_shows_a_row_major_map_with_its_colour_bar(layout):
    from PySide6.QtCore import QRectF

    from gptviz_app.views.plots import MapPlot
    from gptviz_app.views.theme import DARK

    m = MapPlot(layout.addPlot(row=0, col=0), aspect=False)
    bar = m.add_colorbar(12, label="weight", font_factor=0.85, title_factor=0.85)
    theme = DARK.scaled(2.0)
    m.apply_theme(theme)
    # rows x cols = 2 x 3, NaN above the diagonal (the backdrop shows through)
    data = np.array([[0.5, np.nan, np.nan], [0.25, 0.75, np.nan]], np.float32)
    m.set_image(data, (0.0, 1.0), display=np.sqrt(data))
    assert m.image.image.shape == (2, 3)
    np.testing.assert_array_equal(m.image.image, np.sqrt(data))   # what is drawn
    np.testing.assert_array_equal(m.data, data)                    # what hovering reads
    assert m.image.getLevels() == pytest.approx((0.0, 1.0))
    assert m.backdrop.rect() == QRectF(0, 0, 3, 2) == m.image.boundingRect()
    assert m.vb.viewRange() == [[0.0, 3.0], [0.0, 2.0]]  # fitted: its shape is new
    # the colour bar: the theme's colormap and fonts (11 pt x 2 x 0.85 = 18.7 pt)
    assert bar.colorMap().name == "viridis"
    assert bar.axis.style["tickFont"].pointSizeF() == pytest.approx(18.7)
    assert bar.getAxis("left").label.font().pointSizeF() == pytest.approx(18.7)
    assert m.plot.getAxis("left").style["tickFont"].pointSizeF() == pytest.approx(17.6)
    m.set_box(QRectF(0, 1, 2, 1))
    assert m.box.isVisible() and m.box.rect() == QRectF(0, 1, 2, 1)
    m.set_image(None, (0.0, 1.0))
    assert m.shape == (0, 0) and not m.box.isVisible() and m.backdrop.rect().isEmpty()


def test_map_plot_without_fit_keeps_the_owners_range(layout):
    from gptviz_app.views.plots import MapPlot

    m = MapPlot(layout.addPlot(row=0, col=0), aspect=False, fit=False)
    m.vb.setRange(xRange=(0, 10), yRange=(0, 10), padding=0)
    m.set_image(np.zeros((4, 4), np.float32), (0.0, 1.0))
    assert m.vb.viewRange() == [[0.0, 10.0], [0.0, 10.0]]


def test_colour_bar_in_a_layout_cell_follows_the_map_colormap(layout):
    from gptviz_app.views.plots import MapPlot
    from gptviz_app.views.theme import DARK, diverging_colormap

    m = MapPlot(layout.addPlot(row=0, col=0), top_axis=False)
    bar = m.add_colorbar(10, values=(-1.0, 1.0), cmap=diverging_colormap(DARK),
                         cell=(layout, 0, 1))
    assert layout.ci.getItem(0, 1) is bar
    cmap = diverging_colormap(DARK)
    m.apply_theme(DARK, cmap)
    assert bar.colorMap() is cmap
    # the map's colours are the colormap's (its 256-entry table, opaque: RGB only)
    np.testing.assert_array_equal(m.image.lut, cmap.getLookupTable(nPts=256, alpha=True)[:, :3])
    assert bar.axis.style["tickFont"].pointSizeF() == pytest.approx(11 * 0.8)
    assert not m.plot.getAxis("top").isVisible()


def test_cells_and_marks(layout, qtbot):
    from PySide6.QtGui import QColor

    from gptviz_app.views.plots import MapPlot
    from gptviz_app.views.theme import ABLATED_COLOR, DARK

    m = MapPlot(layout.addPlot(row=0, col=0))
    m.apply_theme(DARK)
    layout.show()
    m.set_image(np.zeros((3, 5), np.float32), (0.0, 1.0))
    qtbot.waitUntil(lambda: m.vb.width() > 20)
    assert m.cell_at(m.cell_center(2, 4)) == (2, 4)
    m.set_marks([(1, 3)])
    # one X in cell (row 1, col 3), inset by 18 % of the cell
    r = m.marks.path().boundingRect()
    assert (r.left(), r.top(), r.width(), r.height()) == pytest.approx(
        (3.18, 1.18, 0.64, 0.64))
    assert math.isclose(m.marks.pen().widthF(), 2.0) and m.marks.pen().isCosmetic()
    assert m.marks.pen().color() == QColor(ABLATED_COLOR)


# ---------------------------------------------------------------------- panel controls
def test_choice_box_reports_keys_and_set_choice_is_quiet(qtbot):
    from gptviz_app.views.panel_layout import choice_box, set_choice

    picked = []
    box = choice_box((("zero", "Zero output"), ("mean", "Mean output")), picked.append, "tip")
    qtbot.addWidget(box)
    assert [box.itemText(i) for i in range(box.count())] == ["Zero output", "Mean output"]
    assert box.currentData() == "zero" and box.toolTip() == "tip"
    assert picked == []                       # building it picks nothing
    box.setCurrentIndex(1)                    # the user picks "Mean output"
    assert picked == ["mean"]
    set_choice(box, "zero")                   # the model says so: no echo
    assert box.currentData() == "zero" and picked == ["mean"]
    set_choice(box, "mean", quiet=False)
    assert picked == ["mean", "mean"]
    set_choice(box, "unknown")                # falls back to the first item
    assert box.currentIndex() == 0


def test_controls_row_lays_out_widgets_gaps_and_stretch(qtbot):
    from PySide6.QtWidgets import QLabel, QWidget

    from gptviz_app.views.panel_layout import controls_row

    a, b = QLabel("a"), QLabel("b")
    row = controls_row(a, 8, (b, 1))
    host = QWidget()
    host.setLayout(row)
    qtbot.addWidget(host)
    m = row.contentsMargins()
    assert (m.left(), m.top(), m.right(), m.bottom()) == (4, 0, 4, 0)
    assert row.count() == 3
    assert row.itemAt(0).widget() is a and row.itemAt(2).widget() is b
    assert row.itemAt(1).spacerItem().sizeHint().width() == 8
    assert [row.stretch(i) for i in range(3)] == [0, 0, 1]


def test_stack_puts_the_body_between_controls_and_bottom(qtbot):
    from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

    from gptviz_app.views.panel_layout import panel_layout, stack

    panel, top, body, bottom = QWidget(), QHBoxLayout(), QLabel("body"), QHBoxLayout()
    qtbot.addWidget(panel)
    lay = stack(panel, top, body, bottom)
    assert panel.layout() is lay and lay.count() == 3 and lay.spacing() == 2
    assert lay.itemAt(0).layout() is top and lay.itemAt(2).layout() is bottom
    assert lay.itemAt(1).widget() is body and [lay.stretch(i) for i in range(3)] == [0, 1, 0]
    other = QWidget()
    qtbot.addWidget(other)
    readout = panel_layout(other, QHBoxLayout(), QLabel("plot"))
    assert other.layout().itemAt(2).widget() is readout
