"""The GUI benchmark leaves nothing of its window for the interpreter's exit.

Left alone, the closed window (out of the cycle collector since ``freeze_startup_objects``)
lived until exit, where PySide's handler deleted it and every parentless object Python owned
in the order of its wrapper table, and Python freed the rest after the ``QApplication``: the
bench process died there now and then ("Segmentation fault", exit status 139, after its JSON
was written). These tests check the teardown itself (deterministic), not the crash (rare).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

ROOT = Path(__file__).resolve().parents[2]


def _main_windows():
    from PySide6.QtWidgets import QApplication

    from gptviz_app.views.main_window import MainWindow

    return [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]


def test_a_case_deletes_its_window_and_unfreezes(qapp, tiny_bundle, monkeypatch):
    import gc

    import shiboken6

    from gptviz_app import bench_gui
    from gptviz_app.runtime.worker import THREADS

    monkeypatch.setattr(bench_gui, "_bundle", lambda which: (tiny_bundle, "tiny"))
    monkeypatch.setitem(bench_gui.TOKENS, "small", 40)
    before = set(map(id, _main_windows()))
    made = []
    real_open = bench_gui._open_at

    def open_at(*args, **kwargs):
        out = real_open(*args, **kwargs)
        made.append(out[0])
        return out

    monkeypatch.setattr(bench_gui, "_open_at", open_at)
    try:
        out = bench_gui.bench_one("small", 2, size=(1024, 640))
        assert out["tokens"] == [39, 40] and out["steps"] == 2
        (win,) = made
        # the window and its widgets are deleted when the case returns, not at the exit
        assert not shiboken6.isValid(win)
        assert not shiboken6.isValid(win.attention)
        assert [w for w in _main_windows() if id(w) not in before] == []
        assert not any(t.isRunning() for t in list(THREADS))
        assert gc.get_freeze_count() > 0  # frozen by the case, as the app does
    finally:  # a failure here must not leave the rest of the test session frozen
        bench_gui.collect_leftovers()
    assert gc.get_freeze_count() == 0


def test_bench_process_exits_cleanly():
    """The bench's own ``main`` on a tiny random model, in a process of its own: exit status
    0 (not 139) with its JSON on stdout."""
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); import main; main.use_checkout_app()\n"
        "from gptviz_app import bench_gui\n"
        "from gptviz_app.runtime.demo_model import random_bundle\n"
        "bench_gui._bundle = lambda which: (random_bundle(2, 4, 32, block_size=64), 'tiny')\n"
        "bench_gui.TOKENS['small'] = 48\n"
        "sys.exit(bench_gui.main(sys.argv[1:]))\n")
    env = {**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen",
           "GPTVIZ_TORCH_THREADS": "1"}
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code, str(ROOT), "--only",
                        "small", "--steps", "2", "--json"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    (case,) = json.loads(r.stdout)["gui"]
    assert case["model"] == "small" and case["tokens"] == [47, 48]
