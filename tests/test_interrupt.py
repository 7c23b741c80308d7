"""Stopping long computations from outside (gptviz.engine.interrupt): the checks, the engine's
loops that look at them (a prefill's blocks of queries, a session file's replay), the
module-level checks that stop one forward midway, and calls run aside."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from gptviz.engine.interrupt import (
    Interrupted,
    backward_checks,
    call_aside,
    check_interrupt,
    interruptible,
    module_checks,
)
from gptviz.engine.session import Session
from gptviz.io.session_file import read_session_file, restore_session, save_session


def global_pre_hooks() -> int:
    from torch.nn.modules import module

    return len(module._global_forward_pre_hooks)


class After:
    """A check that says stop from its ``n``-th call on (counting its calls)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls >= self.n


def test_checks_raise_only_inside_a_scope_that_says_stop():
    check_interrupt()  # no scope: nothing
    with interruptible(lambda: False):
        check_interrupt()
        with interruptible(lambda: True), pytest.raises(Interrupted):
            check_interrupt()
        check_interrupt()  # the inner scope is gone
    # Interrupted is no Exception: an analysis's own "except Exception" lets it through
    assert not issubclass(Interrupted, Exception)


def test_checks_belong_to_their_thread():
    raised = []

    def other() -> None:
        try:
            check_interrupt()
        except Interrupted:
            raised.append(True)

    with interruptible(lambda: True):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert raised == []


def test_a_prefill_stops_between_its_blocks_of_queries(tiny_bundle_factory, monkeypatch):
    import gptviz.engine.window as window

    bundle = tiny_bundle_factory(block_size=64)
    s = Session(bundle, [1, 2, 3])
    monkeypatch.setattr(window, "chunk_rows", lambda *a, **k: 16)  # 64 tokens: 4 blocks
    forwards = []
    handle = bundle.model.register_forward_hook(lambda *a: forwards.append(1))
    try:
        stop = After(2)  # lets the first block run, stops before the second
        with interruptible(stop), pytest.raises(Interrupted):
            s.set_prompt(list(range(1, 65)))
    finally:
        handle.remove()
    assert len(forwards) == 1 and stop.calls == 2


def test_module_checks_stop_one_forward_at_its_next_module(tiny_bundle):
    model = tiny_bundle.model
    ran: list[str] = []
    handles = [m.register_forward_hook(lambda m, a, o, name=name: ran.append(name))
               for name, m in model.named_modules() if name]
    idx = torch.tensor([[1, 2, 3, 4]])
    try:
        model(idx)
        every = len(ran)
        ran.clear()
        assert global_pre_hooks() == 0
        with module_checks(), interruptible(After(4)), pytest.raises(Interrupted):
            model(idx)
        assert 0 < len(ran) < every  # stopped midway through the forward
        assert global_pre_hooks() == 0  # released: no hook left behind
        ran.clear()
        with module_checks():  # held, but no scope says stop: the forward runs whole
            model(idx)
        assert len(ran) == every
    finally:
        for h in handles:
            h.remove()
    assert global_pre_hooks() == 0


def test_a_backward_pass_stops_at_its_next_module(tiny_bundle):
    """Saliency's backward pass (one autograd call) looks at the caller's checks at each
    module it passes; outside a scope, or with checks that never say stop, the gradients
    are the same as without, and no module keeps a hook."""
    import numpy as np

    from gptviz.analysis.saliency import saliency

    model = tiny_bundle.model
    ids = [1, 5, 9, 14, 3, 7, 2]
    plain = saliency(model, ids, position=-2)
    never = After(10**9)
    with interruptible(never):
        checked = saliency(model, ids, position=-2)
    np.testing.assert_array_equal(checked.scores, plain.scores)
    np.testing.assert_array_equal(checked.signed, plain.signed)
    assert never.calls > 0  # the backward asked the checks

    # no module checks held: the forward asks nothing, so the checks asked are the backward's
    stop = After(3)
    with interruptible(stop), pytest.raises(Interrupted):
        saliency(model, ids, position=-2)
    assert stop.calls == 3  # stopped at the third module the backward passed
    assert all(not m._forward_hooks for m in model.modules())


def test_backward_checks_register_nothing_outside_a_scope(tiny_bundle):
    model = tiny_bundle.model
    with backward_checks(model):
        assert all(not m._forward_hooks for m in model.modules())
    with interruptible(lambda: False), backward_checks(model):
        assert model._forward_hooks
    assert all(not m._forward_hooks for m in model.modules())


def test_restoring_a_session_stops_between_replayed_tokens(tmp_path, tiny_bundle):
    s = Session(tiny_bundle, "Once upon a time")
    s.generate(12)
    path = tmp_path / "s.gptviz.json"
    save_session(path, s, tiny_bundle)
    data = read_session_file(path)
    seen = []
    stop = After(6)
    with interruptible(stop), pytest.raises(Interrupted):
        restore_session(data, tiny_bundle, progress=lambda i, n: seen.append(i))
    assert seen == [1, 2, 3, 4]  # check 1 before the prompt's prefill block, then per token
    # the same file restores whole afterwards
    r, _ = restore_session(data, tiny_bundle)
    assert r.tokens == s.tokens


def test_call_aside_returns_raises_and_is_interrupted_at_once():
    assert call_aside(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(ValueError, match="bad"):
        call_aside(lambda: (_ for _ in ()).throw(ValueError("bad")))

    release = threading.Event()
    inner_checks = []

    def long_call() -> str:
        release.wait(30)  # one call that cannot look at any check
        try:
            check_interrupt()  # the caller's checks came along
        except Interrupted:
            inner_checks.append("stopped")
            raise
        return "done"

    flag = threading.Event()
    threading.Timer(0.05, flag.set).start()
    with interruptible(flag.is_set), pytest.raises(Interrupted):
        call_aside(long_call)  # the caller is back while the call still runs
    assert not release.is_set()
    release.set()
    for _ in range(500):
        if inner_checks:
            break
        time.sleep(0.01)
    assert inner_checks == ["stopped"]
