"""The main pyqtgraph views (map, head grid, chart) keep no item index in their scenes
(``plots.plot_widget``): a plot's items move or change size at every step, and Qt would
file each of them again in a BSP tree. Finding items without the tree must still work: the
item under a point, and the items a repaint of a region draws. (The first test pins the
index off; the second guards the behaviour the views rely on, and passes with an index too.)"""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")


def test_the_plots_a_step_updates_keep_no_index(window):
    from PySide6.QtWidgets import QGraphicsScene

    # the views a step updates: the map, the head grid, the chart
    views = [window.attention.glw, window.grid.glw, window.next_token.glw]
    for view in views:
        assert view.scene().itemIndexMethod() == QGraphicsScene.ItemIndexMethod.NoIndex, view


def test_a_scene_without_index_finds_the_items_under_a_point_and_in_a_region(qtbot):
    from PySide6.QtCore import QPointF, QRectF
    from PySide6.QtWidgets import QGraphicsRectItem

    from gptviz_app.views.plots import plot_widget

    glw = plot_widget()
    qtbot.addWidget(glw)
    plot = glw.addPlot()
    box = QGraphicsRectItem(QRectF(2, 3, 4, 5))
    plot.addItem(box)
    vb = plot.getViewBox()
    glw.resize(300, 300)
    glw.show()
    qtbot.waitExposed(glw)
    qtbot.waitUntil(lambda: vb.width() > 100)
    vb.setRange(QRectF(0, 0, 10, 10), padding=0)
    vb.updateMatrix()  # the items where they are drawn (pyqtgraph moves them at its paint)
    scene = glw.scene()
    inside = box.mapToScene(QPointF(4, 5))
    outside = box.mapToScene(QPointF(9, 9))
    assert box in scene.items(inside)
    assert box not in scene.items(outside)
    # moved: found where it is now, not where it was (no stale index)
    box.setRect(QRectF(7, 7, 2, 2))
    assert box in scene.items(outside)
    assert box not in scene.items(inside)
    assert box in scene.items(box.mapRectToScene(box.rect()))
    glw.close()
