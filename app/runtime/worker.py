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

Commands: the worker looks each request's command up in one table,
:data:`gptviz_app.runtime.commands.COMMANDS` (name -> handler function), which the command
modules fill (:mod:`~gptviz_app.runtime.session_commands`,
:mod:`~gptviz_app.runtime.file_commands`, :mod:`~gptviz_app.runtime.analyses`).

Supersession: every request makes all earlier ones stale. The worker still applies every
state-changing command in order (so the session ends where the user asked), but it does not
build snapshots for a stale request, and a multi-step run stops at the next token once a
newer request exists. The client drops any ``yielded`` snapshot whose generation is not the
newest, so stale results never reach the screen. Errors, finishes and model changes are
always delivered.

Closing: :meth:`EngineClient.shutdown` sets the worker's ``closing`` flag. Every handler runs
inside :func:`gptviz.engine.interrupt.interruptible` on that flag, so the engine's long loops
(a prefill's blocks of queries, a session file's replay, patching's layers, a multi-step run)
stop at their next piece with :class:`~gptviz.engine.interrupt.Interrupted`, which the worker
swallows; while it waits, :func:`~gptviz.engine.interrupt.hold_module_checks` makes any forward
(an analysis's own runs) stop at its next torch module; requests still queued are skipped.
Single calls that cannot look at the flag (reading weights, a session file's parse) run aside
(:func:`~gptviz.engine.interrupt.call_aside`), so the worker is back at once. ``shutdown`` waits
a bounded time (:data:`SHUTDOWN_WAIT_MS`); a thread still inside one long torch call after
that is kept referenced and waited for when the application quits, never destroyed while it
runs.
"""

from __future__ import annotations

import atexit
import threading
import time
import traceback
import weakref
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from gptviz.engine.interrupt import (
    Interrupted,
    hold_module_checks,
    interruptible,
    release_module_checks,
)
from gptviz_app.runtime.analyses import SnapshotAnalyses
from gptviz_app.runtime.commands import COMMANDS, load_commands
from gptviz_app.runtime.snapshot import ModelInfo, Request, ViewSpec
from gptviz_app.runtime.snapshots import SnapshotBuilder

#: Every QThread the app started (tests check that none is left running).
THREADS: weakref.WeakSet[QThread] = weakref.WeakSet()

#: How long :meth:`EngineClient.shutdown` waits for the worker to stop (ms).
SHUTDOWN_WAIT_MS = 900

#: Clients whose thread outlived the shutdown wait (inside one uninterruptible call): kept
#: alive, and waited for when the application quits (:func:`_wait_for_orphans`).
_ORPHANS: list[EngineClient] = []

load_commands()  # every command module registers its commands in COMMANDS


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
    """Owns the :class:`gptviz.engine.session.Session`; lives on the worker thread.

    Runs each request's handler from :data:`~gptviz_app.runtime.commands.COMMANDS`; the
    handlers use the public side below (see :mod:`gptviz_app.runtime.commands`).
    """

    started = Signal(int, str)
    yielded = Signal(int, object)
    finished = Signal(int, str)
    errored = Signal(int, str, str)
    modelChanged = Signal(int, object)
    resultReady = Signal(int, str, object)   # (gen, command, dict): a command's outcome

    def __init__(self, latest: _Latest, top_k_report: int = 20,
                 closing: threading.Event | None = None) -> None:
        super().__init__()
        self._latest = latest
        #: Set when the window closes: long loops stop, queued requests are skipped.
        self.closing = closing if closing is not None else threading.Event()
        self.top_k_report = top_k_report
        self.bundle = None
        self.session = None
        self.builder: SnapshotBuilder | None = None
        self.analyses = SnapshotAnalyses()  # fills snap.extra["analysis"]
        #: The head grid's thumbnail size (pixels) as the window shows it, set from the UI
        #: thread (one attribute: no request, so that it neither stops a run nor adds a
        #: snapshot); the next snapshot draws the mosaic at it. ``None``: the default.
        self.grid_cell: int | None = None
        #: The head grid's colours (``[n + 1]`` uint32, see ``runtime.grid_pixels``), set from
        #: the UI thread like ``grid_cell``: the snapshots' mosaic pixels are coloured with it.
        self.grid_table = None

    # ------------------------------------------------------------------ for the handlers
    def stale(self, gen: int) -> bool:
        """A newer request than ``gen`` exists (its snapshots would be dropped), or the
        window is closing."""
        return self._latest.value > gen or self.closing.is_set()

    def need_session(self):
        """The session; ``ValueError`` when no model is loaded."""
        if self.session is None:
            raise ValueError("no model is loaded")
        return self.session

    def install_session(self, gen: int, bundle, session) -> ModelInfo:
        """Make ``session`` on ``bundle`` the current one (with a new snapshot builder) and
        announce the model (``modelChanged``)."""
        self.bundle, self.session = bundle, session
        self.builder = SnapshotBuilder(session)
        info = self.builder.model_info(bundle)
        self.modelChanged.emit(gen, info)
        return info

    def emit_snapshot(self, req: Request) -> None:
        """Send the state for ``req.view`` (nothing for a stale request)."""
        if self.builder is None or self.stale(req.gen):
            return
        snap = self.builder.build(req.gen, req.command, req.view, grid_cell=self.grid_cell,
                                  grid_table=self.grid_table)
        self.analyses.extend(snap, self.session)
        snap.t_emit = time.perf_counter()
        self.yielded.emit(req.gen, snap)

    # ------------------------------------------------------------------ entry point
    @Slot(object)
    def handle(self, req: Request) -> None:
        """Run one request (called through a queued connection)."""
        if self.closing.is_set():  # queued before the window closed: nothing to do now
            return
        self.started.emit(req.gen, req.command)
        try:
            handler = COMMANDS.get(req.command)
            if handler is None:
                raise ValueError(f"unknown command {req.command!r}")
            with interruptible(self.closing.is_set):
                handler(self, req, **req.args)
        except Interrupted:  # the window is closing: what was being computed is dropped
            pass
        except Exception as e:  # reported to the window, never raised into Qt
            msg = str(e) or type(e).__name__
            if not isinstance(e, ValueError):
                msg = f"{type(e).__name__}: {msg}\n\n{traceback.format_exc(limit=3)}"
            self.errored.emit(req.gen, req.command, msg)
        finally:
            self.finished.emit(req.gen, req.command)


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
        self.closing = threading.Event()
        self._holds_checks = False  # a hold_module_checks of shutdown's, until the thread ends
        self.thread = QThread()
        self.thread.setObjectName("gptviz-session-worker")
        THREADS.add(self.thread)
        self.worker = SessionWorker(self._latest, top_k_report, self.closing)
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

    def refresh(self, view: ViewSpec) -> int:
        """The newest request's state again, for ``view`` (e.g. the head grid drawn at its
        new size), under the newest request's generation: it stops nothing and leaves a wait
        for the newest request's snapshot valid. Only when nothing is pending (``-1``
        otherwise: what runs draws at the new size from its next snapshot)."""
        if self.pending or not self.thread.isRunning():
            return -1
        gen = self._latest.value
        self.pending += 1
        self.submit.emit(Request(gen, "view", {}, view))
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

    def shutdown(self, wait_ms: int = SHUTDOWN_WAIT_MS) -> bool:
        """Stop what is running at its next piece, skip what is queued, stop the thread and
        wait for it at most ``wait_ms``. True when stopped; False when the worker is still in
        one long call that looks at no check: the thread is then kept, and waited for when
        the application quits."""
        if not self.thread.isRunning():
            return True
        self.closing.set()
        self._latest.next()  # makes every queued request stale (multi-step runs stop)
        self.thread.quit()
        if not self._holds_checks:  # one hold per client, however often it is shut down
            self._holds_checks = True
            hold_module_checks()  # a long forward stops at its next module, not at its end
            # released when the thread ends, also when that is after the wait below
            self.thread.finished.connect(self._release_checks)
        if self.thread.wait(max(0, int(wait_ms))):
            self._release_checks()
            return True
        if self not in _ORPHANS:
            _ORPHANS.append(self)
            self.setParent(None)  # outlives its window; the QThread is never destroyed running
            app = QCoreApplication.instance()
            if app is not None and not app.property("gptviz_waits_for_orphans"):
                app.setProperty("gptviz_waits_for_orphans", True)
                app.aboutToQuit.connect(_wait_for_orphans)
        return False


    def _release_checks(self) -> None:
        """Give back this client's :func:`hold_module_checks` (once)."""
        if self._holds_checks:
            self._holds_checks = False
            release_module_checks()


def _wait_for_orphans() -> None:
    """When the application quits (or Python exits): wait for the threads that outlived
    their window."""
    while _ORPHANS:
        client = _ORPHANS.pop()
        client.thread.wait()
        client._release_checks()


atexit.register(_wait_for_orphans)
