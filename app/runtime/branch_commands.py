"""Worker commands of the branch tree (:mod:`gptviz.engine.branches`): ``branches`` (the list,
sent back as a result) and ``switch_branch`` (make another branch the session's path).

Every snapshot carries the compact list too (:attr:`Snapshot.branches`, filled by the
snapshot builder with :func:`branch_summary`).
"""

from __future__ import annotations

from typing import Any

from gptviz.engine.branches import BranchInfo, tree_for
from gptviz_app.runtime.commands import command
from gptviz_app.runtime.snapshot import Request


def branch_summary(session: Any) -> tuple[BranchInfo, ...]:
    """The branches of ``session`` as plain data (the tree is attached on first use)."""
    if session is None or not hasattr(session, "discard_listeners"):
        return ()
    return tuple(tree_for(session).summary())


@command("branches")
def branches(worker, req: Request) -> None:
    """Send the branch list as the result ``{"branches": (BranchInfo, ...)}``."""
    worker.resultReady.emit(req.gen, req.command,
                            {"branches": branch_summary(worker.need_session())})


@command("switch_branch")
def switch_branch(worker, req: Request, branch: int) -> None:
    """Make branch ``branch`` the session's path, the cursor at its end."""
    s = worker.need_session()
    tree_for(s).switch(int(branch))
    worker.builder.note_jump()
    worker.emit_snapshot(req)
