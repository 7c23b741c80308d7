"""gptviz desktop app: PySide6 + pyqtgraph views onto a live :class:`gptviz.engine.session.Session`.

Layout of the package (one small module per widget):

* core of the app:
  :mod:`gptviz_app.views.theme`        colours, fonts, colormaps, pyqtgraph options;
  :mod:`gptviz_app.runtime.snapshot`     plain-numpy messages the worker sends to the window (no Qt, no torch);
  :mod:`gptviz_app.runtime.snapshots`      builds snapshots from a session (thumbnail mosaic kept incrementally);
  :mod:`gptviz_app.runtime.worker`       the QThread worker that owns the session, and its UI-side client;
  :mod:`gptviz_app.runtime.controller`   view state, Play timer, requests out, snapshots into the views;
  :mod:`gptviz_app.views.main_window`  the window: docks, toolbars, menus (File, Generate, View, Analysis, Help)
* views: :mod:`gptviz_app.views.prompt_editor`, :mod:`gptviz_app.views.token_strip`, :mod:`gptviz_app.views.stepping`,
  :mod:`gptviz_app.views.sampling_panel`, :mod:`gptviz_app.views.attention_map`, :mod:`gptviz_app.views.head_grid`,
  :mod:`gptviz_app.views.next_token`, :mod:`gptviz_app.views.class_panel`, :mod:`gptviz_app.views.status`; shared widgets:
  :mod:`gptviz_app.views.elided_label` (one-line labels that elide instead of wrapping),
  :mod:`gptviz_app.views.panel_layout` (the controls / plot / readout layout every plot panel shares)
* analysis panels (installed by :mod:`gptviz_app.panels.docks`: docks, Analysis menu and toolbar):
  :mod:`gptviz_app.panels.diagnostics` (head scores), :mod:`gptviz_app.panels.lens` (logit lens),
  :mod:`gptviz_app.panels.rollout` (attention rollout), :mod:`gptviz_app.panels.ablation` (live head
  ablation), :mod:`gptviz_app.panels.compare` (A/B comparisons); their building blocks in
  :mod:`gptviz_app.panels.widgets`, the worker-side computations (no Qt) in
  :mod:`gptviz_app.runtime.analysis_builder`
* lecture mode and sharing (installed by :mod:`gptviz_app.actions`): :mod:`gptviz_app.actions.appearance` (themes
  that follow the system, font scale, colormap), :mod:`gptviz_app.actions.presentation` (F11),
  :mod:`gptviz_app.actions.shortcuts` (keyboard control, Help ▸ Keyboard shortcuts),
  :mod:`gptviz_app.actions.sample_prompts` (sample and recent prompts), :mod:`gptviz_app.actions.sessions` (open /
  save sessions), :mod:`gptviz_app.actions.export` (PNG/SVG/CSV/NPZ export),
  :mod:`gptviz_app.actions.preferences` (settings kept between runs); the worker-side commands (no Qt) in
  :mod:`gptviz_app.runtime.file_commands`
* :mod:`gptviz_app.launch`       what ``main.py`` starts: preferences, model or session, ``--screenshot``
* :mod:`gptviz_app.runtime.demo_model`   random models of a given shape (benchmarks, tests, no bundled model)
* :mod:`gptviz_app.bench_gui`    ``python -m gptviz_app.bench_gui``: GUI update cost and Play throughput

The core package ``gptviz`` never imports this one.
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
