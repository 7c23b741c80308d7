"""The window's polish: one vocabulary across panels, the sampling knobs drawn in the
next-token chart, export habits (Ctrl+E, the last format, a quick quit, CR and LF, Help ▸
Analysis definitions), find / go to in long texts, and the window slide (marked, told once,
its stride a preference)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")

from .conftest import TIMEOUT, close_window, settle, show_window  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def press(qtbot, widget, keys: str):
    from PySide6.QtGui import QKeySequence

    kc = QKeySequence(keys)[0]
    qtbot.keyClick(widget, kc.key(), kc.keyboardModifiers())


def np_knobs(logits: np.ndarray, T: float, k: int) -> np.ndarray:
    """softmax(logits / T), the top-k cut, renormalised (numpy, float64)."""
    z = logits.astype(np.float64) / T
    q = np.exp(z - z.max())
    q /= q.sum()
    keep = np.zeros(q.size, bool)
    keep[np.argsort(-q, kind="stable")[:k]] = True
    f = np.where(keep, q, 0.0)
    return f / f.sum()


def model_logits(bundle, ids: list[int]) -> np.ndarray:
    """The model's logits after the last of ``ids``: a plain forward, no session."""
    with torch.inference_mode():
        out = bundle.model(torch.tensor([ids]))
    return out.logits[0, -1].double().numpy()


# ---------------------------------------------------------------------- one vocabulary
#: Phrases of the old words: "next token" meant two things (the drawn-from distribution in
#: the chart, position + 1 in the lens).
RETIRED = ("predicts position", "actual next", "next token not known", "Next token</b> after",
           "taken next:")


def test_one_vocabulary_in_sources_and_docs():
    files = list((ROOT / "app").rglob("*.py")) + [ROOT / "README.md", ROOT / "docs" / "analysis.md"]
    found = [(f.name, p) for f in files for p in RETIRED if p in f.read_text(encoding="utf-8")]
    assert found == []
    words = (ROOT / "docs" / "analysis.md").read_text(encoding="utf-8")
    assert "*prediction after position t*" in words and "*drawn from*" in words


def test_one_vocabulary_in_the_panels(qtbot, window):
    nt = window.next_token
    snap = window.controller.snapshot
    assert nt.header.full_text() == f"Prediction after position {snap.n_tokens - 1} " \
                                    "(the prompt's end)"
    assert nt.plot.getAxis("bottom").labelText == "probability"
    window.analysis.reveal("lens")
    qtbot.waitUntil(lambda: window.analysis.visible["lens"], timeout=TIMEOUT)
    window.controller.step(2)
    snap = settle(qtbot, window)
    lens = window.analysis.panels["lens"]
    qtbot.waitUntil(lambda: "prediction after position" in lens.header.text(), timeout=TIMEOUT)
    assert f"prediction after position {snap.n_tokens - 1}" in lens.header.text()
    head = nt.header.full_text()
    assert head.startswith("Step 2: ") and head.endswith(f"after position {snap.n_tokens - 2}")
    assert f"drawn from the prediction after position {snap.n_tokens - 2}" in nt.header.toolTip()


# ---------------------------------------------------------------------- sampling knobs
def test_the_chart_shows_what_the_knobs_do(qtbot, window, tiny_bundle):
    from gptviz.engine.sampling import SamplingSettings

    c = window.controller
    nt = window.next_token
    snap = c.snapshot
    assert snap.candidates.knobs is None and nt.knob_note.isHidden()  # T = 1, nothing cut
    assert len(nt.raw_bars.opts["width"]) == 0
    c.set_settings(SamplingSettings(temperature=0.5, top_k=3, seed=1))
    snap = settle(qtbot, window)
    cand = snap.candidates
    want = np_knobs(model_logits(tiny_bundle, snap.ids.tolist()), 0.5, 3)
    np.testing.assert_allclose(cand.knobs.final, want[cand.ids], atol=2e-6)
    n = nt.n_shown
    np.testing.assert_allclose(nt.raw_bars.opts["width"], cand.probs[:n], rtol=1e-6)
    np.testing.assert_allclose(nt.bars.opts["width"], want[cand.ids[:n]], atol=2e-6)
    labels = nt.rows.labels()[:n]
    assert all("→" in s for s in labels[:3]) and all(s.endswith("cut") for s in labels[3:])
    assert not nt.knob_note.isHidden() and "top-k 3" in nt.knob_note.full_text()
    # after a step: the distribution the newest token was drawn from, under the same knobs
    c.step(1)
    snap = settle(qtbot, window)
    cand = snap.candidates
    assert cand.kind == "last"
    want = np_knobs(model_logits(tiny_bundle, snap.ids[:-1].tolist()), 0.5, 3)
    np.testing.assert_allclose(cand.knobs.final, want[cand.ids], atol=2e-6)
    assert want[snap.ids[-1]] > 0  # the token drawn is one the cuts kept
    # back to temperature 1: one bar per row again
    c.set_settings(SamplingSettings(seed=1))
    settle(qtbot, window)
    assert window.controller.snapshot.candidates.knobs is None and nt.knob_note.isHidden()
    assert len(nt.raw_bars.opts["width"]) == 0


# ---------------------------------------------------------------------- export habits
def test_ctrl_e_saves_the_trace_to_the_last_folder(qtbot, window, tmp_path):
    ex = window.features.exporter
    ex.directory = str(tmp_path)
    window.controller.step(2)
    settle(qtbot, window)
    window.activateWindow()
    window.attention.glw.setFocus()
    with qtbot.waitSignal(ex.exported, timeout=TIMEOUT) as sig:
        press(qtbot, window.attention.glw, "Ctrl+E")
    assert sig.args[1] == str(tmp_path / "trace-step2.npz")
    with np.load(tmp_path / "trace-step2.npz") as z:
        assert z["token_ids"].tolist() == window.controller.snapshot.ids.tolist()
    assert str(tmp_path / "trace-step2.npz") in window.status.currentMessage()
    with qtbot.waitSignal(ex.exported, timeout=TIMEOUT) as sig:  # never overwrites
        ex.quick_trace()
    assert sig.args[1] == str(tmp_path / "trace-step2-2.npz")


def test_the_export_dialog_remembers_the_last_format(qtbot, tiny_bundle, tmp_path):
    from gptviz_app.actions.preferences import Preferences

    prefs = Preferences.at_path(tmp_path / "prefs.ini")
    win = show_window(qtbot, tiny_bundle, preferences=prefs)
    try:
        dlg = win.features.exporter.show_dialog()
        dlg.what.setCurrentIndex(dlg.what.findData("next"))
        dlg.format.setCurrentIndex(dlg.format.findData("svg"))
        assert dlg.export_to(str(tmp_path / "out" / "n.svg")) is None  # no such folder
        win.last_error_box.close()
        assert dlg.export_to(str(tmp_path / "n.svg")) is not None
        dlg.close()
        dlg = win.features.exporter.show_dialog()
        assert dlg.selection()[:2] == ("next", "svg")
        dlg.close()
    finally:
        close_window(win)
    win2 = show_window(qtbot, tiny_bundle, preferences=Preferences.at_path(tmp_path / "prefs.ini"))
    try:
        ex = win2.features.exporter
        assert (ex.directory, ex.last_what, ex.last_format) == (str(tmp_path), "next", "svg")
    finally:
        close_window(win2)


def test_quitting_stops_the_worker_at_once(qtbot, tiny_bundle):
    win = show_window(qtbot, tiny_bundle)
    win.controller.set_playing(True)
    qtbot.waitUntil(lambda: win.controller.snapshot.n_generated >= 2, timeout=TIMEOUT)
    thread = win.controller.client.thread
    t0 = time.perf_counter()
    win.close()
    took = (time.perf_counter() - t0) * 1e3
    assert not thread.isRunning()
    print(f"close with Play running: {took:.1f} ms")  # the figure is reported, not asserted


def test_cr_and_lf_are_drawn_differently(qtbot, tiny_bundle):
    from gptviz_app.views.token_strip import drawn_text

    win = show_window(qtbot, tiny_bundle, prompt="one\rtwo\nthree")
    try:
        canvas = win.token_strip.canvas
        cr = next(i for i, t in enumerate(canvas.tokens) if "␍" in t)
        lf = next(i for i, t in enumerate(canvas.tokens) if "↵" in t)
        assert "␍" not in drawn_text(canvas.tokens[cr])  # no glyph in common fonts
        assert drawn_text("␍") != drawn_text("↵")
        assert "CR (carriage return" in canvas.tooltip_text(cr)
        assert "LF (line feed" in canvas.tooltip_text(lf)
        img = canvas.grab().toImage()

        def chip(i):  # the chip's pixels, without its edge
            r = canvas.rects[i].adjusted(3, 3, -3, -3)
            return img.copy(r)

        a, b = chip(cr), chip(lf)
        if a.size() == b.size():
            assert a != b
    finally:
        close_window(win)


def test_help_opens_the_analysis_definitions(qtbot, window):
    a = window.actions["analysis_docs"]
    assert a in window.menus["help"].actions()
    a.trigger()
    dlg = window.features.help_docs.dialog
    qtbot.waitUntil(lambda: dlg.isVisible(), timeout=TIMEOUT)
    text = dlg.browser.toPlainText()
    assert "Attention analyses: definitions" in text and "prediction after position" in text
    dlg.close()


# ---------------------------------------------------------------------- long texts
def np_find(tokens: list[str], query: str) -> list[int]:
    """Independent: the token each occurrence of ``query`` starts in, by character walk."""
    chars = [(ch.lower(), i) for i, t in enumerate(tokens) for ch in t]
    q = query.replace(" ", "·").lower()
    out = []
    for s in range(len(chars) - len(q) + 1):
        if "".join(c for c, _ in chars[s:s + len(q)]) == q and chars[s][1] not in out:
            out.append(chars[s][1])
    return out


def test_find_a_token_and_go_to_a_position(qtbot, tiny_bundle):
    win = show_window(qtbot, tiny_bundle, prompt="the cat and the dog and The end",
                      activate=True)
    try:
        bar = win.features.long_texts.bar
        canvas = win.token_strip.canvas
        win.attention.glw.setFocus()
        press(qtbot, win.attention.glw, "Ctrl+F")
        qtbot.waitUntil(lambda: bar.isVisible() and bar.edit.hasFocus(), timeout=TIMEOUT)
        qtbot.keyClicks(bar.edit, "the")
        want = np_find(canvas.tokens, "the")
        assert len(want) == 3 and canvas.found == want and canvas.found_current == want[0]
        assert bar.count.text() == "1 / 3"
        press(qtbot, bar.edit, "Return")
        assert canvas.found_current == want[1] and bar.count.text() == "2 / 3"
        press(qtbot, bar.edit, "Shift+Return")
        press(qtbot, bar.edit, "Shift+Return")
        assert canvas.found_current == want[2]  # wraps around
        bar.edit.setText(" and")
        assert canvas.found == np_find(canvas.tokens, " and") != []
        press(qtbot, bar.edit, "Escape")
        assert bar.isHidden() and canvas.found == []
        win.attention.glw.setFocus()
        press(qtbot, win.attention.glw, "Ctrl+G")
        qtbot.waitUntil(lambda: bar.isVisible() and bar.mode == "goto", timeout=TIMEOUT)
        qtbot.keyClicks(bar.edit, "99")
        press(qtbot, bar.edit, "Return")
        assert bar.isVisible() and bar.count.text().startswith("a position in 0–")
        bar.edit.setText("2")
        press(qtbot, bar.edit, "Return")
        snap = settle(qtbot, win)
        assert snap.query == 2 and snap.view.query == 2 and bar.isHidden()
    finally:
        close_window(win)


# ---------------------------------------------------------------------- the window slide
def start_for(n: int, B: int, S: int) -> int:
    """Independent formula: 0 until the text outgrows B, then ceil((n - B) / S) * S."""
    return 0 if n <= B else -(-(n - B) // S) * S


def test_the_window_slide_is_marked_told_once_and_its_stride_a_preference(
        qtbot, tiny_bundle_factory):
    from gptviz_app.actions.preferences import Preferences

    bundle = tiny_bundle_factory(block_size=16)
    prefs = Preferences.in_memory()
    win = show_window(qtbot, bundle, prompt="Once upon a time", preferences=prefs)
    try:
        lt = win.features.long_texts
        lt.set_divisor(4)  # 16 / 4 = 4 tokens a slide
        assert prefs.value("window/stride_divisor") == 4
        c = win.controller
        settle(qtbot, win)
        n0 = c.snapshot.n_tokens
        told = []
        win.status.messageChanged.connect(lambda m: told.append(m) if m else None)
        c.step(16 - n0 + 1)  # one past the block: the first slide
        snap = settle(qtbot, win)
        assert snap.window_start == start_for(snap.n_tokens, 16, 4) == 4
        assert sum("outgrew the model's window of 16 tokens" in m for m in told) == 1
        assert "window from token 4" in win.token_strip.legend.text()
        assert "from position 4" in win.attention.title.text()
        tip = win.token_strip.canvas.tooltip_text(4)
        assert "window starts here" in tip
        c.step(5)  # one more slide: the short note, not the explanation again
        snap = settle(qtbot, win)
        assert snap.window_start == start_for(snap.n_tokens, 16, 4) == 8
        assert sum("outgrew" in m for m in told) == 1
        assert any(m == "The window slid: it starts at token 8" for m in told)
        # back to half the window: the window is recomputed where it now starts
        lt.set_divisor(2)
        snap = settle(qtbot, win)
        assert snap.window_start == start_for(snap.n_tokens, 16, 8)
        assert snap.attn.shape[0] == snap.n_tokens - snap.window_start
        assert re.search(r"slides by 8 tokens", " ".join(told))
    finally:
        close_window(win)
