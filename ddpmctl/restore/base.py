"""What every restoration method shares: the observation it restores from, and the plain time grid."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddpmctl import samplers as S
from ddpmctl.operators import Operator
from ddpmctl.schedules import Process


@dataclass(frozen=True)
class Observation:
    """What a method restores from, in model space: y = A x + n with ``op`` = A and noise ``sigma_y``."""

    op: Operator
    y: torch.Tensor
    sigma_y: float


def plain_grid(process: Process, steps: int, sigma_y: float) -> torch.Tensor:
    """The samplers' grid ``make_times(process, steps)`` in the process's spacing (t_max ... 0)."""
    return S.make_times(process, steps, process.default_spacing)
