"""Launch the gptviz desktop app.

    python main.py [--model PATH] [--prompt TEXT]
    python main.py --prompt TEXT --steps N --screenshot FILE.png [--size 1280x800]
    python main.py --session demo.gptviz.json --presentation

Preferences (last model, theme, font scale, window layout, recent sessions and prompts)
persist with QSettings ("gptviz"/"gptviz"); ``GPTVIZ_SETTINGS=FILE.ini`` keeps them in that
file instead, and screenshot runs neither read nor write them.

With ``--screenshot`` the window opens, generates N tokens, saves a PNG of the whole window
and exits (works headless with ``QT_QPA_PLATFORM=offscreen``).
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python main.py", description="gptviz: see inside a GPT "
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("gptviz")
    app.setOrganizationName("gptviz")
    from app.launch import start

    return start(args, app)


if __name__ == "__main__":
    raise SystemExit(main())
