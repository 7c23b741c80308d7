"""Glue between the views and the worker: the view state, requests, Play, snapshots.

The controller is the one place that turns user intent (a click on a chip, a key press)
into worker requests, and worker snapshots into view updates. Views stay ignorant of each
other and of the thread: each view has ``set_model(info)`` and ``apply_snapshot(snap)``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Protocol

from PySide6.QtCore import QObject, QTimer, Signal

from gptviz_app.runtime.snapshot import ModelInfo, Snapshot, ViewSpec
from gptviz_app.runtime.worker import EngineClient


class View(Protocol):
    def set_model(self, info: ModelInfo) -> None: ...
    def apply_snapshot(self, snap: Snapshot) -> None: ...


class Controller(QObject):
    """Owns the :class:`~gptviz_app.runtime.worker.EngineClient`, the :class:`ViewSpec` and
    the Play timer.

    Signals
    -------
    applied(Snapshot)       after every view has taken a snapshot
    modelChanged(ModelInfo)
    errorOccurred(command, message)
    playingChanged(bool)
    busyChanged(bool)
    """

    applied = Signal(object)
    modelChanged = Signal(object)
    errorOccurred = Signal(str, str)
    playingChanged = Signal(bool)
    busyChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None, top_k_report: int = 20) -> None:
        super().__init__(parent)
        self.client = EngineClient(self, top_k_report=top_k_report)
        self.client.snapshot.connect(self._on_snapshot)
        self.client.finished.connect(self._on_finished)
        self.client.errored.connect(self._on_error)
        self.client.modelChanged.connect(self._on_model)
        self.view = ViewSpec()
        self.views: list[View] = []
        self.model: ModelInfo | None = None
        self.snapshot: Snapshot | None = None
        # Play: request the next token only once the previous step has finished.
        self._playing = False
        self._rate = 4.0                 # tokens per second; 0 = as fast as possible
        self._play_gen = -1              # generation of the step in flight, -1 = none
        self._last_play_request = 0.0
        self._play_timer = QTimer(self)
        self._play_timer.setSingleShot(True)
        self._play_timer.timeout.connect(self._play_tick)
        #: ms spent in the last apply (UI thread), for the status bar and the benchmark
        self.last_apply_ms = 0.0
        self.last_latency_ms = 0.0
        # Snapshots the views have let go of, freed once the frame they made way for is on
        # screen: their maps are megabytes at 1,024 tokens, and giving that memory back
        # (unmapping it: see gptviz.engine.memory) cost the views' update ~0.5 ms a step.
        # A timer's event comes after the posted ones, the paint among them.
        self._retired: list[Snapshot] = []
        self._release_timer = QTimer(self)
        self._release_timer.setSingleShot(True)
        self._release_timer.setInterval(0)
        self._release_timer.timeout.connect(self._retired.clear)

    # ------------------------------------------------------------------ views
    def add_view(self, view: View) -> None:
        """Register a view: it gets ``set_model`` and ``apply_snapshot`` calls from now on."""
        self.views.append(view)
        if self.model is not None:
            view.set_model(self.model)
        if self.snapshot is not None:
            view.apply_snapshot(self.snapshot)

    def _on_model(self, info: ModelInfo) -> None:
        self.model = info
        self.view = replace(self.view, layer=min(self.view.layer, info.n_layer - 1),
                            head=min(self.view.head, info.n_head - 1), query=None)
        for v in self.views:
            v.set_model(info)
        self.modelChanged.emit(info)

    def _on_snapshot(self, snap: Snapshot) -> None:
        t0 = time.perf_counter()
        self.last_latency_ms = (t0 - snap.t_emit) * 1e3 if snap.t_emit else 0.0
        if self.snapshot is not None:
            self._retired.append(self.snapshot)
            self._release_timer.start()
        self.snapshot = snap
        for v in self.views:
            v.apply_snapshot(snap)
        self.last_apply_ms = (time.perf_counter() - t0) * 1e3
        self.applied.emit(snap)

    def _on_error(self, gen: int, command: str, message: str) -> None:
        if self._playing:
            self.set_playing(False)
        self.errorOccurred.emit(command, message)

    def _on_finished(self, gen: int, command: str) -> None:
        self.busyChanged.emit(self.client.busy)
        if self._playing and gen == self._play_gen:
            self._play_gen = -1
            self._schedule_play()

    # ------------------------------------------------------------------ requests
    def request(self, command: str, **args: Any) -> int:
        gen = self.client.request(command, self.view, **args)
        self.busyChanged.emit(True)
        return gen

    def load_model(self, path: str | None = None, bundle: Any = None,
                   prompt: str | None = None) -> int:
        return self.request("load_model", path=path, bundle=bundle, prompt=prompt)

    def set_prompt(self, text: str) -> int:
        self.view = replace(self.view, query=None)
        return self.request("set_prompt", text=text)

    def step(self, n: int = 1) -> int:
        return self.request("step", n=n)

    def back(self) -> int:
        return self.request("undo", n=1)

    def forward(self) -> int:
        return self.request("redo", n=1)

    def reset(self) -> int:
        self.set_playing(False)
        return self.request("reset")

    def goto(self, n_generated: int) -> int:
        return self.request("goto", n_generated=int(n_generated))

    def force(self, token_id: int, replace_last: bool) -> int:
        return self.request("force", token_id=int(token_id), replace_last=bool(replace_last))

    def set_settings(self, settings: Any) -> int:
        return self.request("set_settings", settings=settings)

    def set_ablation(self, ablation: Any) -> int:
        return self.request("set_ablation", ablation=ablation)

    # ------------------------------------------------------------------ view state
    def set_view(self, **changes: Any) -> int:
        """Change what the views show (layer, head, average, query, grid_mode) and refresh."""
        new = replace(self.view, **changes)
        if new == self.view:
            return -1
        self.view = new
        return self.request("view")

    def set_grid_cell(self, px: int) -> int:
        """Draw the head grid's thumbnails at ``px`` pixels: from the next snapshot of what
        runs (a request of its own would stop a run), or, when idle, redrawn now
        (:meth:`EngineClient.refresh`: no new generation). Returns the refresh's generation
        or -1."""
        self.client.worker.grid_cell = int(px)
        snap = self.snapshot
        if self._playing or snap is None or snap.grid_cell == px:
            return -1
        return self.client.refresh(self.view)

    def set_grid_colours(self, table) -> None:
        """Colour the head grid's mosaic with ``table`` (``[n + 1]`` uint32, read-only: see
        ``runtime.grid_pixels``) from the next snapshot on; the grid colours a snapshot made
        with other colours itself."""
        self.client.worker.grid_table = table

    def select_head(self, layer: int, head: int) -> int:
        return self.set_view(layer=int(layer), head=int(head), average=False)

    def set_query(self, position: int | None) -> int:
        return self.set_view(query=None if position is None else int(position))

    # ------------------------------------------------------------------ Play
    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, tokens_per_s: float) -> None:
        """Play speed; 0 or less means as fast as the model goes."""
        self._rate = float(tokens_per_s)

    def set_playing(self, on: bool) -> None:
        on = bool(on) and self.model is not None
        if on == self._playing:
            return
        self._playing = on
        if on:
            self._schedule_play(immediate=True)
        else:
            self._play_timer.stop()
            self._play_gen = -1
        self.playingChanged.emit(on)

    def toggle_play(self) -> None:
        self.set_playing(not self._playing)

    def _schedule_play(self, immediate: bool = False) -> None:
        if not self._playing:
            return
        if immediate or self._rate <= 0:
            delay = 0
        else:
            due = self._last_play_request + 1.0 / self._rate
            delay = max(0, int((due - time.perf_counter()) * 1000))
        # Always through the timer, after the views have painted: asking for the next token
        # while the UI paints makes both threads fight for the GIL (measured: tiny models
        # then starve the UI thread for hundreds of ms).
        self._play_timer.start(delay)

    def _play_tick(self) -> None:
        if not self._playing or self._play_gen != -1:
            return
        self._last_play_request = time.perf_counter()
        self._play_gen = self.step(1)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> bool:
        self.set_playing(False)
        return self.client.shutdown()
