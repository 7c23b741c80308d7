"""The head-writes, neurons and saliency panels end to end (pytest-qt, offscreen): what they
show is what the analyses computed, the head grid's hover line, the token-strip shading."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.gui.conftest import TIMEOUT, settle  # noqa: E402

PROMPT = "the cat sat on the mat. the cat"


@pytest.fixture
def window_options():
    return {"prompt": PROMPT}


def _show(qtbot, win, key):
    win.analysis.reveal(key)
    qtbot.waitUntil(lambda: win.analysis.visible[key], timeout=TIMEOUT)
    return settle(qtbot, win)


def _result(snap, name):
    res = snap.extra["analysis"]
    assert name not in res.errors, res.errors
    return res.get(name)


def test_head_writes_panel_and_grid_hover(qtbot, window):
    c = window.controller
    c.select_head(1, 2)
    snap = _show(qtbot, window, "head_writes")
    view = _result(snap, "head_writes")
    panel = window.analysis.panels["head_writes"]
    w = view.writes
    k = w.promoted_ids.shape[-1]
    assert panel.table.rowCount() == k
    assert panel.table.item(0, 0).text() == repr(view.promoted_tokens[1][2][0])
    assert panel.table.item(0, 1).text() == f"{float(w.promoted[1, 2, 0]):+.3f}"
    assert panel.table.item(0, 2).text() == repr(view.suppressed_tokens[1][2][0])
    assert "L1 H2" in panel.header.text()
    grid = window.grid
    assert grid.cell_note is not None and grid.cell_note(0, 3) == view.summary(0, 3)
    grid._on_move(grid.cell_center(0, 3))
    assert grid.readout.text().startswith("layer 0, head 3") and "writes +" in grid.readout.text()


def test_neuron_click_shades_the_token_strip(qtbot, window):
    snap = _show(qtbot, window, "neurons")
    view = _result(snap, "neurons")
    panel = window.analysis.panels["neurons"]
    L, k = view.top.ids.shape
    assert panel.table.rowCount() == L * k
    assert panel.table.item(k, 1).text() == f"N{int(view.top.ids[1, 0])}"
    panel.table.cellClicked.emit(k, 1)  # layer 1's most active neuron
    snap = settle(qtbot, window)
    view = _result(snap, "neurons")
    n = int(view.top.ids[1, 0])
    assert view.neuron == (1, n) and view.shading is not None
    a = view.shading
    strip = window.token_strip.canvas
    np.testing.assert_allclose(strip.weights, np.clip(a / a.max(), 0, 1), rtol=1e-6)
    assert f"L1 N{n}" in strip.weights_label and f"L1 N{n}" in panel.footer.text()


def test_saliency_panel_shades_and_reports_completeness(qtbot, window):
    snap = _show(qtbot, window, "saliency")
    view = _result(snap, "saliency")
    panel = window.analysis.panels["saliency"]
    r = view.result
    assert panel.table.rowCount() == r.scores.shape[0] == snap.T
    strip = window.token_strip.canvas
    np.testing.assert_allclose(strip.weights, r.scores / r.scores.max(), rtol=1e-6)
    panel.method.setCurrentIndex(panel.method.findData("ig"))
    panel.steps.setValue(8)
    snap = settle(qtbot, window)
    view = _result(snap, "saliency")
    assert view.result.method == "ig" and view.result.steps == 8
    assert "completeness" in panel.header.text()
    assert f"{view.result.attribution_sum:+.4f}" in panel.header.text()
