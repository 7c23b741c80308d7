"""The base of the live analyses: one analysis of a running :class:`~gptviz.engine.Session`.

A live analysis (one module each: :mod:`~gptviz.analysis.live_heads`,
:mod:`~gptviz.analysis.live_lens`, :mod:`~gptviz.analysis.live_rollout`,
:mod:`~gptviz.analysis.live_effect`, :mod:`~gptviz.analysis.live_compare`) turns the session
as it is now, plus its own settings, into plain data (numpy arrays, dataclasses). It keeps its
own cache, keyed on what its result depends on (the text in the model's window, the ablation,
the query...), so asking again after an unrelated change costs a dictionary look-up. The
:class:`~gptviz.analysis.runner.AnalysisRunner` runs the ones asked for; the registry
(:mod:`~gptviz.analysis.registry`) finds them by name.

Writing one::

    @dataclass(frozen=True)
    class MySettings:
        k: int = 5

    class MyAnalysis(LiveAnalysis):
        name = "mine"
        settings_type = MySettings

        def reset(self) -> None:
            self.cache = LRUCache(4)

        def compute(self, inputs: AnalysisInputs, settings: MySettings) -> Any:
            key = (inputs.text_key, inputs.ablation.key, settings.k)
            ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from gptviz.analysis.caching import LRUCache, text_key  # re-exported for the analyses

if TYPE_CHECKING:
    from gptviz.analysis.live_ablation import HeadAblation

__all__ = ["LiveAnalysis", "AnalysisInputs", "NoSettings", "LRUCache", "text_key"]


@dataclass(frozen=True)
class NoSettings:
    """Settings of an analysis that has none."""


@dataclass
class AnalysisInputs:
    """What every analysis reads: the session as it is now, and what the user looks at.

    Attributes
    ----------
    session
        The :class:`~gptviz.engine.Session`.
    ablation
        Its :class:`~gptviz.analysis.live_ablation.HeadAblation` (in step with
        ``session.ablation``).
    text_key, ids
        See :func:`text_key`.
    query
        Window position of the selected query (clamped to the window).
    layer, head, average
        The selected head, or ``layer``'s mean over its heads.
    timings
        Milliseconds per analysis of this run; an analysis may add the parts it times.
    """

    session: Any
    ablation: HeadAblation
    text_key: tuple[int, int, int]
    ids: np.ndarray
    query: int = 0
    layer: int = 0
    head: int = 0
    average: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def T(self) -> int:
        """Tokens in the model's window."""
        return int(self.ids.shape[0])

    @property
    def window_start(self) -> int:
        return int(self.text_key[0])

    @classmethod
    def of(cls, session: Any, ablation: HeadAblation, query: int | None = None,
           layer: int = 0, head: int = 0, average: bool = False,
           timings: dict[str, float] | None = None) -> AnalysisInputs:
        """The inputs for ``session`` now; ``query`` is a global position (``None``: the
        newest token)."""
        key, ids = text_key(session)
        ws, T = key[0], key[1]
        q = ws + T - 1 if query is None else int(query)
        return cls(session=session, ablation=ablation, text_key=key, ids=ids,
                   query=min(max(0, q - ws), T - 1), layer=int(layer), head=int(head),
                   average=bool(average), timings={} if timings is None else timings)


class LiveAnalysis:
    """One analysis of a live session (see the module docstring).

    Class attributes
    ----------------
    name
        Its registry name; the key of its result, error and timing in an
        :class:`~gptviz.analysis.runner.AnalysisResult`.
    settings_type
        A frozen dataclass of its settings (``settings_type()`` are the defaults).
    needs_ablation
        Only run while heads are ablated.
    """

    name: ClassVar[str] = ""
    settings_type: ClassVar[type] = NoSettings
    needs_ablation: ClassVar[bool] = False

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything (another session): called at creation too."""

    def compute(self, inputs: AnalysisInputs, settings: Any) -> Any:
        """The result for ``inputs`` (plain data; ``None``: nothing to show)."""
        raise NotImplementedError

    def command(self, inputs: AnalysisInputs, op: str, **kw: Any) -> bool:
        """Run one command of this analysis (``"<name>.<op>"`` on the runner); True when the
        session changed."""
        raise ValueError(f"unknown analysis command {self.name + '.' + op!r}")
