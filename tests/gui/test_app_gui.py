"""The desktop app, end to end (pytest-qt, offscreen).

Every test here fails on a Qt warning and on a worker thread left running at the end (see
``tests/gui/conftest.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from tests.gui.conftest import (  # noqa: E402
    TIMEOUT,
    click_scene,
    running_threads,
    same_state,
    settle,
    show_window,
)


# ---------------------------------------------------------------------- stepping
def test_step_adds_a_token_and_grows_the_maps(qtbot, window):
    c = window.controller
    before = c.snapshot
    T0 = before.T
    grid0 = before.grid.copy()
    snap = settle(qtbot, window, c.step())
    assert snap.n_tokens == before.n_tokens + 1 and snap.n_generated == 1
    assert snap.attn.shape == (T0 + 1, T0 + 1)
    assert window.attention.image.image.shape == (T0 + 1, T0 + 1)
    assert np.isclose(np.nansum(snap.attn[-1]), 1.0, atol=1e-4)
    assert np.isnan(snap.attn[0, 1:]).all()                     # future masked
    assert not np.array_equal(snap.grid, grid0, equal_nan=True)  # thumbnails grew a row
    np.testing.assert_array_equal(window.grid.image.image, snap.grid)
    assert len(window.token_strip.canvas.rects) == snap.n_tokens
    assert window.stepping.slider.value() == 1 and window.stepping.slider.maximum() == 1
    assert "context" in window.status.context.text()
    # keyboard: Space steps too
    window.activateWindow()
    window.setFocus()
    n = snap.n_tokens
    window.actions["step"].trigger()
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n + 1, timeout=TIMEOUT)


def test_play_then_pause(qtbot, window):
    c = window.controller
    window.stepping.rate.setValue(0.0)  # as fast as possible
    in_flight = []
    c.applied.connect(lambda s: in_flight.append(c.client.pending))
    window.actions["play"].trigger()
    assert c.playing and window.actions["play"].text() == "Pause"
    qtbot.waitUntil(lambda: c.snapshot.n_generated >= 6, timeout=TIMEOUT)
    # no pile-up: the next step is asked for only once the previous reply is in (the
    # previous request may still be finishing: at most 2 unfinished, never a queue)
    assert max(in_flight) <= 2
    window.actions["play"].trigger()
    assert not c.playing and window.actions["play"].text() == "Play"
    qtbot.waitUntil(lambda: not c.client.busy, timeout=TIMEOUT)
    n = c.snapshot.n_generated
    qtbot.wait(300)
    assert c.snapshot.n_generated == n and not c.client.busy


def test_undo_redo_and_scrub_restore_earlier_states_exactly(qtbot, window):
    c = window.controller
    states = [c.snapshot]
    for _ in range(6):
        states.append(settle(qtbot, window, c.step()))
    back = settle(qtbot, window, c.back())
    same_state(back, states[5])
    assert back.can_redo and back.n_total == 6
    fwd = settle(qtbot, window, c.forward())
    same_state(fwd, states[6])
    window.stepping.slider.setValue(2)        # scrub with the timeline
    scrub = settle(qtbot, window, c.client.latest)
    same_state(scrub, states[2])
    np.testing.assert_array_equal(window.attention.image.image,
                                  window.attention.display_data(states[2].attn))
    assert window.stepping.position.text() == "step 2 / 6"
    window.stepping.slider.setValue(6)
    same_state(settle(qtbot, window, c.client.latest), states[6])
    reset = settle(qtbot, window, c.reset())
    same_state(reset, states[0])


def test_clicking_a_thumbnail_selects_that_head(qtbot, window):
    c = window.controller
    grid = window.grid
    qtbot.waitUntil(lambda: grid.vb.width() > 50, timeout=TIMEOUT)
    click_scene(qtbot, grid.glw, grid.cell_center(1, 2))
    qtbot.waitUntil(lambda: (c.snapshot.view.layer, c.snapshot.view.head) == (1, 2),
                    timeout=TIMEOUT)
    snap = c.snapshot
    assert window.attention.layer_box.currentIndex() == 1
    assert window.attention.head_box.currentIndex() == 2
    r = grid.selection.rect()
    assert r.contains(grid.pitch * 2 + grid.cell / 2, grid.pitch * 1 + grid.cell / 2)
    # the big map now shows that head
    T = snap.T
    ref = snap.attn
    assert ref.shape == (T, T)
    # average of heads from the head selector
    window.attention.head_box.setCurrentIndex(window.attention.head_box.count() - 1)
    qtbot.waitUntil(lambda: c.snapshot.view.average, timeout=TIMEOUT)
    assert not np.array_equal(c.snapshot.attn, ref, equal_nan=True)


def test_clicking_a_candidate_forces_it(qtbot, window):
    c = window.controller
    nt = window.next_token
    qtbot.waitUntil(lambda: nt.vb.height() > 50, timeout=TIMEOUT)
    # before any step: the distribution after the prompt; a click forces the next token
    cand = c.snapshot.candidates
    assert cand.kind == "next"
    want = int(cand.ids[2])
    n0 = c.snapshot.n_tokens
    click_scene(qtbot, nt.glw, nt.row_position(2))
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n0 + 1, timeout=TIMEOUT)
    snap = c.snapshot
    assert snap.ids[-1] == want and snap.forced[-1]
    # after a step: clicking another candidate replaces the newest token (a branch)
    snap = settle(qtbot, window, c.step())
    cand = snap.candidates
    assert cand.kind == "last" and cand.ids[cand.chosen] == snap.ids[-1]
    row = 0 if cand.chosen != 0 else 1
    want = int(cand.ids[row])
    n = snap.n_tokens
    click_scene(qtbot, nt.glw, nt.row_position(row))
    qtbot.waitUntil(lambda: c.snapshot.forced[-1] and c.snapshot.ids[-1] == want,
                    timeout=TIMEOUT)
    assert c.snapshot.n_tokens == n and not c.snapshot.can_redo
    assert c.snapshot.candidates.ids[c.snapshot.candidates.chosen] == want


def test_changing_the_query_updates_the_views(qtbot, window):
    c = window.controller
    settle(qtbot, window, c.step())
    snap = settle(qtbot, window, c.set_view(grid_mode="row"))
    grid_last = snap.grid.copy()
    canvas = window.token_strip.canvas
    qtbot.waitUntil(lambda: canvas.width() > 100 and len(canvas.rects) == snap.n_tokens,
                    timeout=TIMEOUT)
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=canvas.rects[3].center())
    qtbot.waitUntil(lambda: c.snapshot.query == 3, timeout=TIMEOUT)
    snap = c.snapshot
    assert snap.view.query == 3 and not window.token_strip.follow.isChecked()
    assert window.attention.query_rel == 3
    assert window.attention.query_box.rect().top() == 3
    assert canvas.query == 3 and canvas.weights.shape == (4,)
    np.testing.assert_allclose(canvas.weights, np.nan_to_num(snap.attn[3, :4]))
    assert not np.array_equal(snap.grid, grid_last, equal_nan=True)  # rows of query 3
    assert "query 3" in window.grid.caption.text()
    assert "id" in canvas.tooltip_text(2) and "attention from query 3" in canvas.tooltip_text(2)
    # the query stays pinned while generating; Escape/follow returns to the newest token
    snap = settle(qtbot, window, c.step())
    assert snap.query == 3
    window.token_strip.follow.setChecked(True)
    qtbot.waitUntil(lambda: c.snapshot.query == c.snapshot.n_tokens - 1, timeout=TIMEOUT)
    # hovering the map describes the cell
    text = window.attention.describe(3, 1)
    assert "query 3" in text and "key 1" in text and "weight" in text
    assert "masked" in window.attention.describe(1, 3)


def test_a_broken_model_shows_an_error_and_keeps_the_current_one(qtbot, window, tmp_path):
    c = window.controller
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"n_layer": 2, "n_head": 4, "n_embd": 32,
                                                     "block_size": 64, "vocab_size": 360}))
    (broken / "tokenizer.json").write_text("{ not json")
    (broken / "model.safetensors").write_bytes(b"\x00\x01truncated")
    name = c.model.name
    with qtbot.waitSignal(window.loadFailed, timeout=TIMEOUT) as sig:
        window.open_model(str(broken))
    assert "tokenizer.json" in sig.args[0]
    box = window.last_error_box
    assert box is not None and box.isVisible()
    assert "could not be loaded" in box.text() and "tokenizer.json" in box.text()
    assert "current model stays open" in box.text()
    box.close()
    assert c.model.name == name
    snap = settle(qtbot, window, c.step())
    assert snap.n_generated == 1  # the old model still works
    # a path that does not exist at all
    with qtbot.waitSignal(window.loadFailed, timeout=TIMEOUT) as sig:
        window.open_model(str(tmp_path / "nope"))
    assert "no such file" in sig.args[0]
    window.last_error_box.close()


def test_a_bad_prompt_is_refused_and_the_text_kept(qtbot, window):
    c = window.controller
    n = c.snapshot.n_tokens
    window.prompt_editor.set_text("")
    window.prompt_editor.submit()
    qtbot.waitUntil(lambda: window.last_error_box is not None, timeout=TIMEOUT)
    assert "empty" in window.last_error_box.text()
    window.last_error_box.close()
    assert c.snapshot.n_tokens == n
    window.prompt_editor.set_text("The quick brown fox")
    window.prompt_editor.submit()
    qtbot.waitUntil(lambda: c.snapshot.n_tokens != n and c.snapshot.n_generated == 0,
                    timeout=TIMEOUT)


def test_sampling_controls_apply_from_the_next_step(qtbot, window):
    c = window.controller
    window.sampling.greedy.setChecked(True)
    qtbot.waitUntil(lambda: c.snapshot.settings.greedy, timeout=TIMEOUT)
    snap = settle(qtbot, window, c.step())
    cand = snap.candidates
    assert cand.chosen == 0  # greedy takes the most probable token
    assert "greedy" in window.status.settings.text()


def test_stale_replies_never_reach_the_screen(qtbot, window):
    c = window.controller
    shown = []
    c.applied.connect(lambda s: shown.append(s.gen))
    g1 = c.step()
    g2 = c.set_view(layer=1)
    g3 = c.set_view(head=3)
    settle(qtbot, window, g3)
    assert shown == [g3] and g1 < g2 < g3
    assert c.snapshot.n_generated == 1 and (c.snapshot.view.layer, c.snapshot.view.head) == (1, 3)
    # a long run is cancelled by a newer request
    g4 = c.step(10_000)
    g5 = c.request("view")
    snap = settle(qtbot, window, g5)
    assert g5 > g4 and snap.n_generated < 10_000


def test_long_text_slides_the_window(qtbot, window):
    """Past block_size (64 here) the window slides and the views follow it."""
    c = window.controller
    snap = settle(qtbot, window, c.step(70))
    assert snap.n_tokens > 64 and snap.window_start > 0
    assert snap.attn.shape == (snap.T, snap.T) and snap.T <= 64
    assert "window from token" in window.status.context.text()
    back = settle(qtbot, window, c.goto(1))
    assert back.window_start == 0


def test_closing_the_window_stops_the_worker_thread(qtbot, tiny_bundle):
    win = show_window(qtbot, tiny_bundle, prompt="Hello", size=None)
    thread = win.controller.client.thread
    win.controller.step(10_000)        # busy when closed
    assert thread.isRunning()
    win.close()
    assert not thread.isRunning()
    assert running_threads() == []


def test_model_with_a_classifier_shows_its_panel(qtbot, tiny_bundle_factory):
    win = show_window(qtbot, tiny_bundle_factory(n_classes=3, class_names=("a", "b", "c")),
                      prompt="Hello there", size=None)
    try:
        assert win.docks["classes"].isVisible()
        assert [w.text() for w in win.classes.names] == ["a", "b", "c"]
        total = sum(b.value() for b in win.classes.bars)
        assert abs(total - 1000) <= 3
    finally:
        win.close()


def test_screenshot_command(tmp_path, tiny_bundle):
    """``python main.py --steps N --screenshot F`` writes a PNG and exits."""
    from gptviz import save_checkpoint

    d = save_checkpoint(tmp_path / "m", tiny_bundle.model, tiny_bundle.tokenizer)
    out = tmp_path / "shot.png"
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "main.py", "--model", str(d), "--prompt", "Hello",
                        "--steps", "3", "--screenshot", str(out), "--size", "1000x700"],
                       cwd=root, capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_keyboard_steps_back_forward_and_resets(qtbot, window):
    c = window.controller
    window.activateWindow()
    window.attention.glw.setFocus()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=TIMEOUT)
    n0 = c.snapshot.n_tokens
    qtbot.keyClick(window.attention.glw, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n0 + 1 and not c.client.busy, timeout=TIMEOUT)
    qtbot.keyClick(window.attention.glw, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n0 + 2 and not c.client.busy, timeout=TIMEOUT)
    qtbot.keyClick(window.attention.glw, Qt.Key.Key_Left)
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n0 + 1 and c.snapshot.can_redo,
                    timeout=TIMEOUT)
    qtbot.keyClick(window.attention.glw, Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n0 + 2 and not c.snapshot.can_redo,
                    timeout=TIMEOUT)
    qtbot.keyClick(window.attention.glw, Qt.Key.Key_Home)
    qtbot.waitUntil(lambda: c.snapshot.n_tokens == n0 and c.snapshot.n_total == 0,
                    timeout=TIMEOUT)
    # typing in the prompt editor does not step
    window.prompt_editor.edit.setFocus()
    before, gen = window.prompt_editor.text(), c.client.latest
    qtbot.keyClick(window.prompt_editor.edit, Qt.Key.Key_Space)
    assert window.prompt_editor.text() == " " + before and c.client.latest == gen


def test_opening_another_model_rebuilds_the_views(qtbot, window, tiny_bundle_factory):
    c = window.controller
    c.select_head(1, 3)
    settle(qtbot, window, c.client.latest)
    other = tiny_bundle_factory(seed=1, n_layer=3, n_head=2, name="other")
    window.open_model(bundle=other)
    qtbot.waitUntil(lambda: c.model.name == "other" and c.snapshot.grid.shape[0] == 3 * 67
                    and not c.client.busy, timeout=TIMEOUT)
    snap = c.snapshot
    assert snap.grid.shape == (3 * (snap.grid_cell + snap.grid_gap),
                               2 * (snap.grid_cell + snap.grid_gap))
    assert (snap.view.layer, snap.view.head) == (1, 1)   # clamped to the new model
    assert window.attention.head_box.count() == 3          # H0, H1, average
    assert window.grid.L == 3 and window.grid.H == 2
    assert "other" in window.windowTitle()
    assert settle(qtbot, window, c.step()).n_generated == 1


def test_theme_scaling_enlarges_fonts(qtbot, window):
    """Presentation mode (issue 6) will hand every view a scaled theme."""
    size = window.token_strip.canvas.font().pointSizeF()
    h = window.token_strip.canvas.rects[0].height()
    window.set_theme(window.theme.scaled(1.6))
    assert window.token_strip.canvas.font().pointSizeF() == pytest.approx(size * 1.6)
    assert window.token_strip.canvas.rects[0].height() > h
    window.set_colormap("cividis")
    assert window.theme.colormap == "cividis" and window.theme.font_scale == 1.6
