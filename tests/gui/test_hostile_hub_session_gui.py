"""Opening, in the app, a session whose model came from a Hugging Face cache that is not on
this machine: one line names the model and the ``hf download`` command, and the session on
screen is left as it was (the tests fail on a Qt warning or a worker left running)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.gui.conftest import TIMEOUT, settle  # noqa: E402

COMMIT = "5" * 40


def test_a_session_of_a_model_from_another_cache_is_refused_and_the_session_stays(
        qtbot, window, tmp_path, monkeypatch):
    c = window.controller
    lec = window.features
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    good = tmp_path / "good.gptviz.json"
    settle(qtbot, window, c.step(2))
    with qtbot.waitSignal(lec.sessions.saved, timeout=TIMEOUT):
        lec.sessions.save_to(str(good))
    d = json.loads(good.read_text())
    d["model"] = {**d["model"], "bundled": False, "weights_sha256": "0" * 64,
                  "path": f"/home/someone/.cache/huggingface/hub/models--org--tiny/snapshots/"
                          f"{COMMIT}"}
    hub_session = tmp_path / "hub.gptviz.json"
    hub_session.write_text(json.dumps(d))
    settle(qtbot, window, c.step(3))
    before = c.snapshot
    att = np.array(c.client.worker.session.attention(copy=True))
    with qtbot.waitSignal(lec.sessions.failed, timeout=TIMEOUT) as sig:
        lec.sessions.open_path(str(hub_session))
    _command, message = sig.args
    assert "\n" not in message, message
    assert f"the session's model org/tiny (commit {COMMIT[:8]})" in message, message
    assert f"hf download org/tiny --revision {COMMIT}" in message, message
    box = window.last_error_box
    assert box is not None and "current session is unchanged" in box.text()
    box.close()
    qtbot.waitUntil(lambda: not c.client.busy, timeout=TIMEOUT)
    assert c.snapshot.ids.tolist() == before.ids.tolist()
    np.testing.assert_array_equal(np.array(c.client.worker.session.attention(copy=True)), att)
    assert settle(qtbot, window, c.step()).n_generated == before.n_generated + 1
