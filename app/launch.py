"""``gptviz-app`` and ``python main.py``: the options, then the window the way they ask:
preferences, model or session, initial sampling and view, and the ``--screenshot`` run
(open, step, save a PNG, quit). Both launchers call :func:`main`; ``main.py`` only maps the
checkout's ``app/`` onto ``gptviz_app`` first.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from gptviz.cli.arguments import MODEL_HELP, device_name, text, whole_number
from gptviz.engine.sampling import MAX_SEED
from gptviz.io.device import DEVICES, DTYPES
from gptviz.io.resources import resource_path


def start(args: argparse.Namespace, app: QApplication) -> int:
    """Open the main window for ``args`` and run the event loop; returns the exit code."""
    from gptviz_app.actions.preferences import Preferences
    from gptviz_app.views.main_window import MainWindow

    if args.screenshot:
        prefs = Preferences.in_memory()
    elif os.environ.get("GPTVIZ_SETTINGS"):
        prefs = Preferences.at_path(os.environ["GPTVIZ_SETTINGS"])
    else:
        prefs = Preferences()
    if args.model is None and not args.session and prefs.last_model \
            and Path(prefs.last_model).exists():
        args.model = prefs.last_model
    win = MainWindow(model=args.model, prompt=args.prompt, load=False, preferences=prefs)
    if args.theme:
        win.features.appearance.mode = args.theme
        win.features.appearance.apply()
    panels = [k for k in (args.panels or "").split(",") if k]
    unknown = [k for k in panels if k not in win.analysis.panels]
    if unknown:
        print(f"error: --panels: no panel {', '.join(map(repr, unknown))} (the panels: "
              f"{', '.join(win.analysis.panels)})", file=sys.stderr)
        win.close()
        return 2
    want = None
    if args.size:
        want = tuple(int(v) for v in args.size.lower().split("x"))
        win.resize(*want)
    win.show()
    for key in panels:
        win.analysis.reveal(key)
    if want is not None and not args.screenshot:
        QTimer.singleShot(0, lambda: report_size(win, want))
    if args.presentation:
        win.features.presentation.set_active(True,
                                            fullscreen=not (args.size or args.screenshot),
                                            keep=panels)
    ctl = win.controller
    state = {"rc": 0, "started": False, "step_gen": -1}

    def first_model(info) -> None:
        if state["started"]:
            return
        state["started"] = True
        if args.session:  # the session brings its own settings and view
            return
        from dataclasses import replace

        from gptviz.engine.sampling import SamplingSettings

        s = SamplingSettings(greedy=args.greedy, seed=args.seed)
        win.sampling.set_settings(s)
        ctl.set_settings(s)
        if args.layer is not None or args.head is not None:
            ctl.view = replace(ctl.view, layer=max(0, min(args.layer or 0, info.n_layer - 1)),
                               head=max(0, min(args.head or 0, info.n_head - 1)))
        if args.steps > 0:
            state["step_gen"] = ctl.step(args.steps)
        elif args.screenshot:
            state["step_gen"] = ctl.request("view")

    def finished(gen: int, command: str) -> None:
        # the steps asked for, and whatever the panels asked for since (their analyses)
        if args.screenshot and 0 <= state["step_gen"] <= gen and not state.get("shot") \
                and gen == ctl.client.latest:
            state["shot"] = True
            QTimer.singleShot(300, shoot)  # let layouts settle after the last snapshot

    def shoot() -> None:
        if want is not None:
            report_size(win, want)
        ok = win.grab().save(args.screenshot)
        if not ok:
            print(f"error: could not write {args.screenshot}", file=sys.stderr)
            state["rc"] = 1
        else:
            print(args.screenshot)
        win.close()
        app.quit()

    def failed(message: str) -> None:
        if args.screenshot:
            print(f"error: {message}", file=sys.stderr)
            state["rc"] = 2
            QTimer.singleShot(0, give_up)

    def give_up() -> None:
        if win.last_error_box is not None:
            win.last_error_box.close()
        win.close()
        app.quit()

    ctl.modelChanged.connect(first_model)
    ctl.client.finished.connect(finished)
    win.loadFailed.connect(failed)
    from gptviz_app.views.main_window import DEFAULT_PROMPT

    if args.session:  # opens the session's model too
        state["step_gen"] = win.features.sessions.open_path(args.session)

        def session_failed(_command: str, message: str) -> None:
            if args.screenshot:
                failed(message)
            elif ctl.model is None:  # the message box says why; open a model to work with
                win.open_model(args.model, prompt=args.prompt or DEFAULT_PROMPT)

        win.features.sessions.failed.connect(session_failed)
    else:  # a path or a cached model's name, on the device and in the precision asked
        opener = win.features.models
        opener.open(args.model, args.device or opener.device, args.dtype or opener.dtype,
                    prompt=args.prompt or DEFAULT_PROMPT)
    if args.screenshot and win.last_error_box is not None:
        win.last_error_box.close()
    freeze_startup_objects()
    rc = app.exec()
    return state["rc"] or rc


def freeze_startup_objects() -> None:
    """Keep what exists once the window is up (modules, Qt wrappers, pyqtgraph items: some
    230,000 objects, alive as long as the app) out of Python's cycle collector: each of its
    full passes walked them all and stalled the UI thread for ~100 ms under Play. Objects made
    later are collected as before; frozen ones are still freed when their count drops."""
    gc.collect()  # what is garbage already is not frozen with the rest
    gc.freeze()


def size_note(win, want: tuple[int, int]) -> str | None:
    """Why ``win`` is not ``want`` = (width, height) pixels large (None: it is)."""
    got = (win.width(), win.height())
    if got == tuple(want):
        return None
    least = win.minimumSizeHint().expandedTo(win.minimumSize())
    if least.width() > want[0] or least.height() > want[1]:
        why = (f"its panels and toolbars need at least {least.width()}x{least.height()} at "
               f"this font size")
    else:
        screen = win.screen().availableGeometry() if win.screen() is not None else None
        why = "the window system chose it" + (
            f" (the screen has {screen.width()}x{screen.height()})" if screen else "")
    return f"--size {want[0]}x{want[1]}: the window is {got[0]}x{got[1]}: {why}"


def report_size(win, want: tuple[int, int]) -> None:
    """Print :func:`size_note` to stderr when the window did not get the size asked for."""
    note = size_note(win, want)
    if note:
        print(f"note: {note}", file=sys.stderr)


#: Largest window side accepted by ``--size`` (Qt's own limit is 16,777,215).
MAX_WINDOW_SIDE = 16384


def window_size(s: str) -> str:
    """An argparse type: ``WxH`` with whole numbers 1..:data:`MAX_WINDOW_SIDE` (returned
    as given, lower-cased)."""
    parts = s.lower().split("x")
    ok = len(parts) == 2 and all(p.strip().isdigit() for p in parts)
    if not ok or not all(1 <= int(p) <= MAX_WINDOW_SIDE for p in parts):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 1280x800, "
                                         f"each 1..{MAX_WINDOW_SIDE} (got {s!r})")
    return s.lower()


def parse_args(argv: list[str] | None = None, prog: str = "gptviz-app") -> argparse.Namespace:
    """The options of ``gptviz-app`` and ``python main.py`` (one list for both)."""
    p = argparse.ArgumentParser(prog=prog, description="gptviz: see inside a GPT "
                                "while it writes.")
    p.add_argument("--model", default=None, metavar="PATH|NAME", help=MODEL_HELP)
    p.add_argument("--device", type=device_name, default=None, metavar="|".join(DEVICES),
                   help="where the model runs (default: the last choice, else auto: CUDA or "
                        "MPS when present, else the CPU)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default=None,
                   help="precision of the model (default: the last choice, else float32)")
    # Every value is checked here, before the window and its worker thread exist: a bad
    # one is argparse's usage error (exit 2), never an exception inside the event loop.
    p.add_argument("--prompt", default=None, type=text, help="initial prompt")
    p.add_argument("--steps", type=whole_number(0), default=0,
                   help="generate N tokens after opening")
    p.add_argument("--screenshot", default=None, metavar="FILE.png",
                   help="after --steps, save a PNG of the window and exit")
    p.add_argument("--size", default=None, type=window_size, metavar="WxH",
                   help="window size, e.g. 1920x1080 (a note on stderr says why when the "
                        "window cannot be that size)")
    p.add_argument("--panels", default=None, metavar="KEY,...",
                   help="analysis panels to show at start, e.g. ablation,compare")
    p.add_argument("--greedy", action="store_true", help="start with greedy decoding")
    p.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0, help="sampling seed")
    p.add_argument("--layer", type=whole_number(0), default=None,
                   help="initially selected layer")
    p.add_argument("--head", type=whole_number(0), default=None, help="initially selected head")
    p.add_argument("--session", default=None, metavar="FILE.gptviz.json",
                   help="open a saved session (its model, tokens and view)")
    p.add_argument("--presentation", action="store_true",
                   help="start in presentation mode (full screen unless --size/--screenshot)")
    p.add_argument("--theme", choices=("system", "light", "dark"), default=None,
                   help="theme for this run (default: the saved preference)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "gptviz-app") -> int:
    """``gptviz-app [options]``: parse the options, open the window, run the event loop."""
    args = parse_args(argv, prog)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("gptviz")
    app.setOrganizationName("gptviz")
    icon = resource_path("icon.png")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return exit_now(start(args, app))


def exit_now(rc: int) -> int:
    """End the process with ``rc`` once the event loop is over, skipping the interpreter's
    teardown. By then the window has closed: the worker thread has stopped, the preferences
    are synced, every file was written atomically when it was asked for. What is left is
    freeing memory (every Qt object, torch, numpy, each module), 1.5-3 s measured, the
    "slow quit" of a 2.4 s close; ``GPTVIZ_FULL_EXIT=1`` keeps the normal teardown."""
    if os.environ.get("GPTVIZ_FULL_EXIT"):
        return rc
    import contextlib
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(rc)
