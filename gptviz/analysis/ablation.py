"""Head ablation: remove heads from the model and measure what changes.

An ablated head's output ``z`` (``[T, hd]``, before the layer's output projection ``c_proj``)
is replaced by

* ``"zero"``: zeros, so the head adds nothing but ``c_proj``'s bias share, which it never
  owned (the bias is added once per layer, whatever the heads do);
* ``"mean"``: the head's output averaged over positions, measured on the clean (un-ablated)
  model — the head keeps its average contribution, loses what depends on the position. The
  means are *causal*: over the positions up to the one whose prediction is compared
  (``0 .. position``), so that a later token never changes the effect at an earlier position;
  or over a reference text the caller picks (``means=head_output_means(model, reference)``).

Re-running after a change only needs the layers from the first ablated one on: the keys and
values of every layer up to and including it depend only on the residual stream before it,
which the ablation does not touch. :func:`rerun_from_layer` does exactly that from a stored
residual stream and a cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from gptviz.model.config import GPTConfig
from gptviz.model.gpt import Ablation, GPTOutput, KVCache

if TYPE_CHECKING:
    from gptviz.model.gpt import GPT

__all__ = [
    "make_ablation", "read_ablation", "AblationHeads", "head_output_means", "ablation_effect",
    "effect_from_logprobs", "ablated_heads", "first_ablated_layer", "rerun_from_layer",
    "clone_cache", "PrefixRunner",
]

#: How a removed head is replaced (see the module docstring).
AblationMode = Literal["zero", "mean"]


def _ids_tensor(ids: Sequence[int] | np.ndarray | torch.Tensor, device: torch.device
                ) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids,
                        dtype=torch.long).reshape(1, -1)  # [1, T]
    if t.shape[1] == 0:
        raise ValueError("need at least one token")
    return t.to(device)


def _check_heads(config: GPTConfig, heads: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for item in heads:
        layer, head = (int(x) for x in item)
        if not 0 <= layer < config.n_layer or not 0 <= head < config.n_head:
            raise ValueError(f"head ({layer}, {head}) does not exist: the model has "
                             f"{config.n_layer} layers × {config.n_head} heads")
        if (layer, head) not in out:
            out.append((layer, head))
    return sorted(out)


@torch.no_grad()
def head_output_means(model: GPT, ids: Sequence[int] | np.ndarray | torch.Tensor,
                      upto: int | None = None) -> torch.Tensor:
    """Every head's output averaged over the positions of a text, on the clean model.

    Parameters
    ----------
    model
        The GPT.
    ids
        ``[T]`` token ids.
    upto
        Average over positions ``0 .. upto`` only (negative counts from the end; default
        all): the causal means of the prediction after ``upto``. Only those positions run.

    Returns
    -------
    torch.Tensor
        ``[n_layer, n_head, head_dim]`` on the model's device and dtype.
    """
    device = next(model.parameters()).device
    x = _ids_tensor(ids, device)  # [1, T]
    if upto is not None:
        t = x.shape[1]
        end = upto + t if upto < 0 else upto
        if not 0 <= end < t:
            raise ValueError(f"position {upto} is outside the text of {t} tokens")
        x = x[:, :end + 1]
    out = model(x, return_head_out=True, last_only=True)
    return torch.stack([z[0].mean(dim=1) for z in out.head_outputs], dim=0)  # [L, H, hd]


def make_ablation(config: GPTConfig, heads: Iterable[tuple[int, int]], mode: AblationMode = "zero",
                  model: GPT | None = None,
                  ids: Sequence[int] | np.ndarray | torch.Tensor | None = None, *,
                  means: torch.Tensor | None = None) -> Ablation | None:
    """Build the :class:`~gptviz.model.gpt.Ablation` that removes ``heads``.

    Parameters
    ----------
    config
        The model's config (for the ``[n_layer, n_head]`` shape).
    heads
        ``(layer, head)`` pairs, 0-based; duplicates are ignored.
    mode
        ``"zero"`` or ``"mean"`` (see the module docstring).
    model, ids
        For ``"mean"``: the model and the text the means are taken over (unless ``means``).
        The tensors are put on the model's device when a model is given.
    means
        Precomputed ``[n_layer, n_head, head_dim]`` means (:func:`head_output_means`), so a
        GUI toggling heads on one text computes them once.

    Returns
    -------
    Ablation or None
        ``None`` when ``heads`` is empty: the normal path, bit for bit.
    """
    if mode not in ("zero", "mean"):
        raise ValueError(f"ablation mode must be 'zero' or 'mean', got {mode!r}")
    heads = _check_heads(config, heads)
    if not heads:
        return None
    device = next(model.parameters()).device if model is not None else torch.device("cpu")
    dtype = next(model.parameters()).dtype if model is not None else torch.float32
    keep = torch.ones(config.n_layer, config.n_head, device=device, dtype=dtype)  # [L, H]
    for layer, head in heads:
        keep[layer, head] = 0
    fill = None
    if mode == "mean":
        if means is None:
            if model is None or ids is None:
                raise ValueError("mean-ablation needs the model and the text (or means=)")
            means = head_output_means(model, ids)
        means = means.to(device=device, dtype=dtype)
        expected = (config.n_layer, config.n_head, config.head_dim)
        if tuple(means.shape) != expected:
            raise ValueError(f"means must have shape {expected}, got {tuple(means.shape)}")
        fill = means * (1 - keep)[..., None]  # [L, H, hd]: only the removed heads' rows
    return Ablation(keep=keep, fill=fill)


@dataclass(frozen=True, eq=False)  # holds arrays
class AblationHeads:
    """What an :class:`~gptviz.model.gpt.Ablation` does, read back from its tensors (the
    inverse of :func:`make_ablation`).

    Attributes
    ----------
    heads
        The removed ``(layer, head)`` pairs (``keep < 1``), sorted.
    mode
        ``"mean"`` when a removed head's ``fill`` is not all zeros, else ``"zero"``.
    keep
        ``[n_layer, n_head]`` float64 copy of ``keep``.
    fill
        ``[n_layer, n_head, head_dim]`` float64 copy of ``fill``, or ``None``.
    """

    heads: tuple[tuple[int, int], ...]
    mode: AblationMode
    keep: np.ndarray
    fill: np.ndarray | None


def _float64(a: Any) -> np.ndarray:
    if torch.is_tensor(a):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def read_ablation(ablation: Ablation | None) -> AblationHeads | None:
    """The heads an ablation removes and how (:class:`AblationHeads`); ``None`` for ``None``.

    ``keep``/``fill`` may be tensors (any device, dtype) or arrays; the copies are float64,
    which holds every value of the float types a model runs in exactly.
    """
    if ablation is None:
        return None
    keep = _float64(ablation.keep)  # [L, H]
    fill = None if ablation.fill is None else _float64(ablation.fill)  # [L, H, hd]
    removed = keep < 1
    heads = tuple((int(a), int(b)) for a, b in np.argwhere(removed))
    mode: AblationMode = "mean" if fill is not None and np.any(fill[removed] != 0) else "zero"
    return AblationHeads(heads=heads, mode=mode, keep=keep, fill=fill)


def ablated_heads(ablation: Ablation | None) -> list[tuple[int, int]]:
    """The ``(layer, head)`` pairs an ablation removes (sorted)."""
    parts = read_ablation(ablation)
    return [] if parts is None else list(parts.heads)


def first_ablated_layer(ablation: Ablation | None) -> int | None:
    """The lowest layer with a removed head, or ``None``."""
    heads = ablated_heads(ablation)
    return heads[0][0] if heads else None


def clone_cache(cache: KVCache, layers: int | None = None) -> KVCache:
    """An independent copy of a KV cache (same length).

    Parameters
    ----------
    cache
        The cache to copy.
    layers
        Copy only the keys/values of layers ``0 .. layers - 1`` (positions ``< length``); the
        rest of the new cache is left uninitialised. That is all :func:`rerun_from_layer`
        from layer ``layers`` needs, since it rewrites the layers above. Default: all layers.

    Returns
    -------
    KVCache
    """
    new = KVCache.__new__(KVCache)
    n = cache.length
    if layers is None:
        new.k = cache.k.clone()
        new.v = cache.v.clone()
    else:
        new.k = torch.empty_like(cache.k)  # [n_layer, B, nh, block_size, hd]
        new.v = torch.empty_like(cache.v)
        new.k[:layers, :, :, :n] = cache.k[:layers, :, :, :n]
        new.v[:layers, :, :, :n] = cache.v[:layers, :, :, :n]
    new.length = n
    new.block_size = cache.block_size
    return new


@torch.no_grad()
def rerun_from_layer(model: GPT, resid_in: torch.Tensor, start_layer: int, *,
                     ablation: Ablation | None = None, cache: KVCache | None = None,
                     return_attn: bool = False, return_resid: bool = False,
                     last_only: bool = True) -> GPTOutput:
    """Run only blocks ``start_layer ..`` of the model over a whole text.

    This is how an ablation is applied cheaply to a text already run: layers below the first
    ablated one are unchanged (and so are their cached keys and values), so only the rest is
    recomputed, from the residual stream that entered ``start_layer`` on the clean run.

    Parameters
    ----------
    model
        The GPT.
    resid_in
        ``[B, T, C]`` residual stream entering block ``start_layer`` (``residuals[start_layer]``
        of a clean ``forward(..., return_resid=True)`` over positions ``0 .. T-1``).
    start_layer
        First block to run; must be ``<=`` the first ablated layer.
    ablation
        The heads to remove.
    cache
        Optional KV cache whose layers ``< start_layer`` already hold the text's keys/values
        (e.g. ``clone_cache(clean, layers=start_layer)``); the keys/values of layers
        ``>= start_layer`` are rewritten at positions ``0 .. T-1`` and its length set to ``T``,
        so stepping on from it continues the ablated model.
    return_attn, return_resid, last_only
        As in :meth:`GPT.forward`; attentions and residuals cover only the blocks run
        (``attentions[0]`` is block ``start_layer``; ``residuals[0]`` is ``resid_in``).

    Returns
    -------
    GPTOutput
    """
    n_layer = model.config.n_layer
    if not 0 <= start_layer <= n_layer:
        raise ValueError(f"start_layer must be in 0..{n_layer}")
    first = first_ablated_layer(ablation)
    if first is not None and first < start_layer:
        raise ValueError(f"the ablation removes a head in layer {first}, below start_layer "
                         f"{start_layer}: re-run from layer {first}")
    return model.forward_from(resid_in, start_layer, cache, 0, return_attn=return_attn,
                              return_resid=return_resid, ablation=ablation,
                              last_only=last_only)


class PrefixRunner:
    """Next-token logits of a model (with a fixed ablation, or none) for a text that grows,
    shrinks or branches a little at a time, from a KV cache of its own.

    The engine runs the ablated model; showing what an ablation changes also needs the
    clean model's distribution at the same point. Recomputing it over the whole window after
    every step costs a prefill (a second at 512 tokens for GPT-2 small); this keeps the clean
    model's keys and values and only runs the tokens past the longest prefix it already
    holds, so the clean distribution of a new step costs one more step.

    Parameters
    ----------
    model
        The GPT (eval mode; its weights must not change while the runner is used).
    ablation
        Heads removed in this run (``None``: the clean model).
    """

    def __init__(self, model: GPT, ablation: Ablation | None = None) -> None:
        self.model = model
        self.ablation = ablation
        self.cache = model.new_cache()
        self.tokens: list[int] = []  # the text whose keys/values the cache holds
        self._logits: torch.Tensor | None = None  # (V,) after the last of ``tokens``
        #: Tokens run by the model in the last call (0 when the logits were cached).
        self.last_ran = 0

    @torch.inference_mode()
    def logits_after(self, tokens: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Next-token logits ``(vocab,)`` after ``tokens`` (a window: position 0 first).

        The tensor returned is the runner's own (returned again for the same text): copy it
        before changing it in place.

        Raises
        ------
        ValueError
            ``tokens`` is empty or longer than the model's context.
        """
        toks = [int(t) for t in tokens]
        n = len(toks)
        if not 0 < n <= self.cache.block_size:
            raise ValueError(f"need 1..{self.cache.block_size} tokens (got {n})")
        same = 0
        for a, b in zip(self.tokens, toks):
            if a != b:
                break
            same += 1
        if same == n == len(self.tokens) and self._logits is not None:
            self.last_ran = 0
            return self._logits
        keep = min(same, n - 1)  # the last token always runs: its logits are the answer
        self.cache.length = keep
        # Until the run below finishes the cache holds only ``toks[:keep]`` for sure (an
        # error half-way, e.g. out of memory, must not leave a longer prefix trusted).
        self.tokens, self._logits = toks[:keep], None
        if n - keep == 1:
            logits, _ = self.model.decode_step(toks[-1], self.cache, ablation=self.ablation)
        else:
            idx = torch.tensor([toks[keep:]], dtype=torch.long,
                               device=self.model.wte.weight.device)  # (1, n - keep)
            logits = self.model(idx, self.cache, ablation=self.ablation,
                                last_only=True).logits[0, -1]  # (V,)
        self.tokens, self._logits, self.last_ran = toks, logits, n - keep
        return logits


def _dist_summary(logp: torch.Tensor, k: int) -> list[dict[str, Any]]:
    top_lp, top_i = torch.topk(logp, k)
    return [{"id": int(i), "prob": float(lp.exp()), "logprob": float(lp)}
            for i, lp in zip(top_i, top_lp)]


def effect_from_logprobs(before: torch.Tensor, after: torch.Tensor,
                         heads: Iterable[tuple[int, int]], mode: AblationMode, position: int,
                         chosen: int | None = None, k: int = 10) -> dict[str, Any]:
    """The ablation effect from the two next-token distributions (the numbers of
    :func:`ablation_effect`, for callers that already hold both, e.g. from KV caches).

    Parameters
    ----------
    before, after
        ``[V]`` float64 log-probabilities without and with the ablation.
    heads, mode
        The ablation (reported as given).
    position
        The position the distributions follow (reported as given).
    chosen
        The token actually chosen after ``position``, or ``None``.
    k
        How many top tokens to list before and after (clipped to ``V``).

    Returns
    -------
    dict
        As :func:`ablation_effect`.
    """
    k = max(1, min(int(k), before.shape[0]))
    top = int(before.argmax())
    p_before = before.exp()
    kl = float((p_before * (before - after)).sum() / np.log(2.0))
    result: dict[str, Any] = {
        "heads": [list(h) for h in heads],
        "mode": mode,
        "position": int(position),
        "top_before": _dist_summary(before, k),
        "top_after": _dist_summary(after, k),
        "top_token": top,
        "top_logprob_before": float(before[top]),
        "top_logprob_after": float(after[top]),
        "top_logprob_change": float(after[top] - before[top]),
        "chosen_token": None,
        "chosen_logprob_before": None,
        "chosen_logprob_after": None,
        "chosen_logprob_change": None,
        "kl_bits": max(kl, 0.0),
        "total_variation": float(0.5 * (p_before - after.exp()).abs().sum()),
    }
    if chosen is not None:
        c = int(chosen)
        if not 0 <= c < before.shape[0]:
            raise ValueError(f"chosen token {c} is outside the vocabulary")
        result.update(chosen_token=c, chosen_logprob_before=float(before[c]),
                      chosen_logprob_after=float(after[c]),
                      chosen_logprob_change=float(after[c] - before[c]))
    return result


@torch.no_grad()
def ablation_effect(model: GPT, ids: Sequence[int] | np.ndarray | torch.Tensor,
                    heads: Iterable[tuple[int, int]], mode: AblationMode = "zero", *,
                    chosen: int | None = None, position: int = -1, k: int = 10,
                    means: torch.Tensor | None = None) -> dict[str, Any]:
    """How removing heads changes the next-token distribution at one position.

    Parameters
    ----------
    model
        The GPT.
    ids
        ``[T]`` token ids of the text.
    heads
        ``(layer, head)`` pairs to remove.
    mode
        ``"zero"`` or ``"mean"`` (causal means: over ``ids[:position + 1]`` on the clean
        model, unless ``means`` are given, e.g. over a reference text).
    chosen
        The token actually chosen after ``position``; default ``ids[position + 1]`` when the
        text goes on, else none.
    position
        The position whose next-token distribution is compared (default the last).
    k
        How many top tokens to list before and after.
    means
        Precomputed head-output means for ``"mean"`` (see :func:`make_ablation`).

    Returns
    -------
    dict
        JSON-ready: ``heads``, ``mode``, ``position``; ``top_before`` / ``top_after``
        (``[{"id", "prob", "logprob"}]``, k each); ``top_token`` (top-1 before),
        ``top_logprob_before``, ``top_logprob_after``, ``top_logprob_change`` (after - before,
        natural log); the same four for ``chosen`` (``None`` without one);
        ``kl_bits`` = KL(before ‖ after) in bits; ``total_variation``.
    """
    device = next(model.parameters()).device
    x = _ids_tensor(ids, device)  # [1, T]
    t = x.shape[1]
    pos = position + t if position < 0 else position
    if not 0 <= pos < t:
        raise ValueError(f"position {position} is outside the text of {t} tokens")
    if chosen is None and pos + 1 < t:
        chosen = int(x[0, pos + 1])
    heads = _check_heads(model.config, heads)
    prefix = x[:, : pos + 1]  # the model is causal: nothing after pos is read
    ablation = make_ablation(model.config, heads, mode, model=model, ids=prefix[0],
                             means=means)
    before = model(prefix, last_only=True).logits[0, -1].double().log_softmax(-1)  # [V]
    after = model(prefix, ablation=ablation, last_only=True).logits[0, -1]
    after = after.double().log_softmax(-1)  # [V]
    return effect_from_logprobs(before, after, heads, mode, pos, chosen=chosen, k=k)
