"""Gradient saliency: how much each input token's embedding moves one prediction.

The function explained is ``f(E) = log p(target | ids[:position + 1])``, the log-probability
the model gives ``target`` after ``position``, as a function of the input *token* embeddings
``E`` (``[T, C]``, the rows ``W_e[ids]``; the positional embeddings are kept as they are, not
attributed). Gradients come from autograd through the model's own modules
(:meth:`GPT.forward_from` on ``E + W_p``, the same operations as :meth:`GPT.forward`).

``"grad"`` — input × gradient (Shrikumar et al., 2016/2017, "Learning Important Features
Through Propagating Activation Differences"; the gradient saliency of Simonyan et al., 2014,
"Deep Inside Convolutional Networks"): ``A = E ⊙ ∂f/∂E``.

``"ig"`` — integrated gradients (Sundararajan et al., 2017, "Axiomatic Attribution for Deep
Networks") from the baseline ``E' = 0`` (all token embeddings zero, positions kept):
``A = E ⊙ ∫_0^1 ∂f/∂E (α E) dα``, the integral by the trapezoidal rule over ``steps``
intervals (``steps + 1`` gradients, a few at a time: :func:`ig_batch`). Completeness:
``Σ A = f(E) − f(0)`` up to the quadrature error, which is reported (``completeness_gap``)
and shrinks with more steps.

A token's saliency is the L2 norm of its row of ``A`` (``[T]``, what the chips show); the
signed row sums ``Σ_c A[t, c]`` are returned too (they add up to the completeness sum).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from gptviz.analysis.query_run import check_position, model_device
from gptviz.engine.interrupt import backward_checks

if TYPE_CHECKING:
    from gptviz.model.gpt import GPT, Ablation

__all__ = ["SaliencyMethod", "Saliency", "token_logprob_fn", "saliency", "METHODS", "ig_batch"]

SaliencyMethod = Literal["grad", "ig"]
METHODS: tuple[str, ...] = ("grad", "ig")
#: Interpolation points run through the model at once, at most (memory: this many copies of
#: the text, each keeping its attention maps for the backward pass) ...
IG_BATCH = 16
#: ... and at most this many attention probabilities kept for one batch (64 M floats, 256 MB
#: in float32: one copy of GPT-2 small at 512 tokens holds 38 M).
IG_ATTENTION_BUDGET = 64 << 20


@dataclass
class Saliency:
    """The saliency of every input token for one prediction.

    Attributes
    ----------
    method
        ``"grad"`` or ``"ig"``.
    position
        The position whose next-token prediction is explained.
    target
        The token whose log-probability is explained.
    value
        ``f(E)``: its log-probability (natural log).
    scores
        ``[position + 1]`` float64: each token's L2 norm of its attribution row.
    signed
        ``[position + 1]`` float64: each token's attribution summed over the embedding.
    steps
        Integration steps (``"ig"``; 0 for ``"grad"``).
    baseline_value
        ``f(0)`` (``"ig"``), else ``None``.
    completeness_gap
        ``Σ A − (f(E) − f(0))`` (``"ig"``), else ``None``.
    """

    method: str
    position: int
    target: int
    value: float
    scores: np.ndarray
    signed: np.ndarray
    steps: int = 0
    baseline_value: float | None = None
    completeness_gap: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def attribution_sum(self) -> float:
        """``Σ A`` over tokens and embedding dimensions."""
        return float(self.signed.sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (arrays as lists)."""
        d: dict[str, Any] = {
            "method": self.method, "position": int(self.position), "target": int(self.target),
            "logprob": float(self.value), "scores": [float(v) for v in self.scores],
            "signed": [float(v) for v in self.signed], "attribution_sum": self.attribution_sum,
        }
        if self.method == "ig":
            d.update(steps=int(self.steps), baseline_logprob=self.baseline_value,
                     completeness_gap=self.completeness_gap)
        return d


def token_logprob_fn(model: GPT, ids: torch.Tensor, target: int,
                     ablation: Ablation | None = None):
    """``f``: token embeddings ``(B, T, C)`` -> ``(B,)`` log-probability of ``target`` after
    the last of the ``T`` positions (positional embeddings of ``ids``' positions added)."""
    T = ids.shape[0]
    device = model_device(model)
    pos_emb = (model.wpe(torch.arange(T, device=device)) if model.wpe is not None
               else None)  # (T, C)

    def f(e: torch.Tensor) -> torch.Tensor:
        x = e if pos_emb is None else e + pos_emb  # (B, T, C)
        out = model.forward_from(model.drop(x), 0, ablation=ablation, last_only=True)
        return out.logits[:, -1].float().log_softmax(-1)[:, target]  # (B,)

    return f


def ig_batch(n_layer: int, n_head: int, T: int) -> int:
    """Interpolation points per batch for a text of ``T`` tokens (see :data:`IG_BATCH`)."""
    per_copy = max(1, n_layer * n_head * T * T)
    return max(1, min(IG_BATCH, IG_ATTENTION_BUDGET // per_copy))


def _ig_gradients(f, e: torch.Tensor, steps: int, batch: int = IG_BATCH
                  ) -> tuple[torch.Tensor, float]:
    """Trapezoid-weighted mean of ``∂f/∂E`` at ``α E``, α = 0, 1/steps, .., 1 -> ``((T, C),
    f(0))``; ``batch`` points per pass."""
    alphas = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    weights = torch.full((steps + 1,), 1.0 / steps, dtype=torch.float64)
    weights[0] = weights[-1] = 0.5 / steps
    total = torch.zeros_like(e, dtype=torch.float64)  # (T, C)
    f0 = 0.0
    for b0 in range(0, steps + 1, batch):
        a = alphas[b0:b0 + batch].to(e.device, e.dtype)
        x = (a.view(-1, 1, 1) * e.detach()).requires_grad_(True)  # (b, T, C)
        y = f(x)  # (b,)
        (g,) = torch.autograd.grad(y.sum(), x)  # rows are independent: one backward
        w = weights[b0:b0 + batch].to(e.device)
        total += (g.double() * w.view(-1, 1, 1)).sum(0)
        if b0 == 0:
            f0 = float(y[0].detach())
    return total, f0


def saliency(model: GPT, ids: Sequence[int] | np.ndarray | torch.Tensor, position: int = -1,
             target: int | None = None, method: str = "grad", steps: int = 32,
             ablation: Ablation | None = None) -> Saliency:
    """Input × gradient or integrated gradients of one next-token log-probability with
    respect to the token embeddings (see the module docstring).

    Parameters
    ----------
    model
        The GPT (its training flag is restored; gradients only for the embeddings).
    ids
        ``[T]`` token ids; only ``ids[:position + 1]`` is read.
    position
        The position whose prediction is explained (negative counts from the end).
    target
        The token; default ``ids[position + 1]`` when the text goes on, else the model's most
        probable next token.
    method
        ``"grad"`` or ``"ig"``.
    steps
        Integration steps for ``"ig"`` (1..1024).
    ablation
        Heads removed while explaining.

    Returns
    -------
    Saliency
    """
    if method not in METHODS:
        raise ValueError(f"saliency method must be one of {', '.join(METHODS)} (got {method!r})")
    steps = int(steps)
    if method == "ig" and not 1 <= steps <= 1024:
        raise ValueError(f"integrated gradients need 1..1024 steps (got {steps})")
    ids_t, pos = check_position(ids, position)
    device = model_device(model)
    prefix = ids_t[:pos + 1].to(device)  # (T,)
    V = model.config.vocab_size
    was_training = model.training
    model.eval()
    try:
        # the backward pass (seconds on a long text) stops at its next module when the
        # caller is interrupted (the window closing), as the forwards do
        with torch.inference_mode(False), torch.enable_grad(), backward_checks(model):
            e = model.wte(prefix).detach()  # (T, C)
            if target is None:
                if pos + 1 < ids_t.shape[0]:
                    target = int(ids_t[pos + 1])
                else:
                    with torch.no_grad():
                        target = int(model(prefix[None], last_only=True).logits[0, -1].argmax())
            if not 0 <= int(target) < V:
                raise ValueError(f"target token {target} is outside the vocabulary (0..{V - 1})")
            f = token_logprob_fn(model, prefix, int(target), ablation)
            if method == "grad":
                x = e[None].clone().requires_grad_(True)  # (1, T, C)
                y = f(x)
                (g,) = torch.autograd.grad(y.sum(), x)
                attr = e.double() * g[0].double()  # (T, C)
                value, f0, gap = float(y[0].detach()), None, None
            else:
                cfg = model.config
                mean_grad, f0 = _ig_gradients(f, e, steps,
                                              ig_batch(cfg.n_layer, cfg.n_head, e.shape[0]))
                attr = e.double() * mean_grad  # (T, C)
                with torch.no_grad():
                    value = float(f(e[None])[0])
                gap = float(attr.sum()) - (value - f0)
    finally:
        model.train(was_training)
    return Saliency(method=method, position=pos, target=int(target), value=value,
                    scores=attr.norm(dim=-1).cpu().numpy(), signed=attr.sum(-1).cpu().numpy(),
                    steps=steps if method == "ig" else 0, baseline_value=f0,
                    completeness_gap=gap)
