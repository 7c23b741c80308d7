"""Hidden analysis panels do no work per step and catch up exactly when shown (pytest-qt,
offscreen).

A panel whose dock is closed, or whose tab is behind another, gets no ``apply_analysis`` call
while the text grows; the moment it is shown (a tab switch, its dock opened, floated) it shows
what a panel of the same kind that was given every snapshot shows. The reference is an
independent instance of the panel's class fed every snapshot the window received, one after
the other, as the window fed its panels before; the two are compared by what they show
(texts, check marks, list/tree/table contents, selected rows, plot data).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from tests.gui.conftest import TIMEOUT, settle  # noqa: E402

PROMPT = "the cat sat on the mat. the cat"


@pytest.fixture
def window_options():
    return {"prompt": PROMPT}


# ---------------------------------------------------------------------- what a panel shows
def _scene_state(scene) -> list:
    import pyqtgraph as pg
    from pyqtgraph.graphicsItems.ViewBox.ViewBox import ChildGroup
    from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsRectItem, QGraphicsTextItem

    out: list = []
    for it in scene.items(Qt.SortOrder.AscendingOrder):
        # the plots' data (items in a view box) and titles, not the frame (sized)
        parent = it.parentItem()
        if isinstance(it, QGraphicsTextItem) and isinstance(parent, pg.LabelItem):
            out.append(("title", it.toPlainText()))
            continue
        if not isinstance(parent, ChildGroup):
            continue
        if not it.isVisible():
            out.append(("hidden", type(it).__name__))
        elif isinstance(it, pg.ImageItem):
            img = it.image
            out.append(("image", None if img is None else np.asarray(img).copy()))
        elif isinstance(it, pg.BarGraphItem):
            out.append(("bars", {k: np.asarray(v).copy() for k, v in it.opts.items()
                                 if k in ("x", "x0", "y", "y0", "height", "width")
                                 and v is not None}))
        elif isinstance(it, pg.PlotDataItem):
            x, y = it.getData()
            out.append(("curve", None if x is None else (x.copy(), y.copy())))
        elif isinstance(it, pg.TextItem):
            out.append(("text", it.toPlainText()))
        elif isinstance(it, QGraphicsRectItem):
            out.append(("rect", it.rect().getRect()))
        elif isinstance(it, QGraphicsPathItem):
            out.append(("path", it.path().boundingRect().getRect(), it.path().elementCount()))
    return out


def _tree_rows(tree) -> list:
    out = []

    def walk(item, depth):
        out.append((depth, tuple(item.text(c) for c in range(tree.columnCount())),
                    item.isExpanded(), item.font(0).bold()))
        for i in range(item.childCount()):
            walk(item.child(i), depth + 1)

    for i in range(tree.topLevelItemCount()):
        walk(tree.topLevelItem(i), 0)
    cur = tree.currentItem()
    return [out, None if cur is None else cur.text(0)]


def _model_state(view) -> list:
    m = view.model()
    cells = [[m.data(m.index(r, c)) for c in range(m.columnCount())]
             for r in range(m.rowCount())]
    sel = sorted(i.row() for i in view.selectionModel().selectedRows())
    return [cells, sel]


def panel_state(panel) -> list:
    """What ``panel`` shows, widget by widget in creation order (sizes, scroll bars and axis
    ticks left out: they follow the widget's size, which a panel never shown does not have)."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import (
        QAbstractButton,
        QAbstractSlider,
        QAbstractSpinBox,
        QComboBox,
        QLabel,
        QLineEdit,
        QListWidget,
        QScrollBar,
        QTableView,
        QTreeWidget,
        QWidget,
    )

    out: list = []
    for w in [panel, *panel.findChildren(QWidget)]:
        name = type(w).__name__
        if isinstance(w, QLabel):
            out.append((name, w.text(), w.toolTip()))
        elif isinstance(w, QAbstractButton):
            out.append((name, w.text(), w.isChecked(), w.isEnabled()))
        elif isinstance(w, QComboBox):
            out.append((name, w.currentIndex(), [w.itemText(i) for i in range(w.count())],
                        [w.itemData(i) for i in range(w.count())]))
        elif isinstance(w, QAbstractSpinBox):
            out.append((name, w.text(), w.isEnabled()))
        elif isinstance(w, QAbstractSlider) and not isinstance(w, QScrollBar):  # sized
            out.append((name, w.value(), w.minimum(), w.maximum()))
        elif isinstance(w, QLineEdit):
            out.append((name, w.text()))
        elif isinstance(w, QListWidget):
            out.append((name, [w.item(i).text() for i in range(w.count())]))
        elif isinstance(w, QTreeWidget):
            out.append((name, _tree_rows(w)))
        elif isinstance(w, QTableView):
            out.append((name, _model_state(w)))
        elif isinstance(w, pg.GraphicsView):
            out.append((name, _scene_state(w.scene())))
    return out


def assert_same(a, b, where=""):
    """Two :func:`panel_state` lists are equal (arrays compared exactly, NaN equal to NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: {a!r} != {b!r}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ---------------------------------------------------------------------- the recording
class Recorder:
    """Every ``(result, snapshot)`` the window's analysis panels were offered, and how often
    each panel's ``apply_analysis`` ran."""

    def __init__(self, ui) -> None:
        self.ui = ui
        self.fed: list = []
        self.calls = dict.fromkeys(ui.panels, 0)
        inner = ui.apply_snapshot

        def apply_snapshot(snap):
            res = snap.extra.get("analysis")
            if res is not None:
                self.fed.append((res, snap))
            inner(snap)

        ui.apply_snapshot = apply_snapshot  # the controller calls the instance's attribute
        for key, p in ui.panels.items():
            p.apply_analysis = self._counted(key, p.apply_analysis)

    def _counted(self, key, inner):
        def apply_analysis(res, snap):
            self.calls[key] += 1
            inner(res, snap)
        return apply_analysis

    def reference(self, key, window):
        """A new panel of ``key``'s class given every snapshot so far, as before: follow,
        then apply_analysis, each step."""
        cls = type(self.ui.panels[key])
        ref = cls()
        ref.key = key
        ref.set_model(window.controller.model)
        for res, snap in self.fed:
            ref.follow(res, snap)
            ref.apply_analysis(res, snap)
        return ref


def build_history(qtbot, win, ui) -> None:
    """Steps that change what the panels show outside their own analyses: a selection, an
    ablation (and its mode), a branch, another map stage, while the ablation panel's
    effect is computed for the diagnostics panel."""
    c = win.controller
    ui.reveal("diagnostics")
    qtbot.waitUntil(lambda: ui.visible["diagnostics"], timeout=TIMEOUT)
    c.select_head(1, 0)
    settle(qtbot, win)
    ui.toggle_head(0, 1)
    qtbot.waitUntil(lambda: ui.ablated == ((0, 1),), timeout=TIMEOUT)
    settle(qtbot, win)
    c.step(3)
    settle(qtbot, win)
    for key in ui.panels:  # the ablation panel came up with the ablation: all closed now
        window_hide(win, key)
    qtbot.waitUntil(lambda: not any(ui.visible.values()), timeout=TIMEOUT)
    c.select_head(0, 1)
    settle(qtbot, win)
    for _ in range(2):
        c.back()
        settle(qtbot, win)
    c.force(7 if win.controller.snapshot.ids[-1] != 7 else 8, False)
    settle(qtbot, win)
    ui.set_mode("mean")
    settle(qtbot, win)
    c.set_view(map_stage="raw")
    settle(qtbot, win)
    c.step(2)
    settle(qtbot, win)
    c.select_head(1, 1)
    settle(qtbot, win)


def window_hide(win, key) -> None:
    win.docks[key].hide()


# ---------------------------------------------------------------------- tests
def test_hidden_panels_do_no_work_and_catch_up_exactly_when_shown(qtbot, window):
    ui = window.analysis
    rec = Recorder(ui)
    build_history(qtbot, window, ui)
    before = dict(rec.calls)
    c = window.controller
    c.step(2)
    settle(qtbot, window)
    assert rec.calls == before  # every panel hidden: none drew anything for those steps
    assert ui.stale == set(ui.panels)
    # the View menu's map stage follows the map while the inside-head panel is hidden
    assert window.actions["map_stage_raw"].isChecked()
    for key in ui.panels:
        ui.reveal(key)  # a tab switch (or the dock opened): caught up before any event
        assert ui.visible[key] and key not in ui.stale
        assert_same(panel_state(ui.panels[key]), panel_state(rec.reference(key, window)), key)
        # then the worker computes the panel's analyses for it: still the same as a panel
        # that was given every snapshot
        settle(qtbot, window)
        assert_same(panel_state(ui.panels[key]), panel_state(rec.reference(key, window)), key)
        window_hide(window, key)
        qtbot.waitUntil(lambda k=key: not ui.visible[k], timeout=TIMEOUT)


@pytest.mark.qt_log_ignore(r".*propagateSizeHints.*", r".*does not support raise\(\).*")
def test_a_floated_panel_catches_up_and_a_visible_one_updates_every_step(qtbot, window):
    ui = window.analysis
    rec = Recorder(ui)
    build_history(qtbot, window, ui)
    c = window.controller
    ui.reveal("ablation")
    ui.reveal("branches")  # the ablation panel's tab behind it
    qtbot.waitUntil(lambda: ui.visible["branches"] and not ui.visible["ablation"],
                    timeout=TIMEOUT)
    n = rec.calls["ablation"]
    ui.toggle_head(1, 0)
    settle(qtbot, window)
    assert rec.calls["ablation"] == n  # behind a tab: nothing drawn
    dock = window.docks["ablation"]
    dock.setFloating(True)  # dragged out of the tabs: a window of its own
    qtbot.waitUntil(lambda: ui.visible["ablation"], timeout=TIMEOUT)
    assert_same(panel_state(ui.panels["ablation"]), panel_state(rec.reference("ablation", window)))
    assert ui.panels["ablation"].list.count() == 2
    # both on screen now: each drawn at every step, each as a panel given every snapshot
    for _ in range(2):
        calls = dict(rec.calls)
        rows = ui.panels["branches"].rows()
        c.step(1)
        settle(qtbot, window)
        for key in ("ablation", "branches"):
            assert rec.calls[key] > calls[key]
            assert_same(panel_state(ui.panels[key]), panel_state(rec.reference(key, window)),
                        key)
        assert ui.panels["branches"].rows() != rows  # the current branch grew by one token
    dock.setFloating(False)



def test_exporting_a_hidden_panel_brings_it_up_to_date_first(qtbot, window, tmp_path):
    from gptviz_app.actions.export import plot_panels

    ui = window.analysis
    rec = Recorder(ui)
    build_history(qtbot, window, ui)
    window.controller.step(2)
    settle(qtbot, window)
    keys = [k for k in plot_panels(window) if k.split("-")[0] in ui.panels]
    assert keys and all(not ui.visible[k.split("-")[0]] for k in keys)
    for what in keys:
        key = what.split("-")[0]
        out = window.features.exporter.export(what, tmp_path / f"{what}.png")
        assert (tmp_path / f"{what}.png").is_file() and str(out).endswith(f"{what}.png")
        assert key not in ui.stale  # the picture is of what the panel shows now
        assert_same(panel_state(ui.panels[key]), panel_state(rec.reference(key, window)), key)
