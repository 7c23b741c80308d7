"""Close benchmark: how long closing the window takes while a long operation runs.

    python -m gptviz_app.bench_close [--json] [--only CASE ...] [--tokens N]

Opens the real window offscreen for each case (each in a process of its own), starts one long
operation, waits until the worker is inside it, then closes the window and times ``close()``
(the worker is told to stop, and the window waits for its thread). After each close it checks
that no worker thread is left running, and that the process then exits cleanly (exit code 0:
no crash, no "QThread destroyed while running" abort); ``process_s`` is the whole process,
model building included. Cases (``small``: the bundled model, ``gpt2``: a random
GPT-2-small-shaped model, 12 layers x 12 heads x 768, vocabulary 50257):

* ``session_open``  replaying a session file of ``--tokens`` generated tokens (small);
* ``open_model``    File ▸ Open model of a GPT-2-small-shaped checkpoint folder, closed while
  it reads the weights (one uninterruptible load) and, ``open_model_prefill``, while it runs
  a long prompt;
* ``prefill``       a new prompt of ~1,000 tokens (gpt2);
* ``patching``      activation patching over ~300 tokens (gpt2);
* ``analyses``      head scores, rollout, inside-head, embedding and saliency at ~1,000 tokens
  (gpt2);
* ``saliency_backward``  closed inside saliency's backward pass at 1,000 tokens (gpt2): one
  autograd call, which stops at the next module it passes (``backward_checks``);
* ``play``, ``steps``  Play at full speed, and a 10,000-token multi-step run (small).

Target: every close within 1 s. The figures are wall-clock on whatever machine runs it.
Run it from the repository root (``app`` must be importable) or from an installed copy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TARGET_S = 1.0
CASES = ("session_open", "open_model", "open_model_prefill", "prefill", "patching", "analyses",
         "saliency_backward", "play", "steps")
#: How long the operation runs before the close (s): well inside it, whatever it is.
RUN_BEFORE_CLOSE_S = 0.5


def _wait(pred: Callable[[], bool], timeout_s: float) -> bool:
    """Run the Qt event loop until ``pred()`` holds (looked at every 10 ms) or the timeout."""
    from gptviz_app.bench_gui import _wait as wait

    return wait(pred, timeout_s, poll_ms=10)


def _pause(seconds: float) -> None:
    t_end = time.perf_counter() + seconds
    _wait(lambda: time.perf_counter() >= t_end, seconds + 1)


def _small():
    from gptviz import load_model
    from gptviz_app.runtime.demo_model import random_bundle

    try:
        return load_model()
    except Exception:  # noqa: BLE001 - no bundled model: its shape with random weights
        return random_bundle(4, 8, 256, block_size=256, vocab_size=4096)


def _gpt2():
    from gptviz_app.runtime.demo_model import random_bundle

    return random_bundle(12, 12, 768, block_size=1024, vocab_size=50257, name="gpt2-small-random")


def _ids(bundle, n: int, seed: int = 0) -> list[int]:
    import torch

    g = torch.Generator().manual_seed(seed)
    V = min(bundle.config.vocab_size, bundle.tokenizer.vocab_size)
    return [int(i) for i in torch.randint(0, V, (n,), generator=g)]


def _worker_stack() -> list[str]:
    """The innermost frames of the Python threads other than this one (file:line function)."""
    import threading
    import traceback

    me = threading.get_ident()
    lines: list[str] = []
    for ident, frame in sys._current_frames().items():
        if ident != me:
            lines += [f"{Path(f.filename).name}:{f.lineno} {f.name}"
                      for f in traceback.extract_stack(frame)[-4:]]
    return lines


class _Case:
    """One window with a model and a prompt; :meth:`close` times its closing."""

    def __init__(self, bundle, prompt: Any) -> None:
        from gptviz_app.views.main_window import MainWindow

        self.win = MainWindow(bundle=bundle, load=False)
        self.win.resize(1280, 800)
        self.win.show()
        self.ctl = self.win.controller
        self.started: dict[int, str] = {}
        self.results: list[tuple[int, str, dict]] = []
        self.ctl.client.started.connect(lambda g, c: self.started.__setitem__(g, c))
        self.ctl.client.result.connect(lambda g, c, r: self.results.append((g, c, r)))
        gen = self.ctl.request("load_model", bundle=bundle, prompt=prompt)
        if not _wait(lambda: self.ctl.snapshot is not None and not self.ctl.client.busy, 900):
            raise RuntimeError("the model did not load")
        self.ready_gen = gen

    def running(self, gen: int, timeout_s: float = 120) -> None:
        """Wait until request ``gen`` has started, then :data:`RUN_BEFORE_CLOSE_S` more."""
        if not _wait(lambda: gen in self.started, timeout_s):
            raise RuntimeError("the operation did not start")
        _pause(RUN_BEFORE_CLOSE_S)

    def close(self, note: str = "") -> dict[str, Any]:
        from gptviz_app.runtime import worker

        thread = self.ctl.client.thread
        busy = self.ctl.client.busy
        t0 = time.perf_counter()
        self.win.close()
        took = time.perf_counter() - t0
        from gptviz.engine import interrupt

        out = {"close_s": round(took, 3), "busy_when_closed": busy,
               "thread_running": thread.isRunning(), "orphaned": len(worker._ORPHANS),
               "aside_calls_left": len(interrupt._aside),
               "ok": took <= TARGET_S and not thread.isRunning()}
        if note:
            out["note"] = note
        if thread.isRunning():  # where it is stuck; then waited for, never destroyed running
            out["stuck_in"] = _worker_stack()
            thread.wait()
            worker._wait_for_orphans()
        self.win.deleteLater()
        return out


def case_session_open(tokens: int) -> dict[str, Any]:
    from gptviz.engine.sampling import SamplingSettings
    from gptviz.engine.session import Session
    from gptviz.io.session_file import read_session_file, save_session

    bundle = _small()
    s = Session(bundle, "Once upon a time", SamplingSettings(seed=0))
    t0 = time.perf_counter()
    for _ in range(tokens):
        s.step()
    gen_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="gptviz-bench-close-") as d:
        path = Path(d) / "long.gptviz.json"
        save_session(path, s, bundle, {})
        t0 = time.perf_counter()
        read_session_file(path)
        read_s = time.perf_counter() - t0
        big = _bigger_file(path, 30_000)  # read and checked only (its tokens repeat)
        t0 = time.perf_counter()
        read_session_file(big)
        read_big_s = time.perf_counter() - t0
        case = _Case(bundle, "Once upon a time")
        gen = case.win.features.sessions.open_path(str(path))
        case.running(gen)
        _wait(lambda: any(g == gen and "progress" in r and r["progress"][0] > 0
                          for g, _, r in case.results), 60)
        done = max((r["progress"][0] for g, _, r in case.results
                    if g == gen and "progress" in r), default=0)
        out = case.close(f"replayed {done} of {tokens} tokens when closed")
        out.update({"tokens": tokens, "file_mb": round(path.stat().st_size / 1e6, 2),
                    "read_and_check_s": round(read_s, 3),
                    "read_and_check_30k_s": round(read_big_s, 3),
                    "file_30k_mb": round(big.stat().st_size / 1e6, 2),
                    "replay_ms_per_token": round(gen_s / tokens * 1e3, 2)})
    return out


def _bigger_file(path: Path, tokens: int) -> Path:
    """A copy of session file ``path`` whose token list is repeated up to ``tokens``."""
    d = json.loads(path.read_text(encoding="utf-8"))
    toks = d["tokens"]
    d["tokens"] = (toks * (tokens // max(1, len(toks)) + 1))[:tokens]
    out = path.with_name("big.gptviz.json")
    out.write_text(json.dumps(d), encoding="utf-8")
    return out


def _gpt2_checkpoint(d: str) -> str:
    from gptviz.io.checkpoint import save_checkpoint

    b = _gpt2()
    save_checkpoint(d, b.model, b.tokenizer)
    return d


def case_open_model(prefill: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gptviz-bench-close-") as d:
        path = _gpt2_checkpoint(d)
        t0 = time.perf_counter()
        from gptviz import load_model

        load_model(path)
        load_s = time.perf_counter() - t0
        case = _Case(_small(), "Once upon a time")
        prompt = _ids(_gpt2(), 1000) if prefill else None
        opener = case.win.features.models
        gen = opener.open(path, "cpu", "float32", prompt=prompt)
        stage = "Running the prompt" if prefill else "Reading the model"
        _wait(lambda: any(g == gen and r.get("stage") == stage for g, _, r in case.results),
              300)
        _pause(RUN_BEFORE_CLOSE_S)
        out = case.close(f"closed during {stage!r}")
        out["load_s"] = round(load_s, 3)
    return out


def case_prefill() -> dict[str, Any]:
    bundle = _gpt2()
    case = _Case(bundle, _ids(bundle, 16))
    gen = case.ctl.request("set_prompt", text=_ids(bundle, 1000, seed=1))
    case.running(gen)
    return case.close("set_prompt of 1,000 tokens")


def _same_length_corruption(tok, text: str) -> str:
    """``text`` with one letter changed, as many tokens long (a patching pair)."""
    n = len(tok.encode(text))
    for i in range(len(text) - 1, 0, -1):
        if text[i].isalpha():
            for ch in "aeiou":
                other = text[:i] + ch + text[i + 1:]
                if other != text and len(tok.encode(other)) == n:
                    return other
    raise RuntimeError("no same-length corruption found")


def case_patching() -> dict[str, Any]:
    from gptviz_app.runtime.demo_model import SAMPLE_TEXT

    bundle = _gpt2()
    tok = bundle.tokenizer
    text = SAMPLE_TEXT
    while len(tok.encode(text)) < 300:
        text += SAMPLE_TEXT
    text = tok.decode(tok.encode(text)[:300])
    case = _Case(bundle, text)
    corrupt = _same_length_corruption(tok, text)
    gen = case.ctl.request("patch", op="run", corrupt=corrupt, target_id=1, vs_id=2)
    case.running(gen)
    done = [r["progress"] for g, _, r in case.results if g == gen and "progress" in r]
    return case.close(f"activation patching over {len(tok.encode(text))} tokens, "
                      f"at {done[-1] if done else (0, '?')} when closed")


def case_analyses() -> dict[str, Any]:
    from gptviz.analysis.runner import AnalysisSpec

    bundle = _gpt2()
    case = _Case(bundle, _ids(bundle, 1000))
    names = ("heads", "rollout", "inside_head", "embedding", "saliency")
    gen = case.ctl.request("analysis", op="spec", spec=AnalysisSpec(dict.fromkeys(names)))
    case.running(gen)
    return case.close(", ".join(names) + " at 1,000 tokens")


def case_saliency_backward() -> dict[str, Any]:
    """Closed inside saliency's backward pass: one autograd call, which looks at the checks
    at each module (``gptviz.engine.interrupt.backward_checks``)."""
    from gptviz.analysis.runner import AnalysisSpec

    bundle = _gpt2()
    case = _Case(bundle, _ids(bundle, 1000))
    ended: list[float] = []  # when the backward pass began (bench-only hooks)

    def watch(module, args, out) -> None:
        if out.requires_grad:  # the gradient reaches the final norm first
            out.register_hook(lambda g: ended.append(time.perf_counter()))

    handle = bundle.model.ln_f.register_forward_hook(watch)
    try:
        gen = case.ctl.request("analysis", op="spec", spec=AnalysisSpec({"saliency": None}))
        if not _wait(lambda: gen in case.started, 120) or not _wait(lambda: bool(ended), 300):
            raise RuntimeError("saliency did not start")
        _pause(0.2)
        out = case.close("closed 0.2 s into saliency's backward pass (1,000 tokens)")
    finally:
        handle.remove()
    return out


def case_play() -> dict[str, Any]:
    case = _Case(_small(), "Once upon a time")
    case.ctl.set_rate(0)
    case.ctl.set_playing(True)
    _pause(1.0)
    return case.close("Play at full speed")


def case_steps() -> dict[str, Any]:
    case = _Case(_small(), "Once upon a time")
    gen = case.ctl.step(10_000)
    case.running(gen)
    return case.close("step(10,000)")


def run_case(name: str, tokens: int = 4000) -> dict[str, Any]:
    """One case in this process (a ``QApplication`` is made if there is none)."""
    import torch
    from PySide6.QtWidgets import QApplication

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    _app = QApplication.instance() or QApplication([])  # noqa: F841 (kept for the run)
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "session_open": lambda: case_session_open(tokens),
        "open_model": lambda: case_open_model(False),
        "open_model_prefill": lambda: case_open_model(True),
        "prefill": case_prefill, "patching": case_patching, "analyses": case_analyses,
        "play": case_play, "steps": case_steps, "saliency_backward": case_saliency_backward,
    }
    try:
        return runners[name]()
    except Exception as e:  # noqa: BLE001 - a case that failed is reported, the rest run
        for w in QApplication.topLevelWidgets():  # its window's worker stopped before exit
            w.close()
        return {"error": f"{type(e).__name__}: {e}"}


def _child(name: str, tokens: int) -> dict[str, Any]:
    """:func:`run_case` in a process of its own (a fresh window and Qt state per case; what
    happens at the process's exit, after the close, is seen too)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    boot = (f"import sys; sys.path.insert(0, {str(root)!r}); import main; "
            "main.use_checkout_app(); " if (root / "main.py").is_file() else "import sys; ")
    code = (boot + "from gptviz_app.bench_close import run_case; import json; "
            f"print('RESULT ' + json.dumps(run_case({name!r}, {int(tokens)})), flush=True)")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=1800, check=False)
    exit_s = time.perf_counter() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    out: dict[str, Any] = json.loads(lines[-1][7:]) if lines else {
        "error": f"no result (exit code {p.returncode}): {p.stderr.strip()[-400:]}"}
    out["process_s"] = round(exit_s, 1)
    out["exit_code"] = p.returncode
    if p.returncode != 0:  # a crash or an abort at exit ("QThread destroyed while running")
        out["ok"] = False
        out["stderr_tail"] = "\n".join(
            ln for ln in p.stderr.splitlines()[-8:] if "propagateSizeHints" not in ln)
    return out


def run(only: tuple[str, ...] = CASES, tokens: int = 4000,
        log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every case of ``only``, each in a process of its own;
    ``{"cases": {name: figures}, "target_s": 1.0, "all_ok": bool}``."""
    out: dict[str, Any] = {}
    for name in only:
        out[name] = _child(name, tokens)
        if log:
            log(f"{name}: {out[name]}")
    return {"target_s": TARGET_S, "cases": out,
            "all_ok": all(v.get("ok", False) for v in out.values())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gptviz_app.bench_close",
                                description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--only", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--tokens", type=int, default=4000,
                   help="generated tokens of the session file (default 4000)")
    args = p.parse_args(argv)
    log = None if args.json else (lambda line: print(line, flush=True))
    res = run(tuple(args.only), max(1, args.tokens), log)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for name, fig in res["cases"].items():
            with contextlib.suppress(KeyError):
                print(f"{name:20s} close {fig['close_s']:.3f} s "
                      f"{'ok' if fig['ok'] else 'FAILED'}  {fig.get('note', '')}")
    return 0 if res["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
