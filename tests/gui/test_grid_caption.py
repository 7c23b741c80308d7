"""The head grid's caption says what the thumbnails show and stays the same from step to step
(the window's length is in the status bar; a followed query is the newest token): a step does
not set it again. A pinned query is named; the tooltip has the figures."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from tests.gui.conftest import settle  # noqa: E402


def test_the_caption_stays_put_while_steps_come_in(qtbot, window):
    c, grid = window.controller, window.grid
    for mode, words in (("row", "row of the newest query"), ("map", "whole maps"),
                        ("value", "value-weighted maps")):
        snap = settle(qtbot, window, c.set_view(grid_mode=mode))
        text = grid.caption.full_text()
        assert text.startswith(words), text
        for _ in range(2):
            snap = settle(qtbot, window, c.step())
            assert grid.caption.full_text() == text  # not set again: the same text
            assert f"{snap.T}" in grid.caption.toolTip()
    settle(qtbot, window, c.set_view(grid_mode="row"))
    snap = settle(qtbot, window, c.set_query(3))
    assert grid.caption.full_text().startswith("row of query 3,")
    assert "query 3 over its 4 keys" in grid.caption.toolTip()
