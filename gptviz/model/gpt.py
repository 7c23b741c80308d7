"""The GPT of the reference: a decoder-only stack of masked multi-head self-attention
and feed-forward blocks, learned positions, and an output head tied to the token embedding.

The config's later-family options (rotary or no positions with rescaled frequencies, RMSNorm,
a gated feed-forward layer, grouped-query attention, a parallel block, an untied head, q/k/v
biases alone, local attention windows) are each turned into behaviour in one place here;
their defaults are the reference GPT, computed as before.

Attention is always computed explicitly (scores, -inf mask above the diagonal, softmax) so
that every layer's and head's probabilities can be returned; there is deliberately no
SDPA/flash path, which would return no weights.

Shapes: B batch, T new positions, S keys (cached + new), nh (query) heads, nkv key/value
heads, hd head width, rd rotated dimensions, C = n_embd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptviz.model.config import GPTConfig


@dataclass
class Ablation:
    """Which heads to remove and what they output instead.

    Parameters
    ----------
    keep
        ``(n_layer, n_head)`` float tensor: 1 keeps a head, 0 removes it.
    fill
        ``(n_layer, n_head, head_dim)`` tensor written in place of a removed head's output
        (zeros for zero-ablation, the head's mean output for mean-ablation). ``None`` = zeros.
    """

    keep: torch.Tensor
    fill: torch.Tensor | None = None


@dataclass
class GPTOutput:
    """What one forward pass returns.

    Attributes
    ----------
    logits
        ``(B, T, vocab)`` next-token logits (h_n · W_e^T, or the untied head's h_n · W^T).
    hidden
        ``(B, T, C)`` final activation (after the final LayerNorm when the model has one);
        the fine-tuning head W_y reads its last position.
    attentions
        Per layer, the attention pattern ``(B, nh, T, S)`` [head, query, key], when asked for
        (one per query head, also with grouped-query attention).
    residuals
        ``n_layer + 1`` tensors ``(B, T, C)``: the residual stream after the embedding and after
        every block, when asked for (the logit lens reads them).
    head_outputs
        Per layer, each head's output ``(B, nh, T, hd)`` before the output projection.
    """

    logits: torch.Tensor
    hidden: torch.Tensor
    attentions: list[torch.Tensor] | None = None
    residuals: list[torch.Tensor] | None = None
    head_outputs: list[torch.Tensor] | None = None


class KVCache:
    """Pre-allocated keys and values of every layer, ``(n_layer, B, nkv, block_size, hd)``
    (``nkv`` = ``config.kv_heads``; with rotary positions the keys are stored rotated).

    Only ``length`` moves: undoing a step is shrinking it, and redoing the same token is
    growing it again, because cached keys/values depend only on the tokens before them.
    """

    def __init__(self, config: GPTConfig, batch: int = 1, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, capacity: int | None = None) -> None:
        """``capacity``: positions the cache can hold (default and at most ``block_size``);
        kept as ``self.block_size``."""
        size = config.block_size if capacity is None else int(capacity)
        if not 0 < size <= config.block_size:
            raise ValueError(f"cache capacity must be 1..{config.block_size} (got {size})")
        shape = (config.n_layer, batch, config.kv_heads, size, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0
        self.block_size = size

    def layer_views(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Keys and values of batch row 0, one ``(nkv, block_size, hd)`` view per layer.

        Built once per storage and autograd mode (again if ``k``/``v`` are replaced, or
        inference mode switched: a view made in one may not be written in the other):
        indexing the 5-d tensors afresh for every layer of every step costs a one-token step
        more than its attention products at the bundled model's size.
        """
        mode = torch.is_inference_mode_enabled()
        views = getattr(self, "_views", None)  # (k, v, mode, keys, values)
        if views is None or views[0] is not self.k or views[1] is not self.v or views[2] != mode:
            views = (self.k, self.v, mode, list(self.k[:, 0].unbind(0)),
                     list(self.v[:, 0].unbind(0)))
            self._views = views
        return views[3], views[4]


_ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


def causal_mask(T: int, S: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(T, S)`` bool, True where the key comes after the query (masked with -inf before the
    softmax): the T queries are the last T of the S key positions."""
    return torch.ones(T, S, dtype=torch.bool, device=device).triu_(S - T + 1)


def key_window(config: GPTConfig, layer: int) -> int | None:
    """How many keys a query of ``layer`` sees, itself included: ``window_size`` in a local
    layer (query i sees key j iff i - window < j <= i), ``None`` in a global one (every
    key up to i)."""
    if config.attention_layers and config.attention_layers[layer] == "local":
        return config.window_size
    return None


def window_mask(T: int, S: int, window: int | None, device: torch.device | str = "cpu"
                ) -> torch.Tensor:
    """:func:`causal_mask` ``(T, S)``, also True for keys at or before i - ``window`` (a
    local layer; ``None`` = none of those): query row r is position i = S - T + r."""
    mask = causal_mask(T, S, device)
    if window is not None and window < S:  # j <= i - window, i.e. j - r <= S - T - window
        mask |= torch.ones(T, S, dtype=torch.bool, device=device).tril_(S - T - window)
    return mask


def attention_mask(config: GPTConfig, layer: int, T: int, S: int,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Which cells of ``layer``'s ``(T, S)`` scores are masked (True: -inf before the
    softmax, probability exactly 0; drawn as NaN): keys after the query, and in a local layer
    keys outside its window (:func:`key_window`). The T queries are the last T of S keys."""
    return window_mask(T, S, key_window(config, layer), device)


def _hidden_keys(config: GPTConfig, S: int) -> list[int] | None:
    """For a new query over S keys, how many leading keys each layer's window hides from it
    (0 in global layers): what its row of :func:`attention_mask` masks besides nothing.
    ``None`` when no layer is local."""
    if not config.attention_layers:
        return None
    windows = (key_window(config, layer) for layer in range(config.n_layer))
    return [S - w if w is not None and w < S else 0 for w in windows]


def _needs_mask(window: int | None, T: int, S: int) -> bool:
    """Whether T new queries over S keys mask anything (one query alone sees every key,
    unless its window is shorter than S)."""
    return T > 1 or (window is not None and window < S)


def make_norm(config: GPTConfig) -> nn.Module:
    """The model's norm (``config.norm_type``): LayerNorm, or RMSNorm
    x / sqrt(mean(x^2) + eps) * weight (no bias; ``torch.nn.RMSNorm`` computes exactly that)."""
    if config.norm_type == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.layer_norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)


def rotary_frequencies(config: GPTConfig) -> torch.Tensor:
    """The ``(rd / 2,)`` float32 inverse frequencies, rescaled by ``config.rope_scaling``.

    As ``transformers``' ``ROPE_INIT_FUNCTIONS`` compute them, operation for operation:
    inv_freq = 1 / base^(2i / rd); "linear" divides all by the factor; "dynamic" changes
    nothing inside ``block_size`` (it rescales only longer texts); "llama3" divides those of
    wavelength 2π / f above ``old / low_freq_factor`` by the factor, keeps those below
    ``old / high_freq_factor``, and blends the band between with
    s = (old / wavelength - low) / (high - low): (1 - s) f / factor + s f.
    """
    rd = config.rotary_width
    # on the CPU whatever device a model is being built on: on the meta device (a
    # checkpoint's model, before its weights are assigned) a division would first import
    # torch's compiler, seconds on a first load that nothing can interrupt
    exponents = torch.arange(0, rd, 2, dtype=torch.int64, device="cpu").float() / rd  # (rd/2,)
    inv_freq = 1.0 / (config.rotary_base ** exponents)  # (rd/2,)
    rs = config.rope_scaling
    if rs is None or rs.rope_type == "dynamic":
        return inv_freq
    if rs.rope_type == "linear":
        return inv_freq / rs.factor
    low, high = float(rs.low_freq_factor or 1.0), float(rs.high_freq_factor or 1.0)
    old = float(rs.original_max_position_embeddings or 1)
    wavelen = 2 * math.pi / inv_freq  # (rd/2,)
    scaled = torch.where(wavelen > old / low, inv_freq / rs.factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled
    medium = ~(wavelen < old / high) * ~(wavelen > old / low)
    return torch.where(medium, smoothed, scaled)


def rotary_tables(config: GPTConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every position's rotary angles, each ``(block_size, rd)`` float32.

    As ``transformers`` builds them for GPT-NeoX and Llama: angle = position * inv_freq
    (:func:`rotary_frequencies`, with ``rope_scaling`` folded in), the rd / 2 angles written
    twice (both halves).
    """
    inv_freq = rotary_frequencies(config)  # (rd/2,)
    positions = torch.arange(config.block_size, dtype=torch.int64,
                             device="cpu").float()  # (block_size,)
    angles = torch.outer(positions, inv_freq)  # (block_size, rd/2)
    angles = torch.cat((angles, angles), dim=-1)  # (block_size, rd)
    return angles.cos(), angles.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the last dimension's halves."""
    half = x.size(-1) // 2
    return torch.cat((-x.narrow(-1, half, half), x.narrow(-1, 0, half)), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first rd dimensions of every head of ``x`` (``(..., hd)``) by its position:
    x * cos + rotate_half(x) * sin; the other ``hd - rd`` dimensions pass unchanged.

    ``cos`` and ``sin`` are ``(..., rd)``, broadcast against ``x`` (one row per position).
    Only elementwise products and sums: the same numbers for any batch of positions and
    heads, which keeps :meth:`GPT.decode_step` bit-identical to ``forward``.
    """
    rd, hd = cos.size(-1), x.size(-1)
    if rd == hd:
        return x * cos + _rotate_half(x) * sin
    r = x.narrow(-1, 0, rd)
    return torch.cat((r * cos + _rotate_half(r) * sin, x.narrow(-1, rd, hd - rd)), dim=-1)


def _ablate(z: torch.Tensor, layer: int, ablation: Ablation, n_head: int) -> torch.Tensor:
    """Replace removed heads' outputs: ``z`` is ``(B, nh, T, hd)`` or ``(nh, T, hd)``."""
    lead = (1,) * (z.dim() - 3)
    keep = ablation.keep[layer].to(z.dtype).view(*lead, n_head, 1, 1)
    z = z * keep  # exact for kept heads: x * 1.0 == x
    if ablation.fill is not None:
        z = z + (1 - keep) * ablation.fill[layer].to(z.dtype).view(*lead, n_head, 1, -1)
    return z


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention that also returns its softmax probabilities.

    ``c_attn`` projects to q (``nh`` heads), k and v (``nkv`` heads each), in that order:
    ``3 * C`` wide without grouped-query attention. Each key/value head serves ``groups``
    consecutive query heads.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.kv_heads
        self.groups = config.n_head // config.kv_heads
        self.head_dim = config.head_dim
        width = (config.n_head + 2 * config.kv_heads) * config.head_dim  # 3C by default
        self.c_attn = nn.Linear(config.n_embd, width, bias=config.has_qkv_bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.scale = config.scale
        self.config = config  # for attention_mask when the caller gives none

    def forward(self, x: torch.Tensor, layer: int, cache: KVCache | None = None, pos: int = 0,
                ablation: Ablation | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``rope``: cos and sin ``(T, 1, rd)`` of positions ``pos ..`` with rotary, else None;
        ``mask``: :func:`attention_mask` ``(T, S)`` when the caller made it already."""
        B, T, C = x.shape
        nh, nkv, hd = self.n_head, self.n_kv_head, self.head_dim
        qkv = self.c_attn(x).view(B, T, nh + 2 * nkv, hd)  # (B, T, nh + 2 nkv, hd)
        if rope is None:
            q, k, v = qkv.split((nh, nkv, nkv), dim=2)
        else:  # rotated after the projection, before the keys are cached
            q, k = apply_rotary(qkv.narrow(2, 0, nh + nkv), *rope).split((nh, nkv), dim=2)
            v = qkv.narrow(2, nh + nkv, nkv)
        q = q.transpose(1, 2)  # (B, nh, T, hd)
        k = k.transpose(1, 2)  # (B, nkv, T, hd)
        v = v.transpose(1, 2)  # (B, nkv, T, hd)
        if cache is not None:
            cache.k[layer, :B, :, pos:pos + T] = k
            cache.v[layer, :B, :, pos:pos + T] = v
            k = cache.k[layer, :B, :, :pos + T]  # (B, nkv, S, hd)
            v = cache.v[layer, :B, :, :pos + T]  # (B, nkv, S, hd)
        S = k.size(2)
        if self.groups == 1:
            att = (q @ k.transpose(-2, -1)) * self.scale  # (B, nh, T, S)
        else:  # the query heads of one key/value head as one product: (B, nkv, groups * T, S)
            att = (q.reshape(B, nkv, -1, hd) @ k.transpose(-2, -1)).view(B, nh, T, S) * self.scale
        if mask is None and _needs_mask(key_window(self.config, layer), T, S):
            mask = attention_mask(self.config, layer, T, S, att.device)
        if mask is not None:  # else one new query sees every cached key: nothing to mask
            att = att.masked_fill(mask, float("-inf"))
        att = F.softmax(att, dim=-1)  # (B, nh, T, S)
        if self.groups == 1:
            z = self.attn_dropout(att) @ v  # (B, nh, T, hd)
        else:
            z = (self.attn_dropout(att).view(B, nkv, -1, S) @ v).view(B, nh, T, hd)
        if ablation is not None:
            z = _ablate(z, layer, ablation, self.n_head)
        y = z.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y)), att, z


class MLP(nn.Module):
    """Position-wise feed-forward layer: c_proj(act(c_fc(x))), or gated (Llama)
    c_proj(act(c_gate(x)) * c_fc(x)), where ``c_fc`` is the "up" and ``c_proj`` the "down"
    projection."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.d_ff, bias=config.bias)
        self.c_gate = (nn.Linear(config.n_embd, config.d_ff, bias=config.bias)
                       if config.mlp_type == "gated" else None)
        self.c_proj = nn.Linear(config.d_ff, config.n_embd, bias=config.bias)
        self.act = _ACTIVATIONS[config.activation]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.c_gate is None:
            return self.dropout(self.c_proj(self.act(self.c_fc(x))))
        return self.dropout(self.c_proj(self.act(self.c_gate(x)) * self.c_fc(x)))


def _linear(lin: Any, x: torch.Tensor) -> torch.Tensor:
    """``lin(x)`` for an ``nn.Linear``, its weights read from its parameter dict."""
    p = lin._parameters
    return F.linear(x, p["weight"], p["bias"])


# A one-token step multiplies a vector by each weight matrix; on most CPUs torch runs such a
# product on one thread however many it has. Cut into column blocks, one per thread, as a
# batched product, it runs on all of them, with the same sums per output: measured with 2
# threads, 9.4 -> 6.7 us for 256 x 768 and 57 -> 30 us for the 256 x 4096 output head.
# Smaller matrices gain nothing (256 x 256: 3.9 us either way) and stay whole. "The same
# sums" is the CPU kernels' choice, not a law: on a CPU with AVX-512 some shapes and thread
# counts run the whole product with another summation order (threads splitting the inner
# dimension, it seems), so every matrix's blocks are checked against the whole product
# whenever they are made (:func:`_same_sums`) and a matrix whose last bits would differ
# stays whole.
SPLIT_MIN_ELEMENTS = 1 << 17
SPLIT_MAX_BLOCKS = 4


class _Blocks(NamedTuple):
    """A matrix cut into column blocks for one-token products (see :func:`_column_blocks`)."""

    w: torch.Tensor  # (P, in, n): block p holds columns p*n .. (p+1)*n - 1 of W^T
    b: torch.Tensor | None  # (P, 1, n)
    tail_w: torch.Tensor | None  # (t, in): the last t rows of W, t a multiple of 16
    tail_b: torch.Tensor | None  # (t,)
    rest: int  # columns past the P blocks (the tail's last ``rest`` outputs); 0: no tail


def _column_blocks(weight: torch.Tensor, bias: torch.Tensor | None, parts: int
                   ) -> _Blocks | None:
    """``weight`` ``(out, in)`` as ``parts`` column blocks of its transpose, a
    ``(parts, in, n)`` view (no copy), ``bias`` likewise; ``None`` where splitting does not
    pay.

    Every product must be a multiple of 16 columns wide: other widths take another kernel
    path with other rounding (measured: widths 17, 1001, 2049 differ from ``F.linear`` in the
    last bits; multiples of 4 match). So ``n`` is a multiple of 16, and when ``parts * n``
    falls short of ``out`` (GPT-2's 50,257-token head) the last columns come from one more,
    small product over the last multiple-of-16 columns (it overlaps the last block).
    """
    out, inp = weight.shape
    n = out // (parts * 16) * 16
    if parts < 2 or n == 0 or out * inp < SPLIT_MIN_ELEMENTS:
        return None
    main = parts * n
    w = weight.narrow(0, 0, main).t().unflatten(1, (parts, n)).permute(1, 0, 2)  # (P, in, n)
    b = None if bias is None else bias.narrow(0, 0, main).view(parts, 1, n)  # (P, 1, n)
    rest = out - main
    t = -(-rest // 16) * 16  # rest < parts * 16 <= main, so the tail lies inside W
    tail_w = weight.narrow(0, out - t, t) if rest else None  # (t, in)
    tail_b = bias.narrow(0, out - t, t) if rest and bias is not None else None  # (t,)
    return _Blocks(w, b, tail_w, tail_b, rest)


def _same_sums(blocks: _Blocks, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether the product by ``blocks`` gives ``F.linear(x, weight, bias)`` bit for bit here
    (this machine's kernels, the threads now), for a fixed random row ``x``: a kernel's
    summation order follows the shapes, strides, threads and the row's alignment in memory,
    not the values (seen here: a 50,257 x 768 head whose sums agreed for a row 4 elements
    into a buffer only). Checked for a row on a fresh allocation: every row the step
    multiplies is one (its tests compare the step with the forward bit for bit). The checks
    cost two products a matrix, about two steps' time, once when the blocks are made
    (GPT-2 small here: 0.14-0.22 s on a busy machine)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, weight.size(1), generator=gen).to(weight.device, weight.dtype)
    with torch.no_grad():
        return torch.equal(_linear_blocks(None, x, blocks), F.linear(x, weight, bias))


def _checked_blocks(weight: torch.Tensor, bias: torch.Tensor | None, parts: int
                    ) -> _Blocks | None:
    """:func:`_column_blocks`, or ``None`` where their product would not be bit-identical
    to the whole one on this machine (:func:`_same_sums`)."""
    blocks = _column_blocks(weight, bias, parts)
    return blocks if blocks is not None and _same_sums(blocks, weight, bias) else None


def _linear_blocks(lin: nn.Module | None, x: torch.Tensor, blocks: _Blocks | None
                   ) -> torch.Tensor:
    """``lin(x)`` for one row ``x`` ``(1, in)``, by column blocks when ``blocks`` are given."""
    if blocks is None:
        assert lin is not None
        return _linear(lin, x)
    xb = x.expand(blocks.w.size(0), 1, x.size(-1))  # (P, 1, in)
    y = (torch.bmm(xb, blocks.w) if blocks.b is None
         else torch.baddbmm(blocks.b, xb, blocks.w))  # (P, 1, n)
    y = y.view(1, -1)  # (1, P*n): consecutive columns
    if not blocks.rest:
        return y
    assert blocks.tail_w is not None  # set whenever rest > 0
    tail = F.linear(x, blocks.tail_w, blocks.tail_b)  # (1, t)
    return torch.cat([y, tail[:, tail.size(1) - blocks.rest:]], dim=1)  # (1, out)


def _split_qkv_row(qkv: torch.Tensor, nh: int, nkv: int, hd: int,
                   rope: tuple[torch.Tensor, torch.Tensor] | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q ``(nh, 1, hd)``, k and v ``(nkv, 1, hd)`` of one query's ``c_attn`` output
    ``(1, (nh + 2 nkv) hd)``, q and k rotated when ``rope`` (cos, sin ``(1, rd)``) is given."""
    heads = qkv.view(nh + 2 * nkv, 1, hd)
    qk = heads.narrow(0, 0, nh + nkv)  # (nh + nkv, 1, hd)
    if rope is not None:
        qk = apply_rotary(qk, *rope)
    q, k = qk.split((nh, nkv))
    return q, k, heads.narrow(0, nh + nkv, nkv)


def _ln(ln: Any, x: torch.Tensor) -> torch.Tensor:
    """``ln(x)`` for an ``nn.LayerNorm``: the same kernel without the module call or
    F.layer_norm's Python wrapper, so the same numbers."""
    p = ln._parameters
    return torch.layer_norm(x, ln.normalized_shape, p["weight"], p["bias"], ln.eps)


def _rms(ln: Any, x: torch.Tensor) -> torch.Tensor:
    """``ln(x)`` for an ``nn.RMSNorm``, likewise the module's own kernel."""
    return torch.rms_norm(x, ln.normalized_shape, ln._parameters["weight"], ln.eps)


class Block(nn.Module):
    """One decoder block: masked self-attention then feed-forward (no cross-attention), or
    both side by side on the same input (``parallel``: GPT-NeoX, GPT-J)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.pre_ln = config.ln_placement == "pre"
        self.parallel = config.parallel_attn
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, layer: int, cache: KVCache | None, pos: int,
                ablation: Ablation | None, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.parallel:  # GPT-NeoX: x + f(LN_1(x)) + g(LN_2(x))
            a, att, z = self.attn(self.ln_1(x), layer, cache, pos, ablation, rope, mask)
            x = x + a + self.mlp(self.ln_2(x))
        elif self.pre_ln:  # GPT-2: x + f(LN(x))
            a, att, z = self.attn(self.ln_1(x), layer, cache, pos, ablation, rope, mask)
            x = x + a
            x = x + self.mlp(self.ln_2(x))
        else:  # GPT-1: LN(x + f(x))
            a, att, z = self.attn(x, layer, cache, pos, ablation, rope, mask)
            x = self.ln_1(x + a)
            x = self.ln_2(x + self.mlp(x))
        return x, att, z


def _embedding(n: int, dim: int, init_weights: bool) -> nn.Embedding:
    """``nn.Embedding(n, dim)``; without ``init_weights`` its weight is an uninitialised
    matrix instead of a random draw (``normal_`` on the ``meta`` device would import
    ``torch._dynamo``: 2 s)."""
    if init_weights:
        return nn.Embedding(n, dim)
    return nn.Embedding.from_pretrained(torch.empty(n, dim), freeze=False)


class GPT(nn.Module):
    """Decoder-only GPT with an output head (tied to W_e by default) and an optional
    fine-tuning head W_y.

    Modules: ``wte`` (W_e), ``wpe`` (W_p; ``None`` unless positions are learned), blocks
    ``h``, ``ln_f`` (``nn.Identity`` without a final norm), ``unembed`` (the output matrix
    when it is not tied to W_e, else ``None``), ``classifier`` (W_y or ``None``). With rotary
    positions the model holds the cos/sin tables ``rope_cos``/``rope_sin`` as buffers that
    are not saved.

    Parameters
    ----------
    config
        The model's :class:`~gptviz.model.config.GPTConfig`.
    """

    rope_cos: torch.Tensor  # (block_size, rd) buffers, with rotary positions only
    rope_sin: torch.Tensor

    def __init__(self, config: GPTConfig, *, init_weights: bool = True) -> None:
        """``init_weights=False`` skips GPT's initialisation (and leaves the embeddings
        undrawn): for a model built on the ``meta`` device, whose weights are then assigned
        (:meth:`assign_weights`)."""
        super().__init__()
        self.config = config
        self.wte = _embedding(config.vocab_size, config.n_embd, init_weights)  # W_e
        self.wpe = (_embedding(config.block_size, config.n_embd, init_weights)
                    if config.positional_embedding_type == "learned" else None)  # W_p
        if config.positional_embedding_type == "rotary":
            cos, sin = rotary_tables(config)  # (block_size, rd) each
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = make_norm(config) if config.final_ln else nn.Identity()
        self.unembed = (None if config.tie_word_embeddings
                        else nn.Linear(config.n_embd, config.vocab_size, bias=False))
        self.classifier = (nn.Linear(config.n_embd, config.n_classes)
                           if config.n_classes > 0 else None)  # W_y
        if not init_weights:
            return
        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections that write into the residual stream.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def assign_weights(self, state: dict[str, torch.Tensor]) -> GPT:
        """Make the tensors of ``state`` the model's parameters themselves (no copy), then
        compute the buffers that are computed rather than loaded (the rotary tables) again
        where the weights are.

        What opening a checkpoint does to a model built on the ``meta`` device with
        ``init_weights=False`` (shapes only: no memory, no random draws; see
        :func:`gptviz.io.checkpoint.model_from_state`), instead of drawing random weights
        and copying the file's over them.

        Parameters
        ----------
        state
            Every parameter under our names (a missing or extra one raises), of the model's
            dtype, each in memory of its own.

        Returns
        -------
        GPT
            ``self``.
        """
        self.__dict__.pop("_decode_blocks_cache", None)  # views of the storage replaced here
        self.load_state_dict(state, assign=True)
        if self.config.positional_embedding_type == "rotary":
            cos, sin = rotary_tables(self.config)  # (block_size, rd) each, as __init__ made them
            device = self.wte.weight.device
            self.rope_cos, self.rope_sin = cos.to(device), sin.to(device)
        return self

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Number of parameters (a tied head counted once)."""
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def use_decoding_layout(self) -> GPT:
        """Store every weight matrix transposed in memory: same shapes, same values.

        A one-token step reads each matrix once as a matrix-vector product. ``F.linear`` on a
        row-major ``[out, in]`` weight streams it 1.5-1.9x slower than on the same matrix kept
        ``[in, out]`` in memory (measured with torch 2.13 on CPU: the GPT-2-small output head
        13 ms -> 5.4 ms; all matrices of the bundled shape 0.62 -> 0.34 ms per token). Only
        the strides change, so every caller, checkpoint and test sees the same tensors;
        results may differ from the row-major layout in the last bits (summation order).
        Idempotent; the token-embedding lookup then reads a column (cheap for one token).

        Returns
        -------
        GPT
            ``self``.
        """
        self.__dict__.pop("_decode_blocks_cache", None)  # views of the storage replaced here
        weights = [m.weight for m in self.modules() if isinstance(m, nn.Linear)]
        for p in weights + [self.wte.weight]:
            if p.dim() == 2 and p.is_contiguous():
                p.data = p.data.t().contiguous().t()  # (out, in) with strides (1, out)
        return self

    def new_cache(self, batch: int = 1) -> KVCache:
        """An empty KV cache on the model's device and dtype."""
        p = self.wte.weight
        return KVCache(self.config, batch=batch, device=p.device, dtype=p.dtype)

    @property
    def unembed_weight(self) -> torch.Tensor:
        """The output matrix ``(vocab, C)``: W_e when tied, else ``unembed.weight``."""
        return self.wte.weight if self.unembed is None else self.unembed.weight

    def lm_head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from a final activation ``(..., C)``: h · W^T, W = :attr:`unembed_weight`
        (W_e with the tied head of the reference)."""
        return F.linear(h, self.unembed_weight)  # (..., vocab)

    def _rope(self, pos: int, T: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """cos and sin ``(T, 1, rd)`` of positions ``pos .. pos + T - 1``; None without rotary."""
        if self.config.positional_embedding_type != "rotary":
            return None
        cos, sin = self.rope_cos.narrow(0, pos, T), self.rope_sin.narrow(0, pos, T)  # (T, rd)
        return cos.unsqueeze(1), sin.unsqueeze(1)  # (T, 1, rd): broadcast over the heads

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, *,
                return_attn: bool = False, return_resid: bool = False,
                return_head_out: bool = False, ablation: Ablation | None = None,
                last_only: bool = False) -> GPTOutput:
        """Run the model on token ids.

        Parameters
        ----------
        idx
            ``(B, T)`` int64 token ids: the whole text, or only the new tokens when ``cache``
            already holds the earlier ones.
        cache
            A :class:`KVCache`; the new keys/values are written at ``cache.length`` and the
            length advances by ``T``.
        return_attn, return_resid, return_head_out
            Also return the attention patterns, the residual stream, the per-head outputs.
        ablation
            Heads to remove (see :class:`Ablation`); ``None`` runs the model unchanged.
        last_only
            Compute logits only for the last position (faster decoding).

        Returns
        -------
        GPTOutput
        """
        B, T = idx.shape
        pos = cache.length if cache is not None else 0
        if T == 0:
            raise ValueError("forward needs at least one token")
        if pos + T > self.config.block_size:
            raise ValueError(
                f"sequence of {pos + T} tokens exceeds the model's block_size "
                f"{self.config.block_size}")
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:  # learned positions: h_0 = U W_e + W_p
            x = x + self.wpe(torch.arange(pos, pos + T, device=idx.device))  # (B, T, C)
        x = self.drop(x)
        return self.forward_from(x, 0, cache, pos, return_attn=return_attn,
                                 return_resid=return_resid, return_head_out=return_head_out,
                                 ablation=ablation, last_only=last_only)

    def forward_from(self, x: torch.Tensor, start_layer: int, cache: KVCache | None = None,
                     pos: int = 0, *, return_attn: bool = False, return_resid: bool = False,
                     return_head_out: bool = False, ablation: Ablation | None = None,
                     last_only: bool = False) -> GPTOutput:
        """Run blocks ``start_layer ..`` on the residual stream ``x`` entering that block,
        then the final LayerNorm and the output head: the rest of :meth:`forward`.

        ``x`` is ``(B, T, C)`` at positions ``pos .. pos + T - 1``; with a ``cache``, the
        blocks run write their keys and values there and its length becomes ``pos + T``
        (layers below ``start_layer`` must already hold theirs); without one, the T positions
        attend only among themselves (rotary positions still rotate by ``pos ..``).
        Attentions, residuals (``residuals[0]`` is ``x``) and head outputs cover the blocks
        run.
        """
        T = x.shape[1]
        attns: list[torch.Tensor] = []
        resids: list[torch.Tensor] = [x] if return_resid else []
        heads: list[torch.Tensor] = []
        rope = self._rope(pos, T)
        # One mask per window (all layers share one unless some are local): the keys are the
        # cached positions and the T new ones.
        S = pos + T if cache is not None else T
        masks: dict[int | None, torch.Tensor | None] = {}
        for layer in range(start_layer, self.config.n_layer):
            window = key_window(self.config, layer)
            if window not in masks:
                masks[window] = (window_mask(T, S, window, x.device)
                                 if _needs_mask(window, T, S) else None)
            x, att, z = self.h[layer](x, layer, cache, pos, ablation, rope, masks[window])
            if return_attn:
                attns.append(att)
            if return_resid:
                resids.append(x)
            if return_head_out:
                heads.append(z)
        if cache is not None:
            cache.length = pos + T
        h = self.ln_f(x)  # (B, T, C)
        logits = self.lm_head(h[:, -1:] if last_only else h)  # (B, T, vocab)
        return GPTOutput(
            logits=logits,
            hidden=h,
            attentions=attns if return_attn else None,
            residuals=resids if return_resid else None,
            head_outputs=heads if return_head_out else None,
        )

    def decode_step(self, token: int, cache: KVCache, *, attn_out: torch.Tensor | None = None,
                    resid_out: torch.Tensor | None = None, ablation: Ablation | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One new token of batch 1 at ``cache.length``: the fast path of a generation step.

        What ``forward(tensor([[token]]), cache, last_only=True, ...)`` computes, the same ops in
        the same order (bit-identical on CPU, tested; in the row-major layout with 2+ threads and a
        vocabulary not a multiple of 4 the split output head differs in the last bits, never after
        :meth:`use_decoding_layout`, as sessions use), without dropout, module calls or stacking.

        Parameters
        ----------
        token
            The new token's id.
        cache
            The KV cache holding the earlier positions; its length advances by one.
        attn_out
            Optional ``(n_layer, n_head, >= S)`` tensor that receives every layer's attention
            row of the new query in ``[..., :S]`` (S = positions after this token).
        resid_out
            Optional ``(n_layer + 1, C)`` tensor that receives the residual stream.
        ablation
            Heads to remove, as in :meth:`forward`.

        Returns
        -------
        (logits, hidden)
            ``(vocab,)`` next-token logits and the ``(C,)`` final activation.
        """
        pos = cache.length
        self._check_step(token, cache)
        if torch.is_grad_enabled():  # it writes into views of its buffers: no autograd here
            with torch.no_grad():
                return self.decode_step(token, cache, attn_out=attn_out, resid_out=resid_out,
                                        ablation=ablation)
        S = pos + 1
        blocks = self._decode_blocks()
        wte, wpe = self.wte.weight, self.wpe
        x = (wte[token] + wpe.weight[pos] if wpe is not None
             else wte[token].clone()).view(1, -1)  # (1, C)
        # The options, read once: each costs the default configuration one test per layer.
        cfg = self.config
        norm = _rms if cfg.norm_type == "rmsnorm" else _ln
        rope = ((self.rope_cos.narrow(0, pos, 1), self.rope_sin.narrow(0, pos, 1))  # (1, rd)
                if cfg.positional_embedding_type == "rotary" else None)
        grouped, plain_qkv = cfg.kv_heads != cfg.n_head, rope is None and cfg.kv_heads == cfg.n_head
        gated, parallel = cfg.mlp_type == "gated", cfg.parallel_attn
        hidden_keys = _hidden_keys(cfg, S)  # per layer, local windows only (None: no window)
        keys, values = cache.layer_views()  # per layer (nkv, cap, hd)
        # Attention rows and residuals are written where the caller wants them (by the softmax
        # and the residual sum), with method calls (narrow, unbind, copy_), not tensor[...]:
        # each index expression is several ops plus Python's parsing (~70 of them per step).
        att_rows = (attn_out.narrow(-1, 0, S).unsqueeze(2).unbind(0)  # per layer (nh, 1, S)
                    if attn_out is not None else ())
        res_rows = resid_out.unsqueeze(1).unbind(0) if resid_out is not None else ()  # (1, C)
        # Results are computed into the buffers when their dtype is the model's; else copied.
        att_direct = attn_out is not None and attn_out.dtype == x.dtype
        res_direct = resid_out is not None and resid_out.dtype == x.dtype
        if res_rows:
            res_rows[0].copy_(x)
        block: Any
        for layer, block in enumerate(self.h):
            # Block, CausalSelfAttention and MLP.forward for one query, flat; submodules read
            # from the modules' own dicts, without nn.Module.__getattr__ (~10% of a step).
            mods: Any = block._modules
            ln_1, attn, ln_2, mlp = mods["ln_1"], mods["attn"], mods["ln_2"], mods["mlp"]
            c_attn, c_proj = attn._modules["c_attn"], attn._modules["c_proj"]
            c_fc, fc_proj = mlp._modules["c_fc"], mlp._modules["c_proj"]
            nh, hd = attn.n_head, attn.head_dim
            nkv, g = (attn.n_kv_head, attn.groups) if grouped else (nh, 1)
            h = norm(ln_1, x) if block.pre_ln else x  # (1, C)
            lb = blocks[layer]  # column blocks of c_attn, c_proj, c_fc, mlp.c_proj, c_gate
            qkv = _linear_blocks(c_attn, h, lb[0])  # (1, (nh + 2 nkv) hd)
            q, k_new, v_new = (qkv.view(3, nh, 1, hd).unbind(0) if plain_qkv
                               else _split_qkv_row(qkv, nh, nkv, hd, rope))  # (nh|nkv, 1, hd)
            k, v = keys[layer], values[layer]  # (nkv, cap, hd)
            k.narrow(1, pos, 1).copy_(k_new)
            v.narrow(1, pos, 1).copy_(v_new)
            if not grouped:
                att = torch.bmm(q, k.narrow(1, 0, S).transpose(1, 2)) * attn.scale  # (nh, 1, S)
            else:  # as forward: the query heads of one key/value head as one product
                att = torch.bmm(q.reshape(nkv, g, hd), k.narrow(1, 0, S).transpose(1, 2)
                                ).view(nh, 1, S) * attn.scale  # (nh, 1, S)
            if hidden_keys and hidden_keys[layer]:  # local: keys 0 .. S - window - 1 unseen
                att.narrow(-1, 0, hidden_keys[layer]).fill_(float("-inf"))
            if att_direct:  # the last query sees every key (or those of its window)
                att = torch.softmax(att, -1, out=att_rows[layer])  # (nh, 1, S)
            else:
                att = att.softmax(dim=-1)  # (nh, 1, S)
                if att_rows:
                    att_rows[layer].copy_(att)
            if not grouped:
                z = torch.bmm(att, v.narrow(1, 0, S))  # (nh, 1, hd)
            else:
                z = torch.bmm(att.view(nkv, g, S), v.narrow(1, 0, S)).view(nh, 1, hd)
            if ablation is not None:
                z = _ablate(z, layer, ablation, nh)
            a = _linear_blocks(c_proj, z.view(1, -1), lb[1])  # (1, C)
            if block.pre_ln:  # GPT-2: x + f(LN(x)); parallel: x + f(LN_1(x)) + g(LN_2(x))
                xa = x + a
                h = norm(ln_2, x if parallel else xa)
            else:  # GPT-1: LN(x + f(x))
                xa = h = norm(ln_1, x + a)
            u = _linear_blocks(c_fc, h, lb[2])  # (1, d_ff)
            u = (mlp.act(_linear_blocks(mlp._modules["c_gate"], h, lb[4])) * u if gated
                 else mlp.act(u))
            m = _linear_blocks(fc_proj, u, lb[3])  # (1, C)
            if block.pre_ln:
                x = torch.add(xa, m, out=res_rows[layer + 1]) if res_direct else xa + m
            else:
                x = norm(ln_2, xa + m)
            if res_rows and not (block.pre_ln and res_direct):  # not written yet
                res_rows[layer + 1].copy_(x)
        cache.length = S
        h = self.ln_f(x)  # (1, C)
        if h is x and res_direct:  # no final LayerNorm: x is a row of the caller's buffer
            h = x.clone()
        head = blocks[-1]
        logits = self.lm_head(h) if head is None else _linear_blocks(None, h, head)  # (1, vocab)
        return logits[0], h[0]  # (vocab,), (C,)

    def _check_step(self, token: int, cache: KVCache) -> None:
        """Refuse a step :meth:`decode_step` cannot compute as ``forward`` would."""
        pos = cache.length
        if pos + 1 > min(self.config.block_size, cache.block_size):
            raise ValueError(f"sequence of {pos + 1} tokens exceeds the cache of "
                             f"{cache.block_size} positions")
        if not 0 <= token < self.config.vocab_size:  # a negative index would wrap around
            raise ValueError(f"token id {token} is outside the vocabulary "
                             f"(0..{self.config.vocab_size - 1})")
        if self.training:
            raise RuntimeError("decode_step has no dropout: call model.eval() first")

    def _decode_blocks(self) -> list:
        """Column blocks of every matrix for :meth:`decode_step` (see ``_column_blocks``):
        per layer those of c_attn, attn.c_proj, c_fc, mlp.c_proj (and c_gate in a gated
        feed-forward layer), then the output head's (or ``None``). One block per CPU thread,
        at most ``SPLIT_MAX_BLOCKS``; none on a GPU or with one thread, nor for a matrix whose
        blocks would not give the whole product's sums on this machine (``_same_sums``).

        Views of the weights, kept while the same weight and bias storage sits in the same
        modules (checked by address on every call; ``to`` and :meth:`use_decoding_layout`
        drop them at once).
        """
        head_w = self.unembed_weight
        parts = 1 if head_w.device.type != "cpu" else min(torch.get_num_threads(),
                                                             SPLIT_MAX_BLOCKS)
        params = []  # (weight, bias) of each matrix, read without Module.__getattr__
        block: Any
        for block in self.h._modules.values():
            attn, mlp = block._modules["attn"]._modules, block._modules["mlp"]._modules
            for lin in (attn["c_attn"], attn["c_proj"], mlp["c_fc"], mlp["c_proj"]):
                params.append((lin._parameters["weight"], lin._parameters["bias"]))
            if "c_gate" in mlp:  # gated feed-forward layers only: the step's lb[4]
                lin = mlp["c_gate"]
                params.append((lin._parameters["weight"], lin._parameters["bias"]))
        # (the threads themselves: the whole product's summation order may follow them)
        key = (parts, torch.get_num_threads(), head_w.data_ptr(),
               *(t.data_ptr() for pair in params for t in pair if t is not None))
        cached = self.__dict__.get("_decode_blocks_cache")
        if cached is None or cached[0] != key:
            found = [_checked_blocks(w, b, parts) for w, b in params]
            per = len(found) // len(self.h)  # matrices per layer: 4, or 5 when gated
            blocks: list = [tuple(found[i:i + per]) for i in range(0, len(found), per)]
            blocks.append(_checked_blocks(head_w, None, parts))
            cached = (key, blocks)
            self.__dict__["_decode_blocks_cache"] = cached
        return cached[1]

    def _apply(self, fn, *args, **kwargs):  # to(), cuda(), double(), ...
        self.__dict__.pop("_decode_blocks_cache", None)  # views of the old storage
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_decode_blocks_cache", None)  # views: rebuilt on the copy's first step
        return state

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        """Class logits of the fine-tuning head from ``hidden`` ``(B, T, C)`` at the last token.

        P(y | x_1..x_m) = softmax(h^m · W_y).
        """
        if self.classifier is None:
            raise ValueError("this model has no fine-tuning head (n_classes == 0)")
        return self.classifier(hidden[:, -1])  # (B, n_classes)
