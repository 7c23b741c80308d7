"""The Branches panel end to end (pytest-qt, offscreen): going Back and taking another token
keeps the old continuation, the panel lists both, switching from the panel changes the text,
and Compare A/B diffs the attention of two branches."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from tests.gui.conftest import TIMEOUT, settle  # noqa: E402

PROMPT = "the cat sat on the mat. the cat"


@pytest.fixture
def window_options():
    return {"prompt": PROMPT}


def session(win):
    return win.controller.client.worker.session  # read only while the worker is idle


def item_of(panel, bid: int):
    """The panel's row of branch ``bid``."""
    from PySide6.QtWidgets import QTreeWidgetItemIterator

    it = QTreeWidgetItemIterator(panel.tree)
    while it.value() is not None:
        if it.value().data(0, Qt.ItemDataRole.UserRole) == bid:
            return it.value()
        it += 1
    raise AssertionError(f"no row for branch {bid}")


def make_two_branches(qtbot, win) -> tuple[list[int], list[int]]:
    c = win.controller
    c.step(5)
    settle(qtbot, win)
    s = session(win)
    first = s.tokens
    for _ in range(2):
        c.back()
        settle(qtbot, win)
    other = 7 if first[-2] != 7 else 8
    c.force(other, False)
    settle(qtbot, win)
    return first, s.tokens


def test_panel_lists_the_branches_and_switching_changes_the_text(qtbot, window):
    first, second = make_two_branches(qtbot, window)
    assert second[:-1] == first[:-2] and second != first[:len(second)]
    panel = window.analysis.panels["branches"]
    window.analysis.reveal("branches")
    qtbot.waitUntil(lambda: window.analysis.visible["branches"], timeout=TIMEOUT)
    snap = settle(qtbot, window)
    assert len(snap.branches) == 2
    rows = panel.rows()
    assert len(rows) == 2 and sum(r[0].startswith("●") for r in rows) == 1
    cur = next(b for b in snap.branches if b.current)
    old = next(b for b in snap.branches if not b.current)
    assert cur.length == 4 and old.length == 5 and cur.parent == old.id and cur.at == 3
    # choose the other row with the keyboard and press Enter
    panel.tree.setFocus()
    panel.tree.setCurrentItem(item_of(panel, old.id))
    assert panel.selected() == old.id
    qtbot.keyClick(panel.tree, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.controller.snapshot.command == "switch_branch",
                    timeout=TIMEOUT)
    snap = settle(qtbot, window)
    assert session(window).tokens == first
    assert list(snap.ids) == first
    assert next(b for b in snap.branches if b.current).id == old.id
    assert sum(r[0].startswith("●") for r in panel.rows()) == 1
    # switching restores the maps: the snapshot's map is that of an independent forward
    from gptviz.analysis import attention_array

    att = attention_array(session(window).model, first)  # [L, H, T, T]
    v = snap.view
    np.testing.assert_allclose(np.nan_to_num(snap.attn), att[v.layer, v.head], atol=1e-6)


def test_compare_diffs_the_attention_of_two_branches(qtbot, window):
    from gptviz.analysis import attention_array

    first, second = make_two_branches(qtbot, window)
    c = window.controller
    window.analysis.reveal("branches")
    qtbot.waitUntil(lambda: window.analysis.visible["branches"], timeout=TIMEOUT)
    settle(qtbot, window)
    c.select_head(1, 2)
    settle(qtbot, window)
    bp = window.analysis.panels["branches"]
    old = next(b for b in c.snapshot.branches if not b.current)
    bp.tree.setCurrentItem(item_of(bp, old.id))
    bp.compare_btn.click()
    qtbot.waitUntil(lambda: window.analysis.visible["compare"], timeout=TIMEOUT)

    def branch_view():
        res = c.snapshot.extra.get("analysis")
        cv = res.get("compare") if res is not None else None
        return cv is not None and cv.source == "branch" and cv.diff is not None

    qtbot.waitUntil(branch_view, timeout=TIMEOUT)
    cv = settle(qtbot, window).extra["analysis"].get("compare")
    model = session(window).model
    a = attention_array(model, first)[1, 2]   # the other branch, one forward
    b = attention_array(model, second)[1, 2]  # the current branch, one forward
    n = min(len(first), len(second))
    assert cv.align == "position" and cv.n == n
    want = a[:n, :n] - b[:n, :n]
    np.testing.assert_allclose(np.nan_to_num(cv.diff), want, atol=1e-6)
    assert np.abs(want).max() > 1e-4   # the branches differ after the branch point
    k = len(second) - 1  # ... and agree on the shared prefix (B is the stepped session: float
    np.testing.assert_allclose(np.nan_to_num(cv.diff[:k, :k]), 0.0, atol=1e-6)  # rounding)
    assert cv.label_a.startswith(f"branch #{old.id}")



def test_branches_command_lists_them_and_a_bad_switch_changes_nothing(qtbot, window):
    first, second = make_two_branches(qtbot, window)
    c = window.controller
    pl = c.snapshot.prompt_len
    with qtbot.waitSignal(c.client.result, timeout=TIMEOUT) as sig:
        c.request("branches")
    _gen, command, out = sig.args
    assert command == "branches"
    assert sorted(b.length for b in out["branches"]) == sorted([len(second) - pl,
                                                                len(first) - pl])
    qtbot.waitUntil(lambda: not c.client.busy, timeout=TIMEOUT)
    with qtbot.waitSignal(c.client.errored, timeout=TIMEOUT) as sig:
        c.request("switch_branch", branch=99)
    assert "no branch 99" in sig.args[2] and "\n" not in sig.args[2]
    qtbot.waitUntil(lambda: not c.client.busy, timeout=TIMEOUT)
    assert session(window).tokens == second
