"""GUI benchmark: what it costs the UI thread to show one step, and tokens/s under Play.

    python -m gptviz_app.bench_gui [--json] [--steps 32] [--only small|gpt2|gpt2-1024]

Runs the real window offscreen (1280 x 800) on

* ``small``: the bundled model (``resources/model``) at 256 tokens (its block size if
  smaller), or a random model of its planned shape (4 layers x 8 heads x 256 wide) when
  the bundled model is missing;
* ``gpt2``: a random GPT-2-small-shaped model (12 x 12 heads, 768 wide, vocab 50257) at
  512 tokens;
* ``gpt2-1024``: the same shape at 1,024 tokens (its whole block: 144 maps of 1024 x 1024).

For each: the text is brought to ``target - steps`` tokens, then ``steps`` single steps are
timed. *update* is measured on the UI thread from the moment a step's snapshot arrives to
every view updated, **laid out and painted** as Qt does it for that step (``apply`` = the
views' slots; then every event their changes posted is delivered at once, a few rounds over:
the layout requests, the pyqtgraph scenes' item updates, the window's update request, where Qt
paints the regions that changed and pyqtgraph renders the images). *full_repaint* adds a
synchronous ``repaint()`` of the whole window and of every visible scroll area's viewport
(the pyqtgraph views, the token chips): every visible widget painted, what a window that was
covered or resized costs, an upper bound of a step's.
Then the same number of tokens is generated under Play at full speed: sustained tokens/s,
and the longest stall of the UI thread meanwhile (a 5 ms timer's largest lateness).

*update_cpu* is the same span in CPU time of the UI thread (``time.thread_time``): what the
update costs the process, without the time a busy machine did not run it (on a shared machine
the wall-clock figures swing with the other work; the CPU figures hardly do). ``views_cpu_ms``
gives each view's median share (its ``apply_snapshot``; ``layout``: Qt's re-layout; ``paint``:
the step's own paint), ``views_paint_ms`` that paint's CPU time by view (``full_repaint_paint_ms``
the full repaint's) (each widget's paint
put down to the view holding it; ``chrome``: menus, toolbars, dock titles).

Targets: update <= 16 ms for the small model and for 12 x 12 at 1,024 tokens, <= 33 ms for
12 x 12 at 512 tokens; UI stall < 50 ms while playing. Stalls are wall-clock: on a machine
whose cores are busy with other work they include the time the OS did not run the process at
all.

Run it from the repository root (``app`` must be importable).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TARGETS_MS = {"small": 16.0, "gpt2": 33.0, "gpt2-1024": 16.0}
#: Tokens each case is measured at (clipped to the model's block size).
TOKENS = {"small": 256, "gpt2": 512, "gpt2-1024": 1024}


def _wait(pred, timeout_s: float, signals=(), poll_ms: int = 20) -> bool:
    """Run the Qt event loop until ``pred()`` holds (checked on the given signals and every
    ``poll_ms``), or the timeout passes."""
    from PySide6.QtCore import QEventLoop, QTimer

    if pred():
        return True
    loop = QEventLoop()
    held = []  # pred() held once: what the caller waited for (it may not hold by the return)

    def check(*_):
        if pred():
            held.append(True)
            loop.quit()

    conns = [s.connect(check) for s in signals]
    poll = QTimer()
    poll.setInterval(poll_ms)
    poll.timeout.connect(check)
    deadline = QTimer()
    deadline.setSingleShot(True)
    deadline.timeout.connect(loop.quit)
    poll.start()
    deadline.start(int(timeout_s * 1000))
    loop.exec()
    poll.stop()
    deadline.stop()
    for s, c in zip(signals, conns):
        with contextlib.suppress(RuntimeError, TypeError):  # already gone with its object
            s.disconnect(c)
    return bool(held) or pred()


def _bundle(which: str):
    from gptviz_app.runtime.demo_model import random_bundle

    if which == "small":
        from gptviz.io.checkpoint import DEFAULT_MODEL_DIR

        if (DEFAULT_MODEL_DIR / "config.json").is_file():
            from gptviz import load_model

            try:
                b = load_model(DEFAULT_MODEL_DIR)
                return b, "bundled model"
            except Exception as e:  # fall back to its shape
                print(f"note: bundled model did not load ({e}); using random weights",
                      file=sys.stderr)
        return random_bundle(4, 8, 256, block_size=256, vocab_size=4096), "random 4x8x256"
    return (random_bundle(12, 12, 768, block_size=1024, vocab_size=50257, name="gpt2-small-random"),
            "random GPT-2-small shape")


def _prompt_ids(bundle, n: int) -> list[int]:
    """``n`` token ids of ordinary text (repeated sample text)."""
    from gptviz_app.runtime.demo_model import SAMPLE_TEXT

    ids: list[int] = []
    text = SAMPLE_TEXT
    while len(ids) < n:
        ids = bundle.tokenizer.encode(text)
        text += SAMPLE_TEXT
    return ids[:n]


def _pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))
    return xs[i]


def _flush_posted(rounds: int = 4) -> None:
    """Deliver every posted event now, a few rounds over: what a step's changes post posts
    again (a scene's queued item updates -> its viewport's update -> the window's update
    request, where Qt paints the dirty regions, and only those)."""
    from PySide6.QtCore import QCoreApplication

    for _ in range(rounds):
        QCoreApplication.sendPostedEvents(None, 0)


def _flush_layouts() -> None:
    """Run the posted layout requests (and the ones they post) now."""
    from PySide6.QtCore import QCoreApplication, QEvent

    for _ in range(3):  # a widget laid out again can ask its parent's layout to follow
        QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest.value)


class _PaintLog:
    """Which widgets a repaint painted and the UI thread's CPU time spent on each view's:
    every widget's paint event is put down to the outermost ``gptviz_app`` widget holding it
    under the window (``"chrome"``: menus, toolbars, dock titles); a view's share runs from
    one of its widgets' paint events to the next paint event."""

    def __init__(self, win) -> None:
        from PySide6.QtCore import QEvent, QObject

        self.win = win
        self.painted: set = set()
        self._log: list[tuple[float, object]] = []
        self._end = 0.0
        self._owners: dict[int, str] = {}
        log = self

        class Filter(QObject):
            def eventFilter(self, obj, e):  # noqa: N802 - Qt name
                if e.type() == QEvent.Type.Paint:
                    log._log.append((time.thread_time(), obj))
                    log.painted.add(obj)
                return False

        self._filter = Filter()

    @contextlib.contextmanager
    def recording(self):
        from PySide6.QtWidgets import QApplication

        self.painted, self._log = set(), []
        app = QApplication.instance()
        app.installEventFilter(self._filter)
        start = time.thread_time()
        try:
            yield
        finally:
            self._end = time.thread_time()
            app.removeEventFilter(self._filter)
            self._log.insert(0, (start, self.win))

    def owner(self, widget) -> str:
        key = id(widget)
        name = self._owners.get(key)
        if name is None:
            name, w = "chrome", widget
            while w is not None and w is not self.win:
                if type(w).__module__.startswith("gptviz_app"):
                    name = type(w).__name__
                w = w.parentWidget()
            self._owners[key] = name
        return name

    def by_owner(self) -> dict[str, float]:
        out: dict[str, float] = {}
        ends = [t for t, _ in self._log[1:]] + [self._end]
        for (t, w), end in zip(self._log, ends):
            k = self.owner(w)
            out[k] = out.get(k, 0.0) + (end - t) * 1e3
        return out


def _open_at(which: str, steps: int, size: tuple[int, int]):
    """The window on ``which``'s model with its text brought to ``target - steps`` tokens:
    ``(win, bundle, label, setup_s)``."""
    from gptviz_app.views.main_window import MainWindow

    t0 = time.perf_counter()
    bundle, label = _bundle(which)
    target = min(TOKENS[which], bundle.config.block_size)
    load_s = time.perf_counter() - t0
    ids = _prompt_ids(bundle, target - steps - 8)
    win = MainWindow(bundle=bundle, load=False)
    win.resize(*size)
    win.show()
    ctl = win.controller
    # the engine accepts token ids: the prompt is exactly what we want
    ctl.request("load_model", bundle=bundle, prompt=ids)
    assert _wait(lambda: ctl.snapshot is not None, 600, [ctl.applied]), "model did not load"
    gen = ctl.step(target - steps - ctl.snapshot.n_tokens)
    assert _wait(lambda: not ctl.client.busy and ctl.snapshot.gen == gen
                 and ctl.snapshot.n_tokens == target - steps, 600, [ctl.applied]), "prefill"
    return win, bundle, label, load_s


def _medians(d: dict[str, list[float]]) -> dict[str, float]:
    """Each key's median, largest first (rounded to 0.01 ms)."""
    return {k: round(statistics.median(v), 2) for k, v in
            sorted(d.items(), key=lambda kv: -statistics.median(kv[1]))}


class _StepCosts:
    """What each step costs the UI thread (see the module notes), recorded from the
    controller's ``applied`` signal: the views' slots, Qt's re-layout, the step's own paint,
    then a full repaint."""

    def __init__(self, win) -> None:
        from PySide6.QtWidgets import QAbstractScrollArea

        self.win, self.ctl = win, win.controller
        self.apply_ms: list[float] = []
        self.latency_ms: list[float] = []
        self.step_ms: list[float] = []
        self.build_ms: list[float] = []
        self.dirty_ms: list[float] = []   # layout + what Qt paints for the step (dirty regions)
        self.full_ms: list[float] = []    # a repaint of the whole window after it
        self.full_cpu: list[float] = []
        self.full_paint_cpu: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}   # view name (or "paint") -> CPU ms per update
        self.step_cpu: dict[str, float] = {}
        self.paint_cpu: dict[str, list[float]] = {}  # view (or "chrome") -> paint CPU ms
        self.paints = _PaintLog(win)
        self.areas = list(win.findChildren(QAbstractScrollArea))
        self._wrapped = [(v, v.apply_snapshot) for v in self.ctl.views]

    def _timed(self, view):
        """``view.apply_snapshot`` that adds its CPU time (UI thread) to ``step_cpu``."""
        name, inner, step_cpu = type(view).__name__, view.apply_snapshot, self.step_cpu

        def apply_snapshot(snap):
            t = time.thread_time()
            try:
                inner(snap)
            finally:
                step_cpu[name] = step_cpu.get(name, 0.0) + (time.thread_time() - t) * 1e3
        return apply_snapshot

    def run(self, steps: int) -> None:
        """``steps`` single steps, each recorded."""
        ctl = self.ctl
        for v, _ in self._wrapped:
            v.apply_snapshot = self._timed(v)
        ctl.applied.connect(self._on_applied)
        try:
            for _ in range(steps):
                gen = ctl.step(1)
                ok = _wait(lambda g=gen: not ctl.client.busy and ctl.snapshot.gen == g, 120,
                           [ctl.applied])
                assert ok, "step timed out"
        finally:
            ctl.applied.disconnect(self._on_applied)
            for v, inner in self._wrapped:
                v.apply_snapshot = inner

    def _on_applied(self, snap) -> None:
        ctl, paints = self.ctl, self.paints
        self.apply_ms.append(ctl.last_apply_ms)
        self.latency_ms.append(ctl.last_latency_ms)
        if snap.step_ms is not None:
            self.step_ms.append(snap.step_ms)
        self.build_ms.append(snap.build_ms)
        t, c = time.perf_counter(), time.thread_time()
        # Qt lays widgets out again after a label's text or a size changed, in a posted event
        # the update cannot do without: run it now, inside the timed span
        _flush_layouts()
        c1 = time.thread_time()
        self.step_cpu["layout"] = (c1 - c) * 1e3
        # what Qt paints for this step on its own: the dirty regions (the figure a user's
        # frame costs); the full repaint below is what an exposed window costs
        with paints.recording():
            _flush_posted()
        self.dirty_ms.append((time.perf_counter() - t) * 1e3)
        c2 = time.thread_time()
        self.step_cpu["paint"] = (c2 - c1) * 1e3
        for k, ms in paints.by_owner().items():
            self.paint_cpu.setdefault(k, []).append(ms)
        t = time.perf_counter()
        with paints.recording():
            self.win.repaint()
            # win.repaint() leaves the inside of scroll areas (the pyqtgraph views' scenes,
            # where their images are rendered, the token chips) to a later event: paint every
            # visible one it left out now, inside the timed span
            for area in self.areas:
                vp = area.viewport()
                if area.isVisible() and vp not in paints.painted:
                    vp.repaint()
        self.full_ms.append((time.perf_counter() - t) * 1e3)
        self.full_cpu.append((time.thread_time() - c2) * 1e3)
        for k, ms in paints.by_owner().items():
            self.full_paint_cpu.setdefault(k, []).append(ms)
        for k, ms in self.step_cpu.items():
            self.cpu.setdefault(k, []).append(ms)
        self.step_cpu.clear()

    def summary(self) -> dict:
        update_ms = [a + p for a, p in zip(self.apply_ms, self.dirty_ms)]
        full_update_ms = [a + p + f for a, p, f in zip(self.apply_ms, self.dirty_ms,
                                                       self.full_ms)]
        n_up = len(self.cpu.get("paint", []))
        update_cpu = [sum(xs[i] for xs in self.cpu.values() if len(xs) == n_up)
                      for i in range(n_up)]
        full_update_cpu = [u + f for u, f in zip(update_cpu, self.full_cpu)]
        med = statistics.median
        return {
            "update_ms_median": med(update_ms),
            "update_ms_p95": _pct(update_ms, 0.95), "update_ms_max": max(update_ms),
            "update_cpu_ms_median": med(update_cpu) if update_cpu else None,
            "update_cpu_ms_p95": _pct(update_cpu, 0.95) if update_cpu else None,
            "views_cpu_ms": _medians(self.cpu),
            "views_paint_ms": _medians(self.paint_cpu),
            "full_repaint_update_ms_median": med(full_update_ms),
            "full_repaint_update_cpu_ms_median": (med(full_update_cpu)
                                                  if full_update_cpu else None),
            "full_repaint_paint_ms": _medians(self.full_paint_cpu),
            "apply_ms_median": med(self.apply_ms),
            "paint_ms_median": med(self.dirty_ms),
            "full_paint_ms_median": med(self.full_ms),
            "delivery_ms_median": med(self.latency_ms),
            "worker_step_ms_median": med(self.step_ms) if self.step_ms else None,
            "worker_build_ms_median": med(self.build_ms),
        }


def _play(win, steps: int) -> dict:
    """Play at full speed over the last ``steps`` tokens again (same seed: the same tokens):
    sustained tokens/s and the UI thread's longest stall (a 5 ms timer's lateness)."""
    from PySide6.QtCore import QTimer

    ctl = win.controller
    gen = ctl.goto(ctl.snapshot.n_generated - steps)
    assert _wait(lambda: not ctl.client.busy and ctl.snapshot.gen == gen, 120, [ctl.applied])
    ticks: list[float] = []
    tick = QTimer()
    tick.setInterval(5)
    tick.timeout.connect(lambda: ticks.append(time.perf_counter()))
    win.stepping.rate.setValue(0.0)
    n0 = ctl.snapshot.n_tokens
    tick.start()
    t_play = time.perf_counter()
    ctl.set_playing(True)
    _wait(lambda: ctl.snapshot.n_tokens >= n0 + steps, 300, [ctl.applied])
    t_play = time.perf_counter() - t_play
    ctl.set_playing(False)
    tick.stop()
    played = ctl.snapshot.n_tokens - n0
    _wait(lambda: not ctl.client.busy, 60, [ctl.client.finished])
    gaps = [(b - a) * 1e3 - 5.0 for a, b in zip(ticks, ticks[1:])]
    return {
        "play_tokens_per_s": played / t_play if t_play > 0 else float("nan"),
        "play_ui_stall_ms_max": max(gaps) if gaps else 0.0,
        "play_ui_stall_ms_p99": _pct(gaps, 0.99) if gaps else 0.0,
    }


def dispose(win) -> None:
    """Close ``win`` (its closeEvent stops the worker thread) and delete it now, with every
    widget and item under it, while Python, pyqtgraph and the ``QApplication`` are whole.

    Qt does not delete a closed window, and ``freeze_startup_objects`` took it and its Python
    objects out of the cycle collector: left alone, it lived until the interpreter's exit,
    where PySide's handler deletes every parentless object Python owns (the window,
    pyqtgraph's menus and plot items) one by one in the order of its wrapper table, after
    pyqtgraph's exit cleanup, and Python then frees what is left (fonts, static texts,
    images) with no ``QApplication`` any more. The bench process sometimes died at that
    exit ("Segmentation fault", exit status 139, after its JSON was written)."""
    from PySide6.QtCore import QCoreApplication, QEvent

    win.close()
    win.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    QCoreApplication.sendPostedEvents(None, 0)  # what was posted to the objects left


def collect_leftovers() -> None:
    """Once a case's window is gone (:func:`dispose`) and the frame that held it too: free
    its Python objects now (unfrozen, collected: the parentless Qt objects they own are
    deleted while the ``QApplication`` is there) and let Qt's pooled threads (its image
    conversions) end, so that the interpreter's exit has only the application itself left
    to delete."""
    import gc

    from PySide6.QtCore import QThreadPool

    gc.unfreeze()
    gc.collect()
    QThreadPool.globalInstance().waitForDone()


def bench_one(which: str, steps: int, size=(1280, 800)) -> dict:
    """One case (see the module notes) as a dict of figures."""
    from PySide6.QtWidgets import QApplication

    _app = QApplication.instance() or QApplication([])  # noqa: F841 (kept alive for the run)
    from gptviz_app.launch import freeze_startup_objects

    win, bundle, label, load_s = _open_at(which, steps, size)
    freeze_startup_objects()  # as the app does once its window is up
    cfg = bundle.config
    start_tokens = win.controller.snapshot.n_tokens
    costs = _StepCosts(win)
    costs.run(steps)
    end_tokens = win.controller.snapshot.n_tokens
    out = {
        "model": which, "label": label,
        "shape": f"{cfg.n_layer}x{cfg.n_head} heads, {cfg.n_embd} wide, vocab {cfg.vocab_size}",
        "tokens": [start_tokens + 1, end_tokens], "steps": steps,
    }
    out.update(costs.summary())
    out.update(_play(win, steps))
    dispose(win)
    out.update({
        "target_update_ms": TARGETS_MS[which],
        "meets_target": out["update_ms_median"] <= TARGETS_MS[which],
        "setup_s": load_s,
        "window": f"{size[0]}x{size[1]}",
    })
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gptviz_app.bench_gui",
                                description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--steps", type=int, default=32, help="timed steps per model (default 32)")
    p.add_argument("--only", choices=tuple(TARGETS_MS), default=None)
    a = p.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import torch

    if "GPTVIZ_TORCH_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["GPTVIZ_TORCH_THREADS"]))
    from PySide6.QtWidgets import QApplication

    QApplication.instance() or QApplication([])
    results = []
    for which in tuple(TARGETS_MS) if a.only is None else (a.only,):
        results.append(bench_one(which, a.steps))  # its window disposed of
        collect_leftovers()
    if a.json:
        print(json.dumps({"gui": results}, indent=2))
    else:
        for r in results:
            first, last = r["tokens"]
            print(f"{r['model']:6s} {r['label']} ({r['shape']}), tokens {first}..{last}:")
            print(f"  update (apply + paint) median {r['update_ms_median']:.1f} ms, p95 "
                  f"{r['update_ms_p95']:.1f}, max {r['update_ms_max']:.1f} "
                  f"(target <= {r['target_update_ms']:.0f} ms: "
                  f"{'ok' if r['meets_target'] else 'MISSED'})")
            if r["update_cpu_ms_median"] is not None:
                top = ", ".join(f"{k} {v:.1f}" for k, v in list(r["views_cpu_ms"].items())[:4])
                print(f"  update CPU time (UI thread) median {r['update_cpu_ms_median']:.1f} ms, "
                      f"p95 {r['update_cpu_ms_p95']:.1f} ({top})")
                parts = ", ".join(f"{k} {v:.1f}" for k, v in r["views_paint_ms"].items())
                print(f"    paint CPU by view: {parts}")
            print(f"  a repaint of the whole window after it (an exposed window): update "
                  f"{r['full_repaint_update_ms_median']:.1f} ms, CPU "
                  f"{r['full_repaint_update_cpu_ms_median']:.1f} ms")
            print(f"    apply {r['apply_ms_median']:.1f} ms + paint {r['paint_ms_median']:.1f} ms; "
                  f"delivery {r['delivery_ms_median']:.1f} ms; worker step "
                  f"{r['worker_step_ms_median']:.1f} ms + snapshot "
                  f"{r['worker_build_ms_median']:.1f} ms")
            print(f"  Play: {r['play_tokens_per_s']:.1f} tokens/s, UI stall p99 "
                  f"{r['play_ui_stall_ms_p99']:.1f} ms, longest {r['play_ui_stall_ms_max']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
