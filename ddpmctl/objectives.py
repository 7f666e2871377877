"""Training objectives: denoising losses for every process and parameterisation.

For data ``x0`` (model space), a time ``t`` and noise ``eps ~ N(0, I)`` the network sees
``x_t = alpha_t x0 + sigma_t eps`` (``diffusion.q_sample``) and ``c_noise(t)``, and is trained to
output the target of its parameterisation (``diffusion.from_eps_x0``):

* ``eps``:   eps                              (DDPM's L_simple, Ho et al. 2020, eq. 14)
* ``x0``:    x0
* ``v``:     (alpha eps - sigma x0) / r,  r = sqrt(alpha^2 + sigma^2)   (Salimans & Ho 2022)
* ``score``: -eps / sigma = grad log q(x_t | x0)   (denoising score matching, Song et al. 2021)
* ``edm``:   (x0 - c_skip x~) / c_out, the target of EDM's F (Karras et al. 2022, eq. 8 and Table 1;
             ``diffusion.edm_precond``), on the input c_in x~ (``Objective.net_input``)

The per-sample loss is ``w(t) * mean((out - target)^2)`` (``l2``) or ``w(t) * mean(|out - target|)``
(``l1``; seed 002 compares both).

Weights. An error in one parameterisation is a fixed multiple of the error in eps (for the same
x_t): ``|eps_hat - eps|^2 = c(t) |out - target|^2`` with

    c_eps = 1,   c_x0 = SNR,   c_v = SNR / (SNR + 1),   c_score = sigma^2,      SNR = alpha^2 / sigma^2,
    c_edm = c_out^2 / sigma~^2 = sd^2 SNR / (sd^2 SNR + 1)      (sigma~ = sigma / alpha, sd = sigma_data).

Default weights: 1 for eps, x0 and v (the plain MSE of each target), and ``sigma^2`` for score,
which is the lambda(t) = sigma^2 weighting of score_sde (seed 000: ``loss = mean(sum((score *
sigma + z)^2))``); a score network trained that way has the same loss as an eps network. For edm
the weight is 1 too, and that *is* EDM's loss: EDM weights the denoiser's error by
lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 (Table 1, "Loss weighting"), and since
|D - x0|^2 = c_out^2 |F - target|^2, lambda c_out^2 = 1 (``edm_lambda``); the target has unit
variance when the data's std is sd (EDM section 5).

Min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy")
weights the *x0* error by ``min(SNR, gamma)``. In eps units that is ``min(SNR, gamma) / SNR``, so
each parameterisation gets ``w = c(t) * min(SNR, gamma) / SNR``:

    eps: min(SNR, g) / SNR    x0: min(SNR, g)    v: min(SNR, g) / (SNR + 1)    score: sigma^2 min(SNR, g) / SNR

With the L1 loss the errors scale by sqrt(c) instead of c, so the weights are the square roots of
the ones above (the same objective, measured in the same units).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddpmctl import diffusion
from ddpmctl.errors import InputError
from ddpmctl.schedules import Process

LOSSES = ("l2", "l1")


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise InputError(f"--loss: unknown loss '{loss}' (choose from {', '.join(LOSSES)})")
    return loss


def sample_times(process: Process, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training times: ``process.training_times`` (float64, (n,), on the CPU)."""
    return process.training_times(n, generator)


def error_scale(process: Process, t: torch.Tensor, prediction: str) -> torch.Tensor:
    """c(t): |eps_hat - eps|^2 = c(t) |out - target|^2 for an output of type ``prediction``."""
    alpha, sigma = diffusion.marginal(process, t)
    snr = (alpha / sigma) ** 2
    if prediction == "eps":
        return torch.ones_like(snr)
    if prediction == "x0":
        return snr
    if prediction == "v":
        return snr / (snr + 1)
    if prediction == "score":
        return sigma**2
    if prediction == "edm":
        sd2 = process.sigma_data**2
        return sd2 * snr / (sd2 * snr + 1)
    raise InputError(f"unknown prediction '{prediction}'")


def edm_lambda(sigma, sigma_data: float):
    """EDM's loss weight lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 on |D - x0|^2 (Karras et
    al. 2022, Table 1): 1 / c_out(sigma)^2, so on F's error (prediction ``edm``) it is weight 1."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def loss_weight(
    process: Process, t: torch.Tensor, prediction: str, loss: str = "l2", min_snr: float | None = None
) -> torch.Tensor:
    """Per-sample weight w(t) (float64, shape of t); see the module docstring."""
    if prediction == "score":
        w = error_scale(process, t, "score")  # lambda(t) = sigma^2: the eps loss
    else:
        w = torch.ones_like(torch.as_tensor(t, dtype=torch.float64))
    if min_snr is not None:
        alpha, sigma = diffusion.marginal(process, t)
        snr = (alpha / sigma) ** 2
        w = error_scale(process, t, prediction) * torch.clamp(snr, max=float(min_snr)) / snr
    return torch.sqrt(w) if loss == "l1" else w


@dataclass
class Objective:
    """What a training run minimises: the process, the parameterisation and the loss."""

    process: Process
    prediction: str = "eps"
    loss: str = "l2"
    min_snr: float | None = None

    def __post_init__(self):
        diffusion.check_prediction(self.prediction, self.process)
        check_loss(self.loss)
        if self.min_snr is not None and not self.min_snr > 0:
            raise InputError(f"--min-snr: gamma must be > 0, got {self.min_snr}")

    def inputs(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor):
        """(x_t, c_noise, target, weight) for data x0 (model space), times t (B,) float64 on the CPU
        (the process tables live there) and noise eps like x0."""
        alpha, sigma = diffusion.marginal(self.process, t)
        a = alpha.to(device=x0.device, dtype=x0.dtype)
        s = sigma.to(device=x0.device, dtype=x0.dtype)
        x_t = diffusion.q_sample(self.process, x0, t, eps)
        target = diffusion.from_eps_x0(eps, x0, a, s, self.prediction, self.process.sigma_data)
        c_noise = self.process.c_noise(t).to(device=x0.device, dtype=torch.float32)
        weight = loss_weight(self.process, t, self.prediction, self.loss, self.min_snr).to(x0.device, x0.dtype)
        return x_t, c_noise, target, weight

    def x0_estimate(
        self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip: tuple[float, float] | None = None
    ) -> torch.Tensor:
        """The x0 a network output ``out`` at (x_t, t) predicts, optionally clipped to ``clip`` (what
        ``diffusion.Denoiser`` computes when sampling): a self-conditioned net's extra input."""
        alpha, sigma = diffusion.marginal(self.process, t)
        _, x0 = diffusion.to_eps_x0(out.to(x_t.dtype), x_t, alpha, sigma, self.prediction, self.process.sigma_data)
        return x0.clamp(*clip) if clip is not None else x0

    def net_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is given at (x_t, t): c_in x~ for edm, x_t itself otherwise
        (``diffusion.net_input``)."""
        if self.prediction != "edm":
            return x_t
        alpha, sigma = diffusion.marginal(self.process, t)
        return diffusion.net_input(x_t, alpha, sigma, self.prediction, self.process.sigma_data)

    def per_sample(self, out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """w(t) * mean over the data dimensions of the L2 / L1 error, shape (B,)."""
        diff = out.float() - target.float()
        err = diff.square() if self.loss == "l2" else diff.abs()
        return weight * err.reshape(err.shape[0], -1).mean(dim=1)
