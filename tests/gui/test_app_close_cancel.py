"""Long operations: a session open shows its progress and can be cancelled (Cancel, Escape)
leaving the running session exactly as it was; closing the window (or Ctrl+Q) during any long
operation stops the worker thread (no thread left running, no hook left registered); the map's
stage travels with the session file.

A "long" operation is made long here by slowing the tiny model down: every torch module waits
0.2 s before it runs (a test's own pre-hooks, removed at the end), so a forward takes seconds,
longer than the window's bounded wait for its worker (``SHUTDOWN_WAIT_MS``): a close that did
not stop the forward midway would leave the thread running, and the test would fail. The
session replay is slowed the same way (each replayed token waits). Nothing here is timed: the
close figures are in ``python -m gptviz_app.bench_close``.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from gptviz.engine.session import Session  # noqa: E402

from .conftest import TIMEOUT, same_state, settle, show_window  # noqa: E402

#: How long each module of a slowed model waits (s): a forward of the tiny model is ~3 s.
MODULE_WAIT_S = 0.2


def global_pre_hooks() -> int:
    from torch.nn.modules import module

    return len(module._global_forward_pre_hooks)


@contextmanager
def slow_modules(model, seconds: float = MODULE_WAIT_S):
    """Every leaf module of ``model`` waits ``seconds`` before its forward."""
    handles = [m.register_forward_pre_hook(lambda *_: time.sleep(seconds))
               for m in model.modules() if not list(m.children())]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@pytest.fixture
def slow_replay(monkeypatch):
    """Each replayed token of a session open waits 20 ms (a big file, here small)."""
    replay = Session.replay

    def slow(self, *a, **k):
        time.sleep(0.02)
        return replay(self, *a, **k)

    monkeypatch.setattr(Session, "replay", slow)


def worker_session(win):
    return win.controller.client.worker.session


def closed_cleanly(win, aside: bool = False) -> None:
    """Close ``win``: the worker has stopped when ``close`` returns, no error box, no hook
    (``aside``: a call left running aside holds the hook until it ends; not checked here)."""
    thread = win.controller.client.thread
    win.close()
    assert not thread.isRunning()
    assert win.last_error_box is None
    if not aside:
        assert global_pre_hooks() == 0


def saved_session(qtbot, win, tmp_path, steps: int = 60):
    """A session of ``steps`` generated tokens (through a window slide), saved; the window is
    then taken elsewhere (another prompt, a branch), so an open would change everything."""
    c = win.controller
    settle(qtbot, win, c.step(steps))
    path = tmp_path / "long.gptviz.json"
    with qtbot.waitSignal(win.features.sessions.saved, timeout=TIMEOUT):
        win.features.sessions.save_to(str(path))
    win.prompt_editor.set_text("The quick brown fox")
    win.prompt_editor.submit()
    settle(qtbot, win)
    settle(qtbot, win, c.step(3))
    settle(qtbot, win, c.back())
    settle(qtbot, win, c.force(int(c.snapshot.candidates.ids[1]), False))  # a branch
    settle(qtbot, win, c.select_head(1, 2))
    return path


def progress_of(results, gen):
    return [r["progress"] for g, c, r in results if g == gen and "progress" in r]


# ---------------------------------------------------------------------- session open
@pytest.mark.parametrize("how", ["button", "escape", "escape_in_window"])
def test_a_cancelled_session_open_leaves_the_session_as_it_was(qtbot, window, tmp_path,
                                                               slow_replay, how):
    c = window.controller
    sessions = window.features.sessions
    path = saved_session(qtbot, window, tmp_path)
    before, view, session = c.snapshot, c.view, worker_session(window)
    tokens, branches = list(session.tokens), before.branches
    results = []
    c.client.result.connect(lambda g, cmd, r: results.append((g, cmd, r)))
    gen = sessions.open_path(str(path))
    assert sessions.opening
    # the dialog shows once the open has run a moment, with the tokens replayed n / N
    qtbot.waitUntil(lambda: sessions.progress is not None and sessions.progress.isVisible()
                    and sessions.progress.bar.value() > 0, timeout=TIMEOUT)
    d = sessions.progress
    assert d.bar.maximum() == 60 and " / 60" in d.label.text()
    assert " / 60 tokens" in window.status.currentMessage()
    with qtbot.waitSignal(sessions.cancelled, timeout=TIMEOUT):
        if how == "button":
            qtbot.mouseClick(d.cancel_button, Qt.MouseButton.LeftButton)
        elif how == "escape":  # with the dialog active (the window's own Escape stays out)
            d.activateWindow()
            qtbot.waitUntil(d.isActiveWindow, timeout=TIMEOUT)
            qtbot.keyClick(d, Qt.Key.Key_Escape)
        else:  # the focus left in the window: Escape there cancels too
            window.activateWindow()
            qtbot.waitUntil(window.isActiveWindow, timeout=TIMEOUT)
            assert not window.actions["follow"].isEnabled()
            window.attention.setFocus()
            qtbot.keyClick(window.attention, Qt.Key.Key_Escape)
    after = settle(qtbot, window)
    assert after.gen == gen and not sessions.opening and sessions.progress is None
    assert window.actions["follow"].isEnabled()  # Escape is the window's own again
    done = progress_of(results, gen)[-1]
    assert 0 < done[0] < done[1] == 60  # stopped midway through the replay
    assert worker_session(window) is session and session.tokens == tokens
    same_state(after, before)
    assert c.view == view and after.view == before.view
    assert after.branches == branches
    assert "cancelled" in window.status.currentMessage()
    assert window.last_error_box is None and global_pre_hooks() == 0
    # it still steps, and the file still opens whole
    settle(qtbot, window, c.step(1))
    with qtbot.waitSignal(sessions.opened, timeout=TIMEOUT):
        gen = sessions.open_path(str(path))
    snap = settle(qtbot, window, gen)
    assert snap.n_generated == 60 and sessions.progress is None


def test_a_finished_open_reports_every_stage_and_the_whole_replay(qtbot, window, tmp_path):
    c = window.controller
    sessions = window.features.sessions
    path = saved_session(qtbot, window, tmp_path, steps=20)
    results = []
    c.client.result.connect(lambda g, cmd, r: results.append((g, cmd, r)))
    with qtbot.waitSignal(sessions.opened, timeout=TIMEOUT):
        gen = sessions.open_path(str(path))
    snap = settle(qtbot, window, gen)
    stages = [r["stage"] for g, _, r in results if g == gen and "stage" in r]
    assert stages[0] == "Reading the file" and stages[-1] == "Replaying the tokens"
    assert progress_of(results, gen)[-1] == (20, 20)
    assert [r.get("done") for g, _, r in results if g == gen and "progress" not in r] == [True]
    assert snap.n_generated == 20 and not sessions.opening and sessions.progress is None


def test_a_failed_open_closes_its_progress(qtbot, window, tmp_path):
    sessions = window.features.sessions
    bad = tmp_path / "bad.gptviz.json"
    bad.write_text("{ not json")
    with qtbot.waitSignal(sessions.failed, timeout=TIMEOUT):
        sessions.open_path(str(bad))
    assert not sessions.opening and sessions.progress is None
    window.last_error_box.close()


# ---------------------------------------------------------------------- closing
def test_closing_during_a_session_replay_stops_the_worker(qtbot, tiny_bundle, tmp_path,
                                                          slow_replay):
    win = show_window(qtbot, tiny_bundle)
    path = saved_session(qtbot, win, tmp_path)
    results = []
    win.controller.client.result.connect(lambda g, cmd, r: results.append((g, cmd, r)))
    gen = win.features.sessions.open_path(str(path))
    qtbot.waitUntil(lambda: any(p[0] > 0 for p in progress_of(results, gen)),
                    timeout=TIMEOUT)
    closed_cleanly(win)


def test_closing_during_a_long_prefill_stops_the_forward_midway(qtbot, tiny_bundle):
    win = show_window(qtbot, tiny_bundle)
    c = win.controller
    with slow_modules(tiny_bundle.model):
        gen = c.set_prompt("a much longer prompt than before, " * 2)
        qtbot.waitUntil(lambda: c.client.busy, timeout=TIMEOUT)
        with qtbot.waitSignal(c.client.started, timeout=TIMEOUT,
                              check_params_cb=lambda g, cmd: g == gen):
            pass
        closed_cleanly(win)


def test_ctrl_q_during_a_long_analysis_stops_the_worker(qtbot, tiny_bundle):
    from gptviz.analysis.runner import AnalysisSpec

    win = show_window(qtbot, tiny_bundle)
    c = win.controller
    with slow_modules(tiny_bundle.model):
        with qtbot.waitSignal(c.client.started, timeout=TIMEOUT):
            c.request("analysis", op="spec", spec=AnalysisSpec({"heads": None,
                                                                "saliency": None}))
        thread = c.client.thread
        win.actions["quit"].trigger()
        assert not thread.isRunning() and global_pre_hooks() == 0


def test_closing_during_patching_stops_the_worker(qtbot, tiny_bundle):
    from gptviz_app.bench_close import _same_length_corruption

    prompt = "Once upon a time there was a cat"
    win = show_window(qtbot, tiny_bundle, prompt=prompt)
    c = win.controller
    corrupt = _same_length_corruption(tiny_bundle.tokenizer, prompt)
    with slow_modules(tiny_bundle.model):
        with qtbot.waitSignal(c.client.started, timeout=TIMEOUT):
            c.request("patch", op="run", corrupt=corrupt, target_id=1, vs_id=2)
        closed_cleanly(win)


def test_closing_during_play_and_a_long_run_stops_the_worker(qtbot, tiny_bundle):
    win = show_window(qtbot, tiny_bundle)
    c = win.controller
    c.set_rate(0)
    c.set_playing(True)
    qtbot.waitUntil(lambda: c.snapshot.n_generated >= 2, timeout=TIMEOUT)
    c.step(100_000)  # queued behind Play's step: skipped once the window closes
    closed_cleanly(win)


@pytest.mark.parametrize("stage", ["Reading the model", "Running the prompt"])
def test_closing_while_a_model_opens_stops_the_worker(qtbot, tiny_bundle, tiny_bundle_factory,
                                                      monkeypatch, stage):
    import gptviz

    other = tiny_bundle_factory(seed=3)
    release = threading.Event()

    def slow_load(spec=None):
        if stage == "Reading the model":
            release.wait(60)  # one long read that looks at no check at all
        return other

    monkeypatch.setattr(gptviz, "load_model", slow_load)
    win = show_window(qtbot, tiny_bundle)
    opener = win.features.models
    results = []
    win.controller.client.result.connect(lambda g, cmd, r: results.append(r.get("stage")))
    try:
        with slow_modules(other.model):
            opener.open("somewhere", "cpu", "float32", prompt="a prompt of some length")
            qtbot.waitUntil(lambda: stage in results, timeout=TIMEOUT)
            closed_cleanly(win, aside=True)
    finally:
        release.set()  # the read aside ends; its model is dropped
    # the call left aside gives the module checks back when it ends (a prefill at its next
    # module, the read when it returns)
    qtbot.waitUntil(lambda: global_pre_hooks() == 0, timeout=TIMEOUT)


def test_the_session_is_intact_after_a_cancelled_model_prefill(qtbot, window,
                                                               tiny_bundle_factory,
                                                               monkeypatch):
    import gptviz

    other = tiny_bundle_factory(seed=3)
    monkeypatch.setattr(gptviz, "load_model", lambda spec=None: other)
    c = window.controller
    before, session = c.snapshot, worker_session(window)
    opener = window.features.models
    results = []
    c.client.result.connect(lambda g, cmd, r: results.append(r.get("stage")))
    with slow_modules(other.model), qtbot.waitSignal(opener.cancelled, timeout=TIMEOUT):
        opener.open("somewhere", "cpu", "float32", prompt="a prompt of some length")
        qtbot.waitUntil(lambda: "Running the prompt" in results, timeout=TIMEOUT)
        opener.cancel()
    qtbot.waitUntil(lambda: not c.client.busy, timeout=TIMEOUT)
    assert worker_session(window) is session and c.model.name == "tiny"
    c.step(1)
    assert settle(qtbot, window).n_tokens == before.n_tokens + 1


# ---------------------------------------------------------------------- map stage
def test_the_map_stage_is_saved_and_restored(qtbot, window, tmp_path):
    c = window.controller
    sessions = window.features.sessions
    settle(qtbot, window, c.set_view(map_stage="raw"))
    path = tmp_path / "stage.gptviz.json"
    with qtbot.waitSignal(sessions.saved, timeout=TIMEOUT):
        sessions.save_to(str(path))
    assert json.loads(path.read_text())["view"]["map_stage"] == "raw"
    settle(qtbot, window, c.set_view(map_stage="weights"))
    with qtbot.waitSignal(sessions.opened, timeout=TIMEOUT):
        gen = sessions.open_path(str(path))
    snap = settle(qtbot, window, gen)
    assert c.view.map_stage == "raw" and snap.view.map_stage == "raw"
    assert window.attention.stage == "raw"
    # a file from before the stages (or with a stage it does not know) keeps the current one
    settle(qtbot, window, c.set_view(map_stage="masked"))
    for stage in (None, "sideways", 3):
        d = json.loads(path.read_text())
        if stage is None:
            del d["view"]["map_stage"]
        else:
            d["view"]["map_stage"] = stage
        old = tmp_path / "old.gptviz.json"
        old.write_text(json.dumps(d))
        with qtbot.waitSignal(sessions.opened, timeout=TIMEOUT):
            gen = sessions.open_path(str(old))
        settle(qtbot, window, gen)
        assert c.view.map_stage == "masked"


# ---------------------------------------------------------------------- replaced and abandoned
def test_a_replaced_opens_error_does_not_stop_the_newer_open(qtbot, window, tmp_path,
                                                             slow_replay):
    """Open a broken file, then at once a good one: the broken one's late error is not the
    good one's; the good one finishes as an open (signal, recent list, no error box)."""
    s = window.features.sessions
    good = saved_session(qtbot, window, tmp_path, steps=30)
    bad = tmp_path / "bad.gptviz.json"
    bad.write_text("{ not json")
    opened, failed = [], []
    s.opened.connect(opened.append)
    s.failed.connect(lambda cmd, m: failed.append(m))
    s.open_path(str(bad))
    s.open_path(str(good))  # replaces the first
    qtbot.waitUntil(lambda: bool(opened), timeout=TIMEOUT)
    settle(qtbot, window)
    assert failed == [] and window.last_error_box is None
    assert worker_session(window).n_tokens == window.controller.snapshot.n_tokens
    assert s.gen == -1 and not s.opening


def test_a_cancelled_replay_on_the_current_model_stops_before_the_worker_goes_on(
        tmp_path, tiny_bundle):
    """A session open on the worker's own model, cancelled while it replays: when the caller
    gets ``Interrupted`` no forward of that model runs aside any more (two threads would share
    its modules), and no global hook is left."""
    from gptviz.engine.interrupt import Interrupted, call_aside, interruptible, module_checks
    from gptviz.io.session_file import read_session_file, restore_session, save_session

    s = Session(tiny_bundle, "Once upon a time there was a cat and a dog and a bird")
    s.generate(5)
    path = tmp_path / "s.gptviz.json"
    save_session(path, s, tiny_bundle)
    log: list[str] = []
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)

    def restore():
        return restore_session(read_session_file(path), tiny_bundle)

    with slow_modules(tiny_bundle.model, 0.05):
        leaves = [m for m in tiny_bundle.model.modules() if not list(m.children())]
        hooks = [m.register_forward_pre_hook(
            lambda *_: log.append(threading.current_thread().name)) for m in leaves]
        try:
            timer.start()
            with pytest.raises(Interrupted), interruptible(cancel.is_set), module_checks():
                call_aside(restore, join_if=lambda: True)
            back = len(log)
            time.sleep(0.5)
            assert back > 0 and len(log) == back  # nothing ran aside after the caller was back
        finally:
            timer.cancel()
            for h in hooks:
                h.remove()
    assert global_pre_hooks() == 0


def test_a_shutdown_that_times_out_gives_its_hook_back_when_the_thread_ends(qtbot,
                                                                           tiny_bundle):
    """A worker in one long forward outlasts the bounded wait: the window still closes; the
    global hook it held goes once the thread ends (not at the application's exit)."""
    win = show_window(qtbot, tiny_bundle)
    c = win.controller
    thread = c.client.thread
    with slow_modules(tiny_bundle.model, 0.3):
        c.request("set_prompt", text="a long prompt that takes a while " * 3)
        qtbot.wait(100)
        assert not c.client.shutdown(wait_ms=50)  # still in the forward
        assert not c.client.shutdown(wait_ms=50)  # twice: still one hold
        assert global_pre_hooks() == 1
    qtbot.waitUntil(lambda: not thread.isRunning(), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: global_pre_hooks() == 0, timeout=TIMEOUT)
    win.close()
