"""Exports that need no Qt: attention and next-token tables to CSV, the trace to NPZ.

Every file is written atomically (:func:`atomic_write`): the data goes to a temporary file in
the target's directory, which is flushed, ``fsync``-ed and then renamed over the target with
``os.replace``. A crash, a full disk or an exception half-way leaves either the old file or
the new one, never a mix; a temporary file left by a killed writer is removed by the next
write of the same target. What is not a regular file is never replaced: pipes, character
devices (``/dev/null``) and ``/dev/stdout`` are written into, directories, block devices and
sockets are refused.

CSV files are UTF-8 (no byte-order mark), comma-separated, quoted where needed by the
:mod:`csv` module (tokens may hold commas, quotes, line breaks, emoji), with ``\\r\\n`` line
ends as RFC 4180 has it. Numbers are written as the shortest decimal that reads back to the
same value in the array's own float type (``float32`` attention reads back bit for bit).

* :func:`attention_csv` ``(path, matrix [T, T], tokens)``: a header row ``query \\ key``,
  then the key tokens; one row per query: its token, then its attention over the keys. With
  ``positions``, a first column ``position`` and key columns named ``"<position> <token>"``
  (tokens repeat, positions do not).
* :func:`next_token_csv` ``(path, ids, probs, tokens)``: columns ``rank, id, token,
  probability``, most probable first (rank 1); with ``chosen``, a last column ``chosen``
  (1 for the chosen token, else 0).
* Both take ``comment``: lines written first, each starting with ``# `` (what the table
  shows: model, step, sampling, forced tokens, ablation; skip lines starting with ``#`` to
  read the table).
* :func:`trace_npz` ``(path, session)``: the NPZ of ``python -m gptviz trace`` (schema in
  :mod:`gptviz.cli.trace`), from :meth:`gptviz.engine.session.Session.trace_arrays`, written by
  :func:`write_trace_npz` (which the ``trace`` command uses too).

Errors: ``ValueError`` for bad arguments (shapes, lengths), ``OSError`` for the file system
(its message names the target file).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from gptviz.io.files import kind_of

if TYPE_CHECKING:
    from gptviz.engine.session import Session

__all__ = [
    "atomic_write", "check_target", "attention_csv", "next_token_csv", "trace_npz",
    "write_trace_npz", "TRACE_KEYS", "TRACE_DATA_KEYS", "TRACE_EXTRA_KEYS",
]

#: Keys every trace NPZ file has (see :mod:`gptviz.cli.trace`); the writer requires them.
TRACE_DATA_KEYS = ("token_ids", "tokens", "attention", "probs", "prompt_len", "window_start",
                   "config")
#: Keys of a trace NPZ file: the data, then what it shows (model, step, sampling, forced tokens,
#: ablation: :data:`gptviz.io.provenance.CONTEXT_KEYS`), added later; readers of the first
#: files find the data keys as they were.
TRACE_KEYS = TRACE_DATA_KEYS + ("model", "model_source", "step", "settings", "forced",
                                "ablation", "description")
#: Optional keys of a trace file, each float32 ``[L, H, T, T]`` like ``attention``: the raw
#: scores (``trace --scores``) and the value-weighted attention (``trace --value-weighted``).
TRACE_EXTRA_KEYS = ("scores", "value_weighted")


# ---------------------------------------------------------------------- atomic writes
# Temporary files are named ".<target name>.<writer's pid>.<random>.tmp": a later write of
# the same target removes those whose process is gone (a killed save), never a live one's.
_TMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]+\.tmp")
_TMP_STEM = 120  # characters of the target's name kept in the temporary name (NAME_MAX)
# A descriptor alias: /dev/stdout, /dev/fd/N and /proc/self/fd/N all resolve through it.
_FD_ALIAS = re.compile(r"/proc/(?P<proc>[^/]+)/fd/(?P<fd>\d+)")


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _named_error(e: OSError, target: Path) -> OSError:
    """The same error (errno, reason) about the target file rather than the temporary one."""
    if e.errno is None or not e.strerror:
        return OSError(f"cannot write {target}: {e}")
    return OSError(e.errno, e.strerror, str(target))  # the subclass follows errno


def _fd_alias(path: str) -> tuple[str, int] | None:
    """``(process, descriptor)`` when ``path`` reaches its file through an open descriptor
    (``/dev/stdout``, ``/dev/fd/1``, ``/proc/self/fd/1``), else ``None``.

    Such a path is written into, never replaced: resolving it names the descriptor's file
    (or a pipe) rather than a place for a new file.
    """
    p = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        head, tail = os.path.split(p)
        p = os.path.join(os.path.realpath(head), tail)
        m = _FD_ALIAS.fullmatch(p)
        if m:
            return m.group("proc"), int(m.group("fd"))
        try:
            link = os.readlink(p)
        except OSError:  # not a link (or gone): an ordinary path
            return None
        p = os.path.normpath(os.path.join(os.path.dirname(p), link))  # relative to its folder
    return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # never signal a process group; keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _remove_orphans(directory: Path, name: str) -> None:
    """Delete the temporary files of earlier writes of ``name`` whose writer has died."""
    stem = name[:_TMP_STEM]
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        m = _TMP_NAME.fullmatch(entry.name)
        if m is None or m.group("name") != stem:
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False) and not _pid_alive(int(m.group("pid"))):
                os.unlink(entry.path)


class _Stream(io.RawIOBase):
    """A write-only, unseekable view of a descriptor: writers (``zipfile`` for NPZ) then
    stream instead of seeking back, which a pipe refuses and ``/dev/null`` gets wrong."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        return os.write(self._fd, b)


def _own_descriptor(alias: tuple[str, int] | None) -> int | None:
    """The descriptor of this process that ``alias`` names (``/dev/stdout``: 1), if any."""
    if alias is None or alias[0] not in ("self", str(os.getpid())):
        return None
    return alias[1]


def _write_stream(given: str, write: Callable[[IO[bytes]], object],
                  alias: tuple[str, int] | None) -> Path:
    """Write into an existing pipe, device or descriptor alias, as ``cat > path`` would.

    One of this process's own descriptors (``/dev/stdout``) is written through a duplicate:
    the same open file, so what the process prints afterwards follows the data instead of
    overwriting it (a reopened regular file would start again at offset 0).
    """
    target = Path(given)
    own = _own_descriptor(alias)
    try:
        if own is not None:
            for stream in (sys.__stdout__, sys.__stderr__):  # what is printed comes first
                with contextlib.suppress(Exception):
                    if stream is not None and stream.fileno() == own:
                        stream.flush()
            fd = os.dup(own)
        else:
            fd = os.open(given, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _named_error(e, target) from None
    try:
        with io.BufferedWriter(_Stream(fd)) as f:
            write(f)
            f.flush()
    except OSError as e:
        raise _named_error(e, target) from None
    finally:
        os.close(fd)
    return target


def check_target(path: str | os.PathLike[str]) -> None:
    """Check that ``path`` can be written by :func:`atomic_write`, without writing it.

    Raises
    ------
    OSError
        The name is empty, names a directory, a block device or a socket, or its folder
        does not exist; the message names ``path``.
    """
    given = os.fspath(path)
    if given == "":
        raise FileNotFoundError(errno.ENOENT, "empty file name", given)
    try:
        st = os.stat(given)
    except FileNotFoundError:
        parent = Path(os.path.realpath(given)).parent
        if not parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, f"folder {parent} does not exist",
                                    given) from None
        return
    except OSError as e:  # a loop of links, a file used as a folder, no permission
        raise _named_error(e, Path(given)) from None
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", given)
    if stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        raise OSError(errno.EINVAL, f"is {kind_of(mode)}; gptviz writes only regular files, "
                      "pipes and character devices", given)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write a file so that it is either entirely old or entirely new, never partial.

    Parameters
    ----------
    path
        The target. A regular file or a new name: written to a temporary file in the same
        folder and renamed over it. A symbolic link is written through (the file it points
        to is replaced, the link stays). A named pipe, a character device (``/dev/null``)
        or a descriptor alias (``/dev/stdout``, ``/dev/fd/N``) is written into as it is,
        never replaced. Directories, block devices and sockets are refused.
    write
        Called with a binary file object (not seekable for pipes and devices); it writes the
        whole content.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    OSError
        The target cannot be written (see :func:`check_target`), the disk is full, ...
        (the message names ``path``); a regular target is then untouched and the temporary
        file removed.
    Exception
        Whatever ``write`` raises, after the same clean-up.

    Notes
    -----
    The new file gets the old file's permission bits, or ``0o666 & ~umask`` when it is new.
    Temporary files left by writers that were killed are removed by the next write of the
    same target (those of live processes are left alone).
    """
    check_target(path)
    given = os.fspath(path)
    try:
        st: os.stat_result | None = os.stat(given)
    except FileNotFoundError:  # a new file, or a dangling link (its target gets created)
        st = None
    alias = _fd_alias(given)
    if (st is not None and not stat.S_ISREG(st.st_mode)) or alias is not None:
        return _write_stream(given, write, alias)
    target = Path(given)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    directory = target.parent
    mode = st.st_mode & 0o777 if st is not None else 0o666 & ~_umask()
    _remove_orphans(directory, target.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:_TMP_STEM]}.{os.getpid()}.",
                                   suffix=".tmp", dir=directory)
    except OSError as e:
        raise _named_error(e, target) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename != str(target):
            raise _named_error(e, target) from e
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        try:
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    return target


def _comment_lines(comment: str | Sequence[str] | None) -> str:
    """``comment`` (a string or lines) as CSV comment lines, each ``# ...`` and CRLF-ended."""
    if comment is None:
        return ""
    lines = comment.splitlines() if isinstance(comment, str) else \
        [part for c in comment for part in str(c).splitlines()]
    return "".join(f"# {line}\r\n" for line in lines)


def _write_text(path: str | os.PathLike[str], text: str) -> Path:
    data = text.encode("utf-8", errors="surrogatepass")
    return atomic_write(path, lambda f: f.write(data))


# ---------------------------------------------------------------------- CSV
def _number_strings(values: np.ndarray) -> list[str]:
    """Shortest decimal strings that read back to the same value in ``values``' dtype."""
    if values.dtype.kind == "f":
        return [str(v) for v in values]  # numpy scalars print their shortest round-trip form
    return [str(float(v)) for v in values]


def _as_real_array(x: object, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers (got dtype {a.dtype})")
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    return a


def _token_list(tokens: Sequence[str], n: int, name: str) -> list[str]:
    out = [str(t) for t in tokens]
    if len(out) != n:
        raise ValueError(f"{name}: expected {n} tokens, got {len(out)}")
    return out


def attention_csv(path: str | os.PathLike[str], matrix: object, tokens: Sequence[str],
                  positions: Sequence[int] | None = None,
                  comment: str | Sequence[str] | None = None) -> Path:
    """Write one attention matrix ``[T, T]`` (query rows, key columns) as CSV.

    Parameters
    ----------
    path
        Target ``.csv`` file.
    matrix
        ``[T, T]`` attention (a numpy array or tensor), e.g. ``session.attention_head(l, h)``
        or the mean over heads.
    tokens
        The ``T`` display strings of the window's tokens (keys and queries are the same).
    positions
        The ``T`` positions of those tokens in the text: a first column ``position``, and key
        columns named ``"<position> <token>"``. ``None``: the plain layout.
    comment
        Lines written before the table, each as ``# line``.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        ``matrix`` is not square 2-D real, or ``tokens`` (``positions``) does not have ``T``
        entries.
    OSError
        The file cannot be written.
    """
    m = _as_real_array(matrix, "attention matrix")
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"attention matrix must be square [T, T] (got shape {list(m.shape)})")
    toks = _token_list(tokens, m.shape[0], "attention_csv")
    buf = io.StringIO(newline="")
    buf.write(_comment_lines(comment))
    w = csv.writer(buf)
    if positions is None:
        w.writerow(["query \\ key", *toks])
        for tok, row in zip(toks, m):
            w.writerow([tok, *_number_strings(row)])
    else:
        pos = [int(x) for x in positions]
        if len(pos) != len(toks):
            raise ValueError(f"attention_csv: expected {len(toks)} positions, got {len(pos)}")
        w.writerow(["position", "query \\ key", *(f"{p} {t}" for p, t in zip(pos, toks))])
        for p, tok, row in zip(pos, toks, m):
            w.writerow([p, tok, *_number_strings(row)])
    return _write_text(path, buf.getvalue())


def next_token_csv(path: str | os.PathLike[str], ids: object, probs: object,
                   tokens: Sequence[str], chosen: int | None = None,
                   comment: str | Sequence[str] | None = None) -> Path:
    """Write a next-token table as CSV: ``rank, id, token, probability``.

    Parameters
    ----------
    path
        Target ``.csv`` file.
    ids
        ``[k]`` token ids (e.g. from :meth:`Session.next_distribution`).
    probs
        ``[k]`` their probabilities.
    tokens
        ``[k]`` their display strings.
    chosen
        A token id: a last column ``chosen`` holds 1 in its row, 0 in the others (``-1``: a
        column of zeros, no token chosen yet). ``None``: no such column.
    comment
        Lines written before the table, each as ``# line``.

    Rows are sorted by probability, most probable first (ties keep the given order), and
    ranked from 1.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        The three are not 1-D of the same length, or ``ids`` are not integers.
    OSError
        The file cannot be written.
    """
    if hasattr(ids, "detach"):  # a torch tensor
        ids = ids.detach().cpu().numpy()
    i = np.asarray(ids)
    p = _as_real_array(probs, "probs")
    if i.ndim != 1 or p.ndim != 1 or i.shape != p.shape:
        raise ValueError(f"ids and probs must be 1-D of the same length "
                         f"(got shapes {list(i.shape)} and {list(p.shape)})")
    if i.size and i.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers (got dtype {i.dtype})")
    toks = _token_list(tokens, len(i), "next_token_csv")
    order = np.argsort(-p.astype(np.float64), kind="stable")
    probs_s = _number_strings(p[order])
    buf = io.StringIO(newline="")
    buf.write(_comment_lines(comment))
    w = csv.writer(buf)
    mark = [] if chosen is None else ["chosen"]
    w.writerow(["rank", "id", "token", "probability", *mark])
    for rank, (j, ps) in enumerate(zip(order, probs_s), start=1):
        flag = [] if chosen is None else [int(int(i[j]) == int(chosen))]
        w.writerow([rank, int(i[j]), toks[j], ps, *flag])
    return _write_text(path, buf.getvalue())


# ---------------------------------------------------------------------- NPZ
def write_trace_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write trace arrays (:meth:`Session.trace_arrays`) to an NPZ file, atomically.

    The one writer of the trace format: ``python -m gptviz trace`` and :func:`trace_npz` both
    use it. The file loads with ``numpy.load(path)`` without pickle.

    Raises
    ------
    ValueError
        A key of the schema is missing or an array would need pickle (object dtype).
    OSError
        The file cannot be written.
    """
    missing = [k for k in TRACE_DATA_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"trace arrays lack {', '.join(missing)}")
    arrs = {k: np.asarray(v) for k, v in arrays.items()}
    bad = [k for k, v in arrs.items() if v.dtype.hasobject]
    if bad:
        raise ValueError(f"trace arrays {', '.join(bad)} have object dtype (would need pickle)")
    shape = arrs["attention"].shape
    odd = [k for k in TRACE_EXTRA_KEYS if k in arrs and arrs[k].shape != shape]
    if odd:
        raise ValueError(f"trace arrays {', '.join(odd)} must have the attention's shape "
                         f"{list(shape)}")
    # A file object: numpy then keeps the name as given (no ".npz" appended).
    return atomic_write(path, lambda f: np.savez(f, allow_pickle=False, **arrs))


def trace_npz(path: str | os.PathLike[str], session: Session) -> dict[str, np.ndarray]:
    """Write the session's window as a trace NPZ (same schema as ``python -m gptviz trace``).

    Runs one full forward over the window (:meth:`Session.trace_arrays`, with the session's
    ablation), so call it from a worker thread on big models.

    Returns
    -------
    dict
        The arrays written.
    """
    from gptviz.io.provenance import trace_file_arrays

    arrays = trace_file_arrays(session)
    write_trace_npz(path, arrays)
    return arrays
