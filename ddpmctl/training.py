"""Training: one loop, readable top to bottom (in the spirit of nanoGPT's train.py).

    from ddpmctl.training import TrainConfig, train
    result = train(TrainConfig(steps=2000, batch=128, sde="vp"), "swissroll.npy", "ckpt/")

What the loop does per step (``step`` = number of optimizer updates done so far):

1. the global batch: sample indices, times t and noise eps come from generators seeded by
   (seed, step) only, so a run is reproducible, a resumed run continues exactly, and under
   ``torchrun`` every rank draws the same global batch and keeps its own slice of it;
2. x0 = normalise(data[indices]) (model space), optional random horizontal flip;
3. loss = objective(net, x0, t, eps) (``ddpmctl.objectives``), under bf16 autocast on CUDA;
4. backward (DDP averages gradients across ranks), clip the gradient norm, AdamW step with a
   linear warm-up and optional cosine decay of the learning rate;
5. EMA of the weights, decay min(ema, (1 + n) / (10 + n)) after n updates;
6. every ``log_every`` steps: metrics.jsonl; every ``save_every``: checkpoint; every
   ``sample_every``: a sample grid from the EMA weights.

Data indices are an endless stream of per-epoch permutations (permutation e seeded by (seed, e)):
the batch of step s holds stream positions s*B .. s*B + B - 1, so the sampler's state *is* the
step. A SIGINT / SIGTERM stops after the current step, saves a checkpoint and raises
``TrainingInterrupted``; a second one exits at once (the checkpoint files are written atomically,
so the last one stays loadable).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ddpmctl import checkpoint as ckpt
from ddpmctl import io as dio
from ddpmctl.device import autocast, resolve_device
from ddpmctl.diffusion import IDENTITY_NORMALIZATION, IMAGE_NORMALIZATION, PREDICTIONS, Normalization
from ddpmctl.errors import InputError, RunError
from ddpmctl.objectives import LOSSES, Objective
from ddpmctl.schedules import PROCESS_KINDS, Process, make_process

LR_SCHEDULES = ("constant", "cosine", "linear")
NORMALIZE = ("auto", "none")


# --------------------------------------------------------------------------------------------
# configuration: plain data


@dataclass
class TrainConfig:
    """Every training option. YAML files and CLI flags fill the same fields (flags win)."""

    # data
    data: str | None = None  # the data path (recorded; ``--resume`` reuses it)
    normalize: str = "auto"  # points: auto = standardise with the data's mean / std; none = identity
    hflip: bool = False  # images: random horizontal flips
    # process
    sde: str = "ddpm"  # ddpm (discrete) | vp | subvp | ve
    schedule: str = "linear"  # ddpm: schedule name or betas .npy
    T: int = 1000
    beta_start: float | None = None
    beta_end: float | None = None
    beta_min: float | None = None  # vp / subvp
    beta_max: float | None = None
    sigma_min: float | None = None  # ve
    sigma_max: float | None = None
    t_eps: float | None = None  # smallest training time of the SDEs (default 1e-3 vp, 1e-5 ve)
    # objective
    prediction: str = "eps"
    loss: str = "l2"
    min_snr: float | None = None
    # network: keys of ddpmctl.nets' config that replace the defaults
    net: dict = field(default_factory=dict)
    # optimisation
    steps: int | None = None  # default 10000 when neither steps nor epochs is given
    epochs: float | None = None
    batch: int = 64  # global batch (split across torchrun ranks)
    lr: float = 2e-4
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    optimizer: str = "adamw"  # adamw | muon (Muon on the hidden weight matrices, AdamW on the rest)
    muon_momentum: float = 0.95
    warmup: int | None = None  # default min(5000, 5% of the steps)
    lr_schedule: str = "constant"
    lr_min: float = 0.0
    clip: float = 1.0  # gradient-norm clipping (0: off)
    ema: float = 0.9999  # largest EMA decay (0: no EMA)
    ema_warmup: bool = True  # decay min(ema, (1 + n) / (10 + n))
    # run
    seed: int = 0
    device: str = "auto"
    bf16: bool = True  # bf16 autocast on CUDA
    compile: bool = False
    log_every: int = 10
    save_every: int = 1000
    sample_every: int = 0
    sample_n: int = 16
    sample_steps: int = 50
    time_limit: float | None = None  # seconds of training wall time; also the clock of --lr-schedule
    snapshots: list = field(default_factory=list)  # fractions of the run at which to keep the EMA model too

    # ---------------------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        """Build from a dict (YAML); unknown keys and wrong types -> InputError naming ``source``."""
        if not isinstance(d, dict):
            raise InputError(f"{source}: expected a mapping of option names to values")
        known = set(cls.keys())
        for k in d:
            if k not in known:
                raise InputError(f"{source}: unknown option '{k}'")
        cfg = cls()
        cfg.update(d, source)
        return cfg

    def update(self, d: dict, source: str = "config") -> "TrainConfig":
        types = {f.name: f.type for f in dataclasses.fields(self)}
        for k, v in d.items():
            if k not in types:
                raise InputError(f"{source}: unknown option '{k}'")
            setattr(self, k, _coerce(v, types[k], f"{source}: {k}"))
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        def positive(name, value, allow_none=False, zero=False):
            if value is None and allow_none:
                return
            if value is None or not (value >= 0 if zero else value > 0):
                raise InputError(f"--{name.replace('_', '-')}: must be {'>= 0' if zero else '> 0'}, got {value}")

        if self.sde not in PROCESS_KINDS:
            raise InputError(f"--sde: unknown process '{self.sde}' (choose from {', '.join(PROCESS_KINDS)})")
        if self.prediction not in PREDICTIONS:
            raise InputError(f"--prediction: unknown '{self.prediction}' (choose from {', '.join(PREDICTIONS)})")
        if self.loss not in LOSSES:
            raise InputError(f"--loss: unknown '{self.loss}' (choose from {', '.join(LOSSES)})")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"--lr-schedule: unknown '{self.lr_schedule}' (choose from {', '.join(LR_SCHEDULES)})")
        if self.normalize not in NORMALIZE:
            raise InputError(f"--normalize: unknown '{self.normalize}' (choose from {', '.join(NORMALIZE)})")
        if self.steps is not None and self.epochs is not None:
            raise InputError("--steps and --epochs: give one of them, not both")
        positive("steps", self.steps, allow_none=True)
        positive("epochs", self.epochs, allow_none=True)
        positive("batch", self.batch)
        positive("time_limit", self.time_limit, allow_none=True)
        positive("lr", self.lr)
        positive("T", self.T)
        positive("min_snr", self.min_snr, allow_none=True)
        positive("log_every", self.log_every)
        positive("save_every", self.save_every, zero=True)
        positive("sample_every", self.sample_every, zero=True)
        positive("sample_n", self.sample_n)
        positive("sample_steps", self.sample_steps)
        positive("warmup", self.warmup, allow_none=True, zero=True)
        positive("clip", self.clip, zero=True)
        positive("weight_decay", self.weight_decay, zero=True)
        positive("lr_min", self.lr_min, zero=True)
        if not 0 <= self.ema < 1:
            raise InputError(f"--ema: decay must lie in [0, 1), got {self.ema}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"--optimizer: unknown optimizer '{self.optimizer}' (choose from {', '.join(OPTIMIZERS)})")
        for name in ("adam_beta1", "adam_beta2", "muon_momentum"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(f"{name}: must lie in [0, 1), got {getattr(self, name)}")
        if not isinstance(self.net, dict):
            raise InputError("net: expected a mapping of network options")
        for f in self.snapshots:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
                raise InputError(f"--snapshot: a fraction of the run in (0, 1), got {f!r}")
        self.snapshots = sorted({float(f) for f in self.snapshots})
        return self

    def make_process(self) -> Process:
        extra = {k: getattr(self, k) for k in ("beta_start", "beta_end") if getattr(self, k) is not None}
        return make_process(
            None if self.sde == "ddpm" else self.sde,
            self.schedule,
            self.T,
            beta_min=self.beta_min,
            beta_max=self.beta_max,
            sigma_min=self.sigma_min,
            sigma_max=self.sigma_max,
            eps=self.t_eps,
            **extra,
        )


def _coerce(value, typ, where: str):
    """Check / convert a YAML or flag value to the field's type (given as a string annotation)."""
    t = str(typ)
    if value is None:
        if "None" in t:
            return None
        raise InputError(f"{where}: a value is required")
    try:
        if t.startswith("bool"):
            if isinstance(value, bool):
                return value
            raise ValueError
        if t.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if t.startswith("float"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if t.startswith("str"):
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
        if t.startswith("dict"):
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
        if t.startswith("list"):
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return list(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: expected {t.split(' ')[0]}, got {value!r}") from None
    return value


def read_config_file(path: str | os.PathLike) -> dict:
    """A YAML config file as a dict (safe_load: no Python objects)."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise InputError(f"{path}: not valid YAML ({first})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if not isinstance(d, dict):
        raise InputError(f"{path}: expected a mapping of option names to values")
    return d


def config_to_yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None)


def default_warmup(steps: int) -> int:
    """Linear warm-up length: 5000 steps as in score_sde (seed 000), scaled to short runs (5%)."""
    return int(min(5000, round(0.05 * steps)))


# --------------------------------------------------------------------------------------------
# data


@dataclass
class TrainData:
    """A training set read lazily: ``array`` may be a read-only memory map; ``batch`` converts the
    rows it is asked for (uint8 -> [0, 1], (N, H, W) -> one channel) and maps them to model space."""

    array: np.ndarray
    kind: str  # "images" | "points"
    shape: tuple  # (C, H, W) or (D,)
    normalization: Normalization
    name: str

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        rows = np.asarray(self.array[indices])
        if self.kind == "images":
            if rows.ndim == 3:
                rows = rows[:, None]
            rows = rows.astype(np.float32) / 255.0 if rows.dtype == np.uint8 else rows.astype(np.float32)
        else:
            rows = rows.astype(np.float32)
        return self.normalization.to_model(torch.from_numpy(np.ascontiguousarray(rows)))


def open_data(path: str | os.PathLike, normalize: str = "auto") -> TrainData:
    """Open ``.npy`` (memory-mapped), an image file or a folder of images for training.

    The whole array is validated (shape, dtype, NaN/inf, image range) in chunks, without copying a
    memory map. Images map [0, 1] -> [-1, 1]. Points are standardised with one scalar mean and
    standard deviation over all coordinates (so the geometry is kept) when ``normalize`` is
    ``auto``, and used as they are with ``none``; the normalisation is recorded in the checkpoint.
    """
    name = str(path)
    if name == dio.STDIO:
        raise InputError("-: train reads a file (the data is visited many times), not stdin")
    p = Path(path)
    if not p.exists():
        raise InputError(f"{name}: no such file or folder")
    if p.is_dir() or dio.is_image_file(p):
        arr = dio.read_images(p)
    else:
        arr = dio.read_npy(p, mmap=True)
    if arr.ndim == 2:
        kind, check = "points", dio.as_points
    elif arr.ndim in (3, 4):
        kind, check = "images", dio.as_float_images
    else:
        raise InputError(f"{name}: expected images (N, C, H, W) / (N, H, W) or points (N, D), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise InputError(f"{name}: holds no samples (N = 0)")
    # validate in chunks of about 64 MB (as_* checks dtype, NaN / inf and the image range)
    row_bytes = max(1, int(np.prod(arr.shape[1:])) * max(arr.dtype.itemsize, 4))
    chunk = max(1, (64 << 20) // row_bytes)
    total, total_sq, count = 0.0, 0.0, 0
    for i in range(0, arr.shape[0], chunk):
        part = check(np.asarray(arr[i : i + chunk]), name)
        if kind == "points":
            part64 = part.astype(np.float64)
            total += float(part64.sum())
            total_sq += float(np.square(part64).sum())
            count += part64.size
    if kind == "images":
        shape = (1, *arr.shape[1:]) if arr.ndim == 3 else tuple(arr.shape[1:])
        return TrainData(arr, "images", tuple(int(s) for s in shape), IMAGE_NORMALIZATION, name)
    norm = IDENTITY_NORMALIZATION
    if normalize == "auto":
        mean = total / count
        std = math.sqrt(max(total_sq / count - mean * mean, 0.0))
        if not std > 1e-12 * max(1.0, abs(mean)):
            raise InputError(f"{name}: all values are equal (zero variance); nothing to learn")
        norm = Normalization(scale=1.0 / std, shift=-mean / std)
    return TrainData(arr, "points", (int(arr.shape[1]),), norm, name)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([int(seed), int(epoch), 0x5EED]).permutation(n)


class IndexStream:
    """Positions s*B .. s*B + B - 1 of the endless stream perm_0 ++ perm_1 ++ ... (perm_e is the
    permutation of epoch e, seeded by (seed, e)). Stateless: the batch depends on the step only."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._cache: dict[int, np.ndarray] = {}

    def perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = epoch_permutation(self.seed, epoch, self.n)
        return self._cache[epoch]

    def batch(self, step: int, batch: int) -> np.ndarray:
        pos = np.arange(step * batch, (step + 1) * batch, dtype=np.int64)
        epochs, offsets = pos // self.n, pos % self.n
        out = np.empty(batch, dtype=np.int64)
        for e in np.unique(epochs):
            m = epochs == e
            out[m] = self.perm(int(e))[offsets[m]]
        return out


def step_seeds(seed: int, step: int, rank: int = 0) -> tuple[int, int, int]:
    """Seeds of step ``step`` (well mixed by numpy's SeedSequence): (global batch indices / times /
    flips, global noise, this rank's dropout)."""
    w = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(step)]).generate_state(3, dtype=np.uint64)
    mask = (1 << 63) - 1
    return int(w[0]) & mask, int(w[1]) & mask, (int(w[2]) + 0x9E3779B97F4A7C15 * int(rank)) & mask


def seed_global_rng(seed: int, device: torch.device) -> None:
    """Reseed the global RNG that dropout draws from. (``torch.manual_seed`` would also queue a lazy
    CUDA seeding with a stack trace on CUDA-less machines at every call: a slow leak.)"""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)  # CUDA is initialised by now: seeds the current device directly


# --------------------------------------------------------------------------------------------
# model pieces


def lr_at(step: int, cfg: TrainConfig, total: int, warmup: int, time_fraction: float = 0.0) -> float:
    """Learning rate of update ``step`` (0-based): linear warm-up over ``warmup`` updates, then
    constant, or a cosine or linear decay to ``lr_min`` at ``total``. With a time limit the decay follows
    whichever is further along: the steps or the fraction of the time limit used
    (``time_fraction``)."""
    if warmup > 0 and step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.lr_schedule == "constant":
        return cfg.lr
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), time_fraction))
    if cfg.lr_schedule == "cosine":
        return cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 - progress)  # linear


def ema_decay(n: int, cfg: TrainConfig) -> float:
    """EMA decay after n updates: min(ema, (1 + n) / (10 + n)) with warm-up (as in score_sde /
    TensorFlow's ExponentialMovingAverage num_updates), the constant ``ema`` otherwise."""
    return min(cfg.ema, (1 + n) / (10 + n)) if cfg.ema_warmup else cfg.ema


@torch.no_grad()
def ema_update(ema: torch.nn.Module | list, net: torch.nn.Module | list, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * net, for the parameters; buffers are copied. Takes two
    modules, or two lists [parameters, buffers] (saves walking the modules at every step)."""
    e_params, e_bufs = (list(ema.parameters()), list(ema.buffers())) if isinstance(ema, torch.nn.Module) else ema
    n_params, n_bufs = (list(net.parameters()), list(net.buffers())) if isinstance(net, torch.nn.Module) else net
    torch._foreach_lerp_(e_params, [p.detach() for p in n_params], 1.0 - decay)
    for b_ema, b in zip(e_bufs, n_bufs):
        b_ema.copy_(b)


class AdamW:
    """AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"), the update of
    ``torch.optim.AdamW`` written out with foreach ops (tests check it against torch's)::

        p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        p <- p - lr / (1 - b1^n) * m / (sqrt(v) / sqrt(1 - b2^n) + eps)

    (torch.optim's optimizers import torch._dynamo on first use, seconds of start-up time.)
    State: ``exp_avg``, ``exp_avg_sq`` per parameter and the update count ``step``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.step_count = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.step_count += 1
        n = self.step_count
        pairs = [(p, p.grad, m, v) for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq) if p.grad is not None]
        if not pairs:
            return
        params, grads, ms, vs = (list(x) for x in zip(*pairs))
        if self.weight_decay:
            torch._foreach_mul_(params, 1 - self.lr * self.weight_decay)
        torch._foreach_lerp_(ms, grads, 1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, grads, grads, 1 - b2)
        step_size = self.lr / (1 - b1**n)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, math.sqrt(1 - b2**n))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, ms, denom, -step_size)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {"step": torch.tensor([self.step_count], dtype=torch.int64)}
        for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq)):
            out[f"{i}.exp_avg"], out[f"{i}.exp_avg_sq"] = m, v
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], name: str) -> None:
        try:
            self.step_count = int(tensors["step"].reshape(-1)[0])
            for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq)):
                for own, key in ((m, f"{i}.exp_avg"), (v, f"{i}.exp_avg_sq")):
                    if tuple(tensors[key].shape) != tuple(own.shape):
                        raise ValueError(key)
                    own.copy_(tensors[key])
        except (KeyError, ValueError) as e:
            raise InputError(f"{name}: optimizer state does not fit the network ({e})") from None
        if len(tensors) != 1 + 2 * len(self.params):
            raise InputError(f"{name}: optimizer state does not fit the network (it has {len(tensors)} entries)")


def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """An approximate orthogonalisation U V^T of each matrix g = U S V^T (shape (..., rows, cols);
    Muon's quintic Newton-Schulz iteration, coefficients (3.4445, -4.7750, 2.0315) of Jordan et
    al. 2024): the singular values go to about 1 (0.7-1.2), the singular vectors stay."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (torch.linalg.matrix_norm(g, keepdim=True) + 1e-7)
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    batch = x.shape[:-2]
    x = x.reshape(-1, *x.shape[-2:]).contiguous()  # one batched matmul per product, fused with its sum:
    for _ in range(steps):  # x <- a x + (b m + c m m) x,  m = x x^T
        m = torch.bmm(x, x.mT)
        x = torch.baddbmm(x, torch.baddbmm(m, m, m, beta=b, alpha=c), x, beta=a)
    x = x.reshape(*batch, *x.shape[-2:])
    return x.mT if tall else x


class Muon(AdamW):
    """Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers") on the weight matrices of
    the hidden layers (convolutions flattened to (out, in * k * k)), AdamW on everything else (the
    first and last layer, the time embedding, biases, norms). Muon's update is the
    orthogonalised Nesterov momentum, scaled by 0.2 sqrt(max(out, in)) so that its RMS matches
    AdamW's (Liu et al. 2025, "Muon is scalable for LLM training"): both use the same ``lr``.
    State: AdamW's for every parameter (unused ones stay zero) plus ``{i}.momentum``."""

    def __init__(self, named_params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum=0.95):
        named = [(n, p) for n, p in named_params if p.requires_grad]
        super().__init__([p for _, p in named], lr, betas, eps, weight_decay)
        edge = ("in_conv.", "out_conv.", "time_embed.", "in_fc.", "out_fc.")
        self.muon = [p.ndim >= 2 and not n.startswith(edge) for n, p in named]
        self.momentum = momentum
        self.buf = [torch.zeros_like(p) if m else torch.zeros(0) for p, m in zip(self.params, self.muon)]

    @torch.no_grad()
    def step(self) -> None:
        grads = []
        for p, m in zip(self.params, self.muon):
            grads.append(p.grad)
            if m:
                p.grad = None  # AdamW skips it
        super().step()
        groups: dict[tuple, list[int]] = {}  # matrices of one shape are orthogonalised in one batch
        for i, (p, g, m) in enumerate(zip(self.params, grads, self.muon)):
            if m and g is not None:
                groups.setdefault((p.shape[0], p[0].numel()), []).append(i)
        for (rows, cols), idx in groups.items():
            bufs, gs = [self.buf[i] for i in idx], [grads[i] for i in idx]
            torch._foreach_lerp_(bufs, gs, 1 - self.momentum)
            u = torch.stack([g.lerp(b, self.momentum).reshape(rows, cols) for g, b in zip(gs, bufs)])  # Nesterov
            u = newton_schulz(u) * (0.2 * math.sqrt(max(rows, cols)))
            for k, i in enumerate(idx):
                p = self.params[i]
                if self.weight_decay:
                    p.mul_(1 - self.lr * self.weight_decay)
                p.add_(u[k].reshape(p.shape), alpha=-self.lr)
                p.grad = grads[i]

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = super().state_tensors()
        for i, b in enumerate(self.buf):
            if self.muon[i]:
                out[f"{i}.momentum"] = b
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], name: str) -> None:
        mom = {k: v for k, v in tensors.items() if k.endswith(".momentum")}
        super().load_state_tensors({k: v for k, v in tensors.items() if not k.endswith(".momentum")}, name)
        try:
            for i, b in enumerate(self.buf):
                if self.muon[i]:
                    if tuple(mom[f"{i}.momentum"].shape) != tuple(b.shape):
                        raise ValueError(f"{i}.momentum")
                    b.copy_(mom[f"{i}.momentum"])
        except (KeyError, ValueError) as e:
            raise InputError(f"{name}: optimizer state does not fit the network ({e})") from None
        if len(mom) != sum(self.muon):
            raise InputError(f"{name}: optimizer state does not fit the network (optimizer differs)")


OPTIMIZERS = ("adamw", "muon")


NET_FLAGS = {  # CLI flag -> key of the network config, per network type
    "unet": {"base": "base", "mults": "mults", "blocks": "blocks", "attn": "attn", "dropout": "dropout"},
    "mlp": {"base": "hidden", "blocks": "blocks", "dropout": "dropout"},
}


def net_flags_to_config(data_kind: str, flags: dict) -> dict:
    """Map the generic network flags (base, mults, blocks, attn, dropout) to the config keys of the
    network the data gets (U-Net for images, MLP for points)."""
    kind = "unet" if data_kind == "images" else "mlp"
    out = {}
    for name, value in flags.items():
        if name not in NET_FLAGS[kind]:
            raise InputError(f"--{name}: applies to the U-Net (images) only, this data is points (MLP)")
        out[NET_FLAGS[kind][name]] = value
    return out


def net_config_for(cfg: TrainConfig, data_kind: str, data_shape: tuple, process: Process) -> dict:
    """The network config: ddpmctl.nets' default for the data, with ``cfg.net`` keys replacing
    the defaults; checked against the data (channels, H/W divisibility)."""
    from ddpmctl.nets import default_net_config, validate_net_config

    net_cfg = default_net_config(data_kind, tuple(data_shape), process.time_embedding)
    if "type" in cfg.net and cfg.net["type"] != net_cfg.get("type"):
        net_cfg = dict(cfg.net)  # another kind of network: its config is given in full
    else:
        net_cfg = {**net_cfg, **cfg.net}
    return validate_net_config(net_cfg, tuple(data_shape))


def describe_model(cfg: TrainConfig, data: TrainData) -> dict:
    """Parameters and forward FLOPs per sample of the network ``cfg`` builds for ``data``."""
    from ddpmctl.nets import build_net, count_flops, count_params

    process = cfg.make_process()
    net_cfg = net_config_for(cfg, data.kind, data.shape, process)
    net = build_net(net_cfg)
    flops = count_flops(net, tuple(data.shape))
    return {"net": net_cfg, "params": int(count_params(net)), "flops_per_sample": int(flops),
            "gflop_per_sample": flops / 1e9, "data_kind": data.kind, "data_shape": list(data.shape),
            "process": process.describe()}


# --------------------------------------------------------------------------------------------
# distributed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_mean(self, values: list[float], device) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return (t / self.world).tolist()

    def any(self, flag: bool, device) -> bool:
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as td

    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    here = False
    if not td.is_initialized():
        td.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        here = True
    return Dist(rank=rank, world=world, local_rank=local, initialized_here=here)


# --------------------------------------------------------------------------------------------
# interruption


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after a SIGINT / SIGTERM once the checkpoint is saved; ``exit_code`` 130 / 143."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


class _StopSignals:
    """First SIGINT / SIGTERM: ask the loop to stop after the current step (it then saves a
    checkpoint). A second SIGINT: exit now (checkpoint files are replaced atomically, so the last
    complete one stays). A SIGTERM while stopping is ignored, so the save can finish."""

    def __init__(self, enabled: bool, label: str = "ddpmctl train"):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self.label = label
        self._old: dict[int, object] = {}

    def _handler(self, signum, frame):
        if self.signum is not None and signum == signal.SIGTERM:
            return  # already stopping (torchrun sends SIGTERM to its workers after a Ctrl-C): let the save finish
        if self.signum is not None:
            os.write(2, f"{self.label}: interrupted again; exiting now (the last checkpoint is intact)\n".encode())
            os._exit(130 if signum == signal.SIGINT else 128 + signum)
        self.signum = signum  # the loop saves a checkpoint after this step and raises TrainingInterrupted

    def __enter__(self):
        if self.enabled:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


# --------------------------------------------------------------------------------------------
# the loop


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
    cfg: TrainConfig,
    data: str | os.PathLike | TrainData | None,
    out_dir: str | os.PathLike,
    callbacks: list[Callback] | None = None,
    *,
    resume: str | os.PathLike | None = None,
    overwrite: bool = False,
    handle_signals: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a denoiser and write checkpoints into ``out_dir``.

    ``callbacks`` are called after every step with a dict (step, total, loss, lr, grad_norm,
    images_per_s, eta_s, logged); a callback returning True stops training after saving a
    checkpoint (``result.stopped``). ``resume`` is a checkpoint directory to continue from
    (``out_dir`` may be the same directory). Raises InputError for bad input (before anything is
    written), RunError for a non-finite loss, TrainingInterrupted after SIGINT / SIGTERM.
    """
    callbacks = list(callbacks or [])
    log = log or (lambda msg: None)
    cfg = copy.deepcopy(cfg).validate()

    # ---- data, process, objective, network (all checks before anything is written) -------
    if data is None:
        data = cfg.data
    if data is None:
        raise InputError("DATA: no training data given")
    if not isinstance(data, TrainData):
        cfg.data = str(data)
        data = open_data(data, cfg.normalize)
    process = cfg.make_process()
    objective = Objective(process, cfg.prediction, cfg.loss, cfg.min_snr)
    net_cfg = net_config_for(cfg, data.kind, data.shape, process)
    cfg.net = net_cfg  # the effective config records the whole network
    if cfg.steps is None:
        cfg.steps = 10000 if cfg.epochs is None else max(1, math.ceil(cfg.epochs * len(data) / cfg.batch))
        cfg.epochs = None
    if cfg.warmup is None:
        cfg.warmup = default_warmup(cfg.steps)
    total = int(cfg.steps)

    device = resolve_device(cfg.device)
    dist = setup_distributed(device)
    try:
        if device.type == "cuda" and dist.world > 1:
            device = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(device)
        if cfg.batch % dist.world:
            raise InputError(f"--batch: the global batch {cfg.batch} must be divisible by the {dist.world} ranks")
        result = _train_loop(cfg, data, Path(out_dir), callbacks, resume, overwrite, handle_signals, log,
                             process, objective, net_cfg, total, device, dist)
        # Every rank is past its last collective before any rank tears the group down, so no
        # rank's gloo connection closes while a peer still reads from it.
        dist.barrier()
        return result
    finally:
        if dist.initialized_here:
            # DDP's reducer sits in reference cycles; collect it now, while the group and the
            # interpreter are alive, rather than at interpreter exit (where freeing its pending
            # gloo work can abort the process).
            import gc

            gc.collect()
            torch.distributed.destroy_process_group()


def _check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.is_dir() and not resume and not overwrite and (
        (out / ckpt.MODEL_FILE).exists() or (out / ckpt.STATE_FILE).exists()
    ):
        raise InputError(f"{out}: already holds a checkpoint (use --resume {out} to continue it, or --force to overwrite)")
    if not out.parent.exists():
        raise InputError(f"{out}: parent folder {out.parent} does not exist")


def _self_cond_input(net, objective: Objective, x_t, c_noise, t, use: torch.Tensor, clip) -> torch.Tensor:
    """Self-conditioning (Chen et al. 2022, "Analog Bits", section 3): for the samples in ``use``
    (a CPU bool mask, half the batch) the net first predicts x0 from (x_t, zeros), without gradient;
    that estimate (clipped like the sampler's) is the extra input of the trained pass. The rest
    get zeros, so the net also learns to denoise without an estimate (the sampler's first step)."""
    cond = torch.zeros_like(x_t)
    if bool(use.any()):
        idx = use.nonzero().squeeze(1)
        dev_idx = idx.to(x_t.device)
        with torch.no_grad():
            first = net(x_t[dev_idx], c_noise[dev_idx], None)
            cond[dev_idx] = objective.x0_estimate(first.float(), x_t[dev_idx], t[idx], clip).to(cond.dtype)
    return cond


def _train_loop(cfg, data, out, callbacks, resume, overwrite, handle_signals, log,
                process, objective, net_cfg, total, device, dist) -> TrainResult:
    from ddpmctl.nets import build_net, count_params

    # ---- resume state ---------------------------------------------------------------------
    state = None
    if resume is not None:
        state = ckpt.load_state(resume)
        m = state["meta"]
        for key, ours in (("net", net_cfg), ("process", process.to_dict()), ("prediction", cfg.prediction)):
            if json.dumps(m[key], sort_keys=True) != json.dumps(ours, sort_keys=True):
                raise InputError(f"{state['path']}: the checkpoint's {key} differs from this run's configuration; "
                                 "resume with the same model options")
        theirs = (m.get("train") or {}).get("optimizer", "adamw")
        if theirs != cfg.optimizer:
            raise InputError(f"{state['path']}: the checkpoint was trained with --optimizer {theirs}, this run asks for "
                             f"{cfg.optimizer}; resume with the same optimizer")
        if m["data"]["kind"] != data.kind or tuple(m["data"]["shape"]) != tuple(data.shape):
            raise InputError(f"{data.name}: data shape {list(data.shape)} differs from the checkpoint's {m['data']['shape']}")
        if state["step"] >= total:
            raise InputError(f"--steps: the checkpoint is already at step {state['step']} of {total}; "
                             "give a larger --steps to train further")
    _check_out_dir(out, resume is not None and Path(resume).resolve() == out.resolve(), overwrite)

    # ---- network, EMA, optimizer -----------------------------------------------------------
    torch.manual_seed(cfg.seed)
    net = build_net(net_cfg)
    params = count_params(net)
    ema = copy.deepcopy(net).eval().requires_grad_(False) if cfg.ema > 0 else None
    if state is not None:
        ckpt.load_weights(net, state["model"], state["path"])
        if ema is not None and state["ema"]:
            ckpt.load_weights(ema, state["ema"], state["path"])
    channels_last = device.type == "cuda" and data.kind == "images"
    mem = torch.channels_last if channels_last else torch.preserve_format
    net.to(device, memory_format=mem).train()
    if ema is not None:
        ema.to(device, memory_format=mem)
    if cfg.optimizer == "muon":
        opt = Muon(net.named_parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                   weight_decay=cfg.weight_decay, momentum=cfg.muon_momentum)
    else:
        opt = AdamW(net.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)
    start = 0
    if state is not None:
        opt.load_state_tensors(state["optimizer"], state["path"])
        start = state["step"]
        ckpt.restore_rng(state)
    model = net
    if dist.world > 1:
        import warnings

        from torch.nn.parallel import DistributedDataParallel as DDP

        # On CPU, the gradient of a 1x1 convolution comes back with strides like (C, 1, C, C) for
        # a weight of shape (C, C, 1, 1): the same memory order (the size-1 dims' strides do not
        # matter), yet DDP warns once per rank that they "do not match". Nothing to fix there.
        if device.type == "cpu":
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    train_dict = cfg.to_dict()
    meta_base = dict(net_config=net_cfg, process=process, prediction=cfg.prediction, data_kind=data.kind,
                     data_shape=data.shape, normalization=data.normalization, ema=ema is not None, train=train_dict)

    # ---- output folder (rank 0 writes) --------------------------------------------------------
    metrics_path = out / ckpt.METRICS_FILE
    if dist.main:
        out.mkdir(exist_ok=True)
        for name in (ckpt.MODEL_FILE, ckpt.STATE_FILE, ckpt.CONFIG_FILE, ckpt.METRICS_FILE, ckpt.SNAPSHOT_GLOB):
            for tmp in out.glob(f".{name}.ddpmctl-tmp-*"):  # left by a kill during a save
                tmp.unlink(missing_ok=True)
        if start == 0:  # a new run: snapshots of an overwritten one would pass for this run's
            for old in out.glob(ckpt.SNAPSHOT_GLOB):
                old.unlink(missing_ok=True)
        dio.write_text(out / ckpt.CONFIG_FILE, config_to_yaml(train_dict))
        _trim_metrics(metrics_path, start)
    dist.barrier()

    def save(step: int) -> None:
        if dist.main:
            meta = ckpt.make_meta(step=step, **meta_base)
            ckpt.save_state(out / ckpt.STATE_FILE, net, ema, opt.state_tensors(), step, meta)
            ckpt.save_model(out / ckpt.MODEL_FILE, ema if ema is not None else net, meta)
        dist.barrier()

    # snapshots still to take: fractions of the run this run has not reached yet
    snapshots = [f for f in cfg.snapshots if f > start / total]

    # ---- the loop -----------------------------------------------------------------------------
    self_cond = bool(getattr(net, "self_cond", False))
    sc_clip = (data.normalization.to_model(0.0), data.normalization.to_model(1.0)) if data.kind == "images" else None
    stream = IndexStream(len(data), cfg.seed)
    local_b = cfg.batch // dist.world
    lo, hi = dist.rank * local_b, (dist.rank + 1) * local_b
    noise_gen = torch.Generator(device=device) if device.type == "cuda" else torch.Generator()
    cpu_gen = torch.Generator()
    step, last_saved = start, start
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    interval_steps, interval_t0 = 0, time.perf_counter()
    t_begin, ips, last_loss, stopped = time.perf_counter(), 0.0, None, False
    time_fraction = 0.0  # of cfg.time_limit used; updated at log boundaries (the same on every rank)
    grad_norm = torch.zeros((), device=device)
    history: list[dict] = []
    sampler_note_shown = False
    net_params = list(net.parameters())
    ema_lists = (list(ema.parameters()), list(ema.buffers())) if ema is not None else None
    net_lists = (net_params, list(net.buffers()))
    with _StopSignals(handle_signals) as signals:
        while step < total:
            # 1. the global batch from generators seeded by (seed, step); this rank's slice
            seed_batch, seed_noise, seed_dropout = step_seeds(cfg.seed, step, dist.rank)
            cpu_gen.manual_seed(seed_batch)
            noise_gen.manual_seed(seed_noise)
            idx = stream.batch(step, cfg.batch)[lo:hi]
            t = _sample_t(process, cfg.batch, cpu_gen)[lo:hi]
            flip = torch.rand(cfg.batch, generator=cpu_gen)[lo:hi] < 0.5
            # self-conditioning: which samples get the net's own first estimate of x0 (the others zeros)
            sc_use = torch.rand(cfg.batch, generator=cpu_gen)[lo:hi] < 0.5 if self_cond else None
            eps = torch.randn((cfg.batch, *data.shape), generator=noise_gen, device=device)[lo:hi]
            seed_global_rng(seed_dropout, device)  # dropout
            # 2. x0 in model space
            x0 = data.batch(idx).to(device, non_blocking=True)
            if cfg.hflip and data.kind == "images":
                x0 = torch.where(flip.to(device).reshape(-1, 1, 1, 1), x0.flip(-1), x0)
            if channels_last:
                x0 = x0.contiguous(memory_format=torch.channels_last)
                eps = eps.contiguous(memory_format=torch.channels_last)
            # 3. loss
            lr = lr_at(step, cfg, total, cfg.warmup, time_fraction)
            opt.lr = lr
            x_t, c_noise, target, weight = objective.inputs(x0, t, eps)
            with autocast(device, cfg.bf16):
                if self_cond:
                    out_net = model(x_t, c_noise, _self_cond_input(net, objective, x_t, c_noise, t, sc_use, sc_clip))
                else:
                    out_net = model(x_t, c_noise)
            loss = objective.per_sample(out_net, target, weight).mean()
            # 4. backward, clip, AdamW
            opt.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(net_params, cfg.clip if cfg.clip > 0 else float("inf"))
            opt.step()
            # 5. EMA
            if ema is not None:
                ema_update(ema_lists, net_lists, ema_decay(step + 1, cfg))
            step += 1
            loss_sum += loss.detach().to(torch.float64)
            interval_steps += 1

            # 6. logging, checks, checkpoints, samples
            stop_asked = signals.signum is not None
            stop_asked = dist.any(stop_asked, device) if dist.world > 1 else stop_asked
            boundary = step % cfg.log_every == 0 or step == total or stop_asked or (
                cfg.save_every and step % cfg.save_every == 0) or (cfg.sample_every and step % cfg.sample_every == 0) or (
                bool(snapshots) and step >= snapshots[0] * total)
            info = {"step": step, "total": total, "lr": lr, "logged": False}
            if boundary:
                now = time.perf_counter()
                used = (now - t_begin) / cfg.time_limit if cfg.time_limit else 0.0
                mean_loss, gn, time_fraction = dist.all_mean(
                    [loss_sum.item() / interval_steps, float(grad_norm), used], device)
                if not (math.isfinite(mean_loss) and math.isfinite(gn)):
                    where = f"the last good checkpoint is {out} (step {last_saved})" if last_saved > 0 or resume else \
                        "no checkpoint was written"
                    raise RunError(f"non-finite loss ({mean_loss}) or gradient at step {step}; training stopped, "
                                   f"{where}; try a smaller --lr or check the data")
                ips = interval_steps * cfg.batch / max(now - interval_t0, 1e-9)
                last_loss = mean_loss
                record = {"step": step, "loss": mean_loss, "lr": lr, "grad_norm": gn, "images_per_s": ips,
                          "elapsed_s": now - t_begin}
                history.append(record)
                if dist.main:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(record) + "\n")
                info.update(record, logged=True)
                loss_sum.zero_()
                interval_steps, interval_t0 = 0, now
                if cfg.save_every and step % cfg.save_every == 0 or step == total:
                    save(step)
                    last_saved = step
                while snapshots and max(step / total, time_fraction) >= snapshots[0]:
                    if dist.main:
                        ckpt.save_model(out / ckpt.snapshot_file(snapshots[0]), ema if ema is not None else net,
                                        ckpt.make_meta(step=step, **meta_base))
                    snapshots.pop(0)
                if cfg.sample_every and step % cfg.sample_every == 0 and dist.main:
                    sampler_note_shown = _write_samples(out / f"samples_{step:07d}.png", ema or net, meta_base,
                                                        cfg, device, log, sampler_note_shown)
            info["images_per_s"] = ips
            info["loss"] = last_loss
            info["eta_s"] = (total - step) * cfg.batch / ips if ips > 0 else None
            wants_stop = any(bool(cb(info)) for cb in callbacks)
            if time_fraction >= 1.0:
                wants_stop = True  # out of time: save this step and stop (result.stopped)
            wants_stop = dist.any(wants_stop, device) if dist.world > 1 else wants_stop
            if stop_asked or wants_stop:
                if last_saved != step:
                    if not boundary:  # check the loss of the steps since the last check before saving
                        mean_loss = dist.all_mean([loss_sum.item() / max(interval_steps, 1)], device)[0]
                        if not math.isfinite(mean_loss):
                            raise RunError(f"non-finite loss at step {step}; training stopped, the last good "
                                           f"checkpoint is {out} (step {last_saved})")
                    save(step)
                    last_saved = step
                if stop_asked:
                    code = 130 if signals.signum == signal.SIGINT or signals.signum is None else 128 + signals.signum
                    raise TrainingInterrupted(
                        f"interrupted at step {step} of {total}; checkpoint saved in {out} "
                        f"(continue with: ddpmctl train --resume {out})", code)
                stopped = True
                break
    elapsed = time.perf_counter() - t_begin
    done = step - start
    return TrainResult(out_dir=str(out), step=step, total_steps=total, loss=last_loss,
                       images_per_s=done * cfg.batch / max(elapsed, 1e-9), elapsed_s=elapsed, params=params,
                       stopped=stopped, metrics=history)


def _sample_t(process: Process, n: int, generator: torch.Generator) -> torch.Tensor:
    from ddpmctl.objectives import sample_times

    return sample_times(process, n, generator)


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


def _write_samples(path: Path, net, meta_base: dict, cfg: TrainConfig, device, log, note_shown: bool) -> bool:
    """A sample grid (images) or scatter plot (points) drawn from ``net`` (the EMA weights) with
    DDIM (``ddpmctl.sampling.generate``); skipped with a note when that module is not available."""
    try:
        from ddpmctl.sampling import generate
    except ImportError:
        if not note_shown:
            log("--sample-every: ddpmctl.sampling is not available; no sample grids are written")
        return True
    was_training = net.training
    net.eval()
    try:
        model = ckpt.LoadedModel(net=net, process=meta_base["process"], prediction=meta_base["prediction"],
                                 normalization=meta_base["normalization"], data_kind=meta_base["data_kind"],
                                 data_shape=tuple(meta_base["data_shape"]), meta={})
        samples, _ = generate(model, "ddim", cfg.sample_n, cfg.sample_steps, cfg.seed, cfg.sample_n, device)
        dio.save_output(path, samples)
    finally:
        net.train(was_training)
    return note_shown
