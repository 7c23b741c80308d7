"""Launch the gptviz desktop app from a checkout (installed, the same is ``gptviz-app``).

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

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def use_checkout_app() -> None:
    """Import this checkout's ``app/`` folder under its installed name, ``gptviz_app``.

    ``pip install .`` installs ``app/`` as the package ``gptviz_app`` (no generic top-level
    name); a checkout run (``python main.py``, the tests) maps the folder onto the same name,
    ahead of any installed copy, and puts the checkout's ``gptviz`` first on the path.
    """
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    if "gptviz_app" in sys.modules:
        return
    init = HERE / "app" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "gptviz_app", init, submodule_search_locations=[str(init.parent)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gptviz_app"] = module
    spec.loader.exec_module(module)


if __name__ == "__main__":
    use_checkout_app()
    from gptviz_app.launch import main

    raise SystemExit(main(prog="python main.py"))
