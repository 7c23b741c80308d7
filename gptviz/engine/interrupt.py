"""Stopping a long computation from outside, between two of its pieces.

A caller that may have to stop (the app's worker thread when the window closes, a cancelled
session open) runs its work inside :func:`interruptible`, giving a check (``should_stop() ->
bool``, typically ``threading.Event.is_set``). The long loops of the engine call
:func:`check_interrupt` between their pieces (a block of queries of a prefill, a replayed
token): when a check of the current thread says stop, it raises :class:`Interrupted`.

:class:`Interrupted` is a ``BaseException`` (like ``KeyboardInterrupt``), so that the
``except Exception`` of code in between (an analysis reporting its own failure) lets it
through. The object being computed is left half-done: the caller only interrupts work whose
result it throws away (a window being closed, a session being built).

A single forward of a big model over a long text can take seconds. While
:func:`module_checks` is held, every torch module's forward (on any thread) first calls
:func:`check_interrupt`, through a global forward pre-hook, so such a forward stops at its next
module too. It costs nothing to code outside an :func:`interruptible` scope, and nothing at
all once released: the hook is registered only while some caller holds it (a window closing,
a session open that can be cancelled), never left behind.

A backward pass (one autograd call) runs no module's forward: a forward run inside
:func:`backward_checks` leaves a check on each module's output, which the backward meets as it
passes that module, so it too stops within one module's gradient.

A call that cannot be interrupted at all (reading a big weight file, one long torch call) goes
through :func:`call_aside`: it runs on a thread of its own, with the caller's checks, while the
caller waits for it *and* looks at its checks every few milliseconds. An interrupted caller
returns at once; the call goes on aside until its own next check (or its end) and its result
is dropped. Python waits for such calls when it exits (never a thread killed inside torch).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["Interrupted", "aside_running", "backward_checks", "call_aside", "check_interrupt",
           "hold_module_checks", "interruptible", "module_checks", "release_module_checks",
           "wait_for_aside"]


class Interrupted(BaseException):  # noqa: N818 - the name says what happened, as KeyboardInterrupt
    """A long computation was stopped by a check of :func:`interruptible`."""


_local = threading.local()
_hook_lock = threading.Lock()
_hook_holders = 0
_hook_handle: Any = None
#: The calls of :func:`call_aside` still running (waited for when Python exits).
_aside: set[threading.Thread] = set()
#: How often a caller waiting in :func:`call_aside` looks at its checks (s).
POLL_S = 0.02


def _checks() -> list[Callable[[], bool]]:
    checks = getattr(_local, "checks", None)
    if checks is None:
        checks = _local.checks = []
    return checks


@contextmanager
def interruptible(should_stop: Callable[[], bool]) -> Iterator[None]:
    """Run the ``with`` body so that :func:`check_interrupt` on this thread raises
    :class:`Interrupted` once ``should_stop()`` is true (nested scopes add their checks)."""
    checks = _checks()
    checks.append(should_stop)
    try:
        yield
    finally:
        checks.remove(should_stop)


def check_interrupt() -> None:
    """Raise :class:`Interrupted` when a check of the current thread's
    :func:`interruptible` scopes says stop (nothing outside a scope).

    Raises
    ------
    Interrupted
    """
    checks = getattr(_local, "checks", None)
    if checks and any(check() for check in checks):
        raise Interrupted


def _before_forward(module: Any, args: Any) -> None:
    check_interrupt()


def hold_module_checks() -> None:
    """Make every module's forward call :func:`check_interrupt` first, until the matching
    :func:`release_module_checks` (holds are counted; one hook serves them all)."""
    global _hook_holders, _hook_handle
    from torch.nn.modules.module import register_module_forward_pre_hook

    with _hook_lock:
        _hook_holders += 1
        if _hook_handle is None:
            _hook_handle = register_module_forward_pre_hook(_before_forward)


def release_module_checks() -> None:
    """Release one :func:`hold_module_checks`; the last one removes the hook."""
    global _hook_holders, _hook_handle
    with _hook_lock:
        _hook_holders = max(0, _hook_holders - 1)
        if _hook_holders == 0 and _hook_handle is not None:
            _hook_handle.remove()
            _hook_handle = None


@contextmanager
def module_checks() -> Iterator[None]:
    """:func:`hold_module_checks` for the ``with`` body."""
    hold_module_checks()
    try:
        yield
    finally:
        release_module_checks()


@contextmanager
def backward_checks(module: Any) -> Iterator[None]:
    """Make a backward pass through the forwards of ``module`` (and its submodules) run in
    the ``with`` body stop at its next module once a check of the current thread's
    :func:`interruptible` scopes says stop.

    Each module's output that needs a gradient gets a gradient hook that asks the checks
    (those of the thread entering the body: autograd may run the hook on a thread of its
    own) and raises :class:`Interrupted`; it leaves the gradient as it is. Nothing is
    registered outside an interruptible scope, and the modules' forward hooks are removed at
    the end of the body (the gradient hooks go with the graph).
    """
    checks = list(_checks())
    if not checks:
        yield
        return

    def check(_grad: Any) -> None:
        if any(c() for c in checks):
            raise Interrupted

    def after_forward(_module: Any, _args: Any, out: Any) -> None:
        for t in out if isinstance(out, tuple) else (out,):
            if getattr(t, "requires_grad", False) and hasattr(t, "register_hook"):
                t.register_hook(check)

    handles = [m.register_forward_hook(after_forward) for m in module.modules()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def call_aside(fn: Callable[..., T], *args: Any,
               while_waiting: Callable[[], None] | None = None,
               join_if: Callable[[], bool] | None = None, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a thread of its own, under the calling thread's checks;
    returns its result or raises its exception.

    ``while_waiting()`` is called on the calling thread at every look (and once at the end):
    where the call's progress is passed on, so that nothing but the caller's thread touches
    the caller's objects (a Qt object may be gone by the time an abandoned call goes on).

    The module checks (:func:`hold_module_checks`) are held for the call's whole life, so an
    abandoned call stops at its next torch module, not only at its own checks. ``join_if()``,
    asked when the caller is interrupted: wait for the call to stop before raising (a call
    that runs forwards on a model the caller goes on using must not outlive the wait).

    Raises
    ------
    Interrupted
        A check of the caller said stop while it waited (looked at every :data:`POLL_S`):
        the caller gets it at once (after the call stopped, when ``join_if()``); ``fn`` goes
        on until its own next :func:`check_interrupt` or its end, and what it gives is
        dropped.
    """
    checks = list(_checks())
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            with ExitStack() as stack:
                for check in checks:
                    stack.enter_context(interruptible(check))
                box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e
        finally:
            release_module_checks()
            done.set()
            _aside.discard(threading.current_thread())

    thread = threading.Thread(target=run, name=f"gptviz-aside-{getattr(fn, '__name__', 'call')}",
                              daemon=True)
    _aside.add(thread)
    hold_module_checks()  # released by the call itself when it ends
    thread.start()
    try:
        while not done.wait(POLL_S):
            if while_waiting is not None:
                while_waiting()
            check_interrupt()
    except Interrupted:
        if join_if is not None and join_if():
            thread.join()
        raise
    if while_waiting is not None:
        while_waiting()
    if "error" in box:
        raise box["error"]
    return box["value"]


def wait_for_aside() -> None:
    """Wait until no call of :func:`call_aside` runs any more (an abandoned one ends at its
    next check), under the calling thread's checks: a new load does not start beside an
    abandoned one that still holds its model.

    Raises
    ------
    Interrupted
        A check of the caller said stop meanwhile.
    """
    while True:
        running = [t for t in list(_aside) if t.is_alive()]
        if not running:
            return
        running[0].join(POLL_S)
        check_interrupt()


def aside_running() -> bool:
    """Whether a call of :func:`call_aside` still runs (an abandoned one, once its caller
    was interrupted)."""
    return any(t.is_alive() for t in list(_aside))


@atexit.register
def _join_aside() -> None:
    """When Python exits: let the calls still running aside end (none is killed midway)."""
    for thread in list(_aside):
        thread.join()
