"""A broken training-timeline series, one thing at a time (:data:`hostile_series.DAMAGE`),
and hostile prompts typed into the timeline panel (:data:`hostile_series.PROMPTS`).

Each case copies three snapshots of the shipped run and breaks one thing. Then: the series is
read or refused in one line naming the file (:class:`TimelineError`); every snapshot is run
(the worker's ``"timeline"`` analysis) or refused in one line; no two snapshots share an
iteration and they come in order; the panel draws the result, or shows the refusal on one
line, without raising; nothing blocks (an alarm: the pipes live in the test's copy only).
"""

from __future__ import annotations

import shutil
import types

import numpy as np
import pytest
from hostile_series import DAMAGE, PROMPTS, small_series
from hub_cache import fail_after

from gptviz.analysis.live_timeline import TimelineSettings, TrainingTimeline
from gptviz.analysis.runner import AnalysisResult, AnalysisSpec, error_text
from gptviz.analysis.timeline import TimelineError, read_series
from gptviz.io.checkpoint import CheckpointError


@pytest.fixture(autouse=True)
def alarm():
    with fail_after(60, "blocked (a named pipe opened without a check?)"):
        yield


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return small_series(tmp_path_factory.mktemp("series") / "run")


@pytest.fixture
def series_copy(template, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(template, d, symlinks=True)
    return d


@pytest.fixture(scope="module")
def panel(qapp):
    from gptviz_app.panels.timeline import TimelinePanel

    p = TimelinePanel()
    p.resize(900, 700)
    yield p
    p.deleteLater()


SNAP = types.SimpleNamespace(view=types.SimpleNamespace(layer=1, head=3), n_tokens=12)


def one_line(message: str) -> None:
    assert "\n" not in message and "\x00" not in message, message
    assert len(message) < 1000, message[:200]


def run(timeline: TrainingTimeline, d, index: int, prompt: str | None = None):
    """The analysis as the runner calls it: ``(view, None)`` or ``(None, error text)``; only
    our own errors (which say what is wrong) may come out of it."""
    settings = TimelineSettings(directory=str(d), index=index)
    if prompt is not None:
        settings = TimelineSettings(directory=str(d), index=index, prompt=prompt)
    try:
        return timeline.compute(None, settings), None
    except (TimelineError, CheckpointError) as e:
        one_line(str(e))
        return None, error_text(e)
    except ValueError as e:  # the prompt: empty, or not valid Unicode
        assert type(e) is ValueError and ("prompt" in str(e) or "Unicode" in str(e)), repr(e)
        one_line(str(e))
        return None, error_text(e)


def draw(panel, view, error) -> None:
    res = AnalysisResult(AnalysisSpec())
    if view is not None:
        res.results["timeline"] = view
    else:
        res.errors["timeline"] = error
    panel.apply_analysis(res, SNAP)  # raises here what a Qt slot would print as a traceback
    one_line(panel.readout.text())


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_one_broken_thing_in_a_series(series_copy, case, panel):
    DAMAGE[case](series_copy)
    try:
        series = read_series(series_copy)
    except TimelineError as e:
        one_line(str(e))
        series = None
    if series is not None:
        its = series.iterations
        assert its == sorted(set(its)), its  # no iteration twice, in order
        for name, curve in series.curves.items():
            assert curve.ndim == 2 and curve.shape[1] == 2, name
            assert np.isfinite(curve[:, 0]).all(), name
    timeline = TrainingTimeline()
    timeline.reset()
    for index in (0, 1, -1):
        view, error = run(timeline, series_copy, index)
        assert (view is None) != (error is None)
        if series is None:
            assert view is None
        draw(panel, view, error)


@pytest.mark.parametrize("prompt", PROMPTS, ids=lambda p: ascii(p)[:30])
def test_hostile_prompts(template, prompt, panel):
    timeline = TrainingTimeline()
    timeline.reset()
    view, error = run(timeline, template, 0, prompt)
    if view is not None:
        T = len(view.frame.ids)
        assert T >= 1 and view.frame.attention.shape[-1] == T
    draw(panel, view, error)


def test_a_bad_run_opened_leaves_the_run_on_screen(template, series_copy, panel):
    timeline = TrainingTimeline()
    timeline.reset()
    panel.directory = str(template)
    panel.view = None
    draw(panel, *run(timeline, template, -1))
    shown = panel.view
    assert shown is not None
    DAMAGE["metadata is a pipe"](series_copy)
    panel.open_directory(str(series_copy))
    assert panel.requests(True)["timeline"].directory == str(series_copy)
    draw(panel, *run(timeline, series_copy, -1))
    assert panel.view is shown and panel.directory == str(template)  # back to the good run
    text = panel.readout.text()
    assert text.startswith("Cannot open that run: ") and "is a named pipe" in text, text
    assert "TimelineError" not in text


# ---------------------------------------------------------------------- the training side
@pytest.mark.parametrize("text,words", [
    ("²", "must be non-negative integers"), ("٣", "must be non-negative integers"),
    ("9" * 5000, "does not fit 6 digits"), ("1e3", "must be non-negative integers"),
    ("-1", "must be non-negative integers"),
])
def test_snapshot_iterations_of_other_digits_or_too_many(text, words):
    from gptviz.train.snapshots import parse_iterations

    with pytest.raises(ValueError, match=words) as e:
        parse_iterations(f"0,{text}")
    one_line(str(e.value))
    assert len(str(e.value)) < 200


@pytest.mark.parametrize("meta", [{"iters": "5"}, {"iters": [1]}, {"iters": float("inf")},
                                  {"iters": -3}, {"iters": True}, {"iters": None},
                                  {"iters": 1, "anneal": {"iters": 2.5}}])
def test_a_checkpoint_whose_iterations_are_junk(meta):
    from gptviz.train.snapshots import stage_offset

    with pytest.raises(ValueError, match="must be a whole number of iterations") as e:
        stage_offset(meta)
    one_line(str(e.value))


def test_stage_offsets_that_make_sense():
    from gptviz.train.snapshots import stage_offset

    assert stage_offset({}) == 0
    assert stage_offset({"iters": 300, "induct": {"iters": 60}, "anneal": "x"}) == 360
