"""The block diagram of the session's model, for the window's panel (``"architecture"``).

The diagram depends on the model's config alone (:func:`~gptviz.analysis.architecture.
architecture`); it is built once per model and returned as it is for every snapshot.
"""

from __future__ import annotations

from typing import Any

from gptviz.analysis.architecture import Diagram, architecture
from gptviz.analysis.live import AnalysisInputs, LiveAnalysis

__all__ = ["ModelArchitecture"]


class ModelArchitecture(LiveAnalysis):
    """``"architecture"``: the :class:`~gptviz.analysis.architecture.Diagram` of the model."""

    name = "architecture"

    def reset(self) -> None:
        self._key: Any = None
        self._diagram: Diagram | None = None

    def compute(self, inputs: AnalysisInputs, settings: Any) -> Diagram:
        config = inputs.session.config
        if self._diagram is None or self._key != config:
            self._key, self._diagram = config, architecture(config)
        return self._diagram
