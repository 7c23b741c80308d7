"""A new user's pass over the window: readouts that follow what is shown, thumbnails that fill
their tiles, labels that stay on the chart, right-click, prompts, Reset, keys and sampling.

Every expected value comes from the worker's session or a formula written out here, never
from the view under test.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.gui.conftest import TIMEOUT, settle  # noqa: E402


@pytest.fixture
def window_options():
    return {"activate": True}        # keyboard tests need the active window


def press(qtbot, widget, keys: str):
    """Send one key combination (``"Shift+Space"``, ``"]"``) to ``widget``."""
    from PySide6.QtGui import QKeySequence

    kc = QKeySequence(keys)[0]
    qtbot.keyClick(widget, kc.key(), kc.keyboardModifiers())


def hover_cell(qtbot, view, q: int, k: int):
    """Move the mouse over map cell (query q, key k) of the attention map (window positions);
    returns the scene point."""
    from PySide6.QtCore import QPointF

    at = view.glw.mapFromScene(view.vb.mapViewToScene(QPointF(k + 0.5, q + 0.5)))
    qtbot.mouseMove(view.glw.viewport(), at)
    qtbot.waitUntil(lambda: "weight" in view.readout.text(), timeout=TIMEOUT)
    return view.glw.mapToScene(at)       # where the mouse is (whole pixels)


def cell_under(view, scene) -> tuple[int, int]:
    """(query, key) of the map cell at a scene point, from the view box's own mapping."""
    p = view.vb.mapSceneToView(scene)
    return int(np.floor(p.y())), int(np.floor(p.x()))


def session_of(window):
    return window.controller.client.worker.session


# ---------------------------------------------------------------------- hover readout
def test_hover_readout_follows_the_map_under_a_still_mouse(qtbot, window):
    c = window.controller
    view = window.attention
    qtbot.waitUntil(lambda: view.vb.width() > 100, timeout=TIMEOUT)
    q, k = 4, 2
    scene = hover_cell(qtbot, view, q, k)
    s = session_of(window)
    w0 = float(s.attention()[0, 0][q, k])
    assert f"weight {w0:.4f}" in view.readout.text()
    # "]" without moving the mouse: the map shows head 1, so must the readout
    window.actions["head_next"].trigger()
    snap = settle(qtbot, window)
    assert snap.view.head == 1
    w1 = float(session_of(window).attention()[0, 1][q, k])
    assert f"{w1:.4f}" != f"{w0:.4f}"          # the two heads differ at this cell
    text = view.readout.text()
    assert f"weight {w1:.4f}" in text and "L0 H1" in text
    # a new prompt: the readout names the new text's tokens
    c.set_prompt("Zebras quietly jump over seven lazy dogs")
    snap = settle(qtbot, window)
    assert snap.prompt_len != 0
    s = session_of(window)
    q, k = cell_under(view, scene)          # the map was fitted to the new length
    assert k <= q < snap.T
    want_q, want_k = s.display_tokens()[q], s.display_tokens()[k]
    text = view.readout.text()
    assert f"query {q} {want_q!r}" in text and f"key {k} {want_k!r}" in text
    assert f"weight {float(s.attention()[0, 1][q, k]):.4f}" in text


# ---------------------------------------------------------------------- next-token labels
def drawn_labels(axis) -> list[str]:
    """The tick labels ``axis`` would draw if it painted now (what its paint() computes)."""
    from PySide6.QtGui import QPainter, QPicture

    pic = QPicture()
    p = QPainter(pic)
    try:
        if axis.style["tickFont"]:
            p.setFont(axis.style["tickFont"])
        _axis, _ticks, texts = axis.generateDrawSpecs(p)
    finally:
        p.end()
    return [t for _rect, _flags, t in texts]


def test_a_longer_candidate_keeps_its_label_on_the_first_paint(qtbot, window):
    """pyqtgraph left out a label wider than the axis from the paint that brought it (seen
    during Play: bundled model, robot prompt, seed 0, step 19, the bar of '·their')."""
    from dataclasses import replace

    c = window.controller
    nt = window.next_token
    snap = settle(qtbot, window, c.step(2))
    qtbot.waitUntil(lambda: nt.vb.height() > 100 and nt.n_shown >= 3, timeout=TIMEOUT)
    axis = nt.plot.getAxis("left")
    for long in ("·their", "·thereafter", "·notwithstanding"):
        cand = snap.candidates
        tokens = list(cand.tokens)
        tokens[1] = long                          # a new widest label on the second bar
        nt.apply_snapshot(replace(snap, candidates=replace(cand, tokens=tokens)))
        want = [label for _pos, label in axis._tickLevels[0]]
        assert repr(long) in want and len(want) == nt.n_shown
        assert drawn_labels(axis) == want


# ---------------------------------------------------------------------- right-click
# A popup menu on the offscreen platform: it says it cannot raise it or grab the keyboard.
@pytest.mark.qt_log_ignore(r".*propagateSizeHints.*", r".*does not support raise\(\).*",
                           r".*does not support grabbing the keyboard.*")
def test_right_click_opens_a_menu_and_every_hint_says_so(qtbot, window):
    """Right-click is the desktop's context menu (it names what it does and changes nothing by
    itself); Ctrl+click ablates. The grid's hint, the README and the analysis notes agree."""
    from pathlib import Path

    from PySide6.QtCore import QPoint, Qt

    from tests.gui.conftest import click_scene

    grid = window.grid
    ui = window.analysis
    qtbot.waitUntil(lambda: grid.vb.width() > 50, timeout=TIMEOUT)
    at = grid.glw.mapFromScene(grid.cell_center(1, 2))
    qtbot.mouseMove(grid.glw.viewport(), at + QPoint(1, 0))
    qtbot.waitUntil(lambda: "layer 1, head 2" in grid.readout.text(), timeout=TIMEOUT)
    hint = grid.readout.text()
    assert "Ctrl+click: ablate" in hint and "right-click: menu" in hint
    click_scene(qtbot, grid.glw, grid.cell_center(1, 2), button=Qt.MouseButton.RightButton)
    qtbot.waitUntil(lambda: ui.last_menu is not None and ui.last_menu.isVisible(),
                    timeout=TIMEOUT)
    menu = ui.last_menu
    assert menu.defaultAction() is not None and menu.defaultAction().text() == "Ablate L1 H2"
    settle(qtbot, window)
    assert ui.ablated == ()                      # the right-click itself ablated nothing
    menu.defaultAction().trigger()
    qtbot.waitUntil(lambda: ui.ablated == ((1, 2),), timeout=TIMEOUT)
    menu.close()
    root = Path(__file__).resolve().parents[2]
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    notes = " ".join((root / "docs" / "analysis.md").read_text(encoding="utf-8").split())
    for text in (readme, notes):
        assert "right-click to ablate" not in text and "right-click or Ctrl+click" not in text
    assert "Ctrl+click to ablate (or restore) it, right-click for its menu" in readme
    assert "Ctrl+click a thumbnail in *All heads*, or pick *Ablate* in its right-click" in notes


# ---------------------------------------------------------------------- prompt editor
def test_tab_into_the_prompt_editor_keeps_the_stepping_keys(qtbot, window):
    from PySide6.QtCore import Qt

    c = window.controller
    ed = window.prompt_editor
    running = session_of(window).prompt
    assert ed.text() == running and not ed.badge.isVisible()
    window.sampling.seed.setFocus(Qt.FocusReason.OtherFocusReason)
    qtbot.waitUntil(lambda: window.sampling.seed.hasFocus(), timeout=TIMEOUT)
    # Tab from the Seed box lands in the prompt editor, not being edited: Space steps
    ed.edit.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(lambda: ed.edit.hasFocus(), timeout=TIMEOUT)
    assert ed.badge.isVisible() and "Space steps" in ed.badge.text()
    n = c.snapshot.n_tokens
    press(qtbot, ed.edit, "Space")
    snap = settle(qtbot, window)
    assert snap.n_tokens == n + 1 and ed.text() == running
    press(qtbot, ed.edit, "Left")                                 # back
    snap = settle(qtbot, window)
    assert snap.n_tokens == n and ed.text() == running
    # typing starts editing: the letter goes in, then Space types a space and nothing steps
    ed.edit.moveCursor(ed.edit.textCursor().MoveOperation.End)
    qtbot.keyClicks(ed.edit, "X")
    gen = c.client.latest
    press(qtbot, ed.edit, "Space")
    press(qtbot, ed.edit, "Left")
    assert ed.text() == running + "X " and c.client.latest == gen
    assert ed.badge.isVisible() and ed.badge.text() == "edited, not applied"
    # applied: the session runs on the new text, the mark goes
    qtbot.keyClick(ed.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    snap = settle(qtbot, window)
    assert session_of(window).prompt == running + "X " and snap.n_generated == 0
    assert not ed.badge.isVisible() and ed.running == running + "X "


def test_a_click_in_the_prompt_editor_means_editing(qtbot, window):
    from PySide6.QtCore import Qt

    c = window.controller
    ed = window.prompt_editor
    running = ed.text()
    ed.edit.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(lambda: ed.edit.hasFocus(), timeout=TIMEOUT)
    qtbot.mouseClick(ed.edit.viewport(), Qt.MouseButton.LeftButton)
    ed.edit.moveCursor(ed.edit.textCursor().MoveOperation.End)
    gen = c.client.latest
    press(qtbot, ed.edit, "Space")
    assert ed.text() == running + " " and c.client.latest == gen
    assert ed.badge.text() == "edited, not applied"


# ---------------------------------------------------------------------- refused prompt
def test_a_refused_empty_prompt_brings_the_running_prompt_back(qtbot, window):
    c = window.controller
    ed = window.prompt_editor
    c.step(2)
    before = settle(qtbot, window)
    running = session_of(window).prompt
    ed.set_text("")
    ed.submit()
    qtbot.waitUntil(lambda: window.last_error_box is not None, timeout=TIMEOUT)
    assert "empty" in window.last_error_box.text()
    window.last_error_box.close()
    qtbot.waitUntil(lambda: not c.client.busy, timeout=TIMEOUT)   # refused: no snapshot
    assert ed.text() == running and not ed.is_edited() and not ed.badge.isVisible()
    s = session_of(window)
    assert s.prompt == running and s.tokens == before.ids.tolist()   # the session runs on


# ---------------------------------------------------------------------- Reset
def test_home_then_one_undo_brings_the_demo_back(qtbot, window):
    c = window.controller
    m = window.attention.glw
    m.setFocus()
    c.step(6)
    settle(qtbot, window)
    c.back()
    c.back()
    before = settle(qtbot, window)
    s = session_of(window)
    tokens, redo = s.tokens, [r.token_id for r in s.redo_stack]
    att = s.attention(copy=True)
    press(qtbot, m, "Home")
    snap = settle(qtbot, window)
    assert snap.n_generated == 0 and snap.n_total == 0 and snap.put_aside == 6
    assert window.stepping.actions["back"].isEnabled()
    assert "6 tokens put aside" in window.status.currentMessage()
    press(qtbot, m, "Ctrl+Z")                            # or Left: one undo
    snap = settle(qtbot, window)
    s = session_of(window)
    assert s.tokens == tokens and [r.token_id for r in s.redo_stack] == redo
    np.testing.assert_array_equal(s.attention(), att)
    assert (snap.n_generated, snap.n_total) == (before.n_generated, before.n_total)
    np.testing.assert_array_equal(snap.attn, before.attn)
    assert snap.put_aside == 0


# ---------------------------------------------------------------------- sampling
def type_into(qtbot, box, text: str) -> None:
    from PySide6.QtCore import Qt

    box.setFocus()
    box.lineEdit().selectAll()
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key.Key_Return)


def test_temperature_0_is_greedy_and_the_chart_says_greedy(qtbot, window):
    c = window.controller
    sp = window.sampling
    type_into(qtbot, sp.temperature, "0")
    assert sp.greedy.isChecked() and sp.temperature.value() == pytest.approx(1.0)
    assert "temperature 0 = greedy" in sp.note.text()
    qtbot.waitUntil(lambda: session_of(window).settings.greedy, timeout=TIMEOUT)
    s = session_of(window)
    probs = s.next_probs()
    snap = settle(qtbot, window, c.step())
    tok = session_of(window).tokens[-1]
    assert tok == int(np.argmax(probs))                      # the most probable token
    detail = window.next_token.detail.full_text()
    assert detail.startswith("greedy, p = ") and "sampled" not in detail
    assert snap.greedy[-1] and not snap.greedy[:-1].any()
    assert "greedy, p = " in window.token_strip.canvas.tooltip_text(snap.n_tokens - 1)
    # Greedy off: the temperature it had comes back
    sp.greedy.setChecked(False)
    qtbot.waitUntil(lambda: not session_of(window).settings.greedy, timeout=TIMEOUT)
    assert session_of(window).settings.temperature == pytest.approx(1.0)
    snap = settle(qtbot, window, c.step())
    assert window.next_token.detail.full_text().startswith("sampled, p = ")


def test_out_of_range_values_say_what_they_were_clamped_to(qtbot, window):
    sp = window.sampling
    type_into(qtbot, sp.temperature, "9")
    assert sp.temperature.value() == pytest.approx(sp.temperature.maximum())
    assert sp.note.text() == "temperature 9 is out of range: set to 5.00"
    qtbot.waitUntil(lambda: session_of(window).settings.temperature == pytest.approx(5.0),
                    timeout=TIMEOUT)
    type_into(qtbot, sp.top_p, "0")
    assert sp.top_p.value() == pytest.approx(0.01)
    assert sp.note.text() == "top-p 0 is out of range: set to 0.01"
    type_into(qtbot, sp.top_k, "250000")
    assert sp.top_k.value() == sp.top_k.maximum()
    assert sp.note.text() == f"top-k 250000 is out of range: set to {sp.top_k.maximum()}"
    type_into(qtbot, sp.top_k, "7")                             # in range: the usual note
    assert sp.top_k.value() == 7 and sp.note.text() == "applies from the next step"
    qtbot.waitUntil(lambda: session_of(window).settings.top_k == 7, timeout=TIMEOUT)


# ---------------------------------------------------------------------- exports
def test_exports_of_an_ablated_head_say_so(qtbot, window, tmp_path):
    import xml.etree.ElementTree as ET

    from PySide6.QtGui import QColor, QImage

    from gptviz_app.actions.export import export_attention_csv, export_next_token_csv

    c = window.controller
    ex = window.features.exporter
    c.step(3)
    settle(qtbot, window)
    qtbot.waitUntil(lambda: window.attention.vb.width() > 100, timeout=TIMEOUT)
    clean = (tmp_path / "clean.csv")
    export_attention_csv(clean, c.snapshot)
    assert "# ablation: none" in clean.read_text(encoding="utf-8")
    window.analysis.toggle_head(0, 1)
    qtbot.waitUntil(lambda: window.analysis.ablated == ((0, 1),), timeout=TIMEOUT)
    snap = settle(qtbot, window)
    name = window.controller.model.name
    for f in (export_attention_csv, export_next_token_csv):
        text = f(tmp_path / f"{f.__name__}.csv", snap).read_text(encoding="utf-8")
        assert "# ablation: zero, L0 H1" in text and f"# model: {name}" in text
        assert "# step 3:" in text
    # pictures: the same lines as a title, only when asked for
    plain = ex.export("attention", str(tmp_path / "plain.png"), "png", 1200)
    titled = ex.export("attention", str(tmp_path / "titled.png"), "png", 1200, title=True)
    a, b = QImage(str(plain)), QImage(str(titled))
    assert a.width() == b.width() == 1200 and b.height() > a.height() + 60
    bg = QColor(window.theme.plot_bg).rgb()
    band = b.height() - a.height()
    assert any(b.pixel(x, y) != bg for y in range(band) for x in range(0, 600, 3))  # text
    svg = ex.export("next", str(tmp_path / "titled.svg"), "svg", title=True)
    texts = ["".join(el.itertext()).strip() for el in ET.parse(svg).getroot().iter()
             if el.tag.endswith("text")]
    # the title's lines, wrapped to the narrow panel: its last text elements, in order
    title = " ".join(" ".join(texts[-12:]).split())
    assert "ablation: zero, L0 H1" in title
    assert f"step 3: {snap.n_tokens} tokens ({snap.prompt_len} prompt + 3 generated)" in title
    assert "gptviz: next token: the distribution step 3's token was drawn from" in title
