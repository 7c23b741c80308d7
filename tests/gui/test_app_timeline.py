"""The window's training timeline and block diagram: the slider, the iteration it says and
the map it draws agree with a fresh forward of that snapshot; a click on the diagram selects
the layer in the Controller's view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gptviz.io.checkpoint import load_gptviz_checkpoint
from gptviz.train.snapshots import save_snapshot

from .conftest import TIMEOUT, close_window, settle, show_window

pytest.importorskip("pytestqt")

ITERATIONS = ((0, "pretrain"), (10, "pretrain"), (25, "finetune"))


@pytest.fixture
def series(tmp_path, tiny_bundle_factory):
    """Three snapshots of different random models (smaller than the window's model)."""
    for seed, (it, stage) in enumerate(ITERATIONS):
        b = tiny_bundle_factory(seed=seed + 5, n_layer=1, n_head=2, n_embd=16)
        save_snapshot(tmp_path, b.model, b.tokenizer, it, stage)
    return tmp_path


def _show(qtbot, win, key):
    win.analysis.reveal(key)
    qtbot.waitUntil(lambda: win.analysis.visible[key], timeout=TIMEOUT)
    return settle(qtbot, win)


def _fresh_map(path, prompt, layer, head):
    bundle = load_gptviz_checkpoint(path)
    x = torch.tensor([bundle.tokenizer.encode(prompt)])
    with torch.no_grad():
        att = bundle.model(x, return_attn=True).attentions
    layer = min(layer, len(att) - 1)
    a = att[layer][0, min(head, att[layer].shape[1] - 1)].numpy()  # (T, T)
    return np.where(np.tri(*a.shape, dtype=bool), a, np.nan)


def test_slider_label_and_map_show_the_same_snapshot(qtbot, tiny_bundle, series):
    from PySide6.QtCore import Qt

    win = show_window(qtbot, tiny_bundle)
    panel = win.analysis.panels["timeline"]
    win.controller.select_head(1, 3)  # the snapshots have one layer of two heads: clamped
    _show(qtbot, win, "timeline")
    panel.open_directory(str(series))
    qtbot.waitUntil(lambda: panel.view is not None
                    and panel.view.directory == str(series), timeout=TIMEOUT)
    assert panel.slider.maximum() == len(ITERATIONS) - 1
    assert panel.slider.value() == len(ITERATIONS) - 1  # opens on the last snapshot
    for index in (0, 1, 2, 1):
        panel.slider.setValue(index)
        qtbot.waitUntil(lambda i=index: panel.view.frame.index == i, timeout=TIMEOUT)
        settle(qtbot, win)
        it, stage = ITERATIONS[index]
        assert panel.view.frame.iteration == it
        assert panel.iteration_label.text().startswith(f"iteration {it:,} ·")
        want = _fresh_map(series / f"{it:06d}", panel.prompt.text(), 1, 3)
        np.testing.assert_allclose(panel.map.data, want, atol=1e-6)
    # the keyboard moves the slider too, without the window's stepping keys (← back, Home
    # reset): PgUp/PgDn, Ctrl+Home, End
    settle(qtbot, win, win.controller.step(3))
    panel.slider.setFocus()
    qtbot.keyClick(panel.slider, Qt.Key.Key_End)
    qtbot.waitUntil(lambda: panel.view.frame.index == 2, timeout=TIMEOUT)
    qtbot.keyClick(panel.slider, Qt.Key.Key_PageDown)
    qtbot.waitUntil(lambda: panel.view.frame.index == 1, timeout=TIMEOUT)
    qtbot.keyClick(panel.slider, Qt.Key.Key_Home, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: panel.view.frame.index == 0, timeout=TIMEOUT)
    qtbot.keyClick(panel.slider, Qt.Key.Key_PageUp)
    qtbot.waitUntil(lambda: panel.view.frame.index == 1, timeout=TIMEOUT)
    qtbot.keyClick(panel.slider, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: panel.view.frame.index == 2, timeout=TIMEOUT)
    assert settle(qtbot, win).n_generated == 3
    close_window(win)


def test_a_bad_run_folder_is_said_in_the_panel(qtbot, tiny_bundle, tmp_path):
    win = show_window(qtbot, tiny_bundle)
    panel = win.analysis.panels["timeline"]
    _show(qtbot, win, "timeline")
    panel.open_directory(str(tmp_path))
    qtbot.waitUntil(lambda: "no snapshot folders" in panel.readout.text(), timeout=TIMEOUT)
    close_window(win)


def test_clicking_the_block_diagram_selects_the_layer(qtbot, tiny_bundle):
    from PySide6.QtCore import Qt

    win = show_window(qtbot, tiny_bundle)
    panel = win.analysis.panels["block_diagram"]
    _show(qtbot, win, "block_diagram")
    view = panel.view
    qtbot.waitUntil(lambda: view.diagram is not None, timeout=TIMEOUT)
    assert view.diagram.n_layer == tiny_bundle.config.n_layer
    view.grab()  # lay out the click regions
    hit = next(h for h in view.hits if h.layer == 1 and h.head < 0)
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=hit.rect.center().toPoint())
    snap = settle(qtbot, win)
    assert win.controller.view.layer == 1 and snap.view.layer == 1
    assert view.layer == 1  # drawn open
    view.grab()
    head = next(h for h in view.hits if h.layer == 1 and h.head == 2)
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=head.rect.center().toPoint())
    settle(qtbot, win)
    assert (win.controller.view.layer, win.controller.view.head) == (1, 2)
    # the window's layer keys work with the diagram focused, and it follows them
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Up)  # previous layer
    qtbot.waitUntil(lambda: win.controller.view.layer == 0, timeout=TIMEOUT)
    settle(qtbot, win)
    assert view.layer == 0
    close_window(win)


def test_a_run_that_fails_to_open_gives_the_worker_back_the_run_shown(qtbot, tiny_bundle,
                                                                       series, tmp_path):
    """Open a good run, then a folder without snapshots: the panel says why and shows the
    good run again; so does the worker (the next step's readout is the good run's, not the
    bad folder's error)."""
    bad = tmp_path / "bad"
    bad.mkdir()
    win = show_window(qtbot, tiny_bundle)
    panel = win.analysis.panels["timeline"]
    _show(qtbot, win, "timeline")
    panel.open_directory(str(series))
    # the shipped run is shown first: wait for this one
    qtbot.waitUntil(lambda: panel.view is not None and panel.view.directory == str(series),
                    timeout=TIMEOUT)
    panel.open_directory(str(bad))
    qtbot.waitUntil(lambda: panel.readout.text().startswith("Cannot open that run"),
                    timeout=TIMEOUT)
    settle(qtbot, win, win.controller.step(1))
    qtbot.waitUntil(lambda: panel.readout.text().startswith("iteration"), timeout=TIMEOUT)
    assert panel.directory == str(series) and "bad" not in panel.readout.text()
    close_window(win)


def test_the_curves_legend_takes_a_line_a_key_in_a_narrow_panel(qtbot, tiny_bundle):
    """A one-line legend wider than half the plots made its column starve the probe and the
    bars beside it (presentation fonts): there it takes a line a key, and the title row is
    as high as its lines."""
    from gptviz_app.panels.timeline import CURVES

    win = show_window(qtbot, tiny_bundle)
    panel = win.analysis.panels["timeline"]
    panel._legend_keys = [(f"<span>{label}</span>", label) for _n, label, _c, _d in CURVES]
    for width, wrapped in ((300, True), (4000, False)):
        panel._legend_html = None
        panel.glw.resize(width, 500)
        panel._draw_legend()
        html, _size = panel._legend_html
        assert ("<br>" in html) == wrapped
        lines = html.count("<br>") + 1
        assert panel.curves.titleLabel.maximumHeight() >= min(30, 12 * lines)
        if wrapped:
            assert panel.curves.titleLabel.maximumHeight() > 30
    close_window(win)


def test_a_long_loss_curve_is_drawn_from_its_extremes(qtbot, tiny_bundle):
    """A run's curve of 200,000 points is drawn from about ten points per pixel column
    (pyqtgraph's peak down-sampling: the highest and lowest of each block), its spikes kept
    (drawing every point took 1.5 s for 10^6 points; peak-sampled 0.05 s)."""
    from types import SimpleNamespace

    from gptviz_app.panels.timeline import CURVES

    win = show_window(qtbot, tiny_bundle)
    try:
        _show(qtbot, win, "timeline")
        panel = win.analysis.panels["timeline"]
        n = 200_000
        x = np.arange(n, dtype=float)
        rng = np.random.default_rng(1)
        y = 3.0 * np.exp(-x / 40_000) + 0.01 * rng.standard_normal(n)
        y[123_457] = 9.0   # a spike
        y[77_001] = -1.0   # a dip
        name = CURVES[0][0]
        panel._draw_curves(SimpleNamespace(curves={name: np.stack([x, y], 1)},
                                           stage_spans=[], iterations=[0, n - 1],
                                           frame=SimpleNamespace(index=1)))
        panel.curves.getViewBox().autoRange(padding=0)
        panel.glw.grab()
        xs, ys = panel.curve_items[name].getData()
        columns = panel.curves.getViewBox().width()
        assert 0 < len(xs) <= 12 * columns + 8  # (200,000 points on ~240 columns)
        assert ys.max() == 9.0 and ys.min() == -1.0
    finally:
        close_window(win)
