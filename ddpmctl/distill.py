"""Progressive distillation (Salimans & Ho 2022, "Progressive distillation for fast sampling of
diffusion models", Algorithm 2) of a checkpoint's deterministic DDIM sampler into a student that
samples in a few steps.

    from ddpmctl.distill import DistillConfig, distill
    result = distill("ckpt/", "triangles.npy", "student/", DistillConfig(from_steps=64, to_steps=4))

The teacher's N-step grid is the one ``ddpmctl sample --sampler ddim --steps N`` uses
(``samplers.plan``): t_0 = t_max > t_1 > ... > t_N = 0. Round r (r = 1, 2, ...) distils a teacher
on every 2^(r-1)-th time of that grid into a student on every 2^r-th, initialised from the teacher
(round 1: the checkpoint's own weights, its EMA). Per update, for x ~ data, eps ~ N(0, I) and a
student step i ~ U{0 .. K-1} (K = N / 2^r), with t, t', t'' the teacher's times 2i, 2i + 1, 2i + 2:

    z_t   = alpha_t x + sigma_t eps
    z_t'  = DDIM(z_t;  t  -> t',  teacher),   z_t'' = DDIM(z_t'; t' -> t'', teacher)   (``ddim_step``, eta 0)
    x~    = (z_t'' - (sigma_t''/sigma_t) z_t) / (alpha_t'' - (sigma_t''/sigma_t) alpha_t)  (``distill_target``)
    L     = max(SNR(t), 1) ||x~ - x^_student(z_t)||^2                         (truncated SNR, ``snr_weight``)

x~ is the x0 prediction with which one DDIM step t -> t'' lands on the teacher's z_t'' (Algorithm
2). The student then becomes the teacher and K halves, until K = ``to_steps``. Each round is
``steps_per_round`` AdamW (or Muon) updates with a linear warm-up and a linear decay of the
learning rate to 0 (``train.optim``), gradient clipping and optionally an EMA of the weights.

x~ is a convex combination of the teacher's two x0 predictions: with SNR decreasing in t,
x~ = (a x0(z_t') + b x0(z_t)) / (a + b), a = sigma_t'' (alpha_t''/sigma_t'' - alpha_t'/sigma_t')
>= 0 and b = sigma_t'' (alpha_t'/sigma_t' - alpha_t/sigma_t) >= 0. So a teacher whose x0 is
clipped to the data range (images, as ``sample`` clips) gives targets in that range, and the
student may be sampled with clipping too.

Every round's student is a checkpoint like any other (``checkpoint.save_model``) whose metadata
also records ``"distill"`` (teacher, rounds, steps, ...) and ``"sampling"``: ddim on its K-step
grid, which ``sampling.recorded_sampling`` makes the default of ``sample``. The intermediate
students are kept as ``student-K.safetensors``; the last one is ``model.safetensors``.

Only variance-preserving processes (ddpm, vp) are distilled: the paper's derivation and its
weighting assume alpha_t^2 + sigma_t^2 = 1 (its section 2). Class-conditional and
self-conditioned teachers are refused. A teacher guided by a weaker model (autoguidance,
``guide``) is distilled in round 1 as the guided sampler it is: the student learns the guided
DDIM (as Meng et al. 2023 distil classifier-free guidance), and costs 1 NFE per step.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ddpmctl import __version__
from ddpmctl import checkpoint as ckpt
from ddpmctl.diffusion import Denoiser, q_sample
from ddpmctl.distill_options import (  # noqa: F401  (re-exported: the options are part of this module's API)
    DEFAULT_FROM_STEPS,
    PROCESSES,
    WEIGHTING,
    DistillConfig,
    check_steps,
    student_file,
)
from ddpmctl.errors import InputError, RunError

STUDENT_GLOB = "student-*.safetensors"


# --------------------------------------------------------------------------------------------
# the formulas


def _col(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample coefficients (B,) float64 shaped to broadcast against x, in x's dtype."""
    c = torch.as_tensor(c, dtype=torch.float64).expand(x.shape[0])
    return c.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def distill_target(process, z_t: torch.Tensor, z_s: torch.Tensor, t, s) -> torch.Tensor:
    """Salimans & Ho 2022, Algorithm 2: the x0 prediction x~ with which one DDIM step t -> s
    (eta = 0) from z_t lands on z_s,
    x~ = (z_s - (sigma_s / sigma_t) z_t) / (alpha_s - (sigma_s / sigma_t) alpha_t)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    s = torch.as_tensor(s, dtype=torch.float64)
    ratio = process.sigma(s) / process.sigma(t)
    return (z_s - _col(ratio, z_t) * z_t) / _col(process.alpha(s) - ratio * process.alpha(t), z_t)


def snr_weight(process, t) -> torch.Tensor:
    """The truncated-SNR weight max(SNR(t), 1) = max(exp(lambda_t), 1) of the x0 error (Salimans & Ho
    2022, section 4: max(||x - x^||^2, ||eps - eps^||^2); Algorithm 2's w(lambda_t)), float64."""
    return torch.exp(process.log_snr(torch.as_tensor(t, dtype=torch.float64))).clamp(min=1.0)


@torch.no_grad()
def teacher_target(teacher: Denoiser, z_t: torch.Tensor, t, t_mid, t_end) -> torch.Tensor:
    """x~ of two DDIM steps of the teacher, t -> t_mid -> t_end (``samplers.ddim_step``, eta 0)."""
    from ddpmctl.samplers import ddim_step

    process = teacher.process
    z_mid = ddim_step(z_t, teacher(z_t, t), t, t_mid, process)
    z_end = ddim_step(z_mid, teacher(z_mid, t_mid), t_mid, t_end, process)
    return distill_target(process, z_t, z_end, t, t_end)


def distill_loss(student: Denoiser, teacher: Denoiser, x0: torch.Tensor, eps: torch.Tensor, times) -> torch.Tensor:
    """The per-sample loss max(SNR(t), 1) mean((x~ - x^_student(z_t))^2), (B,), with ``times``
    = (t, t', t'') (each (B,) float64) and z_t = alpha_t x0 + sigma_t eps."""
    t, t_mid, t_end = times
    z_t = q_sample(teacher.process, x0, t, eps)
    target = teacher_target(teacher, z_t, t, t_mid, t_end)
    err = (student(z_t, t).x0.float() - target.float()).square()
    return snr_weight(teacher.process, t).to(err.device, err.dtype) * err.reshape(err.shape[0], -1).mean(1)


# --------------------------------------------------------------------------------------------
# the teacher, the data, the grid


@dataclass
class Job:
    """A checked distillation: the teacher, its guide, the data, the grid and the rounds."""

    model: object  # checkpoint.LoadedModel: the teacher of round 1
    guide: object | None
    data: object  # train.TrainData in the teacher's normalisation
    times: torch.Tensor  # the N-step grid of round 1's teacher, t_max ... 0 (N + 1 times)
    rounds: int
    cfg: DistillConfig
    teacher_path: str
    guide_path: str | None
    out: Path
    first_round: int = 1  # > 1 when resuming
    update: int = 0  # updates done in earlier rounds (seeds continue from there)
    updates: list = field(default_factory=list)  # the updates of each finished round


def check_teacher(model, name: str) -> None:
    """InputError unless progressive distillation applies to the checkpoint ``model``."""
    kind = model.process.kind
    if kind not in PROCESSES:
        raise InputError(
            f"{name}: progressive distillation needs a variance-preserving process (ddpm or vp; Salimans & Ho "
            f"2022 assume alpha^2 + sigma^2 = 1), this checkpoint's is {kind}"
        )
    if model.num_classes:
        raise InputError(f"{name}: class-conditional teachers are not supported by distill (docs/distill.md)")
    if getattr(model.net, "self_cond", False):
        raise InputError(f"{name}: self-conditioned teachers are not supported by distill (docs/distill.md)")


def teacher_grid(model, cfg: DistillConfig) -> tuple[torch.Tensor, int]:
    """(round 1's teacher grid, its steps N): the grid a distilled teacher records, else the ddim
    sampler's N-step grid (``samplers.plan``, the process's default spacing)."""
    from ddpmctl import samplers as S

    rec = model.meta.get("sampling")
    if rec:
        k = int(rec["steps"])
        if cfg.from_steps is not None and int(cfg.from_steps) != k:
            raise InputError(f"--from-steps {cfg.from_steps}: the teacher is a student distilled for {k} steps")
        return torch.tensor([float(t) for t in rec["times"]], dtype=torch.float64), k
    n = DEFAULT_FROM_STEPS if cfg.from_steps is None else int(cfg.from_steps)
    T = model.process.max_steps
    if T is not None and n > T:
        raise InputError(f"--from-steps {n}: the teacher's ddpm process has T = {T} steps (at most T)")
    return S.plan(model.process, "ddim", n).times, n


def open_teacher_data(path, model):
    """The distillation data (``train.open_data``) in the teacher's recorded normalisation; InputError
    when its kind or shape differs from the teacher's."""
    from ddpmctl.train import open_data

    data = open_data(path, "none")
    if data.kind != model.data_kind or tuple(data.shape) != tuple(model.data_shape):
        raise InputError(
            f"{path}: {data.kind} of shape {list(data.shape)}; the teacher was trained on {model.data_kind} "
            f"of shape {list(model.data_shape)}"
        )
    data.normalization = model.normalization
    return data


def plan_distill(
    teacher: str,
    data: str,
    out_dir: str,
    cfg: DistillConfig,
    guide: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Job:
    """Check everything before any work: the teacher (and guide), the data, the steps, the output
    folder (one holding a student only with ``overwrite``); with ``resume``, the last finished
    round in ``out_dir`` is the next round's teacher."""
    from ddpmctl.checkpoint import load_model
    from ddpmctl.sampling import check_guide

    cfg = copy.deepcopy(cfg).validate()
    model = load_model(teacher)
    check_teacher(model, teacher)
    cfg = cfg.with_teacher_defaults(model.meta.get("train") or {})
    times, n = teacher_grid(model, cfg)
    rounds = check_steps(n, cfg.to_steps)
    guide_model = None
    if guide is not None:
        guide_model = load_model(guide)
        check_guide(model, guide_model, cfg.guidance)
    elif cfg.guidance != 1.0:
        raise InputError("--guidance: needs --guide (the weaker model that guides the teacher)")
    out = Path(out_dir)
    job = Job(model, guide_model, open_teacher_data(data, model), times, rounds, cfg,
              str(Path(teacher).resolve()), None if guide is None else str(Path(guide).resolve()), out)  # fmt: skip
    _check_out_dir(out, resume, overwrite)
    return _resumed(job) if resume else job


def _students(out: Path) -> list[Path]:
    """The students a distillation left in ``out`` (model.safetensors and student-K files)."""
    if not out.is_dir():
        return []
    return [p for p in (out / ckpt.MODEL_FILE, *sorted(out.glob(STUDENT_GLOB))) if p.exists()]


def _check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if not out.parent.exists():
        raise InputError(f"{out}: parent folder {out.parent} does not exist")
    if resume and not out.is_dir():
        raise InputError(f"--resume: {out} does not exist (nothing to continue)")
    if not resume and not overwrite and _students(out):
        raise InputError(f"{out}: already holds a distilled student (--force to overwrite, --resume to continue)")


def _resumed(job: Job) -> Job:
    """The job from the round after the last one finished in ``job.out`` (its student-K file, made
    from the same teacher, grid and data); InputError when there is none or all are done."""
    done = []
    for path in job.out.glob(STUDENT_GLOB):
        meta = ckpt.read_meta(path)
        d = meta.get("distill") or {}
        if d.get("teacher") == job.teacher_path and d.get("times") == [float(t) for t in job.times]:
            done.append((int(d["round"]), path, d))
    if (job.out / ckpt.MODEL_FILE).exists():
        raise InputError(f"--resume: {job.out} holds a finished distillation ({ckpt.MODEL_FILE})")
    if not done:
        raise InputError(f"--resume: {job.out} holds no finished round of this distillation ({STUDENT_GLOB})")
    r, path, d = max(done, key=lambda item: item[0])
    if r >= job.rounds:
        raise InputError(f"--resume: round {r} of {job.rounds} is already done ({path})")
    from ddpmctl.checkpoint import load_model

    job.model = load_model(path)
    job.guide, job.first_round, job.update, job.updates = None, r + 1, int(d["updates_total"]), list(d["updates"])
    return job


# --------------------------------------------------------------------------------------------
# the rounds


@dataclass
class DistillResult:
    out_dir: str
    model: str  # the last student's file
    steps: int  # its steps (NFE)
    rounds: list = field(default_factory=list)  # per round: steps, updates, loss, seconds, file
    elapsed_s: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


Callback = Callable[[dict], None]


def distill(
    teacher: str | os.PathLike,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: DistillConfig | None = None,
    *,
    guide: str | os.PathLike | None = None,
    callbacks: list[Callback] | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> DistillResult:
    """Distil the checkpoint ``teacher`` on ``data`` into ``out_dir`` (see the module docstring).
    ``callbacks`` get a dict after every update (round, rounds, steps, step, total, loss). Raises
    InputError before any work, RunError on a non-finite loss."""
    job = plan_distill(
        str(teacher), str(data), str(out_dir), cfg or DistillConfig(), guide and str(guide), resume, overwrite
    )
    return run_distill(job, callbacks)


def run_distill(job: Job, callbacks: list[Callback] | None = None) -> DistillResult:
    """Run a planned distillation (``plan_distill``): its rounds, each student saved as it is done
    (a new run first drops the students and metrics an earlier one left in the folder)."""
    from ddpmctl.device import resolve_device

    if job.first_round == 1:
        for p in [*_students(job.out), job.out / ckpt.METRICS_FILE]:
            p.unlink(missing_ok=True)
    job.out.mkdir(exist_ok=True)
    device = resolve_device(job.cfg.device)
    teacher_net, t0 = job.model.net.to(device), time.perf_counter()
    result = DistillResult(str(job.out), "", 0)
    for r in range(job.first_round, job.rounds + 1):
        left = None if job.cfg.time_limit is None else job.cfg.time_limit - (time.perf_counter() - t0)
        budget = None if left is None else max(left, 0.0) / (job.rounds - r + 1)
        student, info = run_round(job, r, teacher_net, device, budget, list(callbacks or []))
        job.updates.append(info["updates"])
        info["file"] = save_student(job, r, student, info)
        result.rounds.append(info)
        teacher_net = student
    result.elapsed_s = time.perf_counter() - t0
    result.model, result.steps = result.rounds[-1]["file"], result.rounds[-1]["steps"]
    return result


def _teacher_denoiser(job: Job, r: int, net, device) -> Denoiser:
    """The teacher of round ``r``: round 1's checkpoint (with its guide), else the last student;
    x0 clipped to the data range for images, as ``sample`` does."""
    model = job.model
    clip = None
    if model.data_kind == "images":
        clip = (model.normalization.to_model(0.0), model.normalization.to_model(1.0))
    den = Denoiser(net.eval(), model.process, model.prediction, clip=clip)
    if r == 1 and job.guide is not None:
        job.guide.net.to(device)
        den.set_guide(job.guide.denoiser(clip=False), job.cfg.guidance)
    return den


def run_round(job: Job, r: int, teacher_net, device, budget: float | None, callbacks: list[Callback]):
    """Round ``r``: a student initialised from ``teacher_net`` trained for ``steps_per_round``
    updates (or the ``budget`` seconds); returns (the student, in eval mode; the round's record)."""
    from ddpmctl.train import IndexStream
    from ddpmctl.train.optim import ema_decay, ema_update, lr_at, make_optimizer

    cfg, tcfg, model = job.cfg, job.cfg.optim_config(), job.model
    teacher = _teacher_denoiser(job, r, teacher_net, device)
    net = copy.deepcopy(teacher_net).train().requires_grad_(True)
    student = Denoiser(net, model.process, model.prediction)
    ema = copy.deepcopy(net).eval().requires_grad_(False) if cfg.ema > 0 else None
    opt, params = make_optimizer(tcfg, net), list(net.parameters())
    stride = 2 ** (r - 1)  # the teacher's grid: every stride-th time of round 1's
    grid, k = job.times[::stride], (len(job.times) - 1) // (2 * stride)
    stream, gens = IndexStream(len(job.data), cfg.seed), (torch.Generator(), torch.Generator())
    t0, step, total, since, last = time.perf_counter(), 0, cfg.steps_per_round, [], None
    while step < total:
        used = 0.0 if budget is None else (time.perf_counter() - t0) / max(budget, 1e-9)
        if step and used >= 1.0:  # this round's share of --time-limit is spent (at least one update)
            break
        x0, eps, times = _batch(job, stream, gens, grid, k, device)
        opt.lr = lr_at(step, tcfg, total, tcfg.warmup, used)
        loss = distill_loss(student, teacher, x0, eps, times).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip if cfg.clip > 0 else float("inf"))
        opt.step()
        if ema is not None:
            ema_update(ema, net, ema_decay(step + 1, tcfg))
        step, job.update = step + 1, job.update + 1
        since.append(loss.detach())
        if step % cfg.log_every == 0 or step == total:
            last, since = _log(job, (r, k, step, opt.lr), since, t0), []
        for cb in callbacks:
            cb({"round": r, "rounds": job.rounds, "steps": k, "step": step, "total": total, "loss": last})
    if since:
        last = _log(job, (r, k, step, opt.lr), since, t0)
    out = (ema if ema is not None else net).eval().requires_grad_(False)
    return out, {"round": r, "steps": k, "updates": step, "loss": last, "seconds": time.perf_counter() - t0}


def _batch(job: Job, stream, gens, grid: torch.Tensor, k: int, device):
    """(x0, eps, (t, t', t'')) of update ``job.update``, from generators seeded by (seed, update)
    (``train.data.step_seeds``): data rows of the index stream, noise, and per sample a student step
    i ~ U{0 .. k-1} with its teacher times 2i, 2i + 1, 2i + 2 on ``grid``."""
    from ddpmctl.train import seed_global_rng, step_seeds

    cpu_gen, noise_gen = gens
    seed_batch, seed_noise, seed_dropout = step_seeds(job.cfg.seed, job.update)
    cpu_gen.manual_seed(seed_batch)
    noise_gen.manual_seed(seed_noise)
    b = job.cfg.batch
    idx = stream.batch(job.update, b)
    i = torch.randint(0, k, (b,), generator=cpu_gen)
    eps = torch.randn((b, *job.data.shape), generator=noise_gen).to(device)
    seed_global_rng(seed_dropout, device)  # the student's dropout, if it has any
    x0 = job.data.batch(idx).to(device)
    return x0, eps, (grid[2 * i], grid[2 * i + 1], grid[2 * i + 2])


def _log(job: Job, where: tuple, losses: list, t0: float) -> float:
    """Append the mean loss since the last record to metrics.jsonl; RunError when it is not finite."""
    r, k, step, lr = where
    loss = float(torch.stack(losses).mean())
    if not math.isfinite(loss):
        raise RunError(
            f"non-finite loss ({loss}) in round {r} ({k} steps), update {step}; the finished rounds are "
            f"in {job.out}; try a smaller --lr"
        )
    record = {"round": r, "steps": k, "step": step, "update": job.update, "loss": loss, "lr": lr,
              "elapsed_s": time.perf_counter() - t0}  # fmt: skip
    with open(job.out / ckpt.METRICS_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")
    return loss


def save_student(job: Job, r: int, net, info: dict) -> str:
    """Write round ``r``'s student (``student-K.safetensors``, the last round's ``model.safetensors``)
    with the teacher's metadata plus ``"distill"`` and ``"sampling"`` (ddim on its K-step grid)."""
    k = info["steps"]
    times = job.times[:: 2**r]
    meta = dict(job.model.meta, ddpmctl_version=__version__)
    cfg = {key: v for key, v in asdict(job.cfg).items() if key not in ("device", "log_every")}
    meta["distill"] = {
        "method": "progressive distillation (Salimans & Ho 2022, Algorithm 2), DDIM teacher",
        "weighting": WEIGHTING,
        "teacher": job.teacher_path,
        "teacher_step": int(job.model.meta.get("step", 0)),
        "guide": job.guide_path,
        "from_steps": len(job.times) - 1,
        "times": [float(t) for t in job.times],
        "round": r,
        "rounds": job.rounds,
        "steps": k,
        "updates": list(job.updates),
        "updates_total": job.update,
        "loss": info["loss"],
        "config": cfg,
        "data": str(Path(job.data.name).resolve()),
    }
    meta["sampling"] = {"sampler": "ddim", "steps": k, "times": [float(t) for t in times]}
    name = ckpt.MODEL_FILE if r == job.rounds else student_file(k)
    ckpt.save_model(job.out / name, net, meta)
    return str(job.out / name)
