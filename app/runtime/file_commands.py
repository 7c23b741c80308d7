"""Worker commands for files and sharing: sessions, trace export, sample prompts, and
``open_model`` (a path or a cached model name, on a device, in a dtype, cancellable).

No Qt widgets here: these handlers run on the worker thread (registered in
:data:`gptviz_app.runtime.commands.COMMANDS`) and report back through the worker's signals
(``resultReady(gen, command, dict)`` on success, an exception -> ``errored``).

Also the (Qt-free) mapping between the controller's
:class:`~gptviz_app.runtime.snapshot.ViewSpec` and the ``view`` object of a session file.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gptviz.analysis.stages import STAGES
from gptviz.engine.interrupt import (
    Interrupted,
    aside_running,
    call_aside,
    check_interrupt,
    interruptible,
    module_checks,
    wait_for_aside,
)
from gptviz_app.runtime.commands import command
from gptviz_app.runtime.snapshot import GRID_MODES, Request, ViewSpec

#: The map stages a session file's view may name.
MAP_STAGES = tuple(key for key, _ in STAGES)
#: Seconds between two progress reports of a session open (the window's bar, not a flood).
PROGRESS_EVERY_S = 0.1


# ---------------------------------------------------------------------- view <-> dict
def view_to_dict(view: ViewSpec, **extra: Any) -> dict[str, Any]:
    """The ``view`` object of a session file: what the views look at, plus ``extra``
    (colormap, font scale, theme...)."""
    d: dict[str, Any] = {
        "layer": int(view.layer), "head": int(view.head), "average": bool(view.average),
        "query": None if view.query is None else int(view.query),
        "grid_mode": str(view.grid_mode), "sqrt_scale": bool(view.sqrt_scale),
        "map_stage": str(view.map_stage),
    }
    d.update(extra)
    return d


def _int_in(v: Any, lo: int, hi: int) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < hi:
        return None
    return v


def viewspec_from_dict(d: dict[str, Any], n_layer: int, n_head: int, n_tokens: int,
                       base: ViewSpec | None = None) -> ViewSpec:
    """A :class:`ViewSpec` from a session file's ``view`` (tolerant: a missing or out-of-range
    field keeps ``base``'s value, clamped to the model; default base: ``ViewSpec()``; files
    older than the map's stages keep ``base``'s stage)."""
    if base is None:
        base = ViewSpec()
    if not isinstance(d, dict):
        d = {}
    layer = _int_in(d.get("layer"), 0, n_layer)
    head = _int_in(d.get("head"), 0, n_head)
    query = _int_in(d.get("query"), 0, n_tokens)
    average = d.get("average")
    grid_mode = d.get("grid_mode")
    sqrt_scale = d.get("sqrt_scale")
    stage = d.get("map_stage")
    return ViewSpec(
        layer=min(base.layer, n_layer - 1) if layer is None else layer,
        head=min(base.head, n_head - 1) if head is None else head,
        average=average if isinstance(average, bool) else base.average,
        query=query,
        grid_mode=grid_mode if grid_mode in GRID_MODES else base.grid_mode,
        sqrt_scale=sqrt_scale if isinstance(sqrt_scale, bool) else base.sqrt_scale,
        map_stage=stage if isinstance(stage, str) and stage in MAP_STAGES else base.map_stage,
    )


# ---------------------------------------------------------------------- commands
@command("save_session")
def save_session(worker, req: Request, path: str,
                 view_state: dict[str, Any] | None = None) -> None:
    """Write the worker's session to ``path`` (atomic; see :mod:`gptviz.io.session_file`)."""
    from gptviz.io.session_file import save_session as save

    s = worker.need_session()
    save(path, s, worker.bundle, view_state)
    worker.resultReady.emit(req.gen, req.command,
                            {"path": str(path), "n_tokens": s.n_tokens,
                             "n_generated": s.n_generated})


@command("open_session")
def open_session(worker, req: Request, path: str, cancel: Any = None) -> None:
    """Read, check and restore a session file; only when all of it worked does it replace
    the worker's model and session (any failure or a cancel leaves them as they were).

    The model: the current one when its weights hash to the file's, else the file's model
    path is opened (a missing model or other weights -> :class:`SessionFileError`).

    ``resultReady`` carries ``{"stage", "progress": (done, total)}`` while it works (the
    tokens replayed, at most every :data:`PROGRESS_EVERY_S`), then ``{"done": True, ...}``
    or ``{"cancelled": True}`` (followed by a snapshot of the unchanged session).
    ``cancel`` (a ``threading.Event`` set by the window) is looked at between the stages,
    the modules of the prompt's prefill and the replayed tokens. The work runs aside
    (:func:`~gptviz.engine.interrupt.call_aside`: a file that takes long to parse, a model
    that takes long to read), so a cancel or a closing window has the worker back at once.
    """
    from gptviz.io.session_file import (
        load_session_model,
        read_session_file,
        restore_session,
        weights_sha256,
    )

    current = worker.bundle
    stop: Callable[[], bool] = cancel.is_set if cancel is not None else (lambda: False)
    last = [0.0]
    reports: deque[dict[str, Any]] = deque()  # filled aside, sent from the worker's thread

    def report(stage: str, done: int = 0, total: int = 0) -> None:
        now = time.perf_counter()
        if done and done < total and now - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = now
        reports.append({"stage": stage, "path": str(path), "progress": (done, total)})

    def send() -> None:
        while reports:
            worker.resultReady.emit(req.gen, req.command, reports.popleft())

    def replayed(done: int, total: int) -> None:
        check_interrupt()
        report("Replaying the tokens", done, total)

    on_current = [False]  # replaying on the worker's own model: see join_if below

    def restore() -> tuple[Any, Any, dict[str, Any]]:
        report("Reading the file")
        data = read_session_file(path)
        bundle = current
        check_interrupt()
        if bundle is None or weights_sha256(bundle) != data.weights_sha256:
            report("Opening the session's model")
            bundle = load_session_model(data)
            check_interrupt()
        on_current[0] = bundle is current
        report("Replaying the tokens", 0, len(data.tokens))
        session, view = restore_session(data, bundle, progress=replayed)
        check_interrupt()
        return bundle, session, view

    try:
        with interruptible(stop), module_checks():
            # a cancelled replay on the worker's model stops (at its next module) before the
            # worker goes on: no two threads run that model's forwards at once
            bundle, session, view = call_aside(restore, while_waiting=send,
                                               join_if=lambda: on_current[0])
    except Interrupted:
        if worker.closing.is_set():
            raise
        worker.resultReady.emit(req.gen, req.command, {"cancelled": True, "path": str(path)})
        if worker.session is not None:
            worker.emit_snapshot(req)  # the newest request: the screen's state comes from it
        return
    model_changed = bundle is not worker.bundle
    cfg = bundle.config
    spec = viewspec_from_dict(view, cfg.n_layer, cfg.n_head, session.n_tokens, req.view)
    # Everything worked: now replace what the worker holds.
    info = worker.install_session(req.gen, bundle, session)
    worker.resultReady.emit(req.gen, req.command, {
        "done": True, "path": str(path), "view": view, "viewspec": spec,
        "prompt": session.prompt, "settings": session.settings,
        "model_changed": model_changed, "model": info.name,
        "n_tokens": session.n_tokens, "n_generated": session.n_generated,
    })
    worker.emit_snapshot(Request(req.gen, req.command, req.args, spec))


@command("export_trace")
def export_trace(worker, req: Request, path: str) -> None:
    """The session's window as a trace NPZ (schema of ``python -m gptviz trace``)."""
    from gptviz.io.export import trace_npz

    s = worker.need_session()
    arrays = trace_npz(path, s)
    worker.resultReady.emit(req.gen, req.command,
                            {"path": str(path), "T": int(arrays["token_ids"].shape[0])})


@command("sample_prompt")
def sample_prompt(worker, req: Request, text: str, seed: int = 0, title: str = "") -> None:
    """Start over from a sample prompt, expanding a ``@random-repeat:N`` recipe against the
    model's tokenizer first (this decodes the whole vocabulary: worker thread)."""
    from gptviz.io.prompts import expand_prompt

    s = worker.need_session()
    expanded = expand_prompt(text, worker.bundle.tokenizer, seed)
    s.set_prompt(expanded)
    worker.builder.note_jump()
    worker.resultReady.emit(req.gen, req.command, {"text": expanded, "title": title})
    worker.emit_snapshot(req)


@command("open_model")
def open_model(worker, req: Request, spec: str | None = None, device: str = "auto",
               dtype: str = "float32", prompt: str | None = None, cancel: Any = None) -> None:
    """Open a model (a path, a name in the local Hugging Face cache, ``None``: the bundled
    one) on ``device`` in ``dtype``, in stages that report progress and can be cancelled.

    ``resultReady`` carries ``{"stage", "step", "steps"}`` before each stage, then
    ``{"done": True, ...}`` or ``{"cancelled": True}``. ``cancel`` (a ``threading.Event``
    set by the window) is looked at between the stages and while each runs (aside, see
    :func:`~gptviz.engine.interrupt.call_aside`): the current model and session stay until
    the new ones are complete, and a cancelled or failed load leaves them as they were.
    """
    from gptviz import load_model as load
    from gptviz.engine.session import Session
    from gptviz.io.device import place_model, resolve_device

    dev = resolve_device(device)  # a device this machine lacks: said before reading anything
    steps = ("Reading the model", f"Moving it to {dev} in {dtype}", "Running the prompt")

    def stage(i: int) -> bool:
        check_interrupt()  # the window is closing
        if cancel is not None and cancel.is_set():
            worker.resultReady.emit(req.gen, req.command, {"cancelled": True, "spec": spec})
            return False
        worker.resultReady.emit(req.gen, req.command, {"stage": steps[i], "step": i,
                                                       "steps": len(steps), "spec": spec})
        return True

    stop: Callable[[], bool] = cancel.is_set if cancel is not None else (lambda: False)
    if aside_running():  # a cancelled load still reading: one model in memory at a time
        worker.resultReady.emit(req.gen, req.command, {
            "stage": "Finishing the cancelled load", "step": 0, "steps": len(steps),
            "spec": spec})
        try:
            with interruptible(stop):
                wait_for_aside()
        except Interrupted:
            if worker.closing.is_set():
                raise
    if not stage(0):
        return
    # Aside: reading big weights, moving them, are long single calls; a cancel or a closing
    # window has the worker back at once (the call's result is then dropped).
    try:
        with interruptible(stop):
            bundle = call_aside(load, spec)
    except Interrupted:
        if worker.closing.is_set():
            raise
    if not stage(1):
        return
    try:
        with interruptible(stop):
            call_aside(place_model, bundle, dev, dtype)
    except Interrupted:
        if worker.closing.is_set():
            raise
    if not stage(2):
        return
    old = worker.session
    text = prompt if prompt is not None else (old.prompt if old is not None
                                              else "Once upon a time")
    kwargs: dict[str, Any] = {"top_k_report": worker.top_k_report}
    if old is not None:
        kwargs["settings"] = old.settings

    def start() -> Any:
        try:
            return Session(bundle, text, **kwargs)
        except ValueError:  # the new tokenizer may not encode the old prompt
            return Session(bundle, "Once upon a time", **kwargs)

    try:
        with interruptible(stop), module_checks():  # a cancel stops the prefill midway
            session = call_aside(start)
    except Interrupted:
        if worker.closing.is_set():
            raise
    if stop():
        worker.resultReady.emit(req.gen, req.command, {"cancelled": True, "spec": spec})
        return
    info = worker.install_session(req.gen, bundle, session)
    worker.resultReady.emit(req.gen, req.command, {"done": True, "spec": spec,
                                                   "model": info.name, "device": dev,
                                                   "dtype": dtype, "source": bundle.source})
    worker.emit_snapshot(req)
