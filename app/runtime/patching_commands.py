"""The ``patch`` worker command: activation patching of the session's text (the clean prompt)
against a corrupted prompt, with progress and cancel (no Qt widgets; runs on the worker).

``patch(op="run", corrupt=TEXT, target=TEXT|None, vs=TEXT|None, target_id, vs_id)`` answers
through ``resultReady(gen, "patch", dict)``: ``{"progress": (done, total)}`` after every
layer's batch, then one of ``{"result": ...}``, ``{"lengths": ...}`` (the prompts differ in
token length: both tokenisations, so the panel can say how), ``{"cancelled": True}`` or
``{"error": message}``. ``op="head"`` (``layer``, ``head``) adds one head's patching at every
position for the last run's prompts. A newer request of any kind cancels a run at its next
layer (the :class:`~gptviz_app.runtime.worker.SessionWorker` supersession rule); ``op="cancel"``
is such a request that does nothing else. Each ends with a snapshot, as every request made
the earlier ones' snapshots stale.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from gptviz_app.runtime.commands import command
from gptviz_app.runtime.snapshot import Request

__all__ = ["patch"]

#: worker -> the prompts and tokens of its last patching run (for ``op="head"``)
_LAST: weakref.WeakKeyDictionary[Any, tuple] = weakref.WeakKeyDictionary()


def _token(s: Any, text: str | None, token_id: int | None, what: str) -> int:
    V = s.config.vocab_size
    if token_id is not None and int(token_id) >= 0:
        if int(token_id) >= V:
            raise ValueError(f"{what} token id {token_id} is outside the vocabulary")
        return int(token_id)
    ids = s.tokenizer.encode(text or "")
    if len(ids) != 1:
        raise ValueError(f"the {what} {text!r} is {len(ids)} tokens, not one")
    return int(ids[0])


def _run(worker, req: Request, s: Any, corrupt: str, target: int, vs: int) -> dict:
    from gptviz.analysis import patching

    clean_ids = list(s.window_tokens)
    corrupt_ids = s.tokenizer.encode(corrupt)
    if len(corrupt_ids) != len(clean_ids):
        return {"lengths": {"clean": [s.display(i) for i in clean_ids],
                            "corrupt": [s.display(i) for i in corrupt_ids]}}

    def progress(done: int, total: int) -> bool:
        worker.resultReady.emit(req.gen, req.command, {"progress": (done, total)})
        return not worker.stale(req.gen)

    res = patching.activation_patching(s.model, clean_ids, corrupt_ids, target, vs,
                                       ablation=s.device_ablation, progress=progress)
    _LAST[worker] = (clean_ids, corrupt_ids, target, vs)
    return {"result": {"clean_metric": res.clean_metric, "corrupt_metric": res.corrupt_metric,
                       "heads": np.asarray(res.heads, np.float32),
                       "resid": np.asarray(res.resid, np.float32), "note": res.note,
                       "tokens": [s.display(i) for i in clean_ids],
                       "corrupt_tokens": [s.display(i) for i in corrupt_ids],
                       "target": s.display(target), "vs": s.display(vs),
                       "n_ablated": 0 if s.ablation is None else
                       int((np.asarray(s.ablation.keep) < 1).sum())}}


def _head(worker, s: Any, layer: int, head: int) -> dict:
    import torch

    from gptviz.analysis import patching

    found = _LAST.get(worker)
    if found is None:
        raise ValueError("run the patching first")
    clean_ids, corrupt_ids, target, vs = found
    with torch.inference_mode():
        pair = patching.prepare(s.model, clean_ids, corrupt_ids, target, vs, s.device_ablation)
        row = patching.patch_head_positions(pair, int(layer), int(head))
    return {"head": {"layer": int(layer), "head": int(head),
                     "positions": np.asarray(row, np.float32)}}


@command("patch")
def patch(worker, req: Request, op: str = "run", corrupt: str = "", target: str | None = None,
          vs: str | None = None, target_id: int | None = None, vs_id: int | None = None,
          layer: int = 0, head: int = 0) -> None:
    """Activation patching for the patching panel (see the module docstring)."""
    if op == "cancel":
        worker.resultReady.emit(req.gen, req.command, {"cancelled": True})
        if worker.session is not None:
            worker.emit_snapshot(req)  # the newest request: the screen's state comes from it
        return
    s = worker.need_session()
    from gptviz.analysis.patching import Cancelled

    try:
        if op == "head":
            out = _head(worker, s, layer, head)
        elif op == "run":
            out = _run(worker, req, s, corrupt, _token(s, target, target_id, "target"),
                       _token(s, vs, vs_id, "other token"))
        else:
            raise ValueError(f"unknown patching operation {op!r}")
    except Cancelled:
        out = {"cancelled": True}
    except ValueError as e:
        out = {"error": str(e)}
    worker.resultReady.emit(req.gen, req.command, out)
    worker.emit_snapshot(req)  # it made every earlier request's snapshot stale
