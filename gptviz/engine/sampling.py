"""Sampling the next token: greedy, temperature, top-k, top-p, and reproducible seeds.

Reproducibility does not depend on how a session got to a position: the random draw for the
token at global position ``t`` uses a generator seeded from ``(seed, t)`` only
(:func:`step_generator`). Sampling at position ``t`` is therefore a pure function of the seed,
the position and the filtered distribution, so undo/redo, changing the settings midway, or
replaying a session all give the same tokens for the same inputs.

Examples
--------
>>> s = SamplingSettings(temperature=0.8, top_k=40, seed=1)
>>> probs = filter_probs(logits, s)                      # doctest: +SKIP
>>> token = sample(probs, step_generator(s.seed, 12))    # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import math
import numbers
from dataclasses import dataclass

import torch

__all__ = [
    "SamplingSettings", "filter_probs", "sample", "choose", "step_generator",
    "add_sampling_args", "settings_from_args",
]

_MASK64 = (1 << 64) - 1
#: Seeds are limited to what ``torch.Generator.manual_seed`` takes without wrapping.
MAX_SEED = (1 << 63) - 1
#: Smallest temperature: below it logits / temperature leave float32's range (inf, then NaN).
MIN_TEMPERATURE = 1e-6


@dataclass(frozen=True)
class SamplingSettings:
    """How the next token is chosen from the model's distribution.

    Parameters
    ----------
    greedy
        Always take the most probable token (the other fields are then ignored).
    temperature
        Divides the logits before the softmax; must be finite and at least
        :data:`MIN_TEMPERATURE`.
    top_k
        Keep only the ``top_k`` most probable tokens; 0 turns the filter off.
    top_p
        Nucleus sampling: keep the smallest set of most probable tokens whose probability
        mass reaches ``top_p``; must be in (0, 1], 1 turns the filter off.
    seed
        Non-negative integer seed; the draw at position ``t`` depends only on ``(seed, t)``.

    Raises
    ------
    ValueError
        On construction, when a value is out of range (see :meth:`validate`).
    """

    greedy: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the first bad one."""
        if not isinstance(self.greedy, (bool, numbers.Integral)):
            raise ValueError(f"greedy must be true or false (got {self.greedy!r})")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t) or t <= 0:
            hint = "; temperature 0 is greedy decoding: set greedy (--greedy)" if t == 0 else ""
            raise ValueError(f"temperature must be a finite number > 0 (got {t!r}){hint}")
        if t < MIN_TEMPERATURE:  # logits / t would overflow float32 (use greedy instead)
            raise ValueError(f"temperature must be at least {MIN_TEMPERATURE:g}; use greedy "
                             f"decoding for the limit (got {t!r})")
        k = self.top_k
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
            raise ValueError(f"top_k must be an integer >= 0, 0 meaning off (got {k!r})")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not (0.0 < p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], 1 meaning off (got {p!r})")
        s = self.seed
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or not 0 <= s <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, 2**63 - 1] (got {s!r})")

    def describe(self) -> str:
        """Short human-readable summary, e.g. ``"T=0.8 top-k=40 seed=1"``."""
        if self.greedy:
            return "greedy"
        parts = [f"T={self.temperature:g}"]
        if self.top_k:
            parts.append(f"top-k={self.top_k}")
        if self.top_p < 1.0:
            parts.append(f"top-p={self.top_p:g}")
        parts.append(f"seed={self.seed}")
        return " ".join(parts)


def filter_probs(logits: torch.Tensor, s: SamplingSettings) -> torch.Tensor:
    """The distribution a token is actually drawn from, after the sampling filters.

    Parameters
    ----------
    logits
        ``(..., V)`` next-token logits.
    s
        The sampling settings.

    Returns
    -------
    torch.Tensor
        ``(..., V)`` float32 probabilities summing to 1 along the last axis. Greedy gives a
        one-hot at the argmax (the first one on ties). Otherwise: logits / temperature, then
        exactly the ``top_k`` largest kept (ties at the boundary broken by ``torch.topk``), then
        the smallest prefix of the sorted distribution whose mass reaches ``top_p`` (the most
        probable token is always kept), renormalised.
    """
    logits = logits.float()
    V = logits.shape[-1]
    if s.greedy:
        out = torch.zeros_like(logits)
        return out.scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
    z = logits / float(s.temperature)
    if 0 < s.top_k < V:
        vals, idx = torch.topk(z, int(s.top_k), dim=-1)
        z = torch.full_like(z, float("-inf")).scatter_(-1, idx, vals)
    probs = torch.softmax(z, dim=-1)
    if s.top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass strictly before each token
        drop_sorted = before >= s.top_p  # the first token has 0 before it: always kept
        drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def step_generator(seed: int, position: int) -> torch.Generator:
    """A CPU generator for the draw at global ``position``, seeded from ``(seed, position)``.

    The two integers are mixed with SplitMix64 so that nearby seeds and positions give
    unrelated streams.
    """
    x = (int(seed) * 0x9E3779B97F4A7C15 + int(position) + 1) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    x ^= x >> 31
    g = torch.Generator(device="cpu")
    g.manual_seed(x & MAX_SEED)
    return g


def sample(probs: torch.Tensor, generator: torch.Generator) -> int:
    """Draw one token id from a 1-D distribution ``probs`` ``(V,)`` with ``generator``."""
    if probs.dim() != 1:
        raise ValueError(f"sample expects a 1-D distribution, got shape {tuple(probs.shape)}")
    return int(torch.multinomial(probs.detach().float().cpu(), 1, generator=generator).item())


def choose(logits: torch.Tensor, s: SamplingSettings, position: int) -> int:
    """Pick the token at global ``position`` from 1-D ``logits`` ``(V,)`` under settings ``s``.

    Greedy is the argmax with no random draw; otherwise :func:`sample` from
    :func:`filter_probs` with :func:`step_generator` ``(s.seed, position)``.
    """
    if s.greedy:
        return int(torch.argmax(logits).item())
    return sample(filter_probs(logits, s), step_generator(s.seed, position))


# ---------------------------------------------------------------------- command line
def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--greedy | --temperature --top-k --top-p`` and ``--seed`` to a command."""
    g = parser.add_argument_group("sampling")
    g.add_argument("--greedy", action="store_true", help="always take the most probable token")
    g.add_argument("--temperature", type=float, default=None,
                   help="softmax temperature (> 0, default 1)")
    g.add_argument("--top-k", type=int, default=None,
                   help="keep the K most probable tokens (0 = off)")
    g.add_argument("--top-p", type=float, default=None, help="nucleus mass in (0, 1] (1 = off)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def settings_from_args(args: argparse.Namespace) -> SamplingSettings:
    """Build :class:`SamplingSettings` from parsed arguments; ``ValueError`` on bad values."""
    given = [name for name in ("temperature", "top_k", "top_p") if getattr(args, name) is not None]
    if args.greedy and given:
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        raise ValueError(f"--greedy cannot be combined with {flags}")
    return SamplingSettings(
        greedy=bool(args.greedy),
        temperature=1.0 if args.temperature is None else args.temperature,
        top_k=0 if args.top_k is None else args.top_k,
        top_p=1.0 if args.top_p is None else args.top_p,
        seed=args.seed,
    )
