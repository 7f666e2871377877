"""Embeddings of the noise level ``c_noise`` (what ``Process.c_noise(t)`` returns) for the networks.

* ``sinusoidal``: the Transformer / DDPM position embedding (seed 002, "sinusoidal position
  embeddings"; Ho et al. 2020 ``get_timestep_embedding``) for discrete step indices
  ``c_noise in [0, T-1]``: with ``half = dim / 2`` frequencies ``f_k = 10000^(-k / (half - 1))``,
  ``emb(c) = [sin(c f_0) .. sin(c f_{half-1}), cos(c f_0) .. cos(c f_{half-1})]``.
* ``fourier``: Gaussian Fourier features (seed 000, "GaussianFourierProjection"; Tancik et al. 2020,
  Song et al. 2021 score_sde) for continuous ``c_noise`` (a time ``t in [0, 1]`` or ``log sigma``):
  a fixed random ``W ~ N(0, scale^2)`` of ``dim / 2`` frequencies, ``emb(c) = [sin(2 pi W c), cos(2 pi W c)]``.
  ``W`` is a buffer: it is not trained, but it is saved in and loaded from checkpoints.

``TimeEmbedding`` = one of these features followed by an MLP ``Linear - SiLU - Linear``; its
output is shared by every block of a network (each block adds its own projection of it).

``ClassEmbedding``: a class-conditional network (``num_classes`` K > 0) adds a learned vector of
its class label to the time embedding, ``emb = SiLU(TimeEmbedding(c_noise) + E[label])``, where row
K of ``E`` is the null class: the unconditional model that label dropout trains in the same
network (classifier-free guidance, Ho & Salimans 2022, section 3.2).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ddpmctl.errors import InputError

EMBEDDINGS = ("sinusoidal", "fourier")


class SinusoidalEmbedding(nn.Module):
    """``c (B,) -> (B, dim)`` sinusoidal features of DDPM (frequencies 1 .. 1/10000)."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        if dim < 4 or dim % 2:
            raise InputError(f"sinusoidal embedding: dim must be even and >= 4, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / (half - 1))
        # a deterministic function of dim: not saved (persistent=False), rebuilt identically
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = dim

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        args = c.float()[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class FourierEmbedding(nn.Module):
    """``c (B,) -> (B, dim)`` Gaussian Fourier features ``[sin(2 pi W c), cos(2 pi W c)]``,
    ``W ~ N(0, scale^2)`` fixed at construction and stored as a (saved) buffer."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise InputError(f"fourier embedding: dim must be even and >= 2, got {dim}")
        if not (scale > 0 and math.isfinite(scale)):
            raise InputError(f"fourier embedding: scale must be a positive number, got {scale}")
        self.register_buffer("W", torch.randn(dim // 2) * scale)
        self.dim = dim

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        args = (2 * math.pi) * c.float()[:, None] * self.W.float()[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class TimeEmbedding(nn.Module):
    """Features of ``c_noise`` (sinusoidal or Fourier, ``feature_dim`` wide) followed by
    ``Linear(feature_dim, out_dim) - SiLU - Linear(out_dim, out_dim)``."""

    def __init__(self, kind: str, feature_dim: int, out_dim: int, fourier_scale: float = 16.0):
        super().__init__()
        if kind == "sinusoidal":
            self.features = SinusoidalEmbedding(feature_dim)
        elif kind == "fourier":
            self.features = FourierEmbedding(feature_dim, fourier_scale)
        else:
            raise InputError(f"unknown embedding '{kind}' (choose from {', '.join(EMBEDDINGS)})")
        self.kind = kind
        self.mlp = nn.Sequential(nn.Linear(feature_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(c_noise))


class ClassEmbedding(nn.Module):
    """``labels (B,) int64 in [0, K] -> (B, dim)``: a table of K + 1 learned vectors, row K the null
    class (no label). A missing ``labels`` (None) is the null class for every sample.

    The table starts at zero, so a new conditional network computes what its unconditional
    counterpart computes, and building it draws no random numbers."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = int(num_classes)
        self.weight = nn.Parameter(torch.zeros(self.num_classes + 1, dim))

    def forward(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        if labels is None:
            return self.weight[self.num_classes].expand(batch, -1)
        return self.weight[labels.to(device=self.weight.device, dtype=torch.long)]
