"""``gptviz-app`` / ``python main.py``: start the window the way the arguments ask: preferences, model or session,
initial sampling and view, and the ``--screenshot`` run (open, step, save a PNG, quit).

Kept out of ``main.py`` so that the launcher stays a few lines: arguments, QApplication,
this.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication


def start(args: argparse.Namespace, app: QApplication) -> int:
    """Open the main window for ``args`` and run the event loop; returns the exit code."""
    from gptviz_app.views.main_window import MainWindow
    from gptviz_app.actions.preferences import Preferences

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
        win.lecture.appearance.mode = args.theme
        win.lecture.appearance.apply()
    if args.size:
        w, h = (int(v) for v in args.size.lower().split("x"))
        win.resize(w, h)
    win.show()
    if args.presentation:
        win.lecture.presentation.set_active(True,
                                            fullscreen=not (args.size or args.screenshot))
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
        if args.screenshot and gen == state["step_gen"]:
            QTimer.singleShot(300, shoot)  # let layouts settle after the last snapshot

    def shoot() -> None:
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
        state["step_gen"] = win.lecture.sessions.open_path(args.session)

        def session_failed(_command: str, message: str) -> None:
            if args.screenshot:
                failed(message)
            elif ctl.model is None:  # the message box says why; open a model to work with
                win.open_model(args.model, prompt=args.prompt or DEFAULT_PROMPT)

        win.lecture.sessions.failed.connect(session_failed)
    else:
        win.open_model(args.model, prompt=args.prompt or DEFAULT_PROMPT)
    if args.screenshot:
        if win.last_error_box is not None:
            win.last_error_box.close()
    rc = app.exec()
    return state["rc"] or rc


def parse_args(argv: list[str] | None = None, prog: str = "gptviz-app") -> argparse.Namespace:
    """The options of ``gptviz-app`` and ``python main.py`` (one list for both)."""
    p = argparse.ArgumentParser(prog=prog, description="gptviz: see inside a GPT "
                                "while it writes.")
    p.add_argument("--model", default=None,
                   help="model directory or nanoGPT .pt (default: the bundled model)")
    p.add_argument("--prompt", default=None, help="initial prompt")
    p.add_argument("--steps", type=int, default=0, help="generate N tokens after opening")
    p.add_argument("--screenshot", default=None, metavar="FILE.png",
                   help="after --steps, save a PNG of the window and exit")
    p.add_argument("--size", default=None, metavar="WxH", help="window size, e.g. 1920x1080")
    p.add_argument("--greedy", action="store_true", help="start with greedy decoding")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--layer", type=int, default=None, help="initially selected layer")
    p.add_argument("--head", type=int, default=None, help="initially selected head")
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
    return start(args, app)
