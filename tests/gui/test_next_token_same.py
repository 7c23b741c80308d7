"""The same candidates again (a new layer, head or query) leave the next-token chart as drawn:
nothing is painted again, and the chart looks as a chart that drew them once; anything else
of what it draws from (a probability, the top-N box, the panel's size) draws it again."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from .conftest import EventCounts  # noqa: E402
from .test_next_token_drawn import _candidates, _pixels, _Snap  # noqa: E402


def _view(qtbot, size=(300, 480)):
    from gptviz_app.views.next_token import NextTokenView

    view = NextTokenView()
    view.resize(*size)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    return view


def _settle(qtbot) -> None:
    from PySide6.QtCore import QCoreApplication

    for _ in range(4):
        QCoreApplication.sendPostedEvents(None, 0)
    qtbot.wait(30)


def _drawn_once(qtbot, cand, n_tokens: int, **kw) -> np.ndarray:
    """An independent chart: a new view that drew ``cand`` and nothing else."""
    view = _view(qtbot)
    for name, value in kw.items():
        getattr(view, name).setValue(value)
    view.apply_snapshot(_Snap(cand, n_tokens))
    _settle(qtbot)
    return _pixels(view)


def test_the_same_candidates_again_paint_nothing_and_look_the_same(qtbot):
    from PySide6.QtCore import QEvent

    rng = np.random.default_rng(5)
    cand = _candidates(3, rng)
    view = _view(qtbot)
    view.apply_snapshot(_Snap(cand, 12))
    _settle(qtbot)
    texts = (view.header.text(), view.detail.text(), view.header.toolTip())
    paints = EventCounts(QEvent.Type.Paint)
    with paints:
        view.apply_snapshot(_Snap(copy.deepcopy(cand), 12))  # equal, not the same object
        _settle(qtbot)
    assert paints.of(view.glw.viewport()) == 0
    assert paints.of(view.header.label) == 0 and paints.of(view.detail.label) == 0
    assert (view.header.text(), view.detail.text(), view.header.toolTip()) == texts
    assert np.array_equal(_pixels(view), _drawn_once(qtbot, cand, 12))


@pytest.mark.parametrize("change", ["prob", "token", "chosen", "n_tokens", "count", "size"])
def test_anything_else_draws_the_chart_again(qtbot, change):
    rng = np.random.default_rng(6)
    cand = _candidates(4, rng)
    if change == "n_tokens":  # before any step: the header says the prompt's last position
        cand = replace(cand, kind="next")
    view = _view(qtbot)
    view.apply_snapshot(_Snap(cand, 12))
    _settle(qtbot)
    before = _pixels(view)
    n_tokens, kw = 12, {}
    if change == "prob":
        probs = cand.probs.copy()
        probs[0] *= 0.5
        cand = replace(cand, probs=probs)
    elif change == "token":
        cand = replace(cand, tokens=["·other"] + cand.tokens[1:])
    elif change == "chosen":
        cand = replace(cand, chosen=(cand.chosen + 1) % len(cand.ids))
    elif change == "n_tokens":
        n_tokens = 13
    elif change == "count":
        kw = {"count": 5}
        view.count.setValue(5)
    if change == "size":
        view.resize(360, 420)
        _settle(qtbot)
        view.apply_snapshot(_Snap(cand, n_tokens))
        _settle(qtbot)
        fresh = _view(qtbot, (360, 420))
        fresh.apply_snapshot(_Snap(cand, n_tokens))
        _settle(qtbot)
        assert np.array_equal(_pixels(view), _pixels(fresh))
        return
    view.apply_snapshot(_Snap(cand, n_tokens))
    _settle(qtbot)
    after = _pixels(view)
    assert not np.array_equal(after, before)
    if change == "n_tokens":
        assert "position 12" in view.header.text()
    assert np.array_equal(after, _drawn_once(qtbot, cand, n_tokens, **kw))
