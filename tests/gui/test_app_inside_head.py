"""Inside one head, the embedding and the attention map's stages, end to end (pytest-qt,
offscreen), checked against the session the worker holds and hand-written formulas."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
import torch

pytest.importorskip("pytestqt")

from tests.gui.conftest import TIMEOUT, click_scene, settle  # noqa: E402

PROMPT = "the cat sat on the mat. the cat sat on the mat."


@pytest.fixture
def window_options():
    return {"prompt": PROMPT}


def session(win):
    return win.controller.client.worker.session  # read only while the worker is idle


def show_panel(qtbot, win, key):
    win.analysis.reveal(key)
    qtbot.waitUntil(lambda: win.analysis.visible[key], timeout=TIMEOUT)
    return settle(qtbot, win)


def _inside(qtbot, win):
    snap = settle(qtbot, win)
    res = snap.extra["analysis"]
    assert res.errors == {}
    return snap, res.get("inside_head")


def test_panel_shows_the_selected_head_and_query_and_follows_a_scrub(qtbot, window):
    win, c = window, window.controller
    show_panel(qtbot, win, "inside_head")
    panel = win.analysis.panels["inside_head"]
    settle(qtbot, win, c.step(4))
    settle(qtbot, win, c.select_head(1, 2))
    snap, ih = _inside(qtbot, win)
    assert panel.view is ih
    assert (ih.layer, ih.head, ih.query) == (1, 2, snap.query) == (1, 2, snap.n_tokens - 1)
    s = session(win)
    T = len(s.window_tokens)
    assert np.abs(ih.weights - s.attention()[1, 2, T - 1]).max() <= 1e-5
    assert "L1 H2" in panel.header.text() and f"query {snap.query}" in panel.header.text()
    # the bars are the numbers: weights over every key, scores over the unmasked ones
    assert np.allclose(panel.bars_weights.opts["height"], ih.weights)
    assert np.allclose(panel.bars_scores.opts["height"], ih.scores[~ih.masked])
    # another query: the future keys are masked (-inf columns) and weigh 0
    settle(qtbot, win, c.set_query(5))
    snap, ih = _inside(qtbot, win)
    assert ih.query == 5 and ih.masked.sum() == T - 6 and (ih.weights[6:] == 0).all()
    assert len(panel.bars_masked.opts["x"]) == T - 6
    assert np.abs(ih.weights - session(win).attention()[1, 2, 5]).max() <= 1e-5
    # a scrub back on the timeline: the panel follows the shorter text
    settle(qtbot, win, c.set_query(None))
    settle(qtbot, win, c.goto(1))
    snap, ih = _inside(qtbot, win)
    s = session(win)
    T = len(s.window_tokens)
    assert ih.query == snap.n_tokens - 1 and ih.scores.shape == (T,)
    assert np.abs(ih.weights - s.attention()[1, 2, T - 1]).max() <= 1e-5
    assert panel.view is ih


def test_the_formula_under_the_mouse_and_the_chosen_keys_products(qtbot, window):
    win = window
    show_panel(qtbot, win, "inside_head")
    panel = win.analysis.panels["inside_head"]
    _snap, ih = _inside(qtbot, win)
    j = 2
    pt = panel.p_weights.getViewBox().mapViewToScene(
        pg.Point(j, float(ih.weights[j]) / 2))
    text = panel.describe(pt)
    assert f"{ih.scores[j]:.4f}" in text and f"{ih.weights[j]:.4f}" in text
    qk = float(ih.q @ ih.keys[j])
    assert f"{qk:.4f}" in text and ih.scale_text in text
    click_scene(qtbot, panel.glw, pt)
    assert panel.chosen_key() == j and panel.key_box.value() == j
    dims = np.argsort(-np.abs(ih.q * ih.keys[j]))[:len(panel._dims)]
    assert list(panel._dims) == list(dims)
    assert np.allclose(panel.bars_prod.opts["height"], (ih.q * ih.keys[j])[dims], atol=1e-6)


def test_stage_selector_changes_the_maps_image_and_colour_bar(qtbot, window):
    win, c = window, window.controller
    settle(qtbot, win, c.step(3))
    view = win.attention
    weights_img = np.array(view.image.image, copy=True)
    assert view.colorbar.getAxis("left").labelText.startswith("weight")
    raw_i = view.stage_box.findData("raw")
    view.stage_box.setCurrentIndex(raw_i)  # the user picks "Raw scores"
    snap = settle(qtbot, win)
    assert snap.view.map_stage == "raw"
    stage, m = snap.extra["map_stage"]
    s = session(win)
    T = len(s.window_tokens)
    # softmax of the raw scores with the future at -inf is the head's attention
    masked = np.where(np.triu(np.ones((T, T), bool), 1), -np.inf, m)
    e = np.exp(masked - masked.max(-1, keepdims=True))
    assert np.abs(e / e.sum(-1, keepdims=True) - s.attention()[0, 0]).max() <= 1e-5
    assert np.isfinite(m).all()  # before the mask: the future has scores too
    img = np.asarray(view.image.image)
    assert not np.allclose(np.nan_to_num(img), np.nan_to_num(weights_img))
    lo, hi = view.colorbar.levels()
    assert lo == pytest.approx(-hi) and hi == pytest.approx(np.abs(m).max())
    assert "score" in view.colorbar.getAxis("left").labelText
    # masked scores: -inf exactly above the diagonal, drawn as NaN over the -inf colour
    win.actions["map_stage_masked"].trigger()
    snap = settle(qtbot, win)
    _stage, mm = snap.extra["map_stage"]
    upper = np.triu(np.ones((T, T), bool), 1)
    assert np.isneginf(mm[upper]).all() and np.isfinite(mm[~upper]).all()
    assert np.isnan(np.asarray(view.image.image)[upper]).all()
    assert view.map.backdrop_fill.brush().color().name() == "#b0307a"
    assert "masked" in view.describe(0, T - 1) and "−∞" in view.describe(0, T - 1)
    # value-weighted: alpha times |v W_O| from the weights, by hand
    win.actions["map_stage_value"].trigger()
    snap = settle(qtbot, win)
    _stage, vw = snap.extra["map_stage"]
    model = s.model
    with torch.no_grad():
        out = model(torch.tensor([s.window_tokens]), return_resid=True)
        x = out.residuals[0][0]
        blk = model.h[0]
        v = blk.attn.c_attn(blk.ln_1(x))[:, 2 * 32:3 * 32][:, 0:8]  # head 0's values
        f = v @ blk.attn.c_proj.weight[:, 0:8].T  # (T, C)
        want = s.attention()[0, 0] * f.norm(dim=-1).numpy()[None, :]
    assert np.abs(np.nan_to_num(vw) - want).max() <= 1e-5
    assert view.colorbar.levels()[0] == 0
    # back to the weights: the image is the weights again
    win.actions["map_stage_weights"].trigger()
    snap = settle(qtbot, win)
    assert "map_stage" not in snap.extra
    assert view.stage_box.currentData() == "weights"
    assert view.colorbar.getAxis("left").labelText.startswith("weight")


def test_value_weighted_thumbnails(qtbot, window):
    win, c = window, window.controller
    settle(qtbot, win, c.set_view(grid_mode="value"))
    snap = settle(qtbot, win)
    assert snap.grid_mode == "value"
    assert "value-weighted" in win.grid.caption.text()
    settle(qtbot, win, c.step(2))
    snap = settle(qtbot, win)
    assert snap.grid_mode == "value"
    # one thumbnail pixel against the formula: rows are shares of the row's value-weighted sum
    from gptviz.analysis.scores import window_residuals, window_value_weighted

    s = session(win)
    ids = torch.tensor(s.window_tokens)
    vw = window_value_weighted(s.model, window_residuals(s.model, ids))
    share = vw / vw.sum(-1, keepdims=True)
    T = share.shape[-1]
    px = snap.grid[snap.grid_cell - 1, 0]  # layer 0, head 0: its last row is the last query
    expect = np.sqrt(share[0, 0, T - 1, 0]) if snap.view.sqrt_scale else share[0, 0, T - 1, 0]
    assert px == pytest.approx(expect, abs=1e-5)


def test_embedding_panel(qtbot, window):
    win, c = window, window.controller
    show_panel(qtbot, win, "embedding")
    panel = win.analysis.panels["embedding"]
    settle(qtbot, win, c.set_query(3))
    snap = settle(qtbot, win)
    emb = snap.extra["analysis"].get("embedding")
    assert panel.view is emb and emb.query == 3
    s = session(win)
    u = s.window_tokens[3]
    we = s.model.wte.weight[u].detach().numpy()
    wp = s.model.wpe.weight[3].detach().numpy()
    assert f"{np.linalg.norm(we):.3f}" in panel.header.text()
    assert f"{np.linalg.norm(wp):.3f}" in panel.header.text()
    assert f"{np.linalg.norm(we + wp):.3f}" in panel.header.text()
    assert panel.map.data is emb.position_map


def test_keys_reach_the_stages_and_panels(qtbot, window):
    win = window
    keys = {a.shortcut().toString() for k, a in win.actions.items() if k.startswith("map_stage")}
    assert keys == {"Alt+1", "Alt+2", "Alt+3", "Alt+4"}
    texts = [a.text() for a in win.menus["map_stage"].actions()]
    assert texts == ["&Weights", "&Raw scores", "&Masked scores", "&Value-weighted"]
    toggle = win.docks["inside_head"].toggleViewAction()
    assert toggle.shortcut().toString() == "Ctrl+Alt+I"
    from gptviz_app.actions.shortcuts import shortcut_rows

    listed = " ".join(keys for _what, keys in shortcut_rows(win))  # Help ▸ Keyboard shortcuts
    for k in ("Alt+1", "Alt+4", "Ctrl+Alt+I", "Ctrl+Alt+E"):
        assert k in listed
    # pressed on the focused attention map, as a lecturer would
    from tests.gui.test_app_lecture import press

    win.attention.glw.setFocus()
    press(qtbot, win.attention.glw, "Alt+3")
    qtbot.waitUntil(lambda: win.controller.view.map_stage == "masked", timeout=TIMEOUT)
    snap = settle(qtbot, win)
    assert snap.extra["map_stage"][0] == "masked"
    assert win.attention.stage_box.currentData() == "masked"
    press(qtbot, win.attention.glw, "Ctrl+Alt+I")
    qtbot.waitUntil(lambda: win.analysis.visible["inside_head"], timeout=TIMEOUT)
    win.attention.glw.setFocus()
    press(qtbot, win.attention.glw, "Alt+1")
    qtbot.waitUntil(lambda: win.controller.view.map_stage == "weights", timeout=TIMEOUT)
    press(qtbot, win.attention.glw, "Ctrl+Alt+E")
    qtbot.waitUntil(lambda: win.analysis.visible["embedding"], timeout=TIMEOUT)
