"""The worker's commands: one table, command name -> handler.

A handler is a plain function ``handler(worker, req, **req.args)`` run on the worker thread
(:class:`~gptviz_app.runtime.worker.SessionWorker` calls it, reports its exceptions through
``errored``). Modules register theirs with the :func:`command` decorator:

* :mod:`gptviz_app.runtime.session_commands`  loading, stepping, undo/redo, settings...
* :mod:`gptviz_app.runtime.file_commands`     sessions, trace export, sample prompts
* :mod:`gptviz_app.runtime.analyses`          ``analysis``: the analysis panels and ablation
* :mod:`gptviz_app.runtime.patching_commands` ``patch``: activation patching, with progress
* :mod:`gptviz_app.runtime.branch_commands`   ``branches``, ``switch_branch``: the branch tree

:data:`COMMAND_MODULES` lists them; :func:`load_commands` imports them (the worker does,
once), so :data:`COMMANDS` is complete before the first request.

A handler uses the worker's public side only: ``session``, ``bundle``, ``builder``,
``analyses``, ``need_session()``, ``install_session()``, ``emit_snapshot()`` and the
``resultReady`` / ``modelChanged`` signals.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["COMMANDS", "COMMAND_MODULES", "Handler", "command", "load_commands"]

Handler = Callable[..., None]

#: Command name -> handler, filled by the modules of :data:`COMMAND_MODULES`.
COMMANDS: dict[str, Handler] = {}

#: The modules that register commands.
COMMAND_MODULES = ("gptviz_app.runtime.session_commands", "gptviz_app.runtime.file_commands",
                   "gptviz_app.runtime.analyses", "gptviz_app.runtime.patching_commands",
                   "gptviz_app.runtime.window_commands", "gptviz_app.runtime.branch_commands")


def command(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of command ``name``.

    Raises
    ------
    ValueError
        ``name`` already has a handler.
    """
    def register(fn: Handler) -> Handler:
        if name in COMMANDS and COMMANDS[name] is not fn:
            raise ValueError(f"worker command {name!r} is registered twice")
        COMMANDS[name] = fn
        return fn

    return register


def load_commands() -> dict[str, Any]:
    """Import every module of :data:`COMMAND_MODULES` (registering their commands) and return
    :data:`COMMANDS`."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    return COMMANDS
