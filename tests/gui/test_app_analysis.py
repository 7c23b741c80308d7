"""The analysis panels of the desktop app, end to end (pytest-qt, offscreen).

Head diagnostics, logit lens, attention rollout, live head ablation and comparisons, checked
against the Qt-free core (``gptviz.analysis``) on the session the worker holds. Every Qt
warning fails a test, and no worker thread may be left running (conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from tests.gui.conftest import TIMEOUT, click_scene, close_window, settle, show_window  # noqa: E402

PROMPT = "the cat sat on the mat. the cat sat on the mat."


@pytest.fixture
def window_options():
    return {"prompt": PROMPT}


def result(snap):
    from gptviz.analysis.runner import AnalysisResult

    res = snap.extra["analysis"]
    assert isinstance(res, AnalysisResult)
    assert res.errors == {}
    return res


def session(win):
    return win.controller.client.worker.session  # read only while the worker is idle


def show_panel(qtbot, win, key):
    win.analysis.reveal(key)
    qtbot.waitUntil(lambda: win.analysis.visible[key], timeout=TIMEOUT)
    return settle(qtbot, win)


# ---------------------------------------------------------------------- menus
def test_analysis_menu_toolbar_and_hidden_panels(qtbot, window):
    ui = window.analysis
    menu = window.menus["analysis"]
    texts = [a.text() for a in menu.actions()]
    for title in ("Head diagnostics", "Ablation", "Logit lens", "Compare A/B",
                  "Attention rollout"):
        assert title in texts
        assert title in [a.text() for a in window.menus["panels"].actions()]
    for key in ("diagnostics", "ablation", "lens", "compare", "rollout"):
        assert window.docks[key].isHidden()
    # nothing is computed for hidden panels
    res = result(window.controller.snapshot)
    assert res.get("heads") is None and res.get("lens") is None and res.get("rollout") is None
    # one click on the toolbar shows a panel; a second click hides it
    for key in ("diagnostics", "ablation"):
        act = ui.toolbar_actions[key]
        assert act in ui.toolbar.actions()
        act.trigger()
        qtbot.waitUntil(lambda k=key: ui.visible[k], timeout=TIMEOUT)
    # both in one tab group: the one clicked last is in front, a click brings the other back
    ui.toolbar_actions["diagnostics"].trigger()
    qtbot.waitUntil(lambda: ui.visible["diagnostics"] and not ui.visible["ablation"],
                    timeout=TIMEOUT)
    assert not window.docks["ablation"].isHidden()
    ui.toolbar_actions["diagnostics"].trigger()
    qtbot.waitUntil(lambda: window.docks["diagnostics"].isHidden(), timeout=TIMEOUT)
    settle(qtbot, window)


# ---------------------------------------------------------------------- diagnostics
def test_diagnostics_show_head_scores_and_select_heads(qtbot, window):
    from gptviz.analysis import head_scores, induction_scores

    c = window.controller
    ui = window.analysis
    panel = ui.panels["diagnostics"]
    ui.toolbar_actions["diagnostics"].trigger()
    qtbot.waitUntil(lambda: ui.visible["diagnostics"], timeout=TIMEOUT)
    snap = settle(qtbot, window)
    res = result(snap)
    s = session(window)
    want = head_scores(s.attention(), s.window_tokens)
    heads = res.get("heads")
    assert heads is not None
    for name in ("prev_token", "first_token", "induction", "duplicate_token", "entropy"):
        np.testing.assert_allclose(heads.get(name), want.get(name), rtol=1e-12,
                                   equal_nan=True)
        np.testing.assert_allclose(panel.table_model.values[name], want.get(name),
                                   rtol=1e-12, equal_nan=True)
    assert np.isfinite(want.induction).all()  # the prompt repeats: scores are defined
    probe = induction_scores(s.model, n=50, seed=0, batch=4, vocab=s.n_choosable)
    np.testing.assert_allclose(heads.probe_induction, probe)
    # the map shows the chosen score
    np.testing.assert_allclose(panel.map.data, want.prev_token.astype(np.float32))
    panel.score_box.setCurrentIndex(panel.score_box.findData("entropy"))
    np.testing.assert_allclose(panel.map.data, want.entropy.astype(np.float32))
    assert "L1 H2" in panel.describe(1, 2) and f"{want.entropy[1, 2]:.4f}" in \
        panel.describe(1, 2)
    # the table sorts by the chosen score (entropy: lowest first), NaN last
    m = panel.table_model
    col = m.columns.index("entropy")
    shown = [float(m.values["entropy"][m.head_at(r)]) for r in range(m.rowCount())]
    assert shown == sorted(shown)
    panel.table.sortByColumn(m.columns.index("prev_token"), Qt.SortOrder.DescendingOrder)
    shown = [float(want.prev_token[m.head_at(r)]) for r in range(m.rowCount())]
    assert shown == sorted(shown, reverse=True)
    assert m.data(m.index(0, col)) == f"{want.entropy[m.head_at(0)]:.2f}"

    # clicking a map cell selects that head everywhere
    qtbot.waitUntil(lambda: panel.map.vb.width() > 20, timeout=TIMEOUT)
    click_scene(qtbot, panel.glw, panel.map.cell_center(1, 2))
    qtbot.waitUntil(lambda: (c.snapshot.view.layer, c.snapshot.view.head) == (1, 2),
                    timeout=TIMEOUT)
    snap = settle(qtbot, window)
    assert window.attention.layer_box.currentIndex() == 1
    assert window.attention.head_box.currentIndex() == 2
    np.testing.assert_array_equal(np.nan_to_num(snap.attn),
                                  np.nan_to_num(s.attention()[1, 2]))
    assert panel.map.box.rect().contains(2.5, 1.5)
    # ... and so does clicking a table row
    row = m.row_of(0, 3)
    panel.table.scrollTo(m.index(row, 0))
    rect = panel.table.visualRect(m.index(row, 0))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: (c.snapshot.view.layer, c.snapshot.view.head) == (0, 3),
                    timeout=TIMEOUT)
    assert panel.table.selectionModel().isRowSelected(m.row_of(0, 3))

    # computed only when the text changed: a view change reuses them, a step recomputes
    before = result(settle(qtbot, window)).get("heads")
    c.set_view(layer=1)
    snap = settle(qtbot, window)
    assert result(snap).get("heads") is before and "probe" not in result(snap).timings
    c.step()
    snap = settle(qtbot, window)
    assert result(snap).get("heads") is not before and result(snap).get("heads").n_tokens == snap.T
    # Ctrl+click on the map ablates the head (and marks it), a second one restores it
    click_scene(qtbot, panel.glw, panel.map.cell_center(1, 1),
                modifier=Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: ui.ablated == ((1, 1),), timeout=TIMEOUT)
    settle(qtbot, window)
    assert m.data(m.index(m.row_of(1, 1), m.columns.index("ablated"))) == "✗"
    assert not panel.map.marks.path().isEmpty()
    assert "ablated" in panel.describe(1, 1)
    click_scene(qtbot, panel.glw, panel.map.cell_center(1, 1),
                modifier=Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: ui.ablated == (), timeout=TIMEOUT)
    settle(qtbot, window)
    assert panel.map.marks.path().isEmpty()
    # and not at all while the panel is hidden
    window.docks["diagnostics"].hide()
    qtbot.waitUntil(lambda: not ui.visible["diagnostics"], timeout=TIMEOUT)
    c.step()
    assert result(settle(qtbot, window)).get("heads") is None


# ---------------------------------------------------------------------- logit lens
def test_lens_last_row_equals_the_next_token_distribution(qtbot, window):
    from gptviz.analysis import logit_lens

    c = window.controller
    lens = window.analysis.panels["lens"]
    snap = show_panel(qtbot, window, "lens")
    res = result(snap)
    k = lens.k
    cand = snap.candidates
    assert cand.kind == "next" and res.get("lens").position == snap.n_tokens - 1
    # the last read-out (block L) is the model's output: what the next-token panel shows
    np.testing.assert_array_equal(res.get("lens").top_ids[-1], cand.ids[:k])
    np.testing.assert_allclose(res.get("lens").top_probs[-1], cand.probs[:k], rtol=1e-5)
    assert lens.table.rowCount() == 3 and lens.table.columnCount() == k  # no next token yet
    assert lens.table.item(2, 0).text().startswith(cand.tokens[0])
    assert lens.table.verticalHeaderItem(2).text() == "L1 out = model"  # 0-based names
    # after a step the panel shows the distribution the newest token was drawn from: the
    # lens at the query before it has it as its last row, and the chosen token as target
    c.step()
    snap = settle(qtbot, window)
    c.set_query(snap.n_tokens - 2)
    snap = settle(qtbot, window)
    res = result(snap)
    cand = snap.candidates
    assert cand.kind == "last" and res.get("lens").position == snap.n_tokens - 2
    np.testing.assert_array_equal(res.get("lens").top_ids[-1], cand.ids[:k])
    np.testing.assert_allclose(res.get("lens").top_probs[-1], cand.probs[:k], rtol=1e-5)
    assert res.get("lens").target == cand.chosen_id
    assert res.get("lens").target_probs[-1] == pytest.approx(cand.chosen_prob, rel=1e-5)
    assert lens.table.columnCount() == k + 2
    # the query moves: the lens follows, equal to the core's
    c.set_query(3)
    res = result(settle(qtbot, window))
    s = session(window)
    want = logit_lens(s.model, s.window_tokens, position=3, k=k)
    assert res.get("lens").position == 3
    np.testing.assert_array_equal(res.get("lens").top_ids, want.top_ids)
    np.testing.assert_allclose(res.get("lens").top_probs, want.top_probs, rtol=1e-4)
    np.testing.assert_allclose(res.get("lens").target_probs, want.target_probs, rtol=1e-4)
    assert "query 3" in lens.header.text()
    # more tokens per layer
    lens.k_box.setValue(7)
    res = result(settle(qtbot, window))
    assert res.get("lens").top_ids.shape == (3, 7) and lens.table.columnCount() == 9


# ---------------------------------------------------------------------- ablation
# A popup menu on the offscreen platform: it says it cannot raise it or grab the keyboard.
@pytest.mark.qt_log_ignore(r".*propagateSizeHints.*", r".*does not support raise\(\).*",
                           r".*does not support grabbing the keyboard.*")
def test_ablating_a_head_from_the_grid_and_clearing_it(qtbot, window):
    c = window.controller
    ui = window.analysis
    grid = window.grid
    snap0 = settle(qtbot, window)
    probs0 = session(window).next_probs()
    cand0 = snap0.candidates
    assert cand0.kind == "next"
    c.select_head(1, 0)
    att1 = settle(qtbot, window).attn.copy()
    qtbot.waitUntil(lambda: grid.vb.width() > 50, timeout=TIMEOUT)
    # Ctrl+click a thumbnail: head (0, 1) off
    click_scene(qtbot, grid.glw, grid.cell_center(0, 1),
                modifier=Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: ui.ablated == ((0, 1),), timeout=TIMEOUT)
    snap = settle(qtbot, window)
    assert (snap.view.layer, snap.view.head) == (0, 1)  # Ctrl+click also selects it
    res = result(snap)
    assert res.ablated == ((0, 1),) and res.ablation_mode == "zero"
    c.select_head(1, 0)
    snap = settle(qtbot, window)
    # the next-token distribution and the later layer's maps change at once
    assert not np.array_equal(session(window).next_probs(), probs0)
    assert not np.array_equal(snap.candidates.probs, cand0.probs)
    assert not np.allclose(np.nan_to_num(snap.attn), np.nan_to_num(att1))
    # the head is marked in the grid, the diagnostics table and the ablation panel
    p = grid.cell_center(0, 1)
    assert ui.grid_cross.path().boundingRect().contains(grid.vb.mapSceneToView(p))
    assert ui.grid_dim.path().boundingRect().contains(grid.vb.mapSceneToView(p))
    assert not window.docks["ablation"].isHidden()   # shown on the first ablation
    ablation = ui.panels["ablation"]
    assert ablation.list.count() == 1 and ablation.list.item(0).text() == "✗ L0 H1"
    # the diagnostics panel (closed) draws nothing per step: it shows the mark once opened
    assert not ui.visible["diagnostics"]
    ui.reveal("diagnostics")
    m = ui.panels["diagnostics"].table_model
    assert m.data(m.index(m.row_of(0, 1), m.columns.index("ablated"))) == "✗"
    window.docks["diagnostics"].hide()  # the ablation panel in front again
    qtbot.waitUntil(lambda: ui.visible["ablation"], timeout=TIMEOUT)
    # right-click opens the head's menu, which toggles too (a second head, then back)
    click_scene(qtbot, grid.glw, grid.cell_center(1, 3), button=Qt.MouseButton.RightButton)
    qtbot.waitUntil(lambda: ui.last_menu is not None and ui.last_menu.isVisible(),
                    timeout=TIMEOUT)
    assert "Ablate L1 H3" in [a.text() for a in ui.last_menu.actions()]
    ui.last_menu.close()
    menu = ui.head_menu(1, 3)
    [a for a in menu.actions() if a.text() == "Ablate L1 H3"][0].trigger()
    qtbot.waitUntil(lambda: ui.ablated == ((0, 1), (1, 3)), timeout=TIMEOUT)
    menu = ui.head_menu(1, 3)
    [a for a in menu.actions() if a.text() == "Restore L1 H3"][0].trigger()
    qtbot.waitUntil(lambda: ui.ablated == ((0, 1),), timeout=TIMEOUT)
    # Clear all restores the exact original distribution
    qtbot.mouseClick(ablation.clear_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ui.ablated == (), timeout=TIMEOUT)
    snap = settle(qtbot, window)
    np.testing.assert_array_equal(session(window).next_probs(), probs0)
    np.testing.assert_array_equal(snap.candidates.ids, cand0.ids)
    np.testing.assert_array_equal(snap.candidates.probs, cand0.probs)
    c.select_head(1, 0)
    snap = settle(qtbot, window)
    np.testing.assert_array_equal(np.nan_to_num(snap.attn), np.nan_to_num(att1))
    assert ui.grid_cross.path().isEmpty() and ablation.list.count() == 0
    assert session(window).ablation is None


def test_a_new_model_clears_the_ablated_marks_of_the_diagnostics(qtbot, window):
    ui = window.analysis
    panel = ui.panels["diagnostics"]
    ui.toolbar_actions["diagnostics"].trigger()
    qtbot.waitUntil(lambda: ui.visible["diagnostics"], timeout=TIMEOUT)
    ui.toggle_head(0, 1)
    qtbot.waitUntil(lambda: ui.ablated == ((0, 1),), timeout=TIMEOUT)
    m = panel.table_model
    qtbot.waitUntil(lambda: m.ablated == {(0, 1)}, timeout=TIMEOUT)
    assert not panel.map.marks.path().isEmpty()
    # The same model announced again (as after File > Open): a fresh session, no ablation.
    panel.set_model(window.controller.model)
    col = m.columns.index("ablated")
    assert m.ablated == set()
    assert all(m.data(m.index(r, col)) in ("", None) for r in range(m.rowCount()))
    assert panel.map.marks.path().isEmpty()


def test_ablation_deltas_equal_ablation_effect(qtbot, window):
    import torch

    from gptviz.analysis import ablation_effect, head_output_means, make_ablation

    c = window.controller
    ui = window.analysis
    window.sampling.greedy.setChecked(True)
    settle(qtbot, window)
    c.step(3)
    settle(qtbot, window)  # (a newer request would cut a multi-step run short)
    snap = show_panel(qtbot, window, "ablation")
    assert snap.n_generated == 3
    cand_clean = snap.candidates
    ui.toggle_head(0, 1)
    ui.toggle_head(1, 3)
    qtbot.waitUntil(lambda: ui.ablated == ((0, 1), (1, 3)), timeout=TIMEOUT)
    snap = settle(qtbot, window)
    res = result(snap)
    s = session(window)
    ids = s.window_tokens
    want = ablation_effect(s.model, ids, [(0, 1), (1, 3)], position=-2)
    eff = res.get("effect")
    assert eff is ui.panels["ablation"].effect
    assert eff["position"] == len(ids) - 2 and eff["chosen_token"] == ids[-1]
    for key in ("top_token", "chosen_token"):
        assert eff[key] == want[key]
    for key in ("top_logprob_before", "top_logprob_after", "top_logprob_change",
                "chosen_logprob_before", "chosen_logprob_after", "chosen_logprob_change",
                "kl_bits", "total_variation"):
        assert eff[key] == pytest.approx(want[key], abs=2e-5), key
    assert [d["id"] for d in eff["top_after"]] == [d["id"] for d in want["top_after"]]
    dt = ui.panels["ablation"].delta_table
    assert dt.item(0, 3).text() == f"{eff['top_logprob_change']:+.3f}"
    assert dt.item(1, 3).text() == f"{eff['chosen_logprob_change']:+.3f}"
    assert dt.item(1, 0).text() == repr(s.display(ids[-1]))
    assert f"{eff['kl_bits']:.4f}" in ui.panels["ablation"].summary.text()
    # the next-token panel shows the ablated distribution of the newest step at once
    abl = make_ablation(s.config, [(0, 1), (1, 3)])
    with torch.no_grad():
        logits = s.model(torch.tensor([ids[:-1]]), ablation=abl, last_only=True).logits[0, -1]
    probs = torch.softmax(logits.float(), -1).numpy()
    cand = snap.candidates
    assert cand.kind == "last" and cand.chosen_id == ids[-1]
    np.testing.assert_allclose(cand.probs[:5], np.sort(probs)[::-1][:5], rtol=1e-5)
    assert cand.chosen_prob == pytest.approx(float(probs[ids[-1]]), rel=1e-5)
    assert not np.allclose(cand.probs[:5], cand_clean.probs[:5])
    # mean-ablation: the heads output their mean over the text up to the step (causal)
    mode_box = ui.panels["ablation"].mode_box
    mode_box.setCurrentIndex(mode_box.findData("mean"))
    qtbot.waitUntil(lambda: result(c.snapshot).ablation_mode == "mean", timeout=TIMEOUT)
    res = result(settle(qtbot, window))
    assert window.actions["ablation_mean"].isChecked()
    means = head_output_means(s.model, ids[:-1])  # positions 0 .. the step's prediction
    want = ablation_effect(s.model, ids, [(0, 1), (1, 3)], mode="mean", position=-2,
                           means=means)
    for key in ("top_logprob_change", "chosen_logprob_change", "kl_bits"):
        assert res.get("effect")[key] == pytest.approx(want[key], abs=2e-5), key
    assert res.means_tokens == len(ids) - 1
    # clearing brings back the clean distribution of the newest step, exactly
    ui.clear()
    qtbot.waitUntil(lambda: ui.ablated == (), timeout=TIMEOUT)
    snap = settle(qtbot, window)
    np.testing.assert_array_equal(snap.candidates.probs, cand_clean.probs)


# ---------------------------------------------------------------------- rollout
def test_rollout_map_and_token_strip(qtbot, window):
    from gptviz.analysis import attention_rollout, rollout_row

    c = window.controller
    ui = window.analysis
    canvas = window.token_strip.canvas
    ui.actions["rollout_strip"].setChecked(True)
    snap = settle(qtbot, window)
    res = result(snap)
    s = session(window)
    att = s.attention()
    q = snap.query - snap.window_start
    want = rollout_row(att, q)
    np.testing.assert_allclose(res.get("rollout").row, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(canvas.weights, want[:q + 1], rtol=1e-5, atol=1e-7)
    assert "rollout" in window.token_strip.legend.text()
    assert "attention from" not in window.token_strip.legend.text()
    assert f"attention rollout of query {snap.query}" in canvas.tooltip_text(q)
    assert res.get("rollout").map is None  # the map only when its panel is visible
    # the map, for the query the user picks
    snap = show_panel(qtbot, window, "rollout")
    c.set_query(5)
    snap = settle(qtbot, window)
    res = result(snap)
    full = attention_rollout(att)
    np.testing.assert_allclose(np.nan_to_num(res.get("rollout").map), full, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(canvas.weights, full[5, :6], rtol=1e-5, atol=1e-7)
    assert ui.panels["rollout"].map.box.rect().top() == 5
    # without the residual identity
    ui.panels["rollout"].residual.setChecked(False)
    qtbot.waitUntil(lambda: not result(c.snapshot).get("rollout").residual, timeout=TIMEOUT)
    res = result(settle(qtbot, window))
    np.testing.assert_allclose(res.get("rollout").row, rollout_row(att, 5, residual=False),
                               rtol=1e-5, atol=1e-7)
    # ablated heads are left out of the layer averages
    ui.toggle_head(0, 2)
    qtbot.waitUntil(lambda: ui.ablated == ((0, 2),), timeout=TIMEOUT)
    res = result(settle(qtbot, window))
    keep = np.ones((2, 4))
    keep[0, 2] = 0
    np.testing.assert_allclose(res.get("rollout").row, rollout_row(session(window).attention(), 5,
                                                            residual=False, head_mask=keep),
                               rtol=1e-5, atol=1e-7)
    # switched off: the strip shows the selected head's attention again
    ui.actions["rollout_strip"].setChecked(False)
    snap = settle(qtbot, window)
    np.testing.assert_allclose(canvas.weights, np.nan_to_num(snap.attn[5, :6]))
    assert "attention from query 5" in canvas.tooltip_text(3)
    assert "rollout" not in window.token_strip.legend.text()


# ---------------------------------------------------------------------- comparisons
def test_comparison_difference_is_a_minus_b_on_aligned_tokens(qtbot, window):
    from gptviz.analysis import attention_array

    c = window.controller
    ui = window.analysis
    cp = ui.panels["compare"]
    snap = show_panel(qtbot, window, "compare")
    assert "Pin" in result(snap).get("compare").message
    c.select_head(1, 2)
    cp.pin()
    snap = settle(qtbot, window)
    s = session(window)
    ids_a = list(s.window_tokens)
    assert result(snap).get("compare").pinned
    # another prompt of about the same length, compared position by position
    c.set_prompt("a dog ran to the hat. a dog ran to the hat.")
    settle(qtbot, window)
    cp.align_box.setCurrentIndex(cp.align_box.findData("position"))
    snap = settle(qtbot, window)
    res = result(snap)
    ids_b = list(s.window_tokens)
    att_a = attention_array(s.model, ids_a)[1, 2]
    att_b = attention_array(s.model, ids_b)[1, 2]
    n = min(len(ids_a), len(ids_b))
    cv = res.get("compare")
    assert cv.n == n and cv.source == "pinned" and (cv.layer, cv.head) == (1, 2)
    want = att_a[:n, :n] - att_b[:n, :n]
    np.testing.assert_allclose(np.nan_to_num(cv.diff), want, atol=1e-6)
    assert np.isnan(cv.diff[0, 1:]).all()  # the future stays masked
    assert np.abs(want).max() > 1e-3
    np.testing.assert_allclose(np.nan_to_num(cp.maps[2].data), want, atol=1e-6)
    np.testing.assert_allclose(np.nan_to_num(cp.maps[0].data), att_a, atol=1e-6)
    np.testing.assert_allclose(np.nan_to_num(cp.maps[1].data), att_b, atol=1e-6)
    # aligned by common prefix: two branches of one text agree on their shared prefix
    c.set_prompt(PROMPT)
    settle(qtbot, window)
    cp.pin()
    c.force(int(ids_a[3]), False)
    settle(qtbot, window)
    cp.align_box.setCurrentIndex(cp.align_box.findData("prefix"))
    res = result(settle(qtbot, window))
    assert res.get("compare").n == len(ids_a)
    np.testing.assert_array_equal(np.nan_to_num(res.get("compare").diff), 0.0)
    # clean (A) vs ablated (B): a later layer's maps differ
    ui.toggle_head(0, 1)
    qtbot.waitUntil(lambda: ui.ablated == ((0, 1),), timeout=TIMEOUT)
    window.actions["compare_ablation"].trigger()
    qtbot.waitUntil(lambda: result(c.snapshot).get("compare").source == "ablation", timeout=TIMEOUT)
    res = result(settle(qtbot, window))
    ids = list(session(window).window_tokens)
    clean = attention_array(s.model, ids)[1, 2]
    ablated = session(window).attention()[1, 2]
    np.testing.assert_allclose(np.nan_to_num(res.get("compare").diff), clean - ablated, atol=1e-6)
    assert np.abs(clean - ablated).max() > 1e-3
    assert "ablated" in res.get("compare").label_b


# ---------------------------------------------------------------------- a new analysis
def test_a_new_analysis_is_one_module_and_one_panel(qtbot, tiny_bundle, monkeypatch):
    """An analysis (Qt-free) and the panel that shows it, each registered with one line: the
    window gives it a dock, a toolbar entry and the result while the panel is visible."""
    from collections import Counter

    from PySide6.QtWidgets import QLabel, QVBoxLayout

    from gptviz.analysis.live import LiveAnalysis
    from gptviz.analysis.registry import register_analysis, unregister_analysis
    from gptviz_app.panels import registry

    class Repeats(LiveAnalysis):
        name = "repeats"

        def compute(self, inputs, settings):
            ids, counts = np.unique(inputs.ids, return_counts=True)
            return {int(i): int(n) for i, n in zip(ids, counts) if n > 1}

    class RepeatsPanel(registry.AnalysisPanel):
        title = "Repeated tokens"
        analyses = ("repeats",)

        def __init__(self):
            super().__init__()
            self.label = QLabel("")
            QVBoxLayout(self).addWidget(self.label)
            self.shown = None

        def apply_analysis(self, res, snap):
            if res.get("repeats") is not None:
                self.shown = res.get("repeats")
                self.label.setText(f"{len(self.shown)} tokens repeat")

    register_analysis("repeats", Repeats)
    monkeypatch.setitem(registry.PANELS, "repeats", RepeatsPanel)
    try:
        win = show_window(qtbot, tiny_bundle, PROMPT)
        ui = win.analysis
        panel = ui.panels["repeats"]
        assert win.docks["repeats"].windowTitle() == "Repeated tokens"
        assert ui.toolbar_actions["repeats"] in ui.more_menu.actions()
        assert result(win.controller.snapshot).get("repeats") is None  # hidden: not computed
        snap = show_panel(qtbot, win, "repeats")
        s = session(win)
        want = {t: n for t, n in Counter(s.window_tokens).items() if n > 1}
        assert result(snap).get("repeats") == want and panel.shown == want
        assert panel.label.text() == f"{len(want)} tokens repeat"
        close_window(win)
    finally:
        unregister_analysis("repeats")


def test_panel_plugins_from_entry_points(tmp_path, monkeypatch):
    import warnings

    from gptviz_app.panels import registry

    site = tmp_path / "site"
    site.mkdir()
    (site / "gptviz_toy_panel.py").write_text(
        "from gptviz_app.panels.registry import AnalysisPanel\n\n"
        "class ToyPanel(AnalysisPanel):\n    title = 'Toy'\n    analyses = ('heads',)\n\n"
        "NOT_A_PANEL = 3\n", encoding="utf-8")
    info = site / "gptviz_toy_panel-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gptviz_toy_panel\n"
                                   "Version: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINT_GROUP}]\ntoy = gptviz_toy_panel:ToyPanel\n"
        "bad = gptviz_toy_panel:NOT_A_PANEL\ngone = gptviz_missing_module:Panel\n",
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            classes = registry.panel_classes(rescan=True)
        messages = [str(w.message) for w in caught]
        assert any("'bad'" in m and "not an AnalysisPanel" in m for m in messages)
        assert any("'gone'" in m for m in messages)
        assert list(classes)[:5] == ["diagnostics", "ablation", "lens", "compare", "rollout"]
        assert classes["toy"].title == "Toy" and "bad" not in classes
    finally:
        monkeypatch.undo()
        registry.panel_classes(rescan=True)
    assert "toy" not in registry.panel_classes()
