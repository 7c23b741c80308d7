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
every view updated **and painted** (``apply`` = the views' slots, then a synchronous
``repaint()`` of the whole window and of every visible pyqtgraph view's viewport, where
pyqtgraph renders the images: the window's repaint alone leaves them to a later event).
Then the same number of tokens is generated under Play at full speed: sustained tokens/s,
and the longest stall of the UI thread meanwhile (a 5 ms timer's largest lateness).

*update_cpu* is the same span in CPU time of the UI thread (``time.thread_time``): what the
update costs the process, without the time a busy machine did not run it (on a shared machine
the wall-clock figures swing with the other work; the CPU figures hardly do). ``views_cpu_ms``
gives each view's median share (its ``apply_snapshot``; ``paint``: the window's repaint).

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


def _wait(pred, timeout_s: float, signals=()) -> bool:
    """Run the Qt event loop until ``pred()`` holds (checked on the given signals and a
    coarse timer), or the timeout passes."""
    from PySide6.QtCore import QEventLoop, QTimer

    if pred():
        return True
    loop = QEventLoop()

    def check(*_):
        if pred():
            loop.quit()

    conns = [s.connect(check) for s in signals]
    poll = QTimer()
    poll.setInterval(20)
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
    return pred()


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


def bench_one(which: str, steps: int, size=(1280, 800)) -> dict:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QGraphicsView

    from gptviz_app.views.main_window import MainWindow

    _app = QApplication.instance() or QApplication([])  # noqa: F841 (kept alive for the run)
    t0 = time.perf_counter()
    bundle, label = _bundle(which)
    cfg = bundle.config
    target = min(TOKENS[which], cfg.block_size)
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
    start_tokens = ctl.snapshot.n_tokens

    # ---- per-update cost, one step at a time
    apply_ms, paint_ms, latency_ms, step_ms, build_ms = [], [], [], [], []
    cpu: dict[str, list[float]] = {}       # view name (or "paint") -> CPU ms per update
    step_cpu: dict[str, float] = {}

    def timed(view):
        """``view.apply_snapshot`` that adds its CPU time (UI thread) to ``step_cpu``."""
        name, inner = type(view).__name__, view.apply_snapshot

        def apply_snapshot(snap):
            t = time.thread_time()
            try:
                inner(snap)
            finally:
                step_cpu[name] = step_cpu.get(name, 0.0) + (time.thread_time() - t) * 1e3
        return apply_snapshot

    wrapped = [(v, v.apply_snapshot) for v in ctl.views]
    for v, _ in wrapped:
        v.apply_snapshot = timed(v)

    def on_applied(snap):
        apply_ms.append(ctl.last_apply_ms)
        latency_ms.append(ctl.last_latency_ms)
        if snap.step_ms is not None:
            step_ms.append(snap.step_ms)
        build_ms.append(snap.build_ms)
        t, c = time.perf_counter(), time.thread_time()
        win.repaint()
        # win.repaint() leaves the pyqtgraph views' scenes to a later event (their images
        # still unrendered): paint each visible view's viewport now, inside the timed span
        for gv in win.findChildren(QGraphicsView):
            if gv.isVisible():
                gv.viewport().repaint()
        paint_ms.append((time.perf_counter() - t) * 1e3)
        step_cpu["paint"] = (time.thread_time() - c) * 1e3
        for k, ms in step_cpu.items():
            cpu.setdefault(k, []).append(ms)
        step_cpu.clear()

    ctl.applied.connect(on_applied)
    for _ in range(steps):
        gen = ctl.step(1)
        ok = _wait(lambda g=gen: not ctl.client.busy and ctl.snapshot.gen == g, 120,
                   [ctl.applied])
        assert ok, "step timed out"
    ctl.applied.disconnect(on_applied)
    for v, inner in wrapped:
        v.apply_snapshot = inner
    end_tokens = ctl.snapshot.n_tokens
    update_ms = [a + p for a, p in zip(apply_ms, paint_ms)]
    n_up = len(cpu.get("paint", []))
    update_cpu = [sum(xs[i] for xs in cpu.values() if len(xs) == n_up) for i in range(n_up)]

    # ---- Play at full speed over the same stretch (same seed: the same tokens again)
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
    win.close()
    return {
        "model": which, "label": label,
        "shape": f"{cfg.n_layer}x{cfg.n_head} heads, {cfg.n_embd} wide, vocab {cfg.vocab_size}",
        "tokens": [start_tokens + 1, end_tokens], "steps": steps,
        "update_ms_median": statistics.median(update_ms),
        "update_ms_p95": _pct(update_ms, 0.95), "update_ms_max": max(update_ms),
        "update_cpu_ms_median": statistics.median(update_cpu) if update_cpu else None,
        "update_cpu_ms_p95": _pct(update_cpu, 0.95) if update_cpu else None,
        "views_cpu_ms": {k: round(statistics.median(v), 2) for k, v in
                         sorted(cpu.items(), key=lambda kv: -statistics.median(kv[1]))},
        "apply_ms_median": statistics.median(apply_ms),
        "paint_ms_median": statistics.median(paint_ms),
        "delivery_ms_median": statistics.median(latency_ms),
        "worker_step_ms_median": statistics.median(step_ms) if step_ms else None,
        "worker_build_ms_median": statistics.median(build_ms),
        "play_tokens_per_s": played / t_play if t_play > 0 else float("nan"),
        "play_ui_stall_ms_max": max(gaps) if gaps else 0.0,
        "play_ui_stall_ms_p99": _pct(gaps, 0.99) if gaps else 0.0,
        "target_update_ms": TARGETS_MS[which],
        "meets_target": statistics.median(update_ms) <= TARGETS_MS[which],
        "setup_s": load_s,
        "window": f"{size[0]}x{size[1]}",
    }


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
    results = [bench_one(w, a.steps) for w in (tuple(TARGETS_MS) if a.only is None else (a.only,))]
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
            print(f"    apply {r['apply_ms_median']:.1f} ms + paint {r['paint_ms_median']:.1f} ms; "
                  f"delivery {r['delivery_ms_median']:.1f} ms; worker step "
                  f"{r['worker_step_ms_median']:.1f} ms + snapshot "
                  f"{r['worker_build_ms_median']:.1f} ms")
            print(f"  Play: {r['play_tokens_per_s']:.1f} tokens/s, UI stall p99 "
                  f"{r['play_ui_stall_ms_p99']:.1f} ms, longest {r['play_ui_stall_ms_max']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
