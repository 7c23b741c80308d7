"""A chart stepped through many distributions looks, after each step, as a new chart that drew
that step's distribution and nothing else: what it keeps from step to step (the range it
already has, measured labels and ticks, the bars grouped by colour) never shows.

Its token labels are all as wide (a monospaced font): a chart keeps its token axis wider than
its labels need for a few steps (see ``set_label_ticks``), which a new chart does not.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from .test_next_token_drawn import _pixels, _Snap  # noqa: E402
from .test_next_token_same import _drawn_once, _settle, _view  # noqa: E402

N_CANDIDATES = 20


def _candidates(step: int, rng, lower: bool, knobs: bool):
    """Twenty candidates, tokens of four letters; the chosen one among the twelve shown, or
    (``lower``) ranked 13th to 19th; ``knobs``: a temperature and a top-k change them."""
    import torch

    from gptviz.engine.knobs import knob_effect
    from gptviz.engine.sampling import SamplingSettings
    from gptviz_app.runtime.snapshot import Candidates

    logits = rng.normal(0, 2.5, 60).astype(np.float32)
    order = np.argsort(-logits)[:N_CANDIDATES]
    probs = torch.softmax(torch.as_tensor(logits), -1).numpy()[order]
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["".join(rng.choice(list(letters), 4)) for _ in range(N_CANDIDATES)]
    chosen = int(rng.integers(12, 19) if lower else rng.integers(0, 12))
    effect = (knob_effect(logits, SamplingSettings(temperature=0.6, top_k=6), order)
              if knobs else None)
    return Candidates(kind="last", ids=order.astype(np.int64), tokens=tokens,
                      probs=probs.astype(np.float32), entropy=float(rng.uniform(1, 5)),
                      chosen=chosen, chosen_id=int(order[chosen]),
                      chosen_prob=float(probs[chosen]), step=step, knobs=effect)


@pytest.mark.parametrize("lower", [False, True])
def test_a_stepped_chart_looks_as_a_new_chart_of_the_same_step(qtbot, lower):
    rng = np.random.default_rng(11 + lower)
    view = _view(qtbot)
    steps = []
    for step in range(1, 9):
        cand = _candidates(step, rng, lower, knobs=step in (4, 5))
        steps.append(cand)
        if step == 3:  # the same probabilities (the same range) for other tokens
            steps.append(replace(steps[-2], tokens=cand.tokens, step=step))
    for i, cand in enumerate(steps):
        n_tokens = 10 + i
        view.apply_snapshot(_Snap(cand, n_tokens))
        _settle(qtbot)
        # the token labels: each quoted, a lower-ranked chosen one last with its rank
        want_labels = [repr(t) for t in cand.tokens[:12]]
        if lower:
            want_labels[-1] = f"{cand.tokens[cand.chosen]!r} #{cand.chosen + 1}"
        assert [t for _p, t in view.plot.getAxis("left")._tickLevels[0]] == want_labels
        got = _pixels(view)
        want = _drawn_once(qtbot, cand, n_tokens)
        assert got.shape == want.shape
        bad = np.argwhere((got != want).any(axis=2))
        assert len(bad) == 0, f"step {i}: {len(bad)} pixels differ, first at {bad[:3].tolist()}"


def test_a_chart_shown_fewer_rows_then_resized_looks_as_a_new_one(qtbot):
    rng = np.random.default_rng(4)
    view = _view(qtbot)
    first = _candidates(1, rng, False, knobs=False)
    view.apply_snapshot(_Snap(first, 9))
    _settle(qtbot)
    view.count.setValue(7)
    second = _candidates(2, rng, True, knobs=True)
    view.apply_snapshot(_Snap(second, 10))
    _settle(qtbot)
    assert (_pixels(view) == _drawn_once(qtbot, second, 10, count=7)).all()
    view.count.setValue(12)
    third = replace(second, step=3, tokens=first.tokens)
    view.apply_snapshot(_Snap(third, 11))
    _settle(qtbot)
    assert (_pixels(view) == _drawn_once(qtbot, third, 11)).all()


@pytest.mark.parametrize("width", [150, 165, 180, 200, 240])
def test_every_value_label_ends_inside_a_narrow_chart(qtbot, width):
    """However narrow the chart, a value label no wider than its plot ends inside it (after
    its bar where there is room, else over the bar's end); the longest bar's label was cut
    off where its column kept the labels less room than they take."""
    rng = np.random.default_rng(5)
    view = _view(qtbot, (width, 420))
    view.apply_theme(view.theme)
    view.apply_snapshot(_Snap(_candidates(1, rng, False, knobs=False), 12))
    _settle(qtbot)
    box = view.vb.sceneBoundingRect()
    shown = view.rows.label_rects()
    assert shown
    for text, rect in shown:
        if rect.width() <= box.width():
            assert box.left() - 0.5 <= rect.left() and rect.right() <= box.right() + 0.5, \
                (text, rect, box)
