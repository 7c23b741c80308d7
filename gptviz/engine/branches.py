"""The branch tree of a session: every continuation the user tried, kept (as Loom does).

Going back (undo) and taking another token clears a :class:`~gptviz.engine.session.Session`'s
redo stack. A :class:`BranchTree` beside the session keeps what was discarded: each branch is
the list of generated tokens from the prompt on (ids, forced flags, the sampling settings each
step used), and branches that share a beginning form a tree. The session's own path (history
and redo stack) is always one of them, the *current* branch.

The tree uses only the session's public side: its ``discard_listeners`` hook (called when a
step discards the redo stack or what a reset put aside), ``history``, ``redo_stack``,
``goto`` and ``replay``. Switching to a branch goes back to where it parts from the session's
path and replays its tokens: the decode is deterministic, so tokens, attention maps and
next-token probabilities are those the branch had (bit for bit while the window did not slide
and the ablation is the same; replaying after a change of ablation gives that ablation's maps).

A new prompt starts a new tree; the old one is dropped (its branches belong to another
text). :func:`tree_for` gives the tree of a session, attaching one on first use.

Examples
--------
>>> tree = tree_for(session)                      # doctest: +SKIP
>>> session.step(); session.undo(); session.step(force=42)   # doctest: +SKIP
>>> [b.length for b in tree.summary()]            # doctest: +SKIP
>>> tree.switch(tree.summary()[0].id)             # doctest: +SKIP
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gptviz.engine.sampling import SamplingSettings

__all__ = ["Branch", "BranchInfo", "BranchTree", "tree_for", "common_prefix",
           "MAX_BRANCHES"]

#: Most branches a tree keeps (the oldest non-current ones go first).
MAX_BRANCHES = 4096
#: Tokens of a branch's beginning shown in :attr:`BranchInfo.head`.
_HEAD_TOKENS = 4


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common beginning of two id lists (binary search on C-speed slice
    comparisons, so long texts stay cheap)."""
    lo, hi = 0, min(len(a), len(b))
    if list(a[:hi]) == list(b[:hi]):
        return hi
    while lo < hi:  # invariant: a[:lo] == b[:lo], a[:hi + 1] != b[:hi + 1]
        mid = (lo + hi + 1) // 2
        if list(a[:mid]) == list(b[:mid]):
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass
class Branch:
    """One continuation: the generated tokens from the prompt on.

    ``ids[i]``, ``forced[i]`` and ``settings[i]`` describe generated token ``i`` (``settings``
    entries may be ``None``: the session's settings when replayed).
    """

    id: int
    ids: list[int] = field(default_factory=list)
    forced: list[bool] = field(default_factory=list)
    settings: list[SamplingSettings | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def set_to(self, ids: list[int], forced: list[bool],
               settings: list[SamplingSettings | None]) -> None:
        self.ids, self.forced, self.settings = list(ids), list(forced), list(settings)


@dataclass(frozen=True)
class BranchInfo:
    """What a list of the branches shows of one (plain data for the GUI).

    Attributes
    ----------
    id
        The branch's id (for :meth:`BranchTree.switch`).
    parent
        The branch it parts from (-1: the first branch, the trunk).
    at
        Generated tokens it shares with its parent (the branch point).
    length
        Generated tokens in all.
    head
        Display text of its first tokens after the branch point.
    current
        Whether it is the session's path.
    """

    id: int
    parent: int
    at: int
    length: int
    head: str
    current: bool
    depth: int = 0


def _entries(steps: Iterable[Any]) -> tuple[list[int], list[bool], list[SamplingSettings | None]]:
    ids: list[int] = []
    forced: list[bool] = []
    settings: list[SamplingSettings | None] = []
    for r in steps:
        ids.append(int(r.token_id))
        forced.append(bool(r.forced))
        settings.append(getattr(r, "settings", None))
    return ids, forced, settings


class BranchTree:
    """The branches of one session (see the module docstring).

    Parameters
    ----------
    session
        The :class:`~gptviz.engine.session.Session`; the tree adds itself to its
        ``discard_listeners`` (:meth:`detach` removes it).
    """

    def __init__(self, session: Any) -> None:
        self._session = weakref.ref(session)
        self._listener = self._on_discard
        session.discard_listeners.append(self._listener)
        self._start()

    # ------------------------------------------------------------------ state
    @property
    def session(self) -> Any:
        s = self._session()
        if s is None:
            raise ValueError("the session of this branch tree is gone")
        return s

    def _start(self) -> None:
        s = self.session
        self._prompt = (s.prompt, s.prompt_len)
        self._branches: dict[int, Branch] = {}
        self._next_id = 0
        self.current = self._add(*_entries(list(s.history) + list(s.redo_stack)))
        self.version = 0  # grows with every change of the tree's shape
        self._seen: tuple[Any, int, int] | None = None  # what sync() saw last
        self._summary: tuple[Any, tuple[BranchInfo, ...]] | None = None

    def _add(self, ids: list[int], forced: list[bool],
             settings: list[SamplingSettings | None]) -> int:
        b = Branch(self._next_id)
        b.set_to(ids, forced, settings)
        self._branches[b.id] = b
        self._next_id += 1
        return b.id

    def detach(self) -> None:
        """Stop following the session."""
        s = self._session()
        if s is not None and self._listener in s.discard_listeners:
            s.discard_listeners.remove(self._listener)

    def _on_discard(self, at: int, lost: list[Any]) -> None:
        """The session is about to drop ``lost`` after its first ``at`` generated tokens."""
        self._check_prompt()
        kept = self.session.history[:at]
        self._absorb(*_entries(list(kept) + list(lost)))
        self._seen = None  # the next sync reads the whole path

    def _check_prompt(self) -> None:
        s = self.session
        # the prompt's text and length (reading its ids would copy the whole text each time)
        if (s.prompt, s.prompt_len) != self._prompt:
            self._start()  # a new prompt: a new tree

    def _absorb(self, ids: list[int], forced: list[bool],
                settings: list[SamplingSettings | None]) -> int:
        """Make ``ids`` part of the tree: extend the branch it continues, or add one; returns
        the branch that holds it."""
        order = [self.current] + [i for i in self._branches if i != self.current]
        for bid in order:
            b = self._branches[bid]
            if len(b) >= len(ids) and b.ids[:len(ids)] == ids:
                return bid
            if len(b) < len(ids) and ids[:len(b)] == b.ids:
                b.set_to(ids, forced, settings)
                self._tidy()
                return bid
        bid = self._add(ids, forced, settings)
        self._tidy()
        return bid

    def _tidy(self) -> None:
        """Drop branches that only repeat the beginning of another; keep at most
        :data:`MAX_BRANCHES`."""
        self.version += 1
        for bid in list(self._branches):
            b = self._branches[bid]
            for other in self._branches.values():
                if other is not b and len(other) > len(b) and other.ids[:len(b)] == b.ids:
                    if bid == self.current:
                        self.current = other.id  # the session walks along ``other``
                    del self._branches[bid]
                    break
        while len(self._branches) > MAX_BRANCHES:
            oldest = next(i for i in self._branches if i != self.current)
            del self._branches[oldest]

    def _unchanged(self) -> tuple[bool, tuple[Any, int, int]]:
        """Whether the session's path (history + redo stack) is what the last :meth:`sync`
        saw, judged from the token version (an undo or redo moves the cursor along the same
        path); and the state to remember."""
        s = self.session
        n_gen, n_redo = s.n_generated, len(s.redo_stack) if s.can_redo else 0
        seen = (s.token_version, n_gen, n_redo)
        last = self._seen
        if last is None or n_gen + n_redo != last[1] + last[2]:
            return False, seen
        return s.tokens_same_since(last[0]) >= s.prompt_len + min(n_gen, last[1]), seen

    def sync(self) -> None:
        """Follow what the session did since the last call (cheap when nothing changed)."""
        self._check_prompt()
        same, seen = self._unchanged()
        if same:
            self._seen = seen
            return
        s = self.session
        cur = self._branches[self.current]
        last = self._seen
        if (last is not None and last[2] == 0 and seen[2] == 0 and seen[1] > last[1]
                and len(cur) == last[1]
                and s.tokens_same_since(last[0]) >= s.prompt_len + last[1]):
            # steps appended to the current branch: read only the new ones
            ids, forced, settings = _entries(s.history[last[1]:])
            cur.ids += ids
            cur.forced += forced
            cur.settings += settings
            self._seen = seen
            return
        self._seen = seen
        full = _entries(list(s.history) + list(s.redo_stack))
        cur = self._branches[self.current]
        n = len(full[0])
        if n >= len(cur) and full[0][:len(cur)] == cur.ids:
            if n > len(cur):
                cur.set_to(*full)
                self.version += 1
            return
        if n < len(cur) and cur.ids[:n] == full[0]:
            return  # e.g. right after a reset, which an undo may take back
        self.current = self._absorb(*full)

    # ------------------------------------------------------------------ reading
    def branches(self) -> list[Branch]:
        """Every branch, oldest first (the current one included)."""
        self.sync()
        return list(self._branches.values())

    def branch(self, bid: int) -> Branch:
        """The branch ``bid``; ``ValueError`` if there is none."""
        self.sync()
        try:
            return self._branches[int(bid)]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"no branch {bid!r} (branches: "
                             f"{', '.join(map(str, self._branches))})") from None

    def summary(self) -> list[BranchInfo]:
        """The branches as a tree, depth first: each after its parent (the earlier branch it
        shares the longest beginning with), children in order of their branch point."""
        self.sync()
        s = self.session
        items = list(self._branches.values())
        key = (self.version, self.current, tuple((b.id, len(b)) for b in items))
        if self._summary is not None and self._summary[0] == key:
            return list(self._summary[1])  # every snapshot asks: the same answer, cheaply
        parent: dict[int, tuple[int, int]] = {}
        for i, b in enumerate(items):
            best = (-1, 0)
            for a in items[:i]:
                k = common_prefix(a.ids, b.ids)
                if best[0] < 0 or k > best[1]:
                    best = (a.id, k)
            parent[b.id] = best
        kids: dict[int, list[Branch]] = {}
        for b in items:
            kids.setdefault(parent[b.id][0], []).append(b)
        out: list[BranchInfo] = []

        def visit(pid: int, depth: int) -> None:
            for b in sorted(kids.get(pid, []), key=lambda c: parent[c.id][1]):
                at = parent[b.id][1]
                head = "".join(s.display(t) for t in b.ids[at:at + _HEAD_TOKENS])
                out.append(BranchInfo(id=b.id, parent=pid, at=at, length=len(b), head=head,
                                      current=b.id == self.current, depth=depth))
                visit(b.id, depth + 1)

        visit(-1, 0)
        self._summary = (key, tuple(out))
        return out

    # ------------------------------------------------------------------ switching
    def switch(self, bid: int) -> int:
        """Make branch ``bid`` the session's path, the cursor at its end: back to where it
        parts from the session's path, then its tokens replayed. Returns the number of tokens
        replayed.

        Raises
        ------
        ValueError
            No such branch, or the session refuses a token (window or memory); the tree still
            holds every branch.
        """
        target = self.branch(bid)
        s = self.session
        full = [int(r.token_id) for r in list(s.history) + list(s.redo_stack)]
        k = common_prefix(full, target.ids)
        s.goto(k)  # undo, or redo along the shared beginning (stored rows, no recompute)
        for i in range(k, len(target)):
            s.replay(target.ids[i], forced=target.forced[i], settings=target.settings[i])
        self.current = target.id
        self._seen = None
        self.sync()
        return len(target) - k

    # ------------------------------------------------------------------ files
    def records(self) -> list[tuple[int, list[int], list[bool], list[SamplingSettings | None]]]:
        """The branches other than the session's path as ``(at, ids, forced, settings)``:
        ``at`` generated tokens shared with the session's path (history + redo stack), then
        the branch's own tokens (what a session file stores)."""
        self.sync()
        s = self.session
        full = [int(r.token_id) for r in list(s.history) + list(s.redo_stack)]
        out = []
        for b in self._branches.values():
            at = common_prefix(full, b.ids)
            if at < len(b):
                out.append((at, b.ids[at:], b.forced[at:], b.settings[at:]))
        return out

    def add_records(self, records: Iterable[tuple[int, Sequence[int], Sequence[bool],
                                                  Sequence[SamplingSettings | None]]]) -> None:
        """Add branches given as :meth:`records` gives them.

        Raises
        ------
        ValueError
            A branch point beyond the session's path, or a token id outside the vocabulary.
        """
        self.sync()
        s = self.session
        full = _entries(list(s.history) + list(s.redo_stack))
        n_ok = int(s.n_choosable)
        for j, (at, ids, forced, settings) in enumerate(records):
            if not 0 <= at <= len(full[0]):
                raise ValueError(f"branch {j} parts at {at}, beyond the "
                                 f"{len(full[0])} tokens of the session")
            bad = [t for t in ids if not 0 <= int(t) < n_ok]
            if bad:
                raise ValueError(f"branch {j}: token id {bad[0]} is outside the vocabulary "
                                 f"(0..{n_ok - 1})")
            self._absorb(full[0][:at] + [int(t) for t in ids],
                         full[1][:at] + [bool(f) for f in forced],
                         full[2][:at] + list(settings))
        self.sync()


_TREES: weakref.WeakKeyDictionary[Any, BranchTree] = weakref.WeakKeyDictionary()


def tree_for(session: Any) -> BranchTree:
    """The :class:`BranchTree` of ``session``, attached on first use (attach it before the
    first step that may discard something: what was discarded earlier is not known)."""
    tree = _TREES.get(session)
    if tree is None:
        tree = _TREES[session] = BranchTree(session)
    return tree
