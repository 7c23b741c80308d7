"""The logit attribution and activation patching panels, end to end (pytest-qt, offscreen):
the numbers they show are checked against forward hooks on the model the worker holds
(tests/test_attribution.py's reference), per step, with a "vs" token picked in the
next-token chart; a post-LayerNorm model says the pieces cannot add up; patching runs on the
worker with progress, says when the prompts differ in length, and can be cancelled."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from tests.gui.conftest import TIMEOUT, click_scene, close_window, settle, show_window  # noqa: E402
from tests.test_attribution import ours_reference  # noqa: E402

PROMPT = "the cat sat on the mat. the cat sat on"


@pytest.fixture
def window_options():
    return {"prompt": PROMPT}


def esc(text):
    from gptviz_app.panels.widgets import esc as escape

    return escape(text)


def session(win):
    return win.controller.client.worker.session  # read only while the worker is idle


def show_panel(qtbot, win, key):
    win.analysis.reveal(key)
    qtbot.waitUntil(lambda: win.analysis.visible[key], timeout=TIMEOUT)
    return settle(qtbot, win)


def attribution(snap):
    res = snap.extra["analysis"]
    assert "attribution" not in res.errors, res.errors
    return res.get("attribution")


def check_against_hooks(win, view, target, vs=None):
    s = session(win)
    ids = s.window_tokens
    ref = ours_reference(s.model, ids, view.position - s.window_start, target, vs)
    a = view.attribution
    np.testing.assert_allclose(a.heads, ref["heads"], atol=1e-4)
    np.testing.assert_allclose(a.mlps, ref["mlps"], atol=1e-4)
    assert abs(a.logit - ref["logit"]) < 1e-4 and abs(a.embed - ref["embed"]) < 1e-4
    assert abs(a.embed + a.heads.sum() + a.mlps.sum() + a.rest - ref["logit"]) < 1e-4


def test_attribution_map_of_the_newest_token_per_step_and_vs(qtbot, window):
    panel = window.analysis.panels["attribution"]
    c = window.controller
    snap = show_panel(qtbot, window, "attribution")
    for _ in range(3):
        c.step()
        snap = settle(qtbot, window)
        view = attribution(snap)
        T = snap.n_tokens
        newest = session(window).tokens[-1]
        assert view.position == T - 2 and view.target_id == newest
        assert view.target_id == snap.candidates.chosen_id  # the chart's chosen bar
        check_against_hooks(window, view, newest)
        # what is drawn is that map
        np.testing.assert_allclose(panel.map.data, view.attribution.heads, atol=1e-6)
        np.testing.assert_allclose(panel.mlp.data[:, 0], view.attribution.mlps, atol=1e-6)
        assert panel.map.shape == (2, 4) and esc(view.target_token) in panel.header.text()
    # Shift+click another bar of the next-token chart: the map attributes chosen - that one
    nt = window.next_token
    qtbot.waitUntil(lambda: nt.n_shown > 3, timeout=TIMEOUT)
    cand = snap.candidates
    row = next(i for i in range(nt.n_shown) if i != cand.chosen)
    other = int(cand.ids[row])
    n_before = session(window).n_tokens
    click_scene(qtbot, nt.glw, nt.row_position(row), modifier=Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: panel.vs == other, timeout=TIMEOUT)
    snap = settle(qtbot, window)
    view = attribution(snap)
    assert session(window).n_tokens == n_before  # a shift+click does not force a token
    assert view.vs_id == other and nt.compare_id == other and panel.stop.isVisible()
    check_against_hooks(window, view, view.target_id, other)
    assert "−" in panel.header.text()
    # the comparison stays through a step; "Stop comparing" ends it
    c.step()
    view = attribution(settle(qtbot, window))
    assert view.vs_id == other
    check_against_hooks(window, view, session(window).tokens[-1], other)
    panel.stop.click()
    view = attribution(settle(qtbot, window))
    assert view.vs_id is None and nt.compare_id is None and not panel.stop.isVisible()
    # clicking a head selects it everywhere
    qtbot.waitUntil(lambda: panel.map.vb.width() > 20, timeout=TIMEOUT)
    click_scene(qtbot, panel.glw, panel.map.cell_center(1, 2))
    qtbot.waitUntil(lambda: (c.snapshot.view.layer, c.snapshot.view.head) == (1, 2),
                    timeout=TIMEOUT)


def test_attribution_follows_the_ablation(qtbot, window):
    panel = window.analysis.panels["attribution"]
    show_panel(qtbot, window, "attribution")
    window.analysis.toggle_head(1, 3)
    qtbot.waitUntil(lambda: window.analysis.ablated == ((1, 3),), timeout=TIMEOUT)
    view = attribution(settle(qtbot, window))
    assert view.n_ablated == 1 and view.attribution.heads[1, 3] == 0.0
    assert "ablated" in panel.header.text()
    s = session(window)
    ids = s.window_tokens
    # the reference: the ablated model, by hooks on a copy with that head's output zeroed
    import copy

    import torch

    m = copy.deepcopy(s.model)
    hd = m.config.head_dim

    def zero(_mod, args):
        z = args[0].clone()
        z[..., 3 * hd:4 * hd] = 0
        return (z,)

    h = m.h[1].attn.c_proj.register_forward_pre_hook(zero)
    try:
        with torch.no_grad():
            logits = m(torch.tensor([ids])).logits[0, len(ids) - 2]
    finally:
        h.remove()
    assert abs(view.attribution.logit - float(logits[ids[-1]])) < 1e-4


def test_post_ln_model_says_cannot_add_up(qtbot, tiny_bundle_factory):
    win = show_window(qtbot, tiny_bundle_factory(ln_placement="post", final_ln=False), PROMPT)
    try:
        panel = win.analysis.panels["attribution"]
        snap = show_panel(qtbot, win, "attribution")
        view = attribution(snap)
        assert view.attribution is None and "cannot add up" in view.reason
        assert "cannot add up" in panel.header.text() and panel.map.shape == (0, 0)
    finally:
        close_window(win)


def _hooked_metric(model, ids, target, vs, module=None, fn=None):
    import torch

    h = module.register_forward_pre_hook(fn) if module is not None else None
    try:
        with torch.no_grad():
            lg = model(torch.tensor([ids])).logits[0, -1].double()
    finally:
        if h is not None:
            h.remove()
    return float(lg[target] - lg[vs])


def test_patching_panel_runs_with_progress_and_matches_hooks(qtbot, window):
    panel = window.analysis.panels["patching"]
    show_panel(qtbot, window, "patching")
    s = session(window)
    tok = s.tokenizer
    clean = s.window_tokens
    # a corrupted prompt of the same length: two tokens changed
    corrupt_ids = list(clean)
    corrupt_ids[2] = clean[2] + 1 if clean[2] + 1 < s.config.vocab_size else 5
    corrupt = tok.decode(corrupt_ids)
    if tok.encode(corrupt) != corrupt_ids:  # pick a text that re-encodes the same
        corrupt = PROMPT.replace("cat", "dog", 1)
        corrupt_ids = tok.encode(corrupt)
    assert len(corrupt_ids) == len(clean)
    seen = []
    window.controller.client.result.connect(
        lambda gen, cmd, out: seen.append(out.get("progress")) if cmd == "patch" else None)
    target, vs = tok.decode([clean[1]]), tok.decode([clean[3]])
    panel.corrupt.setText(corrupt)
    panel.target.setText(target)
    panel.vs.setText(vs)
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=TIMEOUT)
    r = panel.result
    L, H, hd = s.config.n_layer, s.config.n_head, s.config.head_dim
    assert (L * 2, L * 2) in seen and panel.progress.value() == L * 2
    t_id, v_id = tok.encode(target)[0], tok.encode(vs)[0]
    mc = _hooked_metric(s.model, clean, t_id, v_id)
    mx = _hooked_metric(s.model, corrupt_ids, t_id, v_id)
    assert abs(r["clean_metric"] - mc) < 1e-4 and abs(r["corrupt_metric"] - mx) < 1e-4
    # clean z before c_proj, by a hook, then patched into the corrupted run by another
    got = {}
    hooks = [b.attn.c_proj.register_forward_pre_hook(
        lambda _m, a, i=i: got.__setitem__(i, a[0].clone())) for i, b in enumerate(s.model.h)]
    _hooked_metric(s.model, clean, t_id, v_id)
    for h in hooks:
        h.remove()
    for layer in range(L):
        for head in range(H):
            def put(_m, a, layer=layer, head=head):
                z = a[0].clone()
                z[..., head * hd:(head + 1) * hd] = got[layer][..., head * hd:(head + 1) * hd]
                return (z,)
            m = _hooked_metric(s.model, corrupt_ids, t_id, v_id, s.model.h[layer].attn.c_proj,
                               put)
            assert abs(r["heads"][layer, head] - (m - mx) / (mc - mx)) < 1e-3
    np.testing.assert_allclose(panel.heads.data, r["heads"])
    assert panel.resid.shape == (L, len(clean))
    # a click on a head asks for it at each position
    qtbot.waitUntil(lambda: panel.heads.vb.width() > 20, timeout=TIMEOUT)
    click_scene(qtbot, panel.glw, panel.heads.cell_center(0, 1))
    qtbot.waitUntil(lambda: panel.head_row is not None, timeout=TIMEOUT)
    assert panel.head_row["layer"] == 0 and panel.head_row["head"] == 1
    assert panel.one.shape == (1, len(clean))
    # prompts of different lengths: the panel says so, and how
    panel.corrupt.setText(corrupt + " and more words here")
    panel.run_button.click()
    qtbot.waitUntil(lambda: "in the corrupted prompt" in panel.header.text(), timeout=TIMEOUT)
    assert "remove" in panel.header.text() and f"<b>{len(clean)}</b> tokens" in \
        panel.header.text()
    assert "tokenisations" in panel.readout.text() and "clean:" in panel.header.toolTip()
    # cancel: a run and at once a newer request
    panel.corrupt.setText(corrupt)
    panel.run_button.click()
    panel.cancel()
    qtbot.waitUntil(lambda: "cancelled" in panel.header.text(), timeout=TIMEOUT)
    settle(qtbot, window)
