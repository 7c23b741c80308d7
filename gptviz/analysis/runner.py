"""Run the live analyses asked for on a session, and their commands.

An :class:`AnalysisSpec` names the analyses wanted (registry names, see
:mod:`~gptviz.analysis.registry`) with their settings. :meth:`AnalysisRunner.run` computes
those, and only those, for the session as it is now: each analysis answers from its own cache
when its inputs did not change. An analysis that fails is reported in
:attr:`AnalysisResult.errors` and the others still run; each one is timed.

The runner also holds the session's :class:`~gptviz.analysis.live_ablation.HeadAblation`
(commands ``toggle_head``, ``set_heads``, ``clear``, ``set_mode``) and routes
``"<analysis>.<op>"`` commands (e.g. ``compare.pin``) to that analysis.

Examples
--------
>>> from gptviz.analysis.live_lens import LensSettings                   # doctest: +SKIP
>>> runner = AnalysisRunner(AnalysisSpec({"heads": None, "lens": LensSettings(k=3)}))
>>> runner.command(session, "toggle_head", layer=0, head=1)              # doctest: +SKIP
>>> res = runner.run(session, query=4)                                   # doctest: +SKIP
>>> res.get("lens").top_tokens[-1], res.errors, res.timings              # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gptviz.analysis.live import AnalysisInputs, LiveAnalysis
from gptviz.analysis.live_ablation import ABLATION_OPS, HeadAblation
from gptviz.analysis.registry import create_analysis

__all__ = ["AnalysisSpec", "AnalysisResult", "AnalysisRunner"]


def error_text(e: BaseException) -> str:
    """How a failed analysis is reported: ``"Type: message"``."""
    return f"{type(e).__name__}: {e}"


@dataclass(frozen=True)
class AnalysisSpec:
    """The analyses to compute: registry name -> settings (``None``: the analysis's
    defaults), in the order they run."""

    analyses: dict[str, Any] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.analyses

    def settings(self, name: str) -> Any:
        """The settings asked for ``name`` (``None``: its defaults or not asked for)."""
        return self.analyses.get(name)


@dataclass
class AnalysisResult:
    """What the analyses gave for one state of the session.

    Attributes
    ----------
    spec
        What was asked for.
    ablated, ablation_mode, means_tokens
        The ablated heads; the mode of the ablation in force (else the one new toggles use);
        for mean-ablation, the tokens the means were measured over (else 0).
    results
        Name -> result of every analysis that ran (see :meth:`get`).
    errors
        Name -> ``"Type: message"`` of every analysis that failed.
    timings
        Name -> milliseconds this time (parts an analysis timed itself too, e.g. ``probe``).
    """

    spec: AnalysisSpec
    ablated: tuple[tuple[int, int], ...] = ()
    ablation_mode: str = "zero"
    means_tokens: int = 0
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        """The result of analysis ``name``, or ``default`` when it did not run or failed."""
        return self.results.get(name, default)

    def record(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` timed as ``name``; an exception lands in :attr:`errors` (``None`` is
        returned), never raised."""
        t0 = time.perf_counter()
        try:
            return fn()
        except Exception as e:  # shown in the panel, never raised into the caller
            self.errors[name] = error_text(e)
            return None
        finally:
            self.timings[name] = (time.perf_counter() - t0) * 1e3


class AnalysisRunner:
    """Runs the analyses of :attr:`spec` on one session at a time (see the module docstring).

    A new session (another object than the last one) drops every cache, the pinned state and
    the known ablation, which is then read back from the new session.
    """

    def __init__(self, spec: AnalysisSpec | None = None) -> None:
        self.spec = spec if spec is not None else AnalysisSpec()
        self.ablation = HeadAblation()
        self.session: Any = None
        self._analyses: dict[str, LiveAnalysis] = {}

    def analysis(self, name: str) -> LiveAnalysis:
        """The instance of analysis ``name`` this runner uses (created on first use)."""
        a = self._analyses.get(name)
        if a is None:
            a = self._analyses[name] = create_analysis(name)
        return a

    def attach(self, session: Any) -> None:
        """Work on ``session`` (a no-op for the current one) and read its ablation."""
        if session is not self.session:
            self.session = session
            self.ablation.reset()
            for a in self._analyses.values():
                a.reset()
            # the steps it already holds count as computed under the ablation it runs with
            self.ablation.sync(session, label=False)
        self.ablation.sync(session)

    def command(self, session: Any, op: str, **kw: Any) -> bool:
        """Run one command; True when the session changed (an ablation was set).

        Ops: ``spec(spec)``; the ablation's ``toggle_head(layer, head)``,
        ``set_heads(heads)``, ``clear()``, ``set_mode(mode)``; ``"<name>.<op>"`` of an
        analysis (``compare.pin``, ``compare.unpin``).
        """
        if op == "spec":
            spec = kw["spec"]
            if not isinstance(spec, AnalysisSpec):
                raise ValueError("analysis spec must be an AnalysisSpec")
            self.spec = spec
            return False
        if op == "set_mode" and session is None:
            return self.ablation.command(None, op, **kw)
        if session is None:
            raise ValueError("no model is loaded")
        self.attach(session)
        if op in ABLATION_OPS:
            return self.ablation.command(session, op, **kw)
        name, dot, sub = op.partition(".")
        if not dot:
            raise ValueError(f"unknown analysis command {op!r}")
        return self.analysis(name).command(AnalysisInputs.of(session, self.ablation), sub, **kw)

    def run(self, session: Any, query: int | None = None, layer: int = 0, head: int = 0,
            average: bool = False) -> AnalysisResult:
        """The analyses of :attr:`spec` for ``session`` now; ``query`` is a global position
        (``None``: the newest token), ``layer``/``head``/``average`` the selected head."""
        abl = self.ablation
        res = AnalysisResult(spec=self.spec, ablation_mode=abl.mode)
        if session is None:
            return res
        self.attach(session)
        res.ablated = abl.heads
        res.ablation_mode = abl.active_mode or abl.mode
        res.means_tokens = abl.means_tokens if abl.active_mode == "mean" else 0
        inputs = AnalysisInputs.of(session, abl, query, layer, head, average, res.timings)
        for name, settings in self.spec.analyses.items():
            try:
                a = self.analysis(name)
            except Exception as e:  # an unknown name, a broken plug-in: reported, not raised
                res.errors[name] = error_text(e)
                continue
            if a.needs_ablation and not abl.heads:
                continue  # nothing to compare
            res.record(name, partial(self._compute, res, inputs, name, a, settings))
        return res

    @staticmethod
    def _compute(res: AnalysisResult, inputs: AnalysisInputs, name: str, a: LiveAnalysis,
                 settings: Any) -> None:
        if settings is None:
            settings = a.settings_type()
        elif not isinstance(settings, a.settings_type):
            raise ValueError(f"settings of {name!r} must be a {a.settings_type.__name__} "
                             f"(got {type(settings).__name__})")
        out = a.compute(inputs, settings)
        if out is not None:
            res.results[name] = out
