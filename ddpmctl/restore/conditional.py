"""Restoration by a model trained for the task: SR3 (Saharia et al. 2021, "Image super-resolution via
iterative refinement"; seed 001, slide "Conditional DDPM for super-resolution"), a denoiser
eps_theta(x_t, y_LR, t) that sees the bicubic-upsampled observation beside x_t (``ddpmctl.conditions``,
``train --condition sr:F``). Restoring is then plain sampling of p(x | y): the model's own sampler,
with each row's condition c = bicubic(y) set on the denoiser by the batch driver
(``sampling.Batches.cond``, filled by ``restore.driver.run_restore``), so no step here touches y."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddpmctl import samplers as S
from ddpmctl.diffusion import Denoiser
from ddpmctl.restore.base import Observation


def sr3(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    generator,
    callback: Callable | None = None,
    *,
    obs: Observation,
    sampler: str,
    **options,
) -> torch.Tensor:
    """SR3: the sampler ``sampler`` (a ``samplers`` record's function, with its ``options``: the
    sampler's plan, ``restore.driver.plan_restore``) over ``times`` on the conditional ``denoiser``.
    ``obs`` is unused: the condition reached the denoiser through the batch driver."""
    return S.get_sampler(sampler).fn(denoiser, x, times, generator, callback=callback, **options)
