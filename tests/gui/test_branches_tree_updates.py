"""The branch tree is built again only when the branches changed (pytest-qt, offscreen): a step
that only makes the current branch longer changes that row's texts in place, keeps the rows,
their expansion and the chosen row, and shows what a tree built from scratch shows."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from tests.gui.conftest import TIMEOUT, settle  # noqa: E402

PROMPT = "the cat sat on the mat. the cat"


@pytest.fixture
def window_options():
    return {"prompt": PROMPT}


def expected_rows(branches) -> list[tuple[str, ...]]:
    """The rows a tree of ``branches`` shows, depth first, written out by hand."""
    kids: dict[int, list] = {}
    for b in branches:
        kids.setdefault(b.parent, []).append(b)
    ids = {b.id for b in branches}
    out = []

    def walk(b):
        out.append((("● " if b.current else "") + f"#{b.id}",
                    str(b.at + 1) if b.parent >= 0 else "prompt", str(b.length),
                    repr(b.head) if b.head else "(no tokens yet)"))
        for k in kids.get(b.id, []):
            walk(k)

    for b in branches:
        if b.parent not in ids:
            walk(b)
    return out


def all_items(tree) -> list:
    from PySide6.QtWidgets import QTreeWidgetItemIterator

    out, it = [], QTreeWidgetItemIterator(tree)
    while it.value() is not None:
        out.append(it.value())
        it += 1
    return out


def test_a_step_changes_the_rows_in_place_and_a_new_branch_rebuilds(qtbot, window):
    from gptviz_app.panels.branches import BranchesPanel

    ui, c = window.analysis, window.controller
    panel = ui.panels["branches"]
    ui.reveal("branches")
    qtbot.waitUntil(lambda: ui.visible["branches"], timeout=TIMEOUT)
    c.step(3)
    settle(qtbot, window)
    for _ in range(2):
        c.back()
        settle(qtbot, window)
    c.force(7 if c.snapshot.ids[-1] != 7 else 8, False)
    snap = settle(qtbot, window)
    assert len(snap.branches) == 2 and panel.rows() == expected_rows(snap.branches)
    trunk = next(i for i in all_items(panel.tree) if i.childCount())
    panel.tree.collapseItem(trunk)  # the user folds the trunk away
    other = next(i for i in all_items(panel.tree) if not i.text(0).startswith("●"))
    panel.tree.setCurrentItem(other)  # and chooses the other branch's row
    other_id = other.data(0, Qt.ItemDataRole.UserRole)
    items = [id(i) for i in all_items(panel.tree)]
    for _ in range(3):
        c.step(1)
        snap = settle(qtbot, window)
        # the current branch's length grew: same rows (the same items), new texts
        assert panel.rows() == expected_rows(snap.branches)
        assert [id(i) for i in all_items(panel.tree)] == items
        assert not trunk.isExpanded()  # no expandAll at every step
        assert panel.tree.currentItem() is other and panel.selected() == other_id
    # the same texts, columns and chosen row as a tree built at once from these branches
    fresh = BranchesPanel()
    fresh.chosen = panel.chosen
    fresh.apply_analysis(snap.extra["analysis"], snap)
    assert fresh.rows() == panel.rows()
    assert fresh.tree.currentItem().text(0) == panel.tree.currentItem().text(0)
    assert [fresh.tree.columnWidth(k) for k in range(3)] == [
        panel.tree.columnWidth(k) for k in range(3)]
    # a new branch: the tree is built again, every row expanded, the chosen row kept
    c.back()
    settle(qtbot, window)
    c.force(9 if c.snapshot.ids[-1] != 9 else 10, False)
    snap = settle(qtbot, window)
    assert len(snap.branches) == 3 and panel.rows() == expected_rows(snap.branches)
    assert all(i.isExpanded() for i in all_items(panel.tree) if i.childCount())
    assert panel.selected() == other_id
    fresh.deleteLater()
