"""The token strip lays out only the chips after the tokens that stayed, and paints only the
chips in view: what it shows is the same as laying out everything afresh."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from gptviz.engine.sampling import SamplingSettings  # noqa: E402
from gptviz.engine.session import Session  # noqa: E402


def _rects(canvas):
    return [(r.x(), r.y(), r.width(), r.height()) for r in canvas.rects]


def test_incremental_layout_equals_a_full_one(qtbot, tiny_bundle):
    from gptviz_app.runtime.snapshot import ViewSpec
    from gptviz_app.runtime.snapshots import SnapshotBuilder
    from gptviz_app.views.token_strip import ChipCanvas

    s = Session(tiny_bundle, "Once upon a time there was a little model " * 6,
                SamplingSettings(seed=4))
    b = SnapshotBuilder(s, cell=8, gap=1)
    live = ChipCanvas()
    qtbot.addWidget(live)
    live.resize(420, 200)
    actions = [lambda: s.step(), lambda: s.generate(5), lambda: s.undo(3),
               lambda: s.step(force=11), lambda: s.reset(), lambda: s.undo_reset(),
               lambda: s.set_prompt("Short"), lambda: s.generate(2)]
    for i, act in enumerate([lambda: None] + actions):
        act()
        snap = b.build(i, "x", ViewSpec())
        if i == 3:
            snap_skipped = snap  # a snapshot the strip never sees (coalesced)
            continue
        live.set_data(snap)
        fresh = ChipCanvas()
        qtbot.addWidget(fresh)
        fresh.resize(420, 200)
        fresh.set_data(snap)
        assert _rects(live) == _rects(fresh) and len(live.rects) == snap.n_tokens
        assert live._ys == [r.y() for r in live.rects]
    assert snap_skipped.n_tokens > 0
    # Painting a long strip visits only the chips in view (checked by rendering: no error,
    # and the chip under a point is found by its row).
    live.resize(420, 2000)
    live.grab()
    r = live.rects[-1]
    assert live.chip_at(r.center()) == len(live.rects) - 1
