"""The training loop, in the shape of EDM's ``training_loop``: a setup, a short per-step core, and
the upkeep once per tick.

    from ddpmctl.train import TrainConfig, train
    result = train(TrainConfig(steps=2000, batch=128, sde="vp"), "swissroll.npy", "ckpt/")

Per step (``step`` = number of optimizer updates done so far):

1. the global batch: indices, times t, noise eps, flips from generators seeded by (seed, step)
   (``ddpmctl.train.data``); under ``torchrun`` every rank draws the same global batch and keeps its
   own slice; x0 = normalise(data[indices]) in model space, optionally flipped;
2. x_t, c_noise, target, weight = objective.inputs(x0, t, eps); loss = mean of
   objective.per_sample(net(x_in, c_noise), target, weight) with x_in = x_t (EDM: c_in x_t,
   ``objective.net_input``), under bf16 autocast on CUDA; with labels, net(x_in, c_noise,
   class_labels) where each label is the null class with probability ``label_dropout``
   (classifier-free guidance's joint training, Ho & Salimans 2022, Algorithm 1); with an image
   condition (SR3, ``ddpmctl.conditions``), net(x_in, c_noise, image_cond=c), c = bicubic(A x0);
3. backward (DDP averages gradients across ranks), clip the gradient norm, an AdamW or Muon step
   with a linear warm-up and an optional cosine / linear decay of the learning rate;
4. EMA of the weights, decay min(ema, (1 + n) / (10 + n)) after n updates.

A tick ends every ``log_every``, ``save_every`` and ``sample_every`` steps, at a snapshot, at the
last step and on a stop signal: it checks the loss, writes metrics.jsonl, checkpoints, snapshots and
sample grids, and decides whether to stop (a signal, a callback, the time limit). Callbacks see
every step. A SIGINT / SIGTERM stops after the current step, saves a checkpoint and raises
``TrainingInterrupted``; a second one exits at once (checkpoint files are written atomically, so
the last one stays loadable).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ddpmctl import checkpoint as ckpt
from ddpmctl import io as dio
from ddpmctl.device import autocast, resolve_device
from ddpmctl.errors import InputError, RunError
from ddpmctl.objectives import Objective, sample_times
from ddpmctl.train.config import TrainConfig, config_to_yaml, default_warmup, net_config_for, resolve_config
from ddpmctl.train.data import (
    IndexStream,
    TrainData,
    attach_condition,
    attach_labels,
    condition_noise,
    open_data,
    seed_global_rng,
    step_seeds,
)  # fmt: skip
from ddpmctl.train.dist import Dist, TrainingInterrupted, _StopSignals, distributed
from ddpmctl.train.optim import AdamW, ema_decay, ema_update, lr_at, make_optimizer
from ddpmctl.train.preview import write_samples


@dataclass
class TrainResult:
    out_dir: str
    step: int  # updates done
    total_steps: int
    loss: float | None  # mean loss of the last logging interval
    images_per_s: float
    elapsed_s: float
    params: int
    stopped: bool = False  # a callback asked to stop
    metrics: list = field(default_factory=list)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("metrics")
        return d


Callback = Callable[[dict], "bool | None"]


def train(
    cfg: TrainConfig | dict | None = None,
    data: str | os.PathLike | TrainData | None = None,
    out_dir: str | os.PathLike | None = None,
    callbacks: list[Callback] | None = None,
    *,
    resume: str | os.PathLike | bool | None = None,
    overwrite: bool = False,
    handle_signals: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a denoiser and write checkpoints into ``out_dir``.

    ``cfg`` is a TrainConfig, used as it is, or a dict of options (or None) that
    ``resolve_config`` merges over the defaults and, when resuming, over the run's config.yaml.
    ``resume`` is a checkpoint folder to continue from (``out_dir`` may be the same folder; True
    means ``out_dir``). ``callbacks`` are called after every step with a dict (step, total, loss,
    lr, images_per_s, eta_s, logged, and at logging steps grad_norm, elapsed_s); one returning
    True stops training after saving a checkpoint (``result.stopped``). Raises InputError for bad
    input (before anything is written), RunError for a non-finite loss, TrainingInterrupted after
    SIGINT / SIGTERM.
    """
    if resume is True or resume is False:
        resume = out_dir if resume else None
    if out_dir is None:
        out_dir = resume
    if out_dir is None:
        raise InputError("out_dir: no checkpoint folder given")
    if not isinstance(cfg, TrainConfig):
        cfg = resolve_config(resume, None, cfg)
    cfg = copy.deepcopy(cfg).validate()
    data, objective = _prepare(cfg, data)
    with distributed(resolve_device(cfg.device), cfg.batch) as (dist, device):
        run = setup(cfg, data, objective, Path(out_dir), resume, overwrite, log, dist, device)
        return training_loop(run, list(callbacks or []), handle_signals)


def _prepare(cfg: TrainConfig, data) -> tuple[TrainData, Objective]:
    """Open the data and fill in what the options leave open (the whole network config, the
    steps, the warm-up): all checks before anything is written."""
    if data is None:
        data = cfg.data
    if data is None:
        raise InputError("DATA: no training data given")
    if not isinstance(data, TrainData):
        cfg.data = str(data)
        data = open_data(data, cfg.normalize)
    if data.labels is None:
        attach_labels(data, cfg)
    attach_condition(data, cfg)
    process = cfg.make_process()
    objective = Objective(process, cfg.prediction, cfg.loss, cfg.min_snr)
    cfg.net = net_config_for(cfg, data.kind, data.shape, process)  # the effective config records the whole network
    if cfg.steps is None:
        cfg.steps = 10000 if cfg.epochs is None else max(1, math.ceil(cfg.epochs * len(data) / cfg.batch))
        cfg.epochs = None
    if cfg.warmup is None:
        cfg.warmup = default_warmup(cfg.steps)
    return data, objective


def describe_model(cfg: TrainConfig, data: TrainData) -> dict:
    """Parameters and forward FLOPs per sample of the network ``cfg`` builds for ``data``."""
    from ddpmctl.nets import build_net, count_flops, count_params

    process = cfg.make_process()
    net_cfg = net_config_for(cfg, data.kind, data.shape, process)
    net = build_net(net_cfg)
    flops = count_flops(net, tuple(data.shape))
    return {
        "net": net_cfg,
        "params": int(count_params(net)),
        "flops_per_sample": int(flops),
        "gflop_per_sample": flops / 1e9,
        "data_kind": data.kind,
        "data_shape": list(data.shape),
        "process": process.describe(),
    }


# --------------------------------------------------------------------------------------------
# setup


@dataclass
class RunState:
    """What the loop works with: built once by ``setup``, the counters updated as it goes."""

    cfg: TrainConfig
    data: TrainData
    objective: Objective
    net: torch.nn.Module  # the raw network (saved)
    model: torch.nn.Module  # what the step calls: the net, DDP-wrapped and / or compiled
    ema: torch.nn.Module | None
    opt: AdamW
    dist: Dist
    device: torch.device
    out: Path
    meta_base: dict  # checkpoint metadata but the step
    resumed: bool
    log: Callable[[str], None]
    total: int
    start: int
    snapshots: list  # fractions of the run still to snapshot
    stream: IndexStream = None
    step: int = 0
    last_saved: int = 0
    loss_sum: torch.Tensor = None  # of the steps since the last logging tick
    grad_norm: torch.Tensor = None  # of the last step
    interval_steps: int = 0
    interval_t0: float = 0.0
    t_begin: float = 0.0
    ips: float = 0.0  # images/s of the last logging interval
    last_loss: float | None = None
    time_fraction: float = 0.0  # of cfg.time_limit used; updated at ticks (the same on every rank)
    history: list = field(default_factory=list)
    wants_stop: bool = False  # a callback asked to stop (under torchrun: voted on at the next tick)
    signals: _StopSignals | None = None
    signalled: bool = False  # a stop signal had come when this step ended
    stopped: bool = False

    def save(self) -> None:
        if self.dist.main:
            meta = ckpt.make_meta(step=self.step, **self.meta_base)
            ckpt.save_state(self.out / ckpt.STATE_FILE, self.net, self.ema, self.opt.state_tensors(), self.step, meta)
            ckpt.save_model(self.out / ckpt.MODEL_FILE, self.ema if self.ema is not None else self.net, meta)
        self.dist.barrier()
        self.last_saved = self.step


def setup(
    cfg: TrainConfig,
    data: TrainData,
    objective: Objective,
    out: Path,
    resume,
    overwrite: bool,
    log: Callable[[str], None] | None,
    dist: Dist,
    device: torch.device,
) -> RunState:
    """Check the resumed state against the run, build the network, its EMA and optimizer (loading
    the state), and prepare the output folder (rank 0 writes)."""
    from ddpmctl.nets import build_net

    total = int(cfg.steps)
    state = _resume_state(resume, cfg, data, objective, total) if resume is not None else None
    _check_out_dir(out, resume is not None and Path(resume).resolve() == out.resolve(), overwrite)
    torch.manual_seed(cfg.seed)
    net = build_net(cfg.net)
    ema = copy.deepcopy(net).eval().requires_grad_(False) if cfg.ema > 0 else None
    if state is not None:
        ckpt.load_weights(net, state["model"], state["path"])
        if ema is not None and state["ema"]:
            ckpt.load_weights(ema, state["ema"], state["path"])
    mem = torch.channels_last if device.type == "cuda" and data.kind == "images" else torch.preserve_format
    net.to(device, memory_format=mem).train()
    if ema is not None:
        ema.to(device, memory_format=mem)
    opt = make_optimizer(cfg, net)
    start = 0
    if state is not None:
        opt.load_state_tensors(state["optimizer"], state["path"])
        start = state["step"]
        ckpt.restore_rng(state)
    meta_base = dict(
        net_config=cfg.net,
        process=objective.process,
        prediction=cfg.prediction,
        data_kind=data.kind,
        data_shape=data.shape,
        normalization=data.normalization,
        ema=ema is not None,
        train=cfg.to_dict(),
        classes=data.classes,
        condition=cfg.condition,
    )
    run = RunState(
        cfg=cfg,
        data=data,
        objective=objective,
        net=net,
        model=_wrap(net, cfg, dist, device),
        ema=ema,
        opt=opt,
        dist=dist,
        device=device,
        out=out,
        meta_base=meta_base,
        resumed=resume is not None,
        log=log or (lambda msg: None),
        total=total,
        start=start,
        snapshots=[f for f in cfg.snapshots if f > start / total],  # those this run has not reached yet
        stream=IndexStream(len(data), cfg.seed),
        step=start,
        last_saved=start,
    )
    _prepare_out_dir(run)
    return run


def _resume_state(resume, cfg: TrainConfig, data: TrainData, objective: Objective, total: int) -> dict:
    """The checkpoint state to resume from, checked against this run's model, optimizer and data."""
    state = ckpt.load_state(resume)
    m = state["meta"]
    mine = (("net", cfg.net), ("process", objective.process.to_dict()), ("prediction", cfg.prediction))
    for key, ours in (*mine, ("condition", cfg.condition)):
        if json.dumps(m.get(key), sort_keys=True) != json.dumps(ours, sort_keys=True):
            raise InputError(
                f"{state['path']}: the checkpoint's {key} differs from this run's configuration; "
                "resume with the same model options"
            )
    theirs = (m.get("train") or {}).get("optimizer", "adamw")
    if theirs != cfg.optimizer:
        raise InputError(
            f"{state['path']}: the checkpoint was trained with --optimizer {theirs}, this run asks for "
            f"{cfg.optimizer}; resume with the same optimizer"
        )
    if m["data"]["kind"] != data.kind or tuple(m["data"]["shape"]) != tuple(data.shape):
        raise InputError(
            f"{data.name}: data shape {list(data.shape)} differs from the checkpoint's {m['data']['shape']}"
        )
    if state["step"] >= total:
        raise InputError(
            f"--steps: the checkpoint is already at step {state['step']} of {total}; "
            "give a larger --steps to train further"
        )
    return state


def _wrap(net: torch.nn.Module, cfg: TrainConfig, dist: Dist, device: torch.device) -> torch.nn.Module:
    """What the step calls: the net, in DDP under torchrun, compiled with ``compile``."""
    model = net
    if dist.world > 1:
        import warnings

        from torch.nn.parallel import DistributedDataParallel as DDP

        # On CPU a 1x1 convolution's gradient has other (equivalent) strides than DDP's bucket
        # view, and DDP warns about it once per rank: nothing to fix.
        if device.type == "cpu":
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return model


def _check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if (
        out.is_dir()
        and not resume
        and not overwrite
        and ((out / ckpt.MODEL_FILE).exists() or (out / ckpt.STATE_FILE).exists())
    ):
        raise InputError(
            f"{out}: already holds a checkpoint (use --resume {out} to continue it, or --force to overwrite)"
        )
    if not out.parent.exists():
        raise InputError(f"{out}: parent folder {out.parent} does not exist")


def _prepare_out_dir(run: RunState) -> None:
    """Rank 0 creates the folder, drops files a kill left behind, writes config.yaml and keeps the
    metrics up to the resumed step."""
    out = run.out
    if run.dist.main:
        out.mkdir(exist_ok=True)
        for name in (ckpt.MODEL_FILE, ckpt.STATE_FILE, ckpt.CONFIG_FILE, ckpt.METRICS_FILE, ckpt.SNAPSHOT_GLOB):
            for tmp in out.glob(f".{name}.ddpmctl-tmp-*"):  # left by a kill during a save
                tmp.unlink(missing_ok=True)
        if run.start == 0:  # a new run: snapshots of an overwritten one would pass for this run's
            for old in out.glob(ckpt.SNAPSHOT_GLOB):
                old.unlink(missing_ok=True)
        dio.write_text(out / ckpt.CONFIG_FILE, config_to_yaml(run.meta_base["train"]))
        _trim_metrics(out / ckpt.METRICS_FILE, run.start)
    run.dist.barrier()


def _trim_metrics(path: Path, step: int) -> None:
    """Keep the metrics of steps <= ``step`` (a resumed run rewrites what followed its checkpoint;
    a torn last line from a kill is dropped)."""
    if not path.exists():
        if step == 0:
            return
        dio.write_text(path, "")
        return
    keep = []
    if step > 0:
        for line in path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("step", step + 1) <= step:
                keep.append(line)
    dio.write_text(path, "".join(s + "\n" for s in keep))


# --------------------------------------------------------------------------------------------
# the loop


def training_loop(run: RunState, callbacks: list[Callback], handle_signals: bool = True) -> TrainResult:
    """Train from ``run.step`` to ``run.total``: per step the batch, loss, backward, optimizer step and
    EMA; ``tick`` does the rest."""
    from ddpmctl.nets import count_params

    cfg, net, opt, objective = run.cfg, run.net, run.opt, run.objective
    params = list(net.parameters())
    ema_lists = (list(run.ema.parameters()), list(run.ema.buffers())) if run.ema is not None else None
    net_lists = (params, list(net.buffers()))
    self_cond = bool(getattr(net, "self_cond", False))
    images = run.data.kind == "images"
    sc_clip = (run.data.normalization.to_model(0.0), run.data.normalization.to_model(1.0)) if images else None
    noise_gen = torch.Generator(device=run.device) if run.device.type == "cuda" else torch.Generator()
    cpu_gen = torch.Generator()
    run.loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    run.grad_norm = torch.zeros((), device=run.device)
    run.interval_t0 = run.t_begin = time.perf_counter()
    with _StopSignals(handle_signals) as run.signals:
        while run.step < run.total:
            # 1. the global batch of this step and this rank's slice of it
            x0, t, eps, sc_use, kw = draw_batch(run, cpu_gen, noise_gen, self_cond)
            # 2. loss
            lr = opt.lr = lr_at(run.step, cfg, run.total, cfg.warmup, run.time_fraction)
            x_t, c_noise, target, weight = objective.inputs(x0, t, eps)
            x_in = objective.net_input(x_t, t)  # x_t, or EDM's c_in x_t; SR3's c (in kw) is not scaled
            with autocast(run.device, cfg.bf16):
                if self_cond:
                    cond = _self_cond_input(net, objective, x_t, c_noise, t, sc_use, sc_clip, kw)
                    out = run.model(x_in, c_noise, cond, **kw)
                else:
                    out = run.model(x_in, c_noise, **kw)
            loss = objective.per_sample(out, target, weight).mean()
            # 3. backward, clip, optimizer step
            opt.zero_grad()
            loss.backward()
            run.grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip if cfg.clip > 0 else float("inf"))
            opt.step()
            # 4. EMA
            if run.ema is not None:
                ema_update(ema_lists, net_lists, ema_decay(run.step + 1, cfg))
            run.step += 1
            run.loss_sum += loss.detach().to(torch.float64)
            run.interval_steps += 1
            # 5. the callbacks see every step; all other upkeep waits for a tick
            run.signalled = run.signals.signum is not None  # read once, before the upkeep
            if not at_tick(run) and not _progress(run, callbacks, lr):
                continue
            if tick(run, callbacks, lr):
                break
    elapsed = time.perf_counter() - run.t_begin
    return TrainResult(
        out_dir=str(run.out),
        step=run.step,
        total_steps=run.total,
        loss=run.last_loss,
        images_per_s=(run.step - run.start) * cfg.batch / max(elapsed, 1e-9),
        elapsed_s=elapsed,
        params=count_params(net),
        stopped=run.stopped,
        metrics=run.history,
    )


def draw_batch(run: RunState, cpu_gen: torch.Generator, noise_gen: torch.Generator, self_cond: bool):
    """(x0, t, eps, self-conditioning mask, the net's keyword inputs: class labels, SR3's condition
    image) of this rank's slice of the step's global batch, drawn from generators seeded by (seed,
    step) only; reseeds dropout's global RNG."""
    cfg, data, step = run.cfg, run.data, run.step
    lo, hi = run.dist.rank * (cfg.batch // run.dist.world), (run.dist.rank + 1) * (cfg.batch // run.dist.world)
    seed_batch, seed_noise, seed_dropout = step_seeds(cfg.seed, step, run.dist.rank)
    cpu_gen.manual_seed(seed_batch)
    noise_gen.manual_seed(seed_noise)
    idx = run.stream.batch(step, cfg.batch)[lo:hi]
    t = sample_times(run.objective.process, cfg.batch, cpu_gen)[lo:hi]
    flip = torch.rand(cfg.batch, generator=cpu_gen)[lo:hi] < 0.5
    # self-conditioning: which samples get the net's own first estimate of x0 (the others zeros)
    sc_use = torch.rand(cfg.batch, generator=cpu_gen)[lo:hi] < 0.5 if self_cond else None
    # labelled data: which labels label dropout replaces by the null class (drawn last: unlabelled runs draw as before)
    drop = torch.rand(cfg.batch, generator=cpu_gen)[lo:hi] < cfg.label_dropout if data.labels is not None else None
    eps = torch.randn((cfg.batch, *data.shape), generator=noise_gen, device=run.device)[lo:hi]
    y_noise = condition_noise(data, cfg, noise_gen, run.device)  # drawn after eps: runs without it draw as before
    seed_global_rng(seed_dropout, run.device)  # dropout
    x0 = data.batch(idx).to(run.device, non_blocking=True)
    if cfg.hflip and data.kind == "images":
        x0 = torch.where(flip.to(run.device).reshape(-1, 1, 1, 1), x0.flip(-1), x0)
    if run.device.type == "cuda" and data.kind == "images":
        x0 = x0.contiguous(memory_format=torch.channels_last)
        eps = eps.contiguous(memory_format=torch.channels_last)
    kw = {} if drop is None else {"class_labels": data.batch_labels(idx, drop).to(run.device)}
    if data.condition is not None:  # SR3: c = bicubic(A x0 [+ noise]) of the (flipped) clean batch
        kw["image_cond"] = data.condition.from_clean(x0, None if y_noise is None else y_noise[lo:hi])
    return x0, t, eps, sc_use, kw


def _self_cond_input(net, objective: Objective, x_t, c_noise, t, use: torch.Tensor, clip, kw=None) -> torch.Tensor:
    """Self-conditioning (Chen et al. 2022, "Analog Bits", section 3): for the samples in ``use``
    (a CPU bool mask, half the batch) the net first predicts x0 from (x_t, zeros), without gradient;
    that estimate (clipped like the sampler's) is the extra input of the trained pass. The rest
    get zeros, so the net also learns to denoise without an estimate (the sampler's first step)."""
    cond = torch.zeros_like(x_t)
    if bool(use.any()):
        idx = use.nonzero().squeeze(1)
        dev_idx = idx.to(x_t.device)
        with torch.no_grad():
            x_in = objective.net_input(x_t[dev_idx], t[idx])
            first = net(x_in, c_noise[dev_idx], None, **{k: v[dev_idx] for k, v in (kw or {}).items()})
            cond[dev_idx] = objective.x0_estimate(first.float(), x_t[dev_idx], t[idx], clip).to(cond.dtype)
    return cond


# --------------------------------------------------------------------------------------------
# ticks


def at_tick(run: RunState) -> bool:
    """Whether this step ends a tick: a logging, checkpoint, sample or snapshot step, the last
    step, or (in one process) a stop signal; under torchrun the ranks vote on signals at the
    scheduled ticks (``_measure``), so this is the same on every rank."""
    s, cfg = run.step, run.cfg
    return (
        s % cfg.log_every == 0
        or s == run.total
        or _every(s, cfg.save_every)
        or _every(s, cfg.sample_every)
        or (bool(run.snapshots) and s >= run.snapshots[0] * run.total)
        or (run.dist.world == 1 and run.signalled)
    )


def _every(step: int, k: int) -> bool:
    return bool(k) and step % k == 0


def _progress(run: RunState, callbacks: list[Callback], lr: float) -> bool:
    """At a step that is no tick: call the callbacks. A callback asking to stop makes this step a
    tick in one process; under torchrun the wish waits for the next tick's vote, so that every
    rank stops at the same step without a collective between ticks."""
    run.wants_stop = _call(callbacks, _info(run, lr)) or run.wants_stop
    return run.wants_stop and run.dist.world == 1


def tick(run: RunState, callbacks: list[Callback], lr: float) -> bool:
    """The upkeep of a tick; True when training stops. Checks the loss since the last tick once;
    at a tick step (or on a signal) writes the metrics, the periodic checkpoint, the snapshots due
    and the sample grid, and calls the callbacks; then stops, once, on a signal (saves, raises
    TrainingInterrupted), a callback asking to or the time limit (saves, returns True)."""
    cfg, step = run.cfg, run.step
    scheduled = at_tick(run)  # False only for a stop that a callback asked for between ticks
    record, used, now, (signalled, wanted) = _measure(run, lr)
    if scheduled:
        _log(run, record, used, now)
        if _every(step, cfg.save_every) or step == run.total:
            run.save()
        while run.snapshots and max(step / run.total, run.time_fraction) >= run.snapshots[0]:
            if run.dist.main:
                ckpt.save_model(
                    run.out / ckpt.snapshot_file(run.snapshots[0]),
                    run.ema if run.ema is not None else run.net,
                    ckpt.make_meta(step=step, **run.meta_base),
                )
            run.snapshots.pop(0)
        if _every(step, cfg.sample_every) and run.dist.main:
            write_samples(run.out / f"samples_{step:07d}.png", run.ema or run.net, run)
        run.wants_stop = _call(callbacks, _info(run, lr, record)) or run.wants_stop
    if run.dist.world == 1:
        signalled, wanted = run.signalled, run.wants_stop
    if not (signalled or wanted or run.time_fraction >= 1.0):  # out of time: save and stop
        return False
    if run.last_saved != step:
        run.save()
    if signalled:
        signum = run.signals.signum
        code = 130 if signum == signal.SIGINT or signum is None else 128 + signum
        raise TrainingInterrupted(
            f"interrupted at step {step} of {run.total}; checkpoint saved in {run.out} "
            f"(continue with: ddpmctl train --resume {run.out})",
            code,
        )
    run.stopped = True
    return True


def _measure(run: RunState, lr: float) -> tuple[dict, float, float, tuple[bool, bool]]:
    """The record of the steps since the last logging tick and the ranks' vote on stopping (a
    signal, a callback's wish), in the one collective of a tick; RunError when the loss or the
    gradient is not finite."""
    now = time.perf_counter()
    used = (now - run.t_begin) / run.cfg.time_limit if run.cfg.time_limit else 0.0
    local = [run.loss_sum.item() / run.interval_steps, float(run.grad_norm), used, run.signalled, run.wants_stop]
    mean_loss, gn, used, signalled, wanted = run.dist.all_mean([float(v) for v in local], run.device)
    if not (math.isfinite(mean_loss) and math.isfinite(gn)):
        where = (
            f"the last good checkpoint is {run.out} (step {run.last_saved})"
            if run.last_saved > 0 or run.resumed
            else "no checkpoint was written"
        )
        raise RunError(
            f"non-finite loss ({mean_loss}) or gradient at step {run.step}; training stopped, "
            f"{where}; try a smaller --lr or check the data"
        )
    ips = run.interval_steps * run.cfg.batch / max(now - run.interval_t0, 1e-9)
    record = {
        "step": run.step,
        "loss": mean_loss,
        "lr": lr,
        "grad_norm": gn,
        "images_per_s": ips,
        "elapsed_s": now - run.t_begin,
    }
    return record, used, now, (signalled > 0, wanted > 0)


def _log(run: RunState, record: dict, used: float, now: float) -> None:
    """Append the record to the history and metrics.jsonl and start the next interval."""
    run.time_fraction = used
    run.ips, run.last_loss = record["images_per_s"], record["loss"]
    run.history.append(record)
    if run.dist.main:
        with open(run.out / ckpt.METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
    run.loss_sum.zero_()
    run.interval_steps, run.interval_t0 = 0, now


def _info(run: RunState, lr: float, record: dict | None = None) -> dict:
    """What the callbacks get: the step, the learning rate, the last logged loss and speed."""
    info = {"step": run.step, "total": run.total, "lr": lr, "logged": False}
    if record is not None:
        info.update(record, logged=True)
    info["images_per_s"] = run.ips
    info["loss"] = run.last_loss
    info["eta_s"] = (run.total - run.step) * run.cfg.batch / run.ips if run.ips > 0 else None
    return info


def _call(callbacks: list[Callback], info: dict) -> bool:
    """Call the callbacks in order until one asks to stop."""
    return any(bool(cb(info)) for cb in callbacks)
