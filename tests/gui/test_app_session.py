"""Sessions in the app (issue 6): save -> open round trips, refused files, preferences.
(The engine hooks the session files use are tested in ``tests/test_session_file.py``.)

The tests fail on a Qt warning and on a worker thread left running (conftest.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from tests.gui.conftest import TIMEOUT, same_state, settle, show_window  # noqa: E402


def full_attention(win):
    """[L, H, T, T] of the worker's session (read while the worker is idle)."""
    return np.array(win.controller.client.worker.session.attention(copy=True))


def same_snapshot(a, b):
    """:func:`same_state`, and the same flags, counts, view and settings."""
    same_state(a, b)
    np.testing.assert_array_equal(a.forced, b.forced)
    assert (a.n_generated, a.n_total, a.prompt_len) == (b.n_generated, b.n_total, b.prompt_len)
    assert a.view == b.view and a.query == b.query
    assert a.settings == b.settings


# ---------------------------------------------------------------------- app round trip
def test_save_then_open_gives_the_same_tokens_attention_and_view(qtbot, window, tmp_path):
    c = window.controller
    lec = window.features
    for _i in range(5):
        settle(qtbot, window, c.step())
    cand = c.snapshot.candidates
    settle(qtbot, window, c.force(int(cand.ids[1]), True))       # a forced branch
    settle(qtbot, window, c.step())
    settle(qtbot, window, c.back())                               # a redo stack of one
    settle(qtbot, window, c.select_head(1, 2))
    settle(qtbot, window, c.set_query(4))
    settle(qtbot, window, c.set_view(grid_mode="row", sqrt_scale=False))
    lec.appearance.set_colormap("cividis")
    lec.appearance.set_font_scale(1.3)
    before = c.snapshot
    att_before = full_attention(window)
    path = tmp_path / "demo.gptviz.json"
    with qtbot.waitSignal(lec.sessions.saved, timeout=TIMEOUT) as sig:
        lec.sessions.save_to(str(path))
    assert sig.args == [str(path)]
    d = json.loads(path.read_text(encoding="utf-8"))
    assert d["view"]["layer"] == 1 and d["view"]["head"] == 2 and d["view"]["query"] == 4
    assert d["view"]["colormap"] == "cividis" and d["view"]["font_scale"] == pytest.approx(1.3)
    assert d["cursor"] == 5 and len(d["tokens"]) == 6       # the forced one replaced #5
    assert [t["forced"] for t in d["tokens"]] == [False] * 4 + [True, False]
    assert lec.prefs.recent("sessions")[0] == str(path)

    # change everything
    window.prompt_editor.set_text("The quick brown fox")
    window.prompt_editor.submit()
    settle(qtbot, window)
    settle(qtbot, window, c.step(3))
    settle(qtbot, window, c.set_view(layer=0, head=0, average=True, query=None,
                                     grid_mode="map", sqrt_scale=True))
    lec.appearance.set_colormap("magma")
    lec.appearance.set_font_scale(1.0)
    assert c.snapshot.ids.tolist() != before.ids.tolist()

    with qtbot.waitSignal(lec.sessions.opened, timeout=TIMEOUT):
        gen = lec.sessions.open_path(str(path))
    after = settle(qtbot, window, gen)
    same_snapshot(after, before)
    np.testing.assert_array_equal(full_attention(window), att_before)
    assert c.view == before.view
    assert window.theme.colormap == "cividis" and window.theme.font_scale == pytest.approx(1.3)
    assert window.prompt_editor.text() == "Once upon a time there was"
    assert window.attention.head_box.currentIndex() == 2
    assert window.attention.layer_box.currentIndex() == 1
    assert window.token_strip.canvas.query == 4
    # it goes on from there: redo brings back the undone token
    fwd = settle(qtbot, window, c.forward())
    assert fwd.n_generated == 6 and not fwd.can_redo


def test_opening_a_session_of_another_model_loads_it(qtbot, window, tmp_path,
                                                     tiny_bundle_factory):
    from gptviz import save_checkpoint

    c = window.controller
    lec = window.features
    other = tiny_bundle_factory(seed=4, n_layer=3, n_head=2, name="other")
    d = save_checkpoint(tmp_path / "other-model", other.model, other.tokenizer)
    window.open_model(str(d))
    qtbot.waitUntil(lambda: c.model is not None and c.model.name == "other"
                    and not c.client.busy, timeout=TIMEOUT)
    settle(qtbot, window, c.step(4))
    settle(qtbot, window, c.select_head(2, 1))
    before = c.snapshot
    path = tmp_path / "other.gptviz.json"
    with qtbot.waitSignal(lec.sessions.saved, timeout=TIMEOUT):
        lec.sessions.save_to(str(path))
    assert json.loads(path.read_text())["model"]["path"] == str(d.resolve())
    # back to the tiny model, then open the session: its model comes back from disk
    window.open_model(bundle=tiny_bundle_factory(seed=0))
    qtbot.waitUntil(lambda: c.model.name == "tiny" and not c.client.busy, timeout=TIMEOUT)
    with qtbot.waitSignal(lec.sessions.opened, timeout=TIMEOUT):
        gen = lec.sessions.open_path(str(path))
    after = settle(qtbot, window, gen)
    assert c.model.name == "other" and "other" in window.windowTitle()
    assert window.grid.L == 3 and window.grid.H == 2
    same_snapshot(after, before)


CORRUPTIONS = {
    "corrupt": (lambda p, d: p.write_bytes(b"\x89\x00garbage\xff" * 10), "not a gptviz session"),
    "truncated": (lambda p, d: p.write_text(json.dumps(d)[: len(json.dumps(d)) // 2]),
                  "truncated"),
    "empty": (lambda p, d: p.write_text(""), "empty"),
    "future": (lambda p, d: p.write_text(json.dumps({**d, "version": 99})), "newer gptviz"),
    "not-a-session": (lambda p, d: p.write_text(json.dumps({"format": "something"})),
                      "not a gptviz session"),
    "bad-field": (lambda p, d: p.write_text(json.dumps({**d, "cursor": "three"})),
                  "'cursor' must be an integer"),
    "missing-model": (lambda p, d: p.write_text(json.dumps(
        {**d, "model": {**d["model"], "path": "/nonexistent/model",
                        "weights_sha256": "0" * 64}})), "no such file"),
    "no-file": (lambda p, d: p.unlink(), "no such file"),
}


def test_bad_session_files_are_refused_and_the_session_stays(qtbot, window, tmp_path,
                                                             tiny_bundle_factory):
    from gptviz import save_checkpoint
    from gptviz.io.session_file import weights_sha256

    c = window.controller
    lec = window.features
    good = tmp_path / "good.gptviz.json"
    settle(qtbot, window, c.step(2))
    with qtbot.waitSignal(lec.sessions.saved, timeout=TIMEOUT):
        lec.sessions.save_to(str(good))
    d = json.loads(good.read_text())
    # a session of a model on disk whose weights then change (same shapes)
    m = tiny_bundle_factory(seed=7)
    mdir = save_checkpoint(tmp_path / "m", m.model, m.tokenizer)
    weights_changed = tmp_path / "weights.gptviz.json"
    weights_changed.write_text(json.dumps(
        {**d, "model": {**d["model"], "path": str(mdir), "weights_sha256": weights_sha256(m)}}))
    save_checkpoint(mdir, tiny_bundle_factory(seed=8).model, m.tokenizer)

    settle(qtbot, window, c.step(3))
    settle(qtbot, window, c.select_head(1, 3))
    before = c.snapshot
    att = full_attention(window)
    cases = [(name, tmp_path / f"{name}.gptviz.json", make, expect)
             for name, (make, expect) in CORRUPTIONS.items()]
    for _name, p, make, _expect in cases:
        p.write_text(good.read_text())
        make(p, d)
    cases.append(("other-weights", weights_changed, None, "different weights"))
    for name, p, _make, expect in cases:
        with qtbot.waitSignal(lec.sessions.failed, timeout=TIMEOUT) as sig:
            lec.sessions.open_path(str(p))
        command, message = sig.args
        assert command == "open_session"
        assert expect in message, (name, message)
        box = window.last_error_box
        assert box is not None and box.isVisible()
        assert "Could not open the session" in box.windowTitle()
        assert "current session is unchanged" in box.text() and expect in box.text()
        box.close()
        qtbot.waitUntil(lambda: not c.client.busy, timeout=TIMEOUT)
        snap = c.snapshot                     # no new state was shown
        assert snap.ids.tolist() == before.ids.tolist(), name
        np.testing.assert_array_equal(full_attention(window), att)
        assert c.view == before.view and c.model.name == "tiny"
    # the session still works, and a good file still opens
    assert settle(qtbot, window, c.step()).n_generated == 6
    with qtbot.waitSignal(lec.sessions.opened, timeout=TIMEOUT):
        gen = lec.sessions.open_path(str(good))
    assert settle(qtbot, window, gen).n_generated == 2


def test_saving_into_a_missing_folder_fails_cleanly(qtbot, window, tmp_path):
    lec = window.features
    target = tmp_path / "nope" / "x.gptviz.json"
    with qtbot.waitSignal(lec.sessions.failed, timeout=TIMEOUT) as sig:
        lec.sessions.save_to(str(target))
    assert sig.args[0] == "save_session"
    assert f"folder {tmp_path / 'nope'} does not exist" in sig.args[1]
    assert "Traceback" not in window.last_error_box.text()
    window.last_error_box.close()
    assert not target.exists() and not list(tmp_path.glob("nope*"))
    assert lec.prefs.recent("sessions") == []


def test_ctrl_s_and_ctrl_o_use_the_file_dialogs(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    c = window.controller
    lec = window.features
    path = str(tmp_path / "keys")       # the suffix is added
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (path, "")))
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (path + ".gptviz.json", "")))
    settle(qtbot, window, c.step(2))
    window.activateWindow()
    window.attention.glw.setFocus()
    with qtbot.waitSignal(lec.sessions.saved, timeout=TIMEOUT) as sig:
        qtbot.keyClick(window.attention.glw, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert sig.args == [path + ".gptviz.json"]
    settle(qtbot, window, c.step(2))
    # Ctrl+S again saves to the same file without asking
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: pytest.fail("asked again")))
    with qtbot.waitSignal(lec.sessions.saved, timeout=TIMEOUT):
        qtbot.keyClick(window.attention.glw, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert len(json.loads((tmp_path / "keys.gptviz.json").read_text())["tokens"]) == 4
    settle(qtbot, window, c.reset())
    with qtbot.waitSignal(lec.sessions.opened, timeout=TIMEOUT):
        qtbot.keyClick(window.attention.glw, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert settle(qtbot, window).n_generated == 4


# ---------------------------------------------------------------------- preferences
def test_preferences_persist_between_runs(qtbot, tiny_bundle, tmp_path):
    from gptviz_app.actions.preferences import Preferences

    ini = tmp_path / "prefs.ini"
    win = show_window(qtbot, tiny_bundle, preferences=Preferences.at_path(str(ini)))
    lec = win.features
    assert lec.prefs.persistent
    lec.appearance.set_mode("light")
    lec.appearance.set_font_scale(1.4)
    lec.appearance.set_colormap("plasma")
    lec.presentation.set_scale(2.0)
    win.prompt_editor.set_text("The quick brown fox")
    win.prompt_editor.submit()
    qtbot.waitUntil(lambda: lec.prefs.recent("prompts") == ["The quick brown fox"],
                    timeout=TIMEOUT)
    s = tmp_path / "r.gptviz.json"
    with qtbot.waitSignal(lec.sessions.saved, timeout=TIMEOUT):
        lec.sessions.save_to(str(s))
    win.docks["grid"].hide()
    geometry = win.saveGeometry()
    win.close()
    assert ini.is_file()
    assert Preferences.at_path(str(ini)).geometry == geometry

    win2 = show_window(qtbot, tiny_bundle, preferences=Preferences.at_path(str(ini)), size=None)
    try:
        lec2 = win2.features
        assert lec2.appearance.mode == "light" and win2.theme.name == "light"
        assert win2.theme.font_scale == pytest.approx(1.4)
        assert win2.theme.colormap == "plasma"
        assert lec2.appearance.presentation_scale == pytest.approx(2.0)
        assert lec2.prefs.recent("sessions") == [str(s)]
        assert lec2.prefs.recent("prompts") == ["The quick brown fox"]
        assert not win2.docks["grid"].isVisible()          # window state restored
        lec2.samples.rebuild_recent()
        assert [a.toolTip() for a in lec2.samples.recent_menu.actions()] == \
            ["The quick brown fox"]
        lec2.sessions.rebuild_recent()
        assert lec2.sessions.recent_menu.actions()[0].toolTip() == str(s)
    finally:
        win2.close()


def test_windows_without_preferences_keep_them_in_memory(window):
    from gptviz_app.actions.preferences import Preferences

    prefs = window.features.prefs
    assert not prefs.persistent
    prefs.add_recent("prompts", "a")
    prefs.add_recent("prompts", "b")
    prefs.add_recent("prompts", "a")
    assert prefs.recent("prompts") == ["a", "b"]
    p = Preferences.in_memory()
    assert p.theme == "system" and p.font_scale == 1.0 and p.recent("sessions") == []



def test_ablated_session_round_trip(qtbot, window, tmp_path, tiny_bundle):
    """Heads removed midway: the file keeps when, and opening gives the same maps."""
    from gptviz.analysis.ablation import make_ablation

    c = window.controller
    lec = window.features
    settle(qtbot, window, c.step(3))
    settle(qtbot, window, c.set_ablation(make_ablation(tiny_bundle.config, [(1, 0), (0, 3)],
                                                       "zero")))
    settle(qtbot, window, c.step(3))
    before = c.snapshot
    att = full_attention(window)
    path = tmp_path / "ablated.gptviz.json"
    with qtbot.waitSignal(lec.sessions.saved, timeout=TIMEOUT):
        lec.sessions.save_to(str(path))
    d = json.loads(path.read_text())
    assert d["ablation"]["heads"] == [[0, 3], [1, 0]]
    assert d["ablation"]["applied_at"] == before.prompt_len + 3
    settle(qtbot, window, c.set_ablation(None))
    settle(qtbot, window, c.reset())
    with qtbot.waitSignal(lec.sessions.opened, timeout=TIMEOUT):
        gen = lec.sessions.open_path(str(path))
    same_snapshot(settle(qtbot, window, gen), before)
    np.testing.assert_array_equal(full_attention(window), att)
    assert window.controller.client.worker.session.ablation is not None
