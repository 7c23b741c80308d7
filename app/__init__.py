"""gptviz desktop app (installed as ``gptviz_app``): PySide6 + pyqtgraph views onto a live
:class:`gptviz.engine.Session`.

* :mod:`gptviz_app.runtime` — the worker thread that owns the session and the one table of
  its commands, the controller, and the plain-numpy snapshots they exchange (no widgets);
* :mod:`gptviz_app.views` — the main window and its views, the map-plot helper, axes, theme;
* :mod:`gptviz_app.panels` — the analysis panels, one module each, and their registry;
* :mod:`gptviz_app.actions` — sessions, export, preferences, shortcuts, presentation mode,
  appearance and sample prompts, installed on the window together as ``win.features``;
* :mod:`gptviz_app.launch` — ``gptviz-app`` / ``python main.py``;
  :mod:`gptviz_app.bench_gui` — GUI update cost and Play throughput;
  :mod:`gptviz_app.bench_close` — how long closing the window takes during long work.

``docs/architecture.md`` is the map. The core package ``gptviz`` never imports this one.
"""

__all__ = ["configure_pyqtgraph", "configure_runtime"]

#: GIL switch interval while the app runs (seconds). Python's default of 5 ms lets the worker
#: thread (the model's Python code) hold the UI thread back 5 ms at every hand-over.
SWITCH_INTERVAL_S = 0.001


def configure_runtime() -> None:
    """Process-wide settings for a responsive UI next to the worker thread."""
    import os
    import sys

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # Leave one core to the UI thread: torch's intra-op threads would otherwise take every
    # core during a step and starve painting (measured: UI stalls of 45-75 ms -> ~25 ms).
    import torch

    cores = os.cpu_count() or 2
    want = max(1, cores - 1)
    if torch.get_num_threads() > want:
        torch.set_num_threads(want)


def configure_pyqtgraph() -> None:
    """Global pyqtgraph options; must run before any plot is created."""
    import pyqtgraph as pg

    # Row-major: image[row=query, col=key]; without it the maps appear transposed.
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, useOpenGL=False)
