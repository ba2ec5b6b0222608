"""DominoTransformer: reads format-v1 tokens, scores the mover's 7 hand slots and the state.

Outputs are in the mover's perspective (the team to move wants them high) and normalised by
42 points, so one network serves both teams and the losses stay on one scale.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forge.errors import InputError

# the sizes by name live in a light module (configuration checks import them without torch)
from forge.ml.model_presets import PRESETS as PRESETS
from forge.ml.model_presets import ModelConfig as ModelConfig
from forge.ml.model_presets import preset as preset
from forge.ml.tokenize import FEATURE_VOCAB, N_FEATURES
from forge.oracle.rules import MAX_HAND, TOTAL_POINTS

#: Features that carry most identity get the wider embedding (embed_dim // 6), the flags and
#: small relations the narrower one (embed_dim // 12).
WIDE_FEATURES = frozenset({0, 1, 4, 9, 10})
#: Points that one unit of the value and Q heads stands for.
VALUE_SCALE = float(TOTAL_POINTS)


class ModelOutput(NamedTuple):
    logits: Tensor  # (B, 7) policy scores for the mover's local dominoes (mask illegal ones yourself)
    value: Tensor  # (B,) state value for the mover, in units of 42 points
    q: Tensor  # (B, 7) Q per local domino for the mover, in units of 42 points

    @property
    def value_points(self) -> Tensor:
        """(B,) the state's value in points for the mover's team (the oracle's V times the mover's sign)."""
        return self.value * VALUE_SCALE

    @property
    def q_points(self) -> Tensor:
        """(B, 7) each local domino's Q in points for the mover's team (illegal slots mean nothing)."""
        return self.q * VALUE_SCALE


def best_legal_q(out: ModelOutput, legal: Tensor) -> Tensor:
    """(B,) the Q head's value of the best legal move, units of 42 points, mover's view. A row without a
    legal move (a terminal state, which the tokenizer drops, in a dataset made some other way) has no
    best move: its value is the value head's there, never -inf (one such row made every mean infinite)."""
    any_legal = (legal != 0).any(-1)
    best = out.q.float().masked_fill(legal == 0, float("-inf")).max(-1).values
    return torch.where(any_legal, best, out.value.float())


def game_value(out: ModelOutput, legal: Tensor, heads: Collection[str]) -> Tensor | None:
    """(B,) the model's value of the state for the mover, in units of 42 points, or None when
    neither head that could say it was trained.

    With a trained Q head it is the best legal move's Q: in a game of perfect information
    V = max Q exactly, and the Q head, trained on every legal move, predicts it better than the
    value head does (golden val after 10 CPU-minutes: 6.3 points of error against 7.5); else the
    value head's."""
    if "q" in heads:
        return best_legal_q(out, legal)
    if "value" in heads:
        return out.value
    return None


#: Heads a model can play by: "policy" (its move logits) or "q" (the move of highest predicted Q).
MOVE_HEADS: tuple[str, ...] = ("policy", "q")


def move_scores(out: ModelOutput, move_head: str = "policy") -> Tensor:
    """The (B, 7) scores whose legal argmax is the model's move: one rule for metrics, play-outs
    and views, whichever head the model was trained to play by."""
    if move_head == "policy":
        return out.logits
    if move_head == "q":
        return out.q
    raise InputError(f"move head must be one of {', '.join(MOVE_HEADS)}, got {move_head!r}")


class DominoTransformer(nn.Module):
    """Per-feature embeddings -> concat -> projection -> transformer encoder -> heads.

    Move logits and Q come from the mover's 7 hand tokens (1 + 7*mover + i) so a move's score
    is read where that domino lives; the value comes from the context token.
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config = config or ModelConfig()
        widths = [
            config.embed_dim // 6 if f in WIDE_FEATURES else config.embed_dim // 12
            for f in range(N_FEATURES)
        ]
        self.embeddings = nn.ModuleList(nn.Embedding(v, w) for v, w in zip(FEATURE_VOCAB, widths))
        self.input_proj = nn.Linear(sum(widths), config.embed_dim)
        layer = nn.TransformerEncoderLayer(
            d_model=config.embed_dim,
            nhead=config.n_heads,
            dim_feedforward=config.ff_dim,
            dropout=config.dropout,
            batch_first=True,
            norm_first=config.norm_first,
        )
        self.encoder = nn.TransformerEncoder(
            layer, config.n_layers, norm=nn.LayerNorm(config.embed_dim) if config.norm_first else None,
            enable_nested_tensor=False,
        )
        self.policy_head = nn.Linear(config.embed_dim, 1)
        self.value_head = nn.Linear(config.embed_dim, 1)
        self.q_head = nn.Linear(config.embed_dim, 1)
        self.register_buffer("_slots", torch.arange(MAX_HAND), persistent=False)
        self.register_buffer("_zero", torch.zeros(1, 1, dtype=torch.long), persistent=False)

    def forward(self, tokens: Tensor, masks: Tensor, players: Tensor) -> ModelOutput:
        """tokens (B,32,12), masks (B,32), players (B,): any integer dtype (int8 straight from the store)."""
        tokens = tokens.long()
        x = torch.cat([emb(tok) for emb, tok in zip(self.embeddings, tokens.unbind(-1))], dim=-1)
        x = self.input_proj(x)
        b = x.shape[0]
        attend = (masks != 0).view(b, 1, 1, -1)  # keys each query may attend to: one mask for all heads
        *body, last = self.encoder.layers
        for layer in body:
            x = encoder_layer(layer, x, x, attend)
        # Only the context token and the mover's hand feed the heads, so the last layer computes
        # those 8 outputs alone (same arithmetic as the full layer, about a sixth less work).
        idx = torch.cat([self._zero.expand(b, 1), 1 + MAX_HAND * players.long().unsqueeze(1) + self._slots], 1)
        read = encoder_layer(last, x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1])), x, attend)
        if self.encoder.norm is not None:
            read = self.encoder.norm(read)
        hand = read[:, 1:]
        return ModelOutput(
            self.policy_head(hand).squeeze(-1),
            self.value_head(read[:, 0]).squeeze(-1),
            self.q_head(hand).squeeze(-1),
        )


def encoder_layer(layer: nn.TransformerEncoderLayer, query: Tensor, x: Tensor, attend: Tensor) -> Tensor:
    """``layer`` (its own weights, dropouts and arithmetic) for the ``query`` rows of ``x``; pass
    ``x`` itself as ``query`` for every row. ``attend`` (B, 1, 1, S) is True where a key may be
    attended to.

    Why not ``layer(x)``: in training, ``nn.MultiheadAttention`` transposes to sequence-first,
    copies Q, K and V into per-head layouts and expands the padding mask to every head, forward
    and backward; here attention reads (B, heads, S, D) views of one projection.
    """

    def ff(y: Tensor) -> Tensor:
        return layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(y)))))

    if layer.norm_first:
        kv = layer.norm1(x)
        q = kv if query is x else layer.norm1(query)
        y = query + layer.dropout1(_attention(layer.self_attn, q, kv, attend))
        return y + ff(layer.norm2(y))
    y = layer.norm1(query + layer.dropout1(_attention(layer.self_attn, query, x, attend)))
    return layer.norm2(y + ff(y))


def _attention(attn: nn.MultiheadAttention, query: Tensor, x: Tensor, attend: Tensor) -> Tensor:
    """``attn(query, x, x)`` for batch-first inputs, through ``scaled_dot_product_attention``."""
    b, n, e = query.shape
    h = attn.num_heads
    w, bias = attn.in_proj_weight, attn.in_proj_bias
    if query is x:
        q, k, v = F.linear(x, w, bias).view(b, n, 3, h, e // h).permute(2, 0, 3, 1, 4)
    else:
        q = F.linear(query, w[:e], bias[:e]).view(b, n, h, e // h).transpose(1, 2)
        k, v = F.linear(x, w[e:], bias[e:]).view(b, x.shape[1], 2, h, e // h).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=attn.dropout if attn.training else 0.0)
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, e))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
