"""Optimisation: the learning-rate schedule, the EMA of the weights, AdamW and Muon."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ddpmctl.errors import InputError

if TYPE_CHECKING:
    from ddpmctl.train.config import TrainConfig


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
    ``torch.optim.AdamW`` written out with foreach ops (a test checks it against a float64 numpy
    transcription of Loshchilov & Hutter's Algorithm 2)::

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
    """Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers") on ``muon_params``, the
    weight matrices of the hidden layers (``net.muon_parameters()``; convolutions flattened to
    (out, in * k * k)), AdamW on the rest of ``params`` (the first and last layer, the time
    embedding, biases, norms). Muon's update is the
    orthogonalised Nesterov momentum, scaled by 0.2 sqrt(max(out, in)) so that its RMS matches
    AdamW's (Liu et al. 2025, "Muon is scalable for LLM training"): both use the same ``lr``.
    State: AdamW's for every parameter (unused ones stay zero) plus ``{i}.momentum``."""

    def __init__(self, params, muon_params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum=0.95):
        super().__init__(params, lr, betas, eps, weight_decay)
        hidden = {id(p) for p in muon_params}
        self.muon = [id(p) in hidden for p in self.params]
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


def make_optimizer(cfg: TrainConfig, net: torch.nn.Module) -> AdamW:
    """The optimizer ``cfg.optimizer`` names for ``net``; Muon takes the matrices the net names."""
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    if cfg.optimizer == "muon":
        return Muon(
            net.parameters(),
            net.muon_parameters(),
            lr=cfg.lr,
            betas=betas,
            weight_decay=cfg.weight_decay,
            momentum=cfg.muon_momentum,
        )
    return AdamW(net.parameters(), lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
