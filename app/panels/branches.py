"""The branch tree: every continuation tried after going back, one row each.

Going Back and taking another token no longer throws the old continuation away
(:mod:`gptviz.engine.branches`): this panel lists the branches as a tree (a branch under the
one it parts from), with where it parts (the step), its length, its first tokens, and the
current one marked ●. Enter or a double-click on a row (or "Switch") makes that branch the
text, restored exactly with its maps; "Compare" shows its attention as side A of the compare
panel. Keys, with the list focused: ↑/↓ choose a row, Enter switches.
"""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import QPushButton, QTreeWidget, QTreeWidgetItem, QWidget

from gptviz.analysis.runner import AnalysisResult
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.panel_layout import controls_row, shrinkable_label, stack
from gptviz_app.views.theme import DARK, Theme

COLUMNS = ("Branch", "From step", "Tokens", "Starts with")


class BranchesPanel(AnalysisPanel):
    """The branch list (see the module docstring); no analysis of its own, it reads
    :attr:`Snapshot.branches`."""

    title = "Branches"
    analyses = ()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.ui = None
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setToolTip("Enter or double-click: switch to the branch")
        self.tree.itemActivated.connect(lambda item, _col: self.switch(item.data(0, _ID)))
        self.tree.currentItemChanged.connect(self._on_current)
        self.switch_btn = QPushButton("Switch")
        self.switch_btn.setToolTip("Make the selected branch the text (Enter)")
        self.switch_btn.clicked.connect(lambda: self.switch(self.selected()))
        self.compare_btn = QPushButton("Compare")
        self.compare_btn.setToolTip("Show the selected branch's attention as A in Compare A/B")
        self.compare_btn.clicked.connect(self.compare_selected)
        self.info = shrinkable_label(" ")
        stack(self, controls_row(self.switch_btn, self.compare_btn, 6, (self.info, 1)),
              self.tree)
        self.shown: tuple = ()
        self.items: dict[int, QTreeWidgetItem] = {}  # the rows by branch id
        #: The branch whose row is chosen (kept while it exists, else the current branch),
        #: followed at every snapshot, also while the panel is hidden.
        self.chosen: int | None = None
        self.apply_theme(self.theme)

    def install(self, ui) -> None:
        self.ui = ui

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.tree.setFont(theme.font(0.95))

    def set_model(self, info: ModelInfo) -> None:
        self.shown = ()
        self.items = {}
        self.chosen = None
        self.tree.clear()

    # ------------------------------------------------------------------ reading
    def selected(self) -> int | None:
        item = self.tree.currentItem()
        return None if item is None else item.data(0, _ID)

    def rows(self) -> list[tuple[str, ...]]:
        """The texts of every row, depth first (for tests and screen readers)."""
        out = []

        def walk(item: QTreeWidgetItem | None) -> None:
            if item is None:
                return
            out.append(tuple(item.text(c) for c in range(len(COLUMNS))))
            for i in range(item.childCount()):
                walk(item.child(i))

        for i in range(self.tree.topLevelItemCount()):
            walk(self.tree.topLevelItem(i))
        return out

    # ------------------------------------------------------------------ actions
    def switch(self, bid: int | None) -> int:
        """Ask the worker to make branch ``bid`` the text (its generation; -1: not sent)."""
        if bid is None or self.ui is None:
            return -1
        cur = next((b for b in self.shown if b.current), None)
        if cur is not None and cur.id == bid:
            return -1
        return self.ui.controller.request("switch_branch", branch=int(bid))

    def compare_selected(self) -> None:
        bid = self.selected()
        compare = getattr(self.ui, "panels", {}).get("compare") if self.ui else None
        if bid is not None and compare is not None:
            compare.compare_branch(int(bid))

    def _on_current(self, item: QTreeWidgetItem | None, _previous=None) -> None:
        self.chosen = None if item is None else item.data(0, _ID)

    # ------------------------------------------------------------------ drawing
    def follow(self, res: AnalysisResult, snap: Snapshot) -> None:
        """The chosen row's branch: the one chosen before while it exists, else the current
        one (what the tree keeps through its rebuilds, hidden or not)."""
        branches = getattr(snap, "branches", ()) or ()
        if all(b.id != self.chosen for b in branches):
            self.chosen = next((b.id for b in branches if b.current), None)

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        branches = tuple(getattr(snap, "branches", ()) or ())
        if branches == self.shown:
            return
        if [_shape(b) for b in branches] == [_shape(b) for b in self.shown]:
            self._retext(branches)  # a step: the current branch grew, the tree is the same
        else:
            self._rebuild(branches)
        self.shown = branches
        n = len(branches)
        self.info.setText(f"{n} branch{'es' if n != 1 else ''}" + (
            " · go Back and take another token to start one" if n <= 1 else ""))

    def _rebuild(self, branches: tuple) -> None:
        """The tree anew (the branches themselves changed), every row expanded, the row of
        :attr:`chosen` (else the current branch's) chosen."""
        with QSignalBlocker(self.tree):
            self.tree.clear()
            items: dict[int, QTreeWidgetItem] = {}
            current_item = None
            for b in branches:
                item = QTreeWidgetItem([*_place_texts(b), *_grown_texts(b)])
                item.setData(0, _ID, b.id)
                item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight)
                item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight)
                item.setToolTip(0, "the current branch" if b.current else "Enter: switch")
                if b.current:
                    font = item.font(0)
                    font.setBold(True)
                    for c in range(len(COLUMNS)):
                        item.setFont(c, font)
                    current_item = item
                parent = items.get(b.parent)
                if parent is None:
                    self.tree.addTopLevelItem(item)
                else:
                    parent.addChild(item)
                items[b.id] = item
            self.items = items
            self.tree.expandAll()
            for c in range(len(COLUMNS) - 1):
                self.tree.resizeColumnToContents(c)
            pick = items.get(self.chosen) if self.chosen is not None else None
            pick = pick or current_item
            if pick is not None:
                self.tree.setCurrentItem(pick)
            self._on_current(pick)

    def _retext(self, branches: tuple) -> None:
        """The same tree with new lengths and first tokens: only those texts change (the rows,
        their expansion and the chosen row stay; the columns fit as a rebuild fits them)."""
        resize = False
        for b in branches:
            item = self.items[b.id]
            for c, text in enumerate(_grown_texts(b), start=2):
                if item.text(c) != text:
                    item.setText(c, text)
                    resize = resize or c < len(COLUMNS) - 1
        if resize:
            self.tree.resizeColumnToContents(2)


def _shape(b) -> tuple:
    """What places a branch's row in the tree and fixes its first two columns."""
    return b.id, b.parent, b.at, b.current, b.depth


def _place_texts(b) -> list[str]:
    """The row's first two columns: the branch (● current) and where it parts."""
    return [f"{'● ' if b.current else ''}#{b.id}", str(b.at + 1) if b.parent >= 0 else "prompt"]


def _grown_texts(b) -> list[str]:
    """The row's last two columns, which change as the branch grows."""
    return [str(b.length), repr(b.head) if b.head else "(no tokens yet)"]


_ID = Qt.ItemDataRole.UserRole
