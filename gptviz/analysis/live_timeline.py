"""The training timeline of the window (``"timeline"``): a prompt run on a run's snapshots.

The settings name the series folder (``""``: the shipped ``resources/timeline/``), the
snapshot (its index; ``-1`` the last one) and the prompt. The snapshot's model is loaded on the
worker thread (a few are kept), the prompt runs through it
(:func:`~gptviz.analysis.timeline.run_prompt`), and the result carries the series (iterations,
stages, loss curves) so the panel can draw the slider and the curves. Nothing here depends on
the session's own model: the timeline shows another model's training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gptviz.analysis.live import AnalysisInputs, LiveAnalysis, LRUCache
from gptviz.analysis.timeline import (
    DEFAULT_PROMPT,
    LOSSES_FILE,
    Series,
    TimelineFrame,
    default_series_dir,
    read_series,
    run_prompt,
)

__all__ = ["TimelineSettings", "TimelineView", "TrainingTimeline"]


@dataclass(frozen=True)
class TimelineSettings:
    """``directory``: the series (``""``: the shipped one); ``index``: the snapshot (``-1``:
    the last); ``prompt``: the text every snapshot reads."""

    directory: str = ""
    index: int = -1
    prompt: str = DEFAULT_PROMPT


@dataclass
class TimelineView:
    """What the panel shows: the series and the frame of the chosen snapshot."""

    directory: str
    iterations: list[int]
    stages: list[str]               # stage of each snapshot
    stage_spans: list[dict[str, Any]]
    curves: dict[str, np.ndarray]   # name -> float64 [n, 2] (iteration, loss)
    frame: TimelineFrame


def _stamp(d: Path) -> tuple:
    """What changes when a series does: the folder's, each snapshot folder's, its weights'
    and each of the files :func:`read_series` reads' modification time and size (looked at,
    never opened)."""

    def of(p: Path) -> tuple[int, int]:
        try:
            st = p.stat()
        except OSError:
            return (-1, -1)
        return (st.st_mtime_ns, st.st_size)

    if not d.is_dir():
        return ()
    try:
        subs = sorted(p for p in d.iterdir() if p.name.isdigit())  # the snapshot folders
    except OSError:
        subs = []
    return (of(d), of(d / LOSSES_FILE),
            *((p.name, of(p), of(p / "metadata.json"), of(p / "model.safetensors"))
              for p in subs))


class TrainingTimeline(LiveAnalysis):
    """``"timeline"``: a :class:`TimelineView`."""

    name = "timeline"
    settings_type = TimelineSettings

    def reset(self) -> None:
        self._series: dict[str, tuple[tuple, Series]] = {}
        self._bundles = LRUCache(4)
        self._probes = LRUCache(64)
        self._frames = LRUCache(8)

    def series(self, directory: str) -> Series:
        """The series of ``directory`` (read again when its folder, a snapshot folder or a
        file the series is read from changed: a run still writing, a hand-edited
        ``metadata.json``)."""
        d = Path(directory) if directory else default_series_dir()
        stamp = _stamp(d)
        cached = self._series.get(str(d))
        if cached is None or cached[0] != stamp:
            if cached is not None:  # changed: its snapshots' models and frames may have too
                self._bundles, self._probes, self._frames = LRUCache(4), LRUCache(64), \
                    LRUCache(8)
            cached = (stamp, read_series(d))
            self._series[str(d)] = cached
        return cached[1]

    def _bundle(self, path: Path) -> Any:
        bundle = self._bundles.get(str(path))
        if bundle is None:
            from gptviz.families import load_model

            bundle = load_model(str(path))
            self._bundles.put(str(path), bundle)
        return bundle

    def compute(self, inputs: AnalysisInputs | None, settings: TimelineSettings
                ) -> TimelineView:
        series = self.series(settings.directory)
        n = len(series.snapshots)
        index = n - 1 if settings.index < 0 else min(int(settings.index), n - 1)
        entry = series.snapshots[index]
        key = (str(entry.path), settings.prompt, index, entry.iteration, entry.stage)
        frame = self._frames.get(key)
        if frame is None:
            bundle = self._bundle(entry.path)
            probe = self._probes.get(str(entry.path))
            frame = run_prompt(bundle, settings.prompt, index, entry.iteration, entry.stage,
                               probe=probe)
            self._probes.put(str(entry.path), frame.scores.probe_induction)
            self._frames.put(key, frame)
        return TimelineView(directory=str(series.directory), iterations=series.iterations,
                            stages=[s.stage for s in series.snapshots],
                            stage_spans=series.stages, curves=series.curves, frame=frame)
