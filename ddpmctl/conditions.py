"""Image conditions of a conditional denoiser: SR3 super-resolution (Saharia et al. 2021, "Image
super-resolution via iterative refinement"; seed 001, slide "Conditional DDPM for super-resolution":
"we upsample the low-resolution image to the target resolution using bicubic interpolation. The
result is concatenated with x_t along the channel dimension").

A condition is named by a spec, recorded in the checkpoint (``"condition": "sr:4"``):

* ``sr:F`` (F >= 2 dividing the image's height and width): the observation is y = A x with A the
  F x F average pooling of ``degrade --task sr --scale F`` (``operators.AveragePool``); the network
  sees c = bicubic upsampling of y to the full size (``torch.nn.functional.interpolate``, bicubic,
  ``align_corners=False``), in model space, as C more input channels: net(cat(x_t, c), c_noise).
  At training y comes from the clean batch (``from_clean``, optionally with Gaussian noise of the
  training option ``condition_noise``); at restoration from the observation file
  (``from_observation``): the same pooling and the same upsampler, so the two agree to rounding.

EDM's c_in scales x_t only; c enters as it is (``diffusion.Denoiser``). Both maps commute with the
data normalisation (pooling and bicubic weights sum to 1), so c is the same whether y is mapped to
model space before or after upsampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddpmctl.errors import InputError
from ddpmctl.operators import AveragePool

CONDITION_KINDS = ("sr",)


@dataclass(frozen=True)
class SRCondition:
    """SR3's condition ``sr:F``: c = bicubic(A x), A = F x F average pooling (module docstring)."""

    factor: int
    kind: str = "sr"

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.factor}"

    def check(self, data_kind: str, data_shape) -> int:
        """The channels c adds for data of ``data_shape`` (C, H, W); InputError (naming
        --condition) when the condition does not fit the data."""
        shape = tuple(int(s) for s in data_shape)
        if data_kind != "images" or len(shape) != 3:
            raise InputError(f"--condition {self.spec}: needs images (N, C, H, W), the data are {data_kind} {shape}")
        _, h, w = shape
        if h % self.factor or w % self.factor:
            raise InputError(f"--condition {self.spec}: the {h}x{w} images are not divisible by {self.factor}")
        return shape[0]

    def upsample(self, y: torch.Tensor) -> torch.Tensor:
        """c = bicubic upsampling of the low-resolution y (B, C, H/F, W/F) by F (align_corners=False)."""
        h, w = y.shape[-2] * self.factor, y.shape[-1] * self.factor
        return F.interpolate(y, size=(h, w), mode="bicubic", align_corners=False)

    def from_clean(self, x0: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The training condition of a clean batch x0 (model space): bicubic(A x0 + noise), A the
        average pooling of ``degrade --task sr`` (``noise``: shaped like A x0, already scaled)."""
        y = AveragePool(tuple(x0.shape[1:]), self.factor).A(x0)
        return self.upsample(y if noise is None else y + noise.to(y.dtype))

    def from_observation(self, y: torch.Tensor) -> torch.Tensor:
        """The condition of observations y (model space, (B, C, H/F, W/F)): bicubic(y)."""
        return self.upsample(y)

    def low_shape(self, data_shape) -> tuple[int, int, int]:
        """The shape of y = A x for one image of ``data_shape`` (C, H, W)."""
        c, h, w = (int(s) for s in data_shape)
        return c, h // self.factor, w // self.factor


def parse_condition(spec: str, option: str = "--condition") -> SRCondition:
    """The condition a spec names (``sr:4``); InputError (one line naming ``option``) otherwise."""
    text = str(spec).strip().lower()
    kind, colon, arg = text.partition(":")
    if kind not in CONDITION_KINDS:
        raise InputError(f"{option}: unknown condition '{spec}' (choose from sr:F, e.g. sr:4)")
    try:
        factor = int(arg) if colon else -1
    except ValueError:
        factor = -1
    if factor < 2:
        raise InputError(f"{option}: '{spec}': sr needs an integer factor >= 2, e.g. sr:4")
    return SRCondition(factor)
