"""What a path is, in words, and the checks every reader of a file shares.

Readers call :func:`file_problem` before opening anything: a directory, a named pipe, a
device or a dangling link given where a file is expected gets a message that says so (not
"missing", and never a read that blocks on a pipe nobody writes to). JSON read from files is
checked for nesting (:func:`json_too_deep`) so that later ``json.dumps`` calls cannot hit
Python's recursion limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "file_problem", "kind_of", "json_too_deep", "read_text_input"]

#: Deepest nesting of lists/objects accepted in a JSON file (real files nest < 10 levels).
MAX_JSON_DEPTH = 100


def kind_of(mode: int) -> str:
    """A file type in words (``"a directory"``, ``"a named pipe (FIFO)"``, ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def file_problem(path: str | os.PathLike[str], allow_streams: bool = False) -> str | None:
    """Why ``path`` cannot be read as a file, or ``None`` when it can.

    Parameters
    ----------
    path
        The path (links are followed).
    allow_streams
        Also accept named pipes and character devices (``/dev/stdin``, ``<(command)``): for
        text inputs that are read once from start to end.

    Returns
    -------
    str or None
        E.g. ``"file is missing"``, ``"is a directory, not a file"``, ``"is a broken symbolic
        link (to 'x')"``, ``"is a named pipe (FIFO), not a regular file"``.
    """
    p = os.fspath(path)
    if p == "":
        return "empty file name"
    if "\x00" in p:  # os.stat would raise ValueError
        return "file name holds a NUL character"
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            try:
                target = os.readlink(p)
            except OSError:
                target = "?"
            return f"is a broken symbolic link (to {target!r})"
        return "file is missing"
    except OSError as e:  # a loop of links, no permission on a folder, a file as a folder
        return f"cannot be read ({e.strerror or e})"
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    if allow_streams and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    return f"is {kind_of(mode)}, not a regular file"


def json_too_deep(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether decoded JSON nests lists/objects more than ``limit`` levels (no recursion)."""
    stack = [(obj, 1)]
    while stack:
        x, depth = stack.pop()
        if isinstance(x, dict):
            children = list(x.values())
        elif isinstance(x, list):
            children = x
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def read_text_input(path: str | os.PathLike[str], what: str) -> str:
    """The UTF-8 text of an input file (pipes and ``/dev/stdin`` are read too).

    Raises
    ------
    ValueError
        The path is missing, a directory, a dangling link, ... or the bytes are not UTF-8;
        the message starts with ``what`` (e.g. ``"--prompt-file x.txt"``).
    """
    problem = file_problem(path, allow_streams=True)
    if problem is not None:
        raise ValueError(f"{what}: {problem}")
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{what}: cannot be read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what}: not UTF-8 text (byte {e.start} is invalid)") from None
