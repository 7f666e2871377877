"""Residual MLP noise predictor for vectors / point clouds ``(B, D)`` (the Swiss-roll / 2-D
experiments of seed 000).

    h = Linear(D, hidden)(x)
    blocks x:  h = h + Linear(hidden, hidden)(SiLU(Linear(hidden, hidden)(SiLU(LN(h))) + Linear(emb)))
    out = Linear(hidden, D)(SiLU(LN(h)))            (zero-initialised: the net starts at 0)

``emb`` = SiLU(TimeEmbedding(c_noise)) (sinusoidal or Gaussian Fourier features + MLP); with
``num_classes`` K > 0, SiLU(TimeEmbedding(c_noise) + ClassEmbedding(label)) (``nets.embeddings``).
The second Linear of each block is zero-initialised, so each block starts as the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ddpmctl.nets.embeddings import ClassEmbedding, TimeEmbedding


class MLPBlock(nn.Module):
    def __init__(self, hidden: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(emb_dim, hidden)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc2 = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        r = self.fc1(F.silu(self.norm(h))) + self.emb(emb)
        return h + self.fc2(self.dropout(F.silu(r)))


class MLP(nn.Module):
    """``MLP(**config)``; ``forward(x (B, D), c_noise (B,), class_labels=None) -> (B, D)``
    (``class_labels`` (B,) int64 in [0, K]: K or None is the null class).
    Build it with ``ddpmctl.nets.build_net(config)``, which validates the config first."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        blocks: int,
        emb_dim: int,
        dropout: float,
        embedding: str,
        fourier_scale: float,
        num_classes: int = 0,
        type: str = "mlp",  # noqa: A002 - the config's own key
    ):
        super().__init__()
        self.time_embed = TimeEmbedding(embedding, emb_dim, emb_dim, fourier_scale)
        self.in_fc = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(MLPBlock(hidden, emb_dim, dropout) for _ in range(blocks))
        self.out_norm = nn.LayerNorm(hidden)
        self.out_fc = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out_fc.weight)
        nn.init.zeros_(self.out_fc.bias)
        self.num_classes = num_classes
        if num_classes > 0:  # last, so the other layers start as in the unconditional network
            self.class_embed = ClassEmbedding(num_classes, emb_dim)

    def muon_parameters(self) -> list[nn.Parameter]:
        """The blocks' weight matrices, which ``--optimizer muon`` trains with Muon; the input and
        output layers, the time embedding, biases and norms stay with AdamW."""
        return [p for p in self.blocks.parameters() if p.ndim >= 2]

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_embed(c_noise)
        if self.num_classes > 0:
            emb = emb + self.class_embed(class_labels, x.shape[0]).to(emb.dtype)
        emb = F.silu(emb)
        h = self.in_fc(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out_fc(F.silu(self.out_norm(h)))
