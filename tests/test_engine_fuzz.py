"""A bounded fuzz of the engine: random sequences of steps, forced tokens, undo, redo, goto,
reset, undo-reset, new prompts and sampling settings (valid and hostile) on a tiny model whose
context is short enough that the window slides.

After every operation the session is checked against a plain model of what it should hold
(the tokens, the redo stack) and against the model itself, run from scratch on the window's
tokens with ``GPT.forward`` (never the engine's own buffers): the attention of every layer
and head, and the next-token distribution. A hostile value is one clear ``ValueError`` and
leaves the session as it was.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from gptviz.engine.sampling import SamplingSettings
from gptviz.engine.session import Session

# Derandomized and bounded: the same sequences every run, a few seconds in all
# (GPTVIZ_FUZZ_EXAMPLES scales it for a longer hunt).
FUZZ = settings(max_examples=int(os.environ.get("GPTVIZ_FUZZ_EXAMPLES", "60")),
                stateful_step_count=14, deadline=None, database=None,
                derandomize=True, suppress_health_check=[HealthCheck.too_slow])

BLOCK = 12  # short, so that steps cross the stride (6) and the window slides

# Text the tiny tokenizer sees as a few tokens, and text that it must refuse or clean.
PROMPTS = st.one_of(
    st.text(alphabet=st.sampled_from("ab c\n\té😀.,"), min_size=1, max_size=30),
    st.sampled_from(["", "\udc80", "x\ud800y", "\x00", "a" * 40]),
)

# Every kind of sampling value a user, a session file or a fuzzer can give.
ODD_NUMBERS = st.sampled_from([0, -1, 1e-40, 1e-7, 1e300, math.inf, -math.inf, math.nan,
                               "2", None, True, 2.5, 10**30])
TEMPERATURES = st.one_of(st.floats(0.05, 5.0), ODD_NUMBERS)
TOP_KS = st.one_of(st.integers(0, 400), ODD_NUMBERS)
TOP_PS = st.one_of(st.floats(0.01, 1.0), ODD_NUMBERS)
SEEDS = st.one_of(st.integers(0, 2**31), ODD_NUMBERS)


@pytest.fixture(scope="module")
def bundle(tiny_tokenizer):
    from tests.conftest import _tiny_bundle

    return _tiny_bundle(tiny_tokenizer, seed=3, block_size=BLOCK)


def reference(bundle, window: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The model run from scratch on ``window``: attention ``(L, H, T, T)`` and the next-token
    probabilities after its last token."""
    model = bundle.model
    with torch.no_grad():
        out = model(torch.tensor([window]), return_attn=True)
    att = torch.stack([a[0] for a in out.attentions]).float().numpy()  # (L, H, T, T)
    probs = torch.softmax(out.logits[0, -1].double(), dim=-1).numpy()  # (V,)
    return att, probs


class EngineMachine(RuleBasedStateMachine):
    """Drives one Session; ``tokens``/``undone`` are the plain model of what it must hold."""

    bundle = None  # set per test

    @initialize(prompt=st.text(alphabet=st.sampled_from("ab c."), min_size=1, max_size=8))
    def start(self, prompt):
        self.session = Session(self.bundle, prompt)
        self.tokens = list(self.session.tokens)
        self.undone: list[int] = []  # the redo stack, next token to redo last
        self.aside: tuple[list[int], list[int]] | None = None  # what a reset put aside
        self.n_prompt = self.session.prompt_len

    # ------------------------------------------------------------------ operations
    @rule()
    def step(self):
        r = self.session.step()
        assert 0 <= r.token_id < self.session.n_choosable
        assert 0.0 < r.prob <= 1.0
        self.tokens.append(r.token_id)
        self.undone, self.aside = [], None

    @rule(token=st.integers(-3, 400))
    def force(self, token):
        if 0 <= token < self.session.n_choosable:
            r = self.session.step(force=token)
            assert r.token_id == token and r.forced
            self.tokens.append(token)
            self.undone, self.aside = [], None
        else:
            with pytest.raises(ValueError):
                self.session.step(force=token)

    @rule(n=st.integers(0, 6))
    def undo(self, n):
        k = self.session.undo(n)
        assert k == min(n, len(self.tokens) - self.n_prompt)
        for _ in range(k):
            self.undone.append(self.tokens.pop())

    @rule(n=st.integers(0, 6))
    def redo(self, n):
        k = self.session.redo(n)
        assert k == min(n, len(self.undone))
        for _ in range(k):
            self.tokens.append(self.undone.pop())

    @rule(data=st.data())
    def goto(self, data):
        top = len(self.tokens) - self.n_prompt + len(self.undone)
        target = data.draw(st.integers(-1, top + 1))
        if 0 <= target <= top:
            self.session.goto(target)
            while len(self.tokens) - self.n_prompt > target:
                self.undone.append(self.tokens.pop())
            while len(self.tokens) - self.n_prompt < target:
                self.tokens.append(self.undone.pop())
        else:
            with pytest.raises(ValueError):
                self.session.goto(target)

    @rule()
    def reset(self):
        self.session.reset()
        if len(self.tokens) > self.n_prompt or self.undone:
            self.aside = (self.tokens[self.n_prompt:], list(self.undone))
        self.tokens = self.tokens[:self.n_prompt]
        self.undone = []

    @rule()
    def undo_reset(self):
        self.session.undo_reset()
        if self.aside is not None:
            kept, undone = self.aside
            self.tokens = self.tokens[:self.n_prompt] + kept
            self.undone = undone
            self.aside = None

    @rule(prompt=PROMPTS)
    def set_prompt(self, prompt):
        before = list(self.session.tokens)
        try:
            self.session.set_prompt(prompt)
        except ValueError as e:  # one clear line, the session untouched
            assert "\n" not in str(e) and str(e)
            assert self.session.tokens == before
            return
        self.tokens = list(self.session.tokens)
        self.n_prompt = self.session.prompt_len
        self.undone, self.aside = [], None

    @rule(greedy=st.booleans(), temperature=TEMPERATURES, top_k=TOP_KS, top_p=TOP_PS,
          seed=SEEDS)
    def set_settings(self, greedy, temperature, top_k, top_p, seed):
        before = self.session.settings
        try:
            s = SamplingSettings(greedy=greedy, temperature=temperature, top_k=top_k,
                                 top_p=top_p, seed=seed)
        except ValueError as e:
            assert "\n" not in str(e) and str(e)
            assert self.session.settings == before
            return
        self.session.set_settings(s)
        assert self.session.settings == s

    # ------------------------------------------------------------------ invariants
    @invariant()
    def holds_what_it_should(self):
        s = self.session
        assert s.tokens == self.tokens
        assert [r.token_id for r in s.redo_stack] == self.undone[::-1]  # next to redo first
        assert s.n_generated == len(self.tokens) - self.n_prompt == len(s.history)
        assert [r.token_id for r in s.history] == self.tokens[self.n_prompt:]
        assert s.can_redo == bool(self.undone)
        window = s.window_tokens
        assert len(window) <= BLOCK and window == self.tokens[s.window_start:]

    @invariant()
    def shows_what_the_model_computes(self):
        s = self.session
        att_ref, probs_ref = reference(self.bundle, s.window_tokens)
        att = s.attention()
        assert att.shape == att_ref.shape
        np.testing.assert_allclose(att, att_ref, atol=2e-5)
        T = att.shape[-1]
        assert np.all(att[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)
        ids, probs, _ = s.next_distribution()
        np.testing.assert_allclose(probs, probs_ref[ids], atol=2e-5)


def test_engine_fuzz(bundle):
    """Random operation sequences: the session always holds what the model computes."""
    EngineMachine.bundle = bundle
    try:
        run_state_machine_as_test(EngineMachine, settings=FUZZ)
    finally:
        EngineMachine.bundle = None
