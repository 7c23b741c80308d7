"""gptviz desktop app: PySide6 + pyqtgraph views onto a live :class:`gptviz.engine.Session`.

Layout of the package (one small module per widget):

* core of the app:
  :mod:`app.theme`        colours, fonts, colormaps, pyqtgraph options;
  :mod:`app.snapshot`     plain-numpy messages the worker sends to the window (no Qt, no torch);
  :mod:`app.builder`      builds snapshots from a session (thumbnail mosaic kept incrementally);
  :mod:`app.worker`       the QThread worker that owns the session, and its UI-side client;
  :mod:`app.controller`   view state, Play timer, requests out, snapshots into the views;
  :mod:`app.main_window`  the window: docks, toolbars, menus (File, Generate, View, Analysis, Help)
* views: :mod:`app.prompt_editor`, :mod:`app.token_strip`, :mod:`app.stepping`,
  :mod:`app.sampling_panel`, :mod:`app.attention_map`, :mod:`app.head_grid`,
  :mod:`app.next_token`, :mod:`app.class_panel`, :mod:`app.status`; shared widgets:
  :mod:`app.elided_label` (one-line labels that elide instead of wrapping),
  :mod:`app.panel_layout` (the controls / plot / readout layout every plot panel shares)
* analysis panels (installed by :mod:`app.analysis_ui`: docks, Analysis menu and toolbar):
  :mod:`app.diagnostics_panel` (head scores), :mod:`app.lens_panel` (logit lens),
  :mod:`app.rollout_panel` (attention rollout), :mod:`app.ablation_panel` (live head
  ablation), :mod:`app.compare_panel` (A/B comparisons); their building blocks in
  :mod:`app.analysis_widgets`, the worker-side computations (no Qt) in
  :mod:`app.analysis_builder`
* lecture mode and sharing (installed by :mod:`app.lecture`): :mod:`app.appearance` (themes
  that follow the system, font scale, colormap), :mod:`app.presentation` (F11),
  :mod:`app.shortcuts` (keyboard control, Help ▸ Keyboard shortcuts),
  :mod:`app.sample_prompts` (sample and recent prompts), :mod:`app.session_actions` (open /
  save sessions), :mod:`app.export_actions` (PNG/SVG/CSV/NPZ export),
  :mod:`app.preferences` (settings kept between runs); the worker-side commands (no Qt) in
  :mod:`app.lecture_commands`
* :mod:`app.launch`       what ``main.py`` starts: preferences, model or session, ``--screenshot``
* :mod:`app.demo_model`   random models of a given shape (benchmarks, tests, no bundled model)
* :mod:`app.bench_gui`    ``python -m app.bench_gui``: GUI update cost and Play throughput

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
