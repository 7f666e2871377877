"""Every sampler, written once against the one noise-level core (k-diffusion style).

A process (``ddpmctl.schedules``: discrete DDPM, VP, sub-VP, VE) gives the marginal
``x_t = alpha_t x_0 + sigma_t eps``, the SDE coefficients ``f(t)``, ``g(t)^2`` and the log-SNR
``lambda_t = log(alpha_t^2 / sigma_t^2)``; a ``diffusion.Denoiser`` gives ``(eps, x0)`` at
``(x_t, t)`` (``score = -eps / sigma_t``) and counts network evaluations (NFE). Every sampler has
the signature

    sample_<name>(denoiser, x, times, generator, callback=None, **options) -> x

``x`` is the starting state at ``times[0]`` (noise times the prior std), ``times`` a decreasing
float64 grid (``make_times``) that ends with 0 when the sampler should finish with a denoising
step, ``generator`` the noise source (``sampling.NoiseStream`` for per-sample seeds, a
``torch.Generator`` or None), and ``callback({"i", "t", "x", "x0"})`` is called once per step with
the state before the step and its predicted x0. Each sampler (and each ODE solver) is one record of
the registry (``registry``), from which the CLI, the man pages, docs/sample.md's table and
``expected_nfe`` are derived. The functions live in the family modules:

* ``ancestral``: ddpm, ddim, sde, pc, langevin and the step primitives (``ancestral_step``,
  ``ddim_step``, ``langevin_step``, ``randn_like``);
* ``ode``: the probability-flow ODE's solvers and the ``ode`` sampler;
* ``stochastic``: EDM's stochastic sampler, Euler ancestral, DPM-Solver++(2M) SDE and Restart.

Adding a sampler touches its family module (the function) and ``registry`` (its record, which
names the function as ``"family.function"``). This package re-exports every public name, so
``samplers.plan``, ``samplers.ode_heun`` and ``samplers.SAMPLERS_BY_NAME`` are where they always
were. The registry needs no torch; the families (torch) are imported on first use of one of their
names (PEP 562), so ``ddpmctl sample --help`` starts without torch (docs/startup.md).

The last step, to t = 0, is a *denoising step* in every sampler: it returns the predicted
``x0 = E[x_0 | x_t]`` (Tweedie). For ddpm/ddim this is what their formulas give at s = 0
(DDPM's Algorithm 2 at t = 1 with z = 0); for Euler/Heun/DPM-Solver it is their step to sigma = 0
(EDM, k-diffusion); for sde, pc and langevin it is score_sde's ``noise_removal`` / NCSNv2's final
denoising step.

Sources: Ho et al. 2020 (DDPM, seeds 000/001/004); Song et al. 2021a (DDIM); Song et al. 2021b
(score SDE: reverse SDE, predictor-corrector, probability-flow ODE; seeds 000/001); Karras et al.
2022 (EDM: Heun, rho-spacing, the stochastic sampler); Lu et al. 2022 (DPM-Solver++); Song & Ermon
2019 (SMLD, annealed Langevin dynamics; seed 000); Xu et al. 2023 (Restart).
"""

from __future__ import annotations

import importlib

from ddpmctl.betas import SPACINGS
from ddpmctl.samplers.registry import (
    DEFAULT_SAMPLER,
    DEFAULT_SOLVER,
    ODE_SOLVERS,
    SAMPLERS_BY_NAME,
    VARIANCES,
    Plan,
    Sampler,
    Solver,
    default_steps,
    expected_nfe,
    get_sampler,
    get_solver,
    markdown_table,
    option_names,
    parse_options,
    plan,
    register,
)

SAMPLERS = tuple(SAMPLERS_BY_NAME)
SOLVERS = tuple(ODE_SOLVERS)

# names imported on first use (they need torch): name -> the module that defines it
_LAZY = {
    **dict.fromkeys(("ancestral", "ode", "stochastic"), None),  # the family modules themselves
    **dict.fromkeys(
        ("_cb", "_f", "_steps", "ancestral_step", "ddim_step", "langevin_step", "randn_like", "sample_ddim",
         "sample_ddpm", "sample_langevin", "sample_pc", "sample_sde"),
        "ancestral",
    ),
    **dict.fromkeys(
        ("RATIO_ORDER_1", "RATIO_ORDER_2", "dpmpp_2m", "dpmpp_update", "ode_dpmpp", "ode_dpmpp_2m", "ode_dpmpp_3m",
         "ode_euler", "ode_heun", "ode_rk45", "sample_ode"),
        "ode",
    ),
    **dict.fromkeys(("sample_dpmpp_2m_sde", "sample_edm", "sample_euler_a", "sample_restart", "time_at"), "stochastic"),
    **dict.fromkeys(("make_times", "sigma_tilde", "start_std"), "ddpmctl.schedules"),
}  # fmt: skip


def __getattr__(name: str):
    """A name of ``_LAZY``, imported on its first use (PEP 562), then kept."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    source = _LAZY[name]
    if source is None:  # a family module
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        value = getattr(importlib.import_module(source if "." in source else f"{__name__}.{source}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "DEFAULT_SAMPLER",
    "DEFAULT_SOLVER",
    "ODE_SOLVERS",
    "RATIO_ORDER_1",
    "RATIO_ORDER_2",
    "SAMPLERS",
    "SAMPLERS_BY_NAME",
    "SOLVERS",
    "SPACINGS",
    "VARIANCES",
    "Plan",
    "Sampler",
    "Solver",
    "_cb",
    "_f",
    "_steps",
    "ancestral",
    "ancestral_step",
    "ddim_step",
    "default_steps",
    "dpmpp_2m",
    "dpmpp_update",
    "expected_nfe",
    "get_sampler",
    "get_solver",
    "langevin_step",
    "make_times",
    "markdown_table",
    "option_names",
    "parse_options",
    "ode",
    "ode_dpmpp",
    "ode_dpmpp_2m",
    "ode_dpmpp_3m",
    "ode_euler",
    "ode_heun",
    "ode_rk45",
    "plan",
    "randn_like",
    "register",
    "sample_ddim",
    "sample_dpmpp_2m_sde",
    "sample_edm",
    "sample_euler_a",
    "sample_restart",
    "sample_ddpm",
    "sample_langevin",
    "sample_ode",
    "sample_pc",
    "sample_sde",
    "sigma_tilde",
    "start_std",
    "stochastic",
    "time_at",
]
