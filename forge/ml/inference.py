"""fp32 inference for a trained :class:`DominoTransformer` on CPU, about 2.3x as fast, equal to rounding.

Why a second forward pass: on CPUs with AVX-512, torch's default fp32 matrix product (MKL) runs at
about half the speed of oneDNN's, and the encoder layer's inference fast path spends a fifth of
its time in a masked softmax. Here the same weights are prepacked once for oneDNN's linear (ReLU
fused), attention is ``scaled_dot_product_attention`` (flash kernel), the embeddings plus the input
projection collapse into one ``embedding_bag`` over pre-projected tables, and the last layer runs
for the 8 tokens the heads read. (Cutting a batch's trailing absent trick tokens was tried: the
odd lengths made oneDNN and the attention kernel slower, not faster.) The arithmetic stays fp32,
but the sums run in other orders, so outputs match :meth:`DominoTransformer.forward` only to
fp32 rounding: measured up to 2.3e-5 on outputs of size 2-8 for the large model on AMD Zen 5,
3.7e-5 on Intel Sapphire Rapids (about 1e-5 relative; the tiny model about 2e-6). The tests
check every layout against :func:`fp32_tolerance`; a move whose top two legal logits are closer
than that may be chosen differently, so evaluation metrics may differ in the last digits
between CPUs (and between this forward and the module's).

Training keeps the standard module (autograd, dropout); this is for evaluation and play-outs.
Where torch lacks oneDNN the same forward runs on ``F.linear``; off CPU, :func:`inference_net`
returns the model itself.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forge.ml.model import DominoTransformer, ModelConfig, ModelOutput
from forge.ml.tokenize import N_FEATURES
from forge.oracle.rules import MAX_HAND

#: Rows a prepacked weight is laid out for (oneDNN's hint; other batch sizes still work).
PACK_ROWS = 256 * 32


def fp32_tolerance(config: ModelConfig, magnitude: float = 1.0) -> float:
    """How far two fp32 forwards of one model that sum in different orders (this one and the
    module's) may differ, on outputs whose largest absolute value is ``magnitude``.

    Derived from fp32 accumulation, not measured: a K-term fp32 sum taken in another order moves
    by a random walk of K roundings of at most eps/2 of the running sum, about eps * sqrt(K)
    relative to its terms. A forward chains 6 products per layer (Q/K/V projection, scores,
    weighted values, output projection, two feed-forward) plus the input projection and a head;
    LayerNorm brings each layer's output back to unit scale, so relative errors add up rather
    than compound. The bound takes the widest sum for every product and adds the products'
    errors linearly rather than in quadrature: that slack covers the random walk's tails. (Large
    model: 3.1e-4 at magnitude 4.5, where 2.3e-5 to 3.7e-5 is measured on two CPU families.)
    """
    widest = max(config.ff_dim, config.embed_dim, N_FEATURES * (config.embed_dim // 6))
    products = 6 * config.n_layers + 2
    return torch.finfo(torch.float32).eps * math.sqrt(widest) * products * max(1.0, magnitude)


@functools.cache
def onednn_linear_available() -> bool:
    """True where torch's oneDNN fused linear works here (x86 and most Arm CPU wheels): tried once
    on a tiny product, since these are internal ops that a build may lack or refuse."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        w = torch.ops.mkldnn._reorder_linear_weight(torch.eye(4), 8)
        y = torch.ops.mkldnn._linear_pointwise(torch.ones(8, 4), w, torch.zeros(4), "none", [], "")
        return bool(torch.equal(y, torch.ones(8, 4)))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _host(t: Tensor) -> Tensor:
    """A detached fp32 CPU copy (or view) of a parameter, wherever the model lives."""
    return t.detach().to("cpu", torch.float32)


class _Linear(NamedTuple):
    weight: Tensor  # prepacked for oneDNN (or plain, for F.linear)
    bias: Tensor | None
    onednn: bool

    @classmethod
    def of(cls, weight: Tensor, bias: Tensor | None, onednn: bool) -> _Linear:
        weight = _host(weight).contiguous()
        if onednn:
            weight = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS)
        return cls(weight, None if bias is None else _host(bias), onednn)

    @classmethod
    def like(cls, linear: nn.Linear, onednn: bool) -> _Linear:
        return cls.of(linear.weight, linear.bias, onednn)

    def __call__(self, x: Tensor, relu: bool = False) -> Tensor:
        if self.onednn:
            return torch.ops.mkldnn._linear_pointwise(
                x, self.weight, self.bias, "relu" if relu else "none", [None] if relu else [], "")
        y = F.linear(x, self.weight, self.bias)
        return F.relu_(y) if relu else y


class _Norm(NamedTuple):
    weight: Tensor
    bias: Tensor
    eps: float

    @classmethod
    def of(cls, norm: nn.LayerNorm) -> _Norm:
        return cls(_host(norm.weight), _host(norm.bias), norm.eps)

    def __call__(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


class _Layer(NamedTuple):
    qkv: _Linear  # packed Q, K, V projections
    q: _Linear | None  # the same rows apart: only the last layer (run for a few query tokens) has them
    kv: _Linear | None
    out: _Linear
    ff1: _Linear
    ff2: _Linear
    norm1: _Norm
    norm2: _Norm


class InferenceNet:
    """A frozen copy of a model's weights with a fast fp32 forward; call it like the model."""

    def __init__(self, model: DominoTransformer, onednn: bool | None = None):
        onednn = onednn_linear_available() if onednn is None else onednn
        cfg = model.config
        for layer in model.encoder.layers:
            if layer.activation is not F.relu and not isinstance(layer.activation, nn.ReLU):
                raise ValueError("InferenceNet supports ReLU encoder layers only")
        self.embed_dim, self.n_heads, self.norm_first = cfg.embed_dim, cfg.n_heads, cfg.norm_first
        # input_proj(cat(emb_f(t_f))) == bias + sum_f emb_f.weight @ W[:, cols_f].T, indexed by t_f:
        # one table of every feature's projected rows, summed by embedding_bag.
        proj = _host(model.input_proj.weight)
        tables, offsets, col, row = [], [], 0, 0
        for emb in model.embeddings:
            width = emb.embedding_dim
            tables.append(_host(emb.weight) @ proj[:, col : col + width].T)
            offsets.append(row)
            col, row = col + width, row + emb.num_embeddings
        self.table = torch.cat(tables).contiguous()
        self.offsets = torch.tensor(offsets, dtype=torch.long)
        self.input_bias = _host(model.input_proj.bias)
        n = len(model.encoder.layers)
        self.layers = [_layer(lay, onednn, split=i == n - 1) for i, lay in enumerate(model.encoder.layers)]
        self.final_norm = _Norm.of(model.encoder.norm) if model.encoder.norm is not None else None
        heads = (model.policy_head, model.q_head, model.value_head)  # one product, 3 output columns
        self.heads = _Linear.of(torch.cat([h.weight for h in heads]), torch.cat([h.bias for h in heads]), False)
        self.onednn = onednn

    @torch.inference_mode()
    def __call__(self, tokens: Tensor, masks: Tensor, players: Tensor) -> ModelOutput:
        """Same inputs and outputs as :meth:`DominoTransformer.forward`."""
        b, n, _ = tokens.shape
        x = F.embedding_bag((tokens.long() + self.offsets).view(b * n, -1), self.table, mode="sum")
        x = (x + self.input_bias).view(b, n, self.embed_dim)
        # SDPA's boolean mask (True = attend), or None when every token is present.
        present = masks != 0
        attend = None if bool(present.all()) else present.view(b, 1, 1, n)
        *body, last = self.layers
        for layer in body:
            x = self._layer(layer, x, x, attend)
        rows = torch.cat([torch.zeros(b, 1, dtype=torch.long),
                          1 + MAX_HAND * players.long().view(b, 1) + torch.arange(MAX_HAND)], 1)
        query = x.gather(1, rows.unsqueeze(-1).expand(-1, -1, self.embed_dim))
        read = self._layer(last, query, x, attend)  # the heads read 8 tokens: compute just those
        if self.final_norm is not None:
            read = self.final_norm(read)
        hand = self.heads(read[:, 1:])
        value = self.heads(read[:, 0])[:, 2]
        return ModelOutput(hand[..., 0], value, hand[..., 1])

    def _layer(self, layer: _Layer, query: Tensor, x: Tensor, attend: Tensor | None) -> Tensor:
        """One encoder layer for the ``query`` rows of ``x`` (``query is x``: all rows)."""
        if self.norm_first:
            y = query + self._attention(layer, layer.norm1(query), layer.norm1(x), attend, query is x)
            return y + self._ff(layer, layer.norm2(y))
        y = layer.norm1(query + self._attention(layer, query, x, attend, query is x))
        return layer.norm2(y + self._ff(layer, y))

    def _attention(self, layer: _Layer, query: Tensor, x: Tensor, attend: Tensor | None,
                   same: bool) -> Tensor:
        b, n, e = x.shape
        h = self.n_heads
        d = e // h
        if same:
            qkv = layer.qkv(x.reshape(b * n, e)).view(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:
            m = query.shape[1]
            k, v = layer.kv(x.reshape(b * n, e)).view(b, n, 2, h, d).permute(2, 0, 3, 1, 4)
            q = layer.q(query.reshape(b * m, e)).view(b, m, h, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        rows = out.shape[2]
        return layer.out(out.transpose(1, 2).reshape(b * rows, e)).view(b, rows, e)

    @staticmethod
    def _ff(layer: _Layer, y: Tensor) -> Tensor:
        b, n, e = y.shape
        return layer.ff2(layer.ff1(y.reshape(b * n, e), relu=True)).view(b, n, e)


def _layer(layer: nn.TransformerEncoderLayer, onednn: bool, split: bool) -> _Layer:
    attn = layer.self_attn
    w, b, e = attn.in_proj_weight, attn.in_proj_bias, attn.embed_dim
    q, kv = (_Linear.of(w[:e], b[:e], onednn), _Linear.of(w[e:], b[e:], onednn)) if split else (None, None)
    return _Layer(
        _Linear.of(w, b, onednn), q, kv,
        _Linear.like(attn.out_proj, onednn), _Linear.like(layer.linear1, onednn),
        _Linear.like(layer.linear2, onednn), _Norm.of(layer.norm1), _Norm.of(layer.norm2),
    )


def inference_net(model: DominoTransformer, device: str | torch.device = "cpu") -> DominoTransformer | InferenceNet:
    """The fastest exact forward for ``model`` on ``device``: an :class:`InferenceNet` on CPU."""
    if torch.device(device).type != "cpu":
        return model.eval().to(device)
    return InferenceNet(model.eval())
