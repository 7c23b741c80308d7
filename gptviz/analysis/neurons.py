"""Feed-forward neurons: which are most active at a position, and what each one writes.

A feed-forward layer is ``c_proj(a)`` with ``a = act(c_fc(x))`` (``[d_ff]``), or, gated
(Llama), ``a = act(c_gate(x)) ⊙ c_fc(x)``; neuron ``n``'s activation is ``a[n]``, the value
the output projection ``c_proj`` reads (read with a hook on its input, so it is exactly what
the model uses). The layer's output is ``Σ_n a[n] · v_n`` with the *value vector*
``v_n = W_out[:, n]`` (``c_proj.weight`` column ``n``, ``[C]``).

What a neuron promotes is its value vector read through the unembedding, ``W_U · v_n``
(``[V]``), the top tokens first: the projection of FFN value vectors onto the vocabulary of
Geva et al. (2022), "Transformer Feed-Forward Layers Build Predictions by Promoting Concepts
in the Vocabulary Space" (no final norm applied, as in the paper: it is a property of the
weights, the same at every position). A positive activation adds ``v_n``, a negative one
subtracts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gptviz.analysis.query_run import blocks, capture_inputs, check_position, run_prefix

if TYPE_CHECKING:
    from gptviz.model.gpt import GPT, Ablation

__all__ = ["NeuronsAtPosition", "value_vector_logits", "neuron_value_tokens", "top_neurons",
           "top_neurons_from", "neuron_activations", "mlp_inputs"]


def mlp_inputs(model: GPT) -> list[torch.nn.Module]:
    """Each layer's feed-forward output projection (whose input is the activation)."""
    return [block.mlp.c_proj for block in blocks(model)]


def value_vector_logits(model: GPT, layer: int, neurons: Sequence[int] | np.ndarray
                        ) -> torch.Tensor:
    """``W_U · v_n`` for the given neurons of ``layer``: ``[n, V]`` float64 (the product in
    the weights' dtype: no float64 copy of the unembedding)."""
    w = blocks(model)[layer].mlp.c_proj.weight  # (C, d_ff)
    idx = torch.as_tensor(np.asarray(neurons, dtype=np.int64), device=w.device)
    v = w.index_select(1, idx).T  # (n, C)
    W_U = model.unembed_weight  # (V, C)
    return (v.to(W_U.dtype) @ W_U.T).double()  # (n, V)


def neuron_value_tokens(model: GPT, layer: int, neurons: Sequence[int] | np.ndarray,
                        k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` tokens each neuron's value vector promotes most: ``(ids [n, k] int64,
    logits [n, k] float32)``, largest first."""
    with torch.no_grad():
        logits = value_vector_logits(model, layer, neurons)  # (n, V)
        k = max(1, min(int(k), logits.shape[-1]))
        v, i = torch.topk(logits, k, dim=-1)
    return i.cpu().numpy().astype(np.int64), v.float().cpu().numpy()


@dataclass
class NeuronsAtPosition:
    """The most active neurons of every layer at one position.

    Attributes
    ----------
    position, token
        The position read and its token id.
    ids, acts
        ``[L, k]`` int64 / float32: each layer's ``k`` neurons with the largest activation,
        largest first.
    promoted_ids, promoted
        ``[L, k, m]`` int64 / float32: the tokens each of those neurons' value vectors promote
        most, and ``W_U · v_n`` there.
    d_ff
        Neurons per layer.
    """

    position: int
    token: int
    ids: np.ndarray
    acts: np.ndarray
    promoted_ids: np.ndarray
    promoted: np.ndarray
    d_ff: int

    def to_dict(self, display: Callable[[int], str] | None = None) -> dict[str, Any]:
        """JSON-ready: ``{"position", "token", "d_ff", "layers": [{"layer", "neurons":
        [{"neuron", "activation", "promotes": [{"id", "token"?, "logit"}]}]}]}``."""
        layers = []
        for layer in range(self.ids.shape[0]):
            rows = []
            for j in range(self.ids.shape[1]):
                prom = []
                for i, v in zip(self.promoted_ids[layer, j], self.promoted[layer, j]):
                    d: dict[str, Any] = {"id": int(i), "logit": float(v)}
                    if display is not None:
                        d["token"] = display(int(i))
                    prom.append(d)
                rows.append({"neuron": int(self.ids[layer, j]),
                             "activation": float(self.acts[layer, j]), "promotes": prom})
            layers.append({"layer": layer, "neurons": rows})
        return {"position": int(self.position), "token": int(self.token),
                "d_ff": int(self.d_ff), "layers": layers}


def top_neurons_from(model: GPT, acts: torch.Tensor, k: int = 5, m: int = 5,
                     position: int = 0, token: int = 0) -> NeuronsAtPosition:
    """:class:`NeuronsAtPosition` from every layer's activations ``acts`` ``[L, d_ff]`` at one
    position."""
    L, d_ff = acts.shape
    k = max(1, min(int(k), d_ff))
    with torch.no_grad():
        top_v, top_i = torch.topk(acts.float(), k, dim=-1)  # (L, k)
    ids = top_i.cpu().numpy().astype(np.int64)
    with torch.no_grad():  # every layer's k value vectors through W_U in one product
        W_U = model.unembed_weight  # (V, C)
        v = torch.cat([blocks(model)[layer].mlp.c_proj.weight.index_select(
            1, torch.as_tensor(ids[layer], device=W_U.device)).T for layer in range(L)])
        logits = v.to(W_U.dtype) @ W_U.T  # (L k, V)
        m = max(1, min(int(m), logits.shape[-1]))
        pv_t, pi_t = torch.topk(logits, m, dim=-1)  # (L k, m)
    pi = pi_t.view(L, k, m).cpu().numpy().astype(np.int64)
    pv = pv_t.view(L, k, m).float().cpu().numpy()
    return NeuronsAtPosition(position=int(position), token=int(token), ids=ids,
                             acts=top_v.cpu().numpy(), promoted_ids=pi, promoted=pv,
                             d_ff=int(d_ff))


@torch.no_grad()
def top_neurons(model: GPT, ids: Sequence[int] | np.ndarray | torch.Tensor, position: int = -1,
                k: int = 5, m: int = 5, ablation: Ablation | None = None) -> NeuronsAtPosition:
    """Every layer's ``k`` most active neurons at one position, each with the ``m`` tokens its
    value vector promotes (see the module docstring).

    Parameters
    ----------
    model
        The GPT (eval mode).
    ids
        ``[T]`` token ids; only ``ids[:position + 1]`` is run.
    position
        The position (negative counts from the end).
    k, m
        Neurons per layer; promoted tokens per neuron.
    ablation
        Heads removed while reading.

    Returns
    -------
    NeuronsAtPosition
    """
    ids_t, pos = check_position(ids, position)
    with capture_inputs(mlp_inputs(model)) as got:
        run_prefix(model, ids_t, pos, ablation)
    acts = torch.stack([g[-1][0, -1] for g in got])  # (L, d_ff)
    return top_neurons_from(model, acts, k=k, m=m, position=pos, token=int(ids_t[pos]))


@torch.no_grad()
def neuron_activations(model: GPT, ids: Sequence[int] | np.ndarray | torch.Tensor, layer: int,
                       neuron: int, ablation: Ablation | None = None) -> np.ndarray:
    """One neuron's activation at every position of a text, ``[T]`` float32 (one forward pass
    over the whole text)."""
    cfg = model.config
    if not (0 <= layer < cfg.n_layer and 0 <= neuron < cfg.d_ff):
        raise ValueError(f"no neuron {neuron} in layer {layer} (the model has {cfg.n_layer} "
                         f"layers of {cfg.d_ff} neurons)")
    ids_t, _ = check_position(ids, -1)
    with capture_inputs([blocks(model)[layer].mlp.c_proj]) as got:
        run_prefix(model, ids_t, int(ids_t.shape[0]) - 1, ablation)
    return got[0][-1][0, :, neuron].float().cpu().numpy()  # (T,)
