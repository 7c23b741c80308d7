"""The worker thread that owns the session, and the UI-side client that talks to it.

Protocol
--------
The window never touches torch. It calls :meth:`EngineClient.request` (UI thread), which
stamps the command with a new *generation* number and sends it to the
:class:`SessionWorker` through a queued signal. The worker runs commands one at a time on
its own ``QThread`` and answers with napari-style signals, all carrying the generation:

* ``started(gen, command)``
* ``yielded(gen, Snapshot)`` - one per state to show (a multi-step ``step`` yields after
  every token)
* ``finished(gen, command)`` - always, even after an error or a cancel
* ``errored(gen, command, message)``
* ``modelChanged(gen, ModelInfo)``

Supersession: every request makes all earlier ones stale. The worker still applies every
state-changing command in order (so the session ends where the user asked), but it does not
build snapshots for a stale request, and a multi-step run stops at the next token once a
newer request exists. The client drops any ``yielded`` snapshot whose generation is not the
newest, so stale results never reach the screen. Errors, finishes and model changes are
always delivered.
"""

from __future__ import annotations

import threading
import time
import traceback
import weakref
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from gptviz_app.runtime.snapshots import SnapshotBuilder
from gptviz_app.runtime.snapshot import ModelInfo, Request, ViewSpec

#: Every QThread the app started (tests check that none is left running).
THREADS: "weakref.WeakSet[QThread]" = weakref.WeakSet()

#: Commands the worker understands.
COMMANDS = ("load_model", "set_prompt", "step", "undo", "redo", "goto", "reset", "force",
            "set_settings", "set_ablation", "view")
# Sessions, trace export and sample prompts (issue 6): see gptviz_app.runtime.file_commands.
COMMANDS = COMMANDS + ("save_session", "open_session", "export_trace", "sample_prompt")
# Analysis panels (issue 5): head ablation, panel settings, comparisons; see gptviz_app.runtime.analysis_builder.
COMMANDS = COMMANDS + ("analysis",)


class _Latest:
    """The newest generation the window has issued; read by the worker between tokens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def next(self) -> int:
        with self._lock:
            self._value += 1
            return self._value

    @property
    def value(self) -> int:
        return self._value


class SessionWorker(QObject):
    """Owns the :class:`gptviz.engine.session.Session`; lives on the worker thread."""

    started = Signal(int, str)
    yielded = Signal(int, object)
    finished = Signal(int, str)
    errored = Signal(int, str, str)
    modelChanged = Signal(int, object)
    resultReady = Signal(int, str, object)   # (gen, command, dict): a command's outcome

    def __init__(self, latest: _Latest, top_k_report: int = 20) -> None:
        super().__init__()
        self._latest = latest
        self._top_k = top_k_report
        self.bundle = None
        self.session = None
        self.builder: SnapshotBuilder | None = None
        from gptviz_app.runtime.analysis_builder import AnalysisBuilder

        self.analysis = AnalysisBuilder()  # issue 5: fills snap.extra["analysis"]

    # ------------------------------------------------------------------ helpers
    def _stale(self, gen: int) -> bool:
        return self._latest.value > gen

    def _emit(self, req: Request) -> None:
        if self.builder is None or self._stale(req.gen):
            return
        snap = self.builder.build(req.gen, req.command, req.view)
        self.analysis.extend(snap, self.session)
        snap.t_emit = time.perf_counter()
        self.yielded.emit(req.gen, snap)

    # ------------------------------------------------------------------ entry point
    @Slot(object)
    def handle(self, req: Request) -> None:
        """Run one request (called through a queued connection)."""
        self.started.emit(req.gen, req.command)
        try:
            getattr(self, "_cmd_" + req.command)(req, **req.args)
        except Exception as e:  # reported to the window, never raised into Qt
            msg = str(e) or type(e).__name__
            if not isinstance(e, ValueError):
                msg = f"{type(e).__name__}: {msg}\n\n{traceback.format_exc(limit=3)}"
            self.errored.emit(req.gen, req.command, msg)
        finally:
            self.finished.emit(req.gen, req.command)

    # ------------------------------------------------------------------ commands
    def _need_session(self):
        if self.session is None:
            raise ValueError("no model is loaded")
        return self.session

    def _cmd_load_model(self, req: Request, path: str | None = None, bundle: Any = None,
                        prompt: str | None = None) -> None:
        from gptviz import load_model
        from gptviz.engine.session import Session

        new_bundle = bundle if bundle is not None else load_model(path)
        if prompt is None:
            prompt = self.session.prompt if self.session is not None else "Once upon a time"
        settings = self.session.settings if self.session is not None else None
        kwargs = {"top_k_report": self._top_k}
        if settings is not None:
            kwargs["settings"] = settings
        try:
            session = Session(new_bundle, prompt, **kwargs)
        except ValueError:
            # The new model's tokenizer may not encode the old prompt; fall back to a sample.
            session = Session(new_bundle, "Once upon a time", **kwargs)
        # Only now, with everything loaded, replace the current model.
        self.bundle, self.session = new_bundle, session
        self.builder = SnapshotBuilder(session)
        info: ModelInfo = self.builder.model_info(new_bundle)
        self.modelChanged.emit(req.gen, info)
        self._emit(req)

    def _cmd_set_prompt(self, req: Request, text: str) -> None:
        s = self._need_session()
        s.set_prompt(text)
        self.builder.note_jump()
        self._emit(req)

    def _cmd_step(self, req: Request, n: int = 1) -> None:
        s = self._need_session()
        for i in range(int(n)):
            if i and self._stale(req.gen):
                break  # a newer request cancels the rest of this run
            self.builder.note_step(s.step())
            self._emit(req)

    def _cmd_force(self, req: Request, token_id: int, replace_last: bool = False) -> None:
        s = self._need_session()
        if replace_last and s.can_undo:
            s.undo(1)
            self.builder.note_jump()
        r = s.step(force=int(token_id))
        self.builder.note_step(r)
        self._emit(req)

    def _cmd_undo(self, req: Request, n: int = 1) -> None:
        self._need_session().undo(int(n))
        self.builder.note_jump()
        self._emit(req)

    def _cmd_redo(self, req: Request, n: int = 1) -> None:
        self._need_session().redo(int(n))
        self.builder.note_jump()
        self._emit(req)

    def _cmd_goto(self, req: Request, n_generated: int) -> None:
        s = self._need_session()
        if int(n_generated) != s.n_generated:
            s.goto(int(n_generated))
            self.builder.note_jump()
        self._emit(req)

    def _cmd_reset(self, req: Request) -> None:
        self._need_session().reset()
        self.builder.note_jump()
        self._emit(req)

    def _cmd_set_settings(self, req: Request, settings: Any) -> None:
        self._need_session().set_settings(settings)
        self._emit(req)

    def _cmd_set_ablation(self, req: Request, ablation: Any) -> None:
        self._need_session().set_ablation(ablation)
        self.builder.note_jump()
        self._emit(req)

    def _cmd_view(self, req: Request) -> None:
        if self.session is not None:
            self._emit(req)

    def _cmd_analysis(self, req: Request, op: str, **kw: Any) -> None:
        # issue 5: analysis panels (gptviz_app.runtime.analysis_builder.AnalysisBuilder.command)
        if self.analysis.command(self.session, op, **kw):
            self.builder.note_jump()
        if self.session is not None:
            self._emit(req)

    # sessions, trace export, sample prompts (issue 6)
    def _cmd_save_session(self, req: Request, **kw: Any) -> None:
        from gptviz_app.runtime.file_commands import save_session
        save_session(self, req, **kw)

    def _cmd_open_session(self, req: Request, **kw: Any) -> None:
        from gptviz_app.runtime.file_commands import open_session
        open_session(self, req, **kw)

    def _cmd_export_trace(self, req: Request, **kw: Any) -> None:
        from gptviz_app.runtime.file_commands import export_trace
        export_trace(self, req, **kw)

    def _cmd_sample_prompt(self, req: Request, **kw: Any) -> None:
        from gptviz_app.runtime.file_commands import sample_prompt
        sample_prompt(self, req, **kw)


class EngineClient(QObject):
    """UI-side handle on the worker thread: sends requests, filters stale replies.

    Signals mirror the worker's, minus stale snapshots: ``snapshot(Snapshot)`` only carries
    replies to the newest request.
    """

    submit = Signal(object)            # -> SessionWorker.handle (queued)
    snapshot = Signal(object)          # Snapshot of the newest request
    started = Signal(int, str)
    finished = Signal(int, str)
    errored = Signal(int, str, str)
    modelChanged = Signal(object)      # ModelInfo
    result = Signal(int, str, object)  # (gen, command, dict): always delivered, never stale

    def __init__(self, parent: QObject | None = None, top_k_report: int = 20) -> None:
        super().__init__(parent)
        self._latest = _Latest()
        self.thread = QThread()
        self.thread.setObjectName("gptviz-session-worker")
        THREADS.add(self.thread)
        self.worker = SessionWorker(self._latest, top_k_report)
        self.worker.moveToThread(self.thread)
        self.submit.connect(self.worker.handle)
        self.worker.yielded.connect(self._on_yielded)
        self.worker.started.connect(self.started)
        self.worker.finished.connect(self._on_finished)
        self.worker.errored.connect(self.errored)
        self.worker.modelChanged.connect(self._on_model)
        self.worker.resultReady.connect(self.result)
        self.thread.finished.connect(self.worker.deleteLater)
        self.pending = 0                # requests sent and not finished yet
        self.dropped = 0                # stale snapshots thrown away
        self.thread.start()

    @property
    def latest(self) -> int:
        """Generation of the newest request."""
        return self._latest.value

    def request(self, command: str, view: ViewSpec, **args: Any) -> int:
        """Send ``command`` to the worker; returns its generation number."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}")
        if not self.thread.isRunning():
            return -1
        gen = self._latest.next()
        self.pending += 1
        self.submit.emit(Request(gen, command, dict(args), view))
        return gen

    def _on_yielded(self, gen: int, snap) -> None:
        if gen != self._latest.value:
            self.dropped += 1
            return
        self.snapshot.emit(snap)

    def _on_finished(self, gen: int, command: str) -> None:
        self.pending = max(0, self.pending - 1)
        self.finished.emit(gen, command)

    def _on_model(self, gen: int, info: ModelInfo) -> None:
        self.modelChanged.emit(info)

    @property
    def busy(self) -> bool:
        return self.pending > 0

    def shutdown(self) -> bool:
        """Cancel what is running, stop the thread and wait for it (a model being loaded
        cannot be interrupted: that wait lasts until it is done). True when stopped."""
        if not self.thread.isRunning():
            return True
        self._latest.next()  # makes every queued request stale (multi-step runs stop)
        self.thread.quit()
        return self.thread.wait()
