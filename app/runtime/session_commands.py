"""Worker commands that load a model and move through the text: load, prompt, step, force,
undo/redo, go to a step, reset, sampling settings, ablation, and a plain refresh (``view``).

Each runs on the worker thread (see :mod:`gptviz_app.runtime.commands`), tells the snapshot
builder what happened (one appended token, or a jump) and sends the new state.
"""

from __future__ import annotations

from typing import Any

from gptviz_app.runtime.commands import command
from gptviz_app.runtime.snapshot import Request


@command("load_model")
def load_model(worker, req: Request, path: str | None = None, bundle: Any = None,
               prompt: str | None = None) -> None:
    """Open ``path`` (or take ``bundle``) and start a session on it with ``prompt`` (default:
    the current prompt), keeping the sampling settings; the current model stays until all of
    it loaded."""
    from gptviz import load_model as load
    from gptviz.engine.session import Session

    new_bundle = bundle if bundle is not None else load(path)
    old = worker.session
    if prompt is None:
        prompt = old.prompt if old is not None else "Once upon a time"
    kwargs: dict[str, Any] = {"top_k_report": worker.top_k_report}
    if old is not None:
        kwargs["settings"] = old.settings
    try:
        session = Session(new_bundle, prompt, **kwargs)
    except ValueError:
        # The new model's tokenizer may not encode the old prompt; fall back to a sample.
        session = Session(new_bundle, "Once upon a time", **kwargs)
    worker.install_session(req.gen, new_bundle, session)
    worker.emit_snapshot(req)


@command("set_prompt")
def set_prompt(worker, req: Request, text: str) -> None:
    worker.need_session().set_prompt(text)
    worker.builder.note_jump()
    worker.emit_snapshot(req)


@command("step")
def step(worker, req: Request, n: int = 1) -> None:
    """``n`` tokens, one snapshot after each; a newer request cancels the rest."""
    s = worker.need_session()
    for i in range(int(n)):
        if i and worker.stale(req.gen):
            break
        worker.builder.note_step(s.step())
        worker.emit_snapshot(req)


@command("force")
def force(worker, req: Request, token_id: int, replace_last: bool = False) -> None:
    """Take ``token_id`` next (replacing the newest token: a branch)."""
    s = worker.need_session()
    if replace_last and s.can_undo:
        s.undo(1)
        worker.builder.note_jump()
    worker.builder.note_step(s.step(force=int(token_id)))
    worker.emit_snapshot(req)


@command("undo")
def undo(worker, req: Request, n: int = 1) -> None:
    """Take back ``n`` tokens; at the prompt right after a reset, undo the reset instead."""
    s = worker.need_session()
    if not s.can_undo and s.can_undo_reset:
        s.undo_reset()
    else:
        s.undo(int(n))
    worker.builder.note_jump()
    worker.emit_snapshot(req)


@command("redo")
def redo(worker, req: Request, n: int = 1) -> None:
    worker.need_session().redo(int(n))
    worker.builder.note_jump()
    worker.emit_snapshot(req)


@command("goto")
def goto(worker, req: Request, n_generated: int) -> None:
    s = worker.need_session()
    if int(n_generated) != s.n_generated:
        s.goto(int(n_generated))
        worker.builder.note_jump()
    worker.emit_snapshot(req)


@command("reset")
def reset(worker, req: Request) -> None:
    worker.need_session().reset()
    worker.builder.note_jump()
    worker.emit_snapshot(req)


@command("set_settings")
def set_settings(worker, req: Request, settings: Any) -> None:
    worker.need_session().set_settings(settings)
    worker.emit_snapshot(req)


@command("set_ablation")
def set_ablation(worker, req: Request, ablation: Any) -> None:
    worker.need_session().set_ablation(ablation)
    worker.builder.note_jump()
    worker.emit_snapshot(req)


@command("view")
def view(worker, req: Request) -> None:
    """The same state for another view (layer, head, query...)."""
    if worker.session is not None:
        worker.emit_snapshot(req)
