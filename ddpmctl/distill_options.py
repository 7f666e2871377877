"""The options of ``ddpmctl distill`` (``distill.distill``): ``DistillConfig``, its checks and the
names of the files a distillation writes. Torch-free, so that ``ddpmctl distill --help`` starts
without torch (docs/startup.md); ``ddpmctl.distill`` re-exports every name defined here."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ddpmctl.errors import InputError

PROCESSES = ("ddpm", "vp")  # variance preserving: alpha^2 + sigma^2 = 1
WEIGHTING = "truncated SNR: max(SNR(t), 1) ||x~ - x^||^2 (Salimans & Ho 2022, section 4; Algorithm 2's w(lambda_t))"
DEFAULT_FROM_STEPS = 64


def student_file(steps: int) -> str:
    """The file of an intermediate round's student: ``student-4.safetensors`` samples in 4 steps."""
    return f"student-{int(steps)}.safetensors"


@dataclass
class DistillConfig:
    """Every option of a distillation. ``from_steps`` None: the teacher's recorded grid (a student
    distilled further) or DEFAULT_FROM_STEPS."""

    from_steps: int | None = None  # the teacher's DDIM steps N in round 1
    to_steps: int = 4  # the last student's steps; from_steps / to_steps must be a power of 2 (>= 2)
    steps_per_round: int = 1000  # optimizer updates per round
    batch: int = 64
    lr: float | None = None  # peak per round; None: the teacher's training lr (its config), else 2e-4
    optimizer: str | None = None  # adamw | muon (train.optim); None: the teacher's, else adamw
    warmup: int | None = None  # per round; default train.config.default_warmup(steps_per_round)
    clip: float = 1.0  # gradient-norm clipping (0: off)
    ema: float = 0.0  # EMA decay of the student's weights within a round (0: off; the student is the raw weights)
    guidance: float = 1.0  # with a guide: the teacher's autoguidance weight w (round 1)
    seed: int = 0
    time_limit: float | None = None  # seconds in all; each round gets an equal share of what is left
    device: str = "auto"
    log_every: int = 10

    def validate(self) -> DistillConfig:
        for name in ("to_steps", "steps_per_round", "batch", "log_every"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        if self.from_steps is not None:
            check_steps(self.from_steps, self.to_steps)
        ranges = (("lr", self.lr is None or self.lr > 0), ("clip", self.clip >= 0), ("ema", 0 <= self.ema < 1))
        for name, ok in ranges:
            value = getattr(self, name)
            if not ok or (value is not None and not math.isfinite(value)):
                raise InputError(f"--{name}: out of range, got {value}")
        if self.optimizer not in (None, "adamw", "muon"):
            raise InputError(f"--optimizer: '{self.optimizer}' is not one of adamw, muon")
        if self.time_limit is not None and not self.time_limit > 0:
            raise InputError(f"--time-limit: must be > 0, got {self.time_limit}")
        return self

    def with_teacher_defaults(self, train: dict) -> DistillConfig:
        """The optimizer and peak lr left open (None) set to those the teacher was trained with
        (``train``: its checkpoint's training config), else AdamW at 2e-4 (``train``'s defaults)."""
        optimizer = self.optimizer or train.get("optimizer") or "adamw"
        lr = self.lr if self.lr is not None else float(train.get("lr") or 2e-4)
        return replace(self, optimizer=optimizer, lr=lr).validate()

    def optim_config(self):
        """The training options of one round (``train.TrainConfig``): what ``train.optim`` reads."""
        from ddpmctl.train import TrainConfig, default_warmup

        warmup = default_warmup(self.steps_per_round) if self.warmup is None else int(self.warmup)
        return TrainConfig(
            steps=self.steps_per_round, batch=self.batch, lr=self.lr, optimizer=self.optimizer, warmup=warmup,
            lr_schedule="linear", lr_min=0.0, clip=self.clip, ema=self.ema, seed=self.seed, device=self.device,
        )  # fmt: skip


def check_steps(from_steps: int, to_steps: int) -> int:
    """The number of rounds: log2(from_steps / to_steps), which must be a whole number >= 1."""
    n, k = int(from_steps), int(to_steps)
    if k < 1 or n <= k or n % k or (n // k) & (n // k - 1):
        raise InputError(
            f"--from-steps {n} / --to-steps {k}: each round halves the steps, so --from-steps must be "
            f"--to-steps times a power of 2 (e.g. {k * 16})"
        )
    return (n // k).bit_length() - 1
