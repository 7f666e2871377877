"""Restoring x from y = A x + n with a diffusion model as the prior (seed 001, "Diffusion models for
imaging inverse problems"; the operators are in ``ddpmctl.operators``).

Everything runs in model space (images: [-1, 1]) with the marginal ``x_t = alpha_t x_0 + sigma_t eps``
of any process (discrete DDPM, VP, sub-VP, VE), so one code path serves every checkpoint. The
observation is mapped with the checkpoint's normalisation ``x_m = scale x + shift``:
``y_m = scale y + shift A 1`` and ``sigma_y,m = scale sigma_y`` (2 sigma_y for images). Steps reuse
the samplers' primitives ``samplers.ddim_step`` and ``samplers.ancestral_step``.

The methods, one ``Method`` record each in ``METHODS`` (``ddpmctl.restore_registry``, torch-free so
that ``--help`` starts fast; re-exported here), by family:

* ``projection``: ``ddnm`` (DDNM / DDNM+, with time travel) and ``repaint``;
* ``guidance``: ``dps`` and ``pigdm`` (a gradient through the network at each step);
* ``proximal``: ``diffpir`` (a closed-form data step between denoising steps);
* ``denoising``: ``sdedit`` (denoising only);
* ``conditional``: ``sr3`` (super-resolution by a model trained with the low-resolution image as
  its condition, ``train --condition sr:F``: the model's own sampler).

``driver`` plans a run (``plan_restore``: the task's default method, options, grid) and hands it to
the batch loop of ``ddpmctl.sampling`` (``run_restore``), with the posterior mean of K restorations.
"""

from ddpmctl.restore_registry import (  # noqa: I001  (the registry is part of this package's API)
    DEFAULT_METHOD,
    DEFAULT_SETTINGS,
    DEFAULT_ZETA,
    METHODS,
    OPTION_TYPES,
    TASKS,
    Method,
    check_method,
    default_method,
    describe_default,
    down_steps,
    get_method,
    jump_path,
    parse_options,
    per_task,
    repaint_path,
)
from ddpmctl.restore.base import Observation, plain_grid
from ddpmctl.restore.projection import ddnm, jump_back, repaint
from ddpmctl.restore.guidance import dps, pigdm, pigdm_r2
from ddpmctl.restore.proximal import SIGMA_N_MIN, diffpir, diffpir_x0
from ddpmctl.restore.denoising import sdedit, sdedit_start, sdedit_times
from ddpmctl.restore.conditional import sr3
from ddpmctl.restore.driver import (
    RestoreOptions,
    RestorePlan,
    check_observation,
    check_samples,
    comparison_rows,
    plan_restore,
    restoration_seed,
    restore,
    run_restore,
)

__all__ = [
    "DEFAULT_METHOD", "DEFAULT_SETTINGS", "DEFAULT_ZETA", "METHODS", "OPTION_TYPES", "SIGMA_N_MIN", "TASKS",
    "Method", "Observation", "RestoreOptions", "RestorePlan", "check_method", "check_observation", "check_samples",
    "comparison_rows", "ddnm", "default_method", "describe_default", "diffpir", "diffpir_x0", "down_steps", "dps",
    "get_method", "jump_back", "jump_path", "parse_options", "per_task", "pigdm", "pigdm_r2", "plain_grid",
    "plan_restore", "repaint", "repaint_path", "restoration_seed", "restore", "run_restore", "sdedit",
    "sdedit_start", "sdedit_times", "sr3",
]  # fmt: skip
