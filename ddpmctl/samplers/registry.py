"""The sampler registry: one ``Sampler`` record per sampler and one ``Solver`` record per ODE
solver, from which the CLI's choices and help, the man pages, docs/sample.md's table and
``expected_nfe`` are derived; ``plan`` checks a run against a process and makes its time grid.

The records are at the end of this module and name their functions in the family modules
(``ancestral``, ``ode``, ``stochastic``) as ``"module.function"``, imported when first called:
this module imports no torch, so that ``ddpmctl sample --help`` (and every command that shows
the samplers' names and defaults) starts without it (docs/startup.md). ``register`` adds more
records (a callable may be given instead of a name).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ddpmctl.errors import InputError

if TYPE_CHECKING:  # types only: the registry imports no torch
    import torch

    from ddpmctl.diffusion import Denoiser
    from ddpmctl.schedules import Process

DEFAULT_SAMPLER = "ode"  # what ``sample`` (and ``restore --method sr3``) runs when no --sampler is given
DEFAULT_SOLVER = "dpm++3m"
VARIANCES = ("small", "large")  # ddpm's reverse variance: beta-tilde (the posterior's) or beta_t


def _resolve(function: Callable | str) -> Callable:
    """A record's function: ``"ancestral.sample_ddpm"`` is imported from ``ddpmctl.samplers.ancestral``."""
    if callable(function):
        return function
    module, _, name = function.rpartition(".")
    return getattr(importlib.import_module(f"ddpmctl.samplers.{module}"), name)


@dataclass(frozen=True)
class Solver:
    """An ODE solver ``fn(denoiser, x, times, callback=None, **options)`` of ``sample_ode``."""

    name: str
    function: Callable | str  # the solver, or its "module.function" in this package (imported on first use)
    steps: int  # default steps
    nfe: Callable[[int], int | None]  # NFE of a run of k steps (None: adaptive)
    nfe_text: str
    help: str
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword -> default
    check: Callable[[Mapping[str, Any]], None] | None = None
    free_report: bool = True  # False: the callback's x0 costs extra (uncounted) evaluations

    @property
    def fn(self) -> Callable:
        return _resolve(self.function)


@dataclass(frozen=True)
class Sampler:
    """A sampler ``fn(denoiser, x, times, generator, callback=None, **options)`` and what it needs."""

    name: str
    function: Callable | str  # the sampler, or its "module.function" in this package (imported on first use)
    steps: int | None  # default steps (None: the solver's)
    nfe: Callable[[int, Mapping[str, Any]], int | None]  # NFE of k steps with these options
    nfe_text: str
    help: str
    source: str
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword -> default
    check: Callable[[Mapping[str, Any]], None] | None = None
    spacing: str = "uniform"  # default spacing
    all_steps: bool = False  # default on a process with T steps: all of them (else at most T)
    processes: tuple[str, ...] = ()  # the process kinds it is defined for (empty: every one)
    why: str = ""  # why it needs those processes

    @property
    def fn(self) -> Callable:
        return _resolve(self.function)

    def check_process(self, process: Process) -> None:
        if self.processes and process.kind not in self.processes:
            raise InputError(f"--sampler {self.name} does not apply to a {process.kind} model: {self.why}")

    def default_steps(self, process: Process, solver: Solver | None = None) -> int:
        """Steps when --steps is not given: on a process with T steps all T (``all_steps``: DDPM's
        Algorithm 2) or at most T; the ODE's default is the solver's (about 20 NFE)."""
        n = solver.steps if self.steps is None else self.steps
        if process.max_steps is None:
            return n
        return process.max_steps if self.all_steps else min(n, process.max_steps)


# the registry, filled by ``register`` (the records at the end of this module, in the CLI's and the docs' order)
ODE_SOLVERS: dict[str, Solver] = {}
SAMPLERS_BY_NAME: dict[str, Sampler] = {}


def register(*records: Sampler | Solver) -> None:
    """Add sampler and ODE solver records to the registry (a name may be registered once)."""
    for r in records:
        table = ODE_SOLVERS if isinstance(r, Solver) else SAMPLERS_BY_NAME
        if r.name in table:
            raise ValueError(f"{type(r).__name__} '{r.name}' is registered twice")
        table[r.name] = r


def get_sampler(name: str) -> Sampler:
    if name not in SAMPLERS_BY_NAME:
        raise InputError(f"--sampler: unknown sampler '{name}' (choose from {', '.join(SAMPLERS_BY_NAME)})")
    return SAMPLERS_BY_NAME[name]


def get_solver(name: str) -> Solver:
    if name not in ODE_SOLVERS:
        raise InputError(f"--solver: unknown ODE solver '{name}' (choose from {', '.join(ODE_SOLVERS)})")
    return ODE_SOLVERS[name]


@dataclass(frozen=True)
class Plan:
    """A checked sampler run: the record(s), the time grid and the sampler function's options."""

    sampler: Sampler
    solver: Solver | None
    spacing: str
    times: torch.Tensor
    options: dict  # keywords of ``sampler.fn`` (the solver's name and options included)

    @property
    def steps(self) -> int:
        return len(self.times) - 1

    @property
    def nfe(self) -> int | None:
        """Network evaluations per sample (None for an adaptive solver)."""
        return self.sampler.nfe(self.steps, self.options)

    @property
    def free_report(self) -> bool:
        """Whether reporting each step's state and x0 (trajectories, progress) costs nothing extra."""
        return self.solver is None or self.solver.free_report

    def run(self, denoiser: Denoiser, x, generator=None, callback=None) -> torch.Tensor:
        return self.sampler.fn(denoiser, x, self.times, generator, callback=callback, **self.options)


def _cast(name: str, default: Any, value: Any) -> Any:
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise InputError(f"--option {name}={value}: {name} takes {type(default).__name__} values") from None


def _options(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict:
    """``defaults`` with the ``given`` values that are not None, cast to the default's type."""
    return {k: v if given.get(k) is None else _cast(k, v, given[k]) for k, v in defaults.items()}


def option_names() -> tuple[str, ...]:
    """Every option of every sampler and ODE solver, in registry order."""
    return tuple(dict.fromkeys(k for r in (*SAMPLERS_BY_NAME.values(), *ODE_SOLVERS.values()) for k in r.options))


def parse_options(pairs: Sequence[str] | None) -> dict[str, str]:
    """``--option NAME=VALUE`` strings as {NAME: VALUE}; ``plan`` casts each value to the type of
    the option's default. A NAME that no sampler or solver takes is an InputError."""
    out: dict[str, str] = {}
    for pair in pairs or ():
        name, eq, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not value.strip():
            raise InputError(f"--option: expected NAME=VALUE, got '{pair}'")
        if name not in option_names():
            raise InputError(f"--option: no sampler takes '{name}' (options: {', '.join(option_names())})")
        out[name] = value.strip()
    return out


def plan(
    process: Process,
    sampler: str,
    steps: int | None = None,
    spacing: str | None = None,
    rho: float = 7.0,
    times: Sequence[float] | None = None,
    **options,
) -> Plan:
    """Check ``sampler`` and its ``options`` (``solver``, ``eta``, ``snr``, ...; those it does not
    take are ignored, except ``solver``) against ``process``, fill in the defaults and make the
    time grid; ``times`` is a grid given as it is (t_max ... 0: a distilled student's, which it
    was trained on), instead of ``steps`` and ``spacing``."""
    import torch  # which a process has imported already

    from ddpmctl.schedules import make_times

    record = get_sampler(sampler)
    record.check_process(process)
    solver = None
    if "solver" in record.options:
        solver = get_solver(options.get("solver") or record.options["solver"])
    elif options.get("solver") is not None:
        raise InputError(f"--solver: only the ode sampler takes a solver (got --sampler {sampler})")
    kwargs = {**_options(record.options, options), **(_options(solver.options, options) if solver else {})}
    for check in (record.check, solver.check if solver else None):
        if check is not None:
            check(kwargs)
    if times is not None:
        return Plan(record, solver, spacing or "recorded", torch.as_tensor(times, dtype=torch.float64), kwargs)
    steps = record.default_steps(process, solver) if steps is None else int(steps)
    # a sampler's "uniform" default is the process's own default grid (EDM, whose t = sigma: karras)
    spacing = spacing or (process.default_spacing if record.spacing == "uniform" else record.spacing)
    return Plan(record, solver, spacing, make_times(process, steps, spacing, rho=rho), kwargs)


def default_steps(sampler: str, process: Process, solver: str | None = None) -> int:
    """Steps a sampler takes when --steps is not given (``Sampler.default_steps``)."""
    record = get_sampler(sampler)
    return record.default_steps(process, get_solver(solver or DEFAULT_SOLVER) if record.steps is None else None)


def expected_nfe(sampler: str, steps: int, solver: str | None = None, **options) -> int | None:
    """The NFE of a ``steps``-step run (None for an adaptive solver), options at their defaults
    unless given."""
    record = get_sampler(sampler)
    return record.nfe(int(steps), _options(record.options, dict(options, solver=solver)))


def markdown_table() -> str:
    """docs/sample.md's table of samplers (a test keeps the two equal)."""
    rows = ["| sampler | defined for | NFE | source |", "|---|---|---|---|"]
    for s in SAMPLERS_BY_NAME.values():
        where = " and ".join(k.upper() for k in s.processes) + " only" if s.processes else "every process"
        rows.append(f"| `{s.name}` | {where} | {s.nfe_text} | {s.source} |")
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------------------------
# the records: ancestral (ddpm, ddim, sde, pc, langevin), the ODE (solvers, then ode), stochastic


def _check_eta(options: Mapping[str, Any]) -> None:
    if not 0.0 <= options["eta"] <= 1.0:
        raise InputError(f"--eta: must lie in [0, 1], got {options['eta']}")


def _check_variance(options: Mapping[str, Any]) -> None:
    if options["variance"] not in VARIANCES:
        raise InputError(f"--variance: unknown variance '{options['variance']}' (choose from {', '.join(VARIANCES)})")


def _check_langevin(options: Mapping[str, Any], least: int) -> None:
    if options["snr"] <= 0:
        raise InputError(f"--snr: must be > 0, got {options['snr']}")
    if options["corrector_steps"] < least:
        raise InputError(f"--corrector-steps: must be >= {least}, got {options['corrector_steps']}")


register(
    Sampler("ddpm", "ancestral.sample_ddpm", 1000, lambda k, o: k, "steps", "ancestral, Algorithm 2",
            "Ho et al. 2020, Algorithm 2 (seeds 000, 001, 004)",
            options={"variance": "small"}, check=_check_variance, all_steps=True),
    Sampler("ddim", "ancestral.sample_ddim", 50, lambda k, o: k, "steps", "--eta",
            "Song, Meng & Ermon 2021 (DDIM), eq. 12, 16", options={"eta": 0.0}, check=_check_eta),
    Sampler("sde", "ancestral.sample_sde", 1000, lambda k, o: k, "steps", "reverse-SDE Euler-Maruyama",
            "Song et al. 2021 (score SDE), eq. 6; Euler-Maruyama (seeds 000, 001)", all_steps=True),
    Sampler("pc", "ancestral.sample_pc", 500, lambda k, o: k + o["corrector_steps"] * (k - 1),
            "steps + M (steps - 1)", "predictor-corrector", "Song et al. 2021, Algorithms 2-3 (seed 001)",
            options={"snr": 0.16, "corrector_steps": 1}, check=lambda o: _check_langevin(o, 0), all_steps=True),
    Sampler("langevin", "ancestral.sample_langevin", 100, lambda k, o: k * o["corrector_steps"] + 1, "levels x M + 1",
            "annealed Langevin", "Song & Ermon 2019, Algorithm 1 (SMLD, seed 000)",
            options={"snr": 0.5, "corrector_steps": 2}, check=lambda o: _check_langevin(o, 1),
            processes=("ve", "edm"), why="annealed Langevin dynamics (SMLD) needs a ve process (edm is one)"),
)  # fmt: skip


def _check_tolerances(options: Mapping[str, Any]) -> None:
    if options["rtol"] <= 0 or options["atol"] <= 0:
        raise InputError(f"--rtol/--atol: must be > 0, got {options['rtol']}, {options['atol']}")


register(
    Solver("euler", "ode.ode_euler", 50, lambda k: k, "steps", "Euler in sigma~ (= DDIM eta 0)"),
    Solver("heun", "ode.ode_heun", 10, lambda k: 2 * k - 1, "2 steps - 1", "Heun, EDM Algorithm 1"),
    Solver("dpm++2m", "ode.ode_dpmpp_2m", 20, lambda k: k, "steps", "DPM-Solver++(2M), Lu et al. Algorithm 2"),
    Solver("dpm++3m", "ode.ode_dpmpp_3m", 20, lambda k: k, "steps", "DPM-Solver++(3M)"),
    Solver("rk45", "ode.ode_rk45", 20, lambda k: None, "adaptive", "adaptive Runge-Kutta 4(5), scipy",
           options={"rtol": 1e-5, "atol": 1e-5}, check=_check_tolerances, free_report=False),
)  # fmt: skip


def _solver_nfe(k: int, options: Mapping[str, Any]) -> int | None:
    return ODE_SOLVERS[options["solver"]].nfe(k)


def _solver_nfe_text() -> str:
    """``euler, dpm++2m, dpm++3m: steps; heun: 2 steps - 1; rk45: adaptive``."""
    texts = dict.fromkeys(s.nfe_text for s in ODE_SOLVERS.values())
    return "; ".join(f"{', '.join(n for n, s in ODE_SOLVERS.items() if s.nfe_text == t)}: {t}" for t in texts)


register(
    Sampler("ode", "ode.sample_ode", None, _solver_nfe, _solver_nfe_text(), "probability-flow ODE, --solver",
            "Song et al. 2021 eq. 13; Karras et al. 2022; Lu et al. 2022",
            options={"solver": DEFAULT_SOLVER}, spacing="logsnr"),
)  # fmt: skip


def _check_edm(options: Mapping[str, Any]) -> None:
    if options["churn"] < 0:
        raise InputError(f"--option churn: must be >= 0, got {options['churn']}")
    if not 0 <= options["s_tmin"] <= options["s_tmax"]:
        lo, hi = options["s_tmin"], options["s_tmax"]
        raise InputError(f"--option s_tmin/s_tmax: need 0 <= s_tmin <= s_tmax, got {lo}, {hi}")
    if not options["s_noise"] > 0:
        raise InputError(f"--option s_noise: must be > 0, got {options['s_noise']}")


def _check_restart(options: Mapping[str, Any]) -> None:
    if options["restarts"] < 0:
        raise InputError(f"--option restarts: must be >= 0, got {options['restarts']}")
    if options["restart_steps"] < 1:
        raise InputError(f"--option restart_steps: must be >= 1, got {options['restart_steps']}")
    if not 0 < options["s_tmin"] < options["s_tmax"]:
        lo, hi = options["s_tmin"], options["s_tmax"]
        raise InputError(f"--option s_tmin/s_tmax: need 0 < s_tmin < s_tmax, got {lo}, {hi}")


def _restart_nfe(k: int, o: Mapping[str, Any]) -> int:
    return 2 * k - 1 + (2 * o["restarts"] * o["restart_steps"] if k >= 2 else 0)


register(
    Sampler("edm", "stochastic.sample_edm", 64, lambda k, o: 2 * k - 1, "2 steps - 1", "EDM stochastic Heun, churn",
            "Karras et al. 2022 (EDM), Algorithm 2",
            options={"churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.0}, check=_check_edm,
            spacing="karras"),
    Sampler("euler-a", "stochastic.sample_euler_a", 50, lambda k, o: k, "steps", "Euler ancestral, --eta",
            "k-diffusion sample_euler_ancestral (= DDIM, Song et al. 2021a, with the same eta)",
            options={"eta": 1.0}, check=_check_eta, spacing="karras"),
    Sampler("dpm++2m-sde", "stochastic.sample_dpmpp_2m_sde", 30, lambda k, o: k, "steps",
            "DPM-Solver++(2M) SDE, --eta", "Lu et al. 2022 (DPM-Solver++); k-diffusion sample_dpmpp_2m_sde, midpoint",
            options={"eta": 1.0}, check=_check_eta, spacing="karras"),
    Sampler("restart", "stochastic.sample_restart", 18, _restart_nfe, "2 steps - 1 + 2 K N", "Heun + K restarts",
            "Xu et al. 2023 (Restart sampling), Algorithm 1",
            options={"restarts": 2, "restart_steps": 2, "s_tmin": 0.06, "s_tmax": 0.30}, check=_check_restart,
            spacing="karras"),
)  # fmt: skip
