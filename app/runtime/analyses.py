"""The analysis panels' data on the worker thread: ``snap.extra["analysis"]`` and the
``analysis`` command (numpy/torch, no Qt).

The analyses themselves are Qt-free, in :mod:`gptviz.analysis` (one module each, found by
name in :mod:`gptviz.analysis.registry`); an :class:`~gptviz.analysis.runner.AnalysisRunner`
computes the ones the visible panels asked for (its :class:`~gptviz.analysis.runner.AnalysisSpec`,
sent by the window), only when their inputs changed, and holds the session's head ablation.
:class:`SnapshotAnalyses` adds its :class:`~gptviz.analysis.runner.AnalysisResult` to every
snapshot, at the snapshot's query and selected head.

When an ablation is switched on or off after tokens were generated, the distribution the
newest token was drawn from (the next-token panel's "last" candidates) is recomputed under the
current heads, so that panel updates at once too (``candidates`` in the result's errors and
timings).
"""

from __future__ import annotations

from typing import Any

from gptviz.analysis.live_ablation import logits_at
from gptviz.analysis.runner import AnalysisResult, AnalysisRunner, AnalysisSpec
from gptviz_app.runtime.commands import command
from gptviz_app.runtime.snapshot import Request, Snapshot
from gptviz_app.runtime.snapshots import last_step_candidates

__all__ = ["AnalysisResult", "AnalysisSpec", "SnapshotAnalyses"]


class SnapshotAnalyses:
    """Adds the analyses to the worker's snapshots; runs the ``analysis`` command."""

    def __init__(self) -> None:
        self.runner = AnalysisRunner()

    def command(self, session: Any, op: str, **kw: Any) -> bool:
        """See :meth:`AnalysisRunner.command`; True when the session changed (a jump)."""
        return self.runner.command(session, op, **kw)

    def extend(self, snap: Snapshot, session: Any) -> AnalysisResult:
        """Add ``snap.extra["analysis"]`` for ``session`` (called right after the build)."""
        v = snap.view
        res = self.runner.run(session, query=snap.query, layer=v.layer, head=v.head,
                              average=v.average)
        snap.extra["analysis"] = res
        if session is not None:
            res.record("candidates", lambda: self._follow_heads(snap, session))
        return res

    def _follow_heads(self, snap: Snapshot, s: Any) -> None:
        """Recompute the newest step's distribution when the heads changed since it was
        drawn (the next-token panel must show the current model)."""
        hist = s.history
        T = snap.T
        if not hist or T < 2 or snap.candidates.kind != "last":
            return
        if self.runner.ablation.is_current(hist[-1]):
            return
        snap.candidates = last_step_candidates(s, logits_at(s, T - 2))


@command("analysis")
def analysis(worker, req: Request, op: str, **kw: Any) -> None:
    """The analysis panels' settings (``spec``), head ablation (``toggle_head``,
    ``set_heads``, ``clear``, ``set_mode``) and the analyses' own commands
    (``compare.pin``...): :meth:`AnalysisRunner.command`."""
    if worker.analyses.command(worker.session, op, **kw):
        worker.builder.note_jump()
    if worker.session is not None:
        worker.emit_snapshot(req)
