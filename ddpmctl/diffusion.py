"""The forward process, its posterior, and the one place where network outputs are converted.

With the marginal ``x_t = alpha_t x_0 + sigma_t eps`` of any process (``ddpmctl.schedules``):

* Tweedie / the parameterisations (seed 001): ``x0 = (x_t - sigma_t eps) / alpha_t``,
  ``eps = (x_t - alpha_t x0) / sigma_t``, ``score = grad log p_t(x_t) = -eps / sigma_t``, and
  ``v = a eps - s x0`` with ``a = alpha_t / r``, ``s = sigma_t / r``, ``r = sqrt(alpha_t^2 + sigma_t^2)``
  (for VP processes r = 1 and this is the usual v of Salimans & Ho 2022);
* EDM's preconditioning (Karras et al. 2022, Table 1, "Ours"; prediction ``edm``): in the VE form
  ``x~ = x_t / alpha_t``, ``sigma~ = sigma_t / alpha_t`` the network F gives the denoiser
  ``D(x~; sigma~) = c_skip x~ + c_out F(c_in x~; c_noise)`` with ``c_skip = sd^2 / (sigma~^2 + sd^2)``,
  ``c_out = sigma~ sd / sqrt(sigma~^2 + sd^2)``, ``c_in = 1 / sqrt(sigma~^2 + sd^2)`` (sd = sigma_data,
  ``edm_precond``) and ``x0 = D``; its training target is ``(x0 - c_skip x~) / c_out`` (EDM eq. 8);
* the Gaussian transition between two times s < t: ``alpha_{t|s} = alpha_t / alpha_s``,
  ``sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2`` (for DDPM steps this is beta_t);
* the posterior ``q(x_s | x_t, x_0)`` (DDPM eq. 6-7 for s = t - 1, seed 004):
  mean ``alpha_{t|s} sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_{t|s}^2 / sigma_t^2 x_0``,
  variance ``sigma_{t|s}^2 sigma_s^2 / sigma_t^2`` (beta-tilde).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ddpmctl.errors import InputError
from ddpmctl.schedules import DiscreteProcess, Process

PREDICTIONS = ("eps", "x0", "v", "score", "edm")


def _bcast(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-sample coefficient (B,) or scalar, shaped to broadcast against x (B, ...)."""
    c = torch.as_tensor(c).to(device=x.device, dtype=x.dtype)
    if c.ndim == 0:
        return c
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def marginal(process: Process, t) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) as float64 tensors."""
    return process.alpha(t), process.sigma(t)


# --------------------------------------------------------------------------------------------
# the forward process


def q_sample(process: Process, x0: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    """x_t = alpha_t x0 + sigma_t eps, q(x_t | x_0) = N(alpha_t x0, sigma_t^2 I)."""
    a, s = marginal(process, t)
    return _bcast(a, x0) * x0 + _bcast(s, x0) * eps


def q_sample_sequential(
    process: DiscreteProcess,
    x0: torch.Tensor,
    steps: list[int],
    generator: torch.Generator | None = None,
    callback: Callable[[int], None] | None = None,
) -> dict[int, torch.Tensor]:
    """Run the Markov chain x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps step by step
    (t = 1..max(steps)); returns {t: x_t} for each requested t (t = 0 is x0 itself)."""
    wanted = set(int(s) for s in steps)
    out = {0: x0.clone()} if 0 in wanted else {}
    x = x0.to(torch.float64)
    betas = torch.from_numpy(process.betas)
    for t in range(1, max(wanted) + 1):
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float64, device=x.device)
        x = torch.sqrt(1 - betas[t - 1]) * x + torch.sqrt(betas[t - 1]) * noise
        if t in wanted:
            out[t] = x.to(x0.dtype)
        if callback is not None:
            callback(t)
    return out


def transition(process: Process, s, t) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_{t|s}, sigma_{t|s}^2) of q(x_t | x_s) for s < t."""
    a_s, s_s = marginal(process, s)
    a_t, s_t = marginal(process, t)
    a_ts = a_t / a_s
    return a_ts, s_t**2 - a_ts**2 * s_s**2


def posterior(process: Process, s, t) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coefficients of q(x_s | x_t, x_0) = N(c_xt x_t + c_x0 x_0, var): returns (c_xt, c_x0, var)."""
    a_s, s_s = marginal(process, s)
    _, s_t = marginal(process, t)
    a_ts, var_ts = transition(process, s, t)
    c_xt = a_ts * s_s**2 / s_t**2
    c_x0 = a_s * var_ts / s_t**2
    return c_xt, c_x0, var_ts * s_s**2 / s_t**2


# --------------------------------------------------------------------------------------------
# parameterisations: the one place


def check_prediction(prediction: str, process: Process | None = None) -> str:
    """``prediction`` if it is one of PREDICTIONS (and, given the ``process``, fits it: ``edm``
    needs the data std ``sigma_data`` that only the edm process records)."""
    if prediction not in PREDICTIONS:
        raise InputError(f"unknown prediction '{prediction}' (choose from {', '.join(PREDICTIONS)})")
    if prediction == "edm" and process is not None and process.sigma_data is None:
        raise InputError(f"--prediction edm: EDM's preconditioning needs --sde edm (this process is {process.kind})")
    return prediction


def edm_precond(sigma_t, sigma_data: float) -> tuple:
    """(c_skip, c_out, c_in) of EDM's preconditioning at the noise level ``sigma_t`` = sigma~
    (Karras et al. 2022, Table 1, "Ours"; their section 5 and appendix B.6 derive them: unit
    variance of the network's input and of its training target)."""
    r2 = sigma_t**2 + sigma_data**2
    return sigma_data**2 / r2, sigma_t * sigma_data / r2**0.5, 1 / r2**0.5


def net_input(x: torch.Tensor, alpha, sigma, prediction: str, sigma_data: float | None = None) -> torch.Tensor:
    """What the network is given at x_t: ``c_in x~ = x_t / sqrt(sigma_t^2 + alpha_t^2 sd^2)`` for
    ``edm`` (EDM Table 1, with x~ = x_t / alpha_t), ``x_t`` itself (the same tensor) otherwise."""
    if prediction != "edm":
        return x
    return x / torch.sqrt(_bcast(sigma, x) ** 2 + (_bcast(alpha, x) * sigma_data) ** 2)


def _edm_sd(sigma_data: float | None) -> float:
    if sigma_data is None:
        raise InputError("prediction 'edm' needs sigma_data (the edm process records it)")
    return float(sigma_data)


def to_eps_x0(
    pred: torch.Tensor, x: torch.Tensor, alpha, sigma, prediction: str, sigma_data: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a network output of type ``prediction`` at x_t into (eps, x0) (``sigma_data``:
    the edm preconditioning's data std)."""
    a, s = _bcast(alpha, x), _bcast(sigma, x)
    if prediction == "edm":  # x0 = D = c_skip x~ + c_out F; eps = (x~ - D) / sigma~, without the division
        sd = _edm_sd(sigma_data)
        st, xt = s / a, x / a
        r = torch.sqrt(st**2 + sd**2)
        return st * xt / r**2 - sd * pred / r, (sd**2 * xt) / r**2 + (st * sd / r) * pred
    if prediction == "eps":
        eps = pred
        return eps, (x - s * eps) / a
    if prediction == "x0":
        x0 = pred
        return (x - a * x0) / s, x0
    if prediction == "v":
        r = torch.sqrt(a**2 + s**2)
        an, sn = a / r, s / r
        xn = x / r
        return sn * xn + an * pred, an * xn - sn * pred
    if prediction == "score":
        eps = -s * pred
        return eps, (x - s * eps) / a
    raise InputError(f"unknown prediction '{prediction}'")


def from_eps_x0(
    eps: torch.Tensor, x0: torch.Tensor, alpha, sigma, prediction: str, sigma_data: float | None = None
) -> torch.Tensor:
    """The target a network of type ``prediction`` should output, given the true (eps, x0)."""
    a, s = _bcast(alpha, eps), _bcast(sigma, eps)
    if prediction == "edm":
        # (x0 - c_skip x~) / c_out with x~ = x0 + sigma~ eps, written without cancellation
        sd = _edm_sd(sigma_data)
        st = s / a
        return (st * x0 - sd**2 * eps) / (sd * torch.sqrt(st**2 + sd**2))
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        r = torch.sqrt(a**2 + s**2)
        return (a * eps - s * x0) / r
    if prediction == "score":
        return -eps / s
    raise InputError(f"unknown prediction '{prediction}'")


# --------------------------------------------------------------------------------------------
# the denoiser every sampler and restorer calls


@dataclass
class Prediction:
    """The denoiser's output at (x_t, t): predicted noise and data (score = -eps / sigma_t)."""

    eps: torch.Tensor
    x0: torch.Tensor


class Denoiser:
    """Wraps a network ``net(x, c_noise)`` (or an exact model ``net(x, t)``) of a process and
    a parameterisation, and returns (eps, x0) at (x_t, t). Counts network evaluations in ``nfe``.

    ``clip`` = (lo, hi) clips the predicted x0 to the data range in model space (and recomputes
    eps from it), as DDPM's code does for images.

    A self-conditioned network (``net.self_cond``, Chen et al. 2022) also gets the x0 this denoiser
    predicted at its previous call (zeros at the first call, after ``reset()`` or when the batch
    shape changes): call ``reset()`` before each new batch of samples.

    ``guide`` (another Denoiser of the same process, no clipping) and ``guidance`` = w turn on
    autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"):
    x0 = x0_guide + w (x0 - x0_guide), and eps likewise (the same extrapolation, as eps and x0 are
    affine in each other at a given x_t), before clipping; w = 1 is the model alone. The guide is
    typically a smaller or less-trained model of the same data; each call then costs 2 network
    evaluations, and ``nfe`` counts both.

    A class-conditional network (``net.num_classes`` K > 0) is called with ``class_labels`` when
    ``set_labels(labels)`` gave the rows of the batch their classes (None: the null class K, the
    unconditional model). ``cfg`` = s != 1 turns on classifier-free guidance (Ho & Salimans 2022,
    eq. 6, written with the CFG scale s = 1 + w of Stable Diffusion and diffusers):
    out = out_uncond + s (out_cond - out_uncond), from one network call on the doubled batch
    [x, x] with labels [labels, K]; as eps and x0 are affine in the output at a given x_t, eps and
    x0 are guided alike. s = 1 is the conditional model alone, s = 0 the unconditional one. Each
    guided call counts 2 evaluations in ``nfe`` (twice the rows of one call).

    An image-conditional network (``net.cond_channels`` > 0: SR3, ``ddpmctl.conditions``) is called
    with ``image_cond`` = the condition c of each row that ``set_cond(c)`` gave (model space, not
    scaled by EDM's c_in, which applies to x_t only); calling it without one is an InputError.
    """

    def __init__(
        self,
        net: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        process: Process,
        prediction: str = "eps",
        clip: tuple[float, float] | None = None,
        conditioning: str = "c_noise",
        guide: Denoiser | None = None,
        guidance: float = 1.0,
    ):
        self.net = net
        self.conditioning = conditioning  # "c_noise": net(x, process.c_noise(t)); "t": net(x, t) (exact models)
        self.process = process
        self.prediction = check_prediction(prediction, process)
        self.clip = clip
        self.nfe = 0
        self.self_cond = bool(getattr(net, "self_cond", False))
        self._x0_prev: torch.Tensor | None = None
        self.guide: Denoiser | None = None
        self.guidance = 1.0
        self.set_guide(guide, guidance)
        self.num_classes = int(getattr(net, "num_classes", 0) or 0)
        self.labels: torch.Tensor | None = None
        self.cfg = 1.0
        self.cond_channels = int(getattr(net, "cond_channels", 0) or 0)
        self.cond: torch.Tensor | None = None

    def set_labels(self, labels, cfg: float | None = None) -> Denoiser:
        """Condition the next calls on class ``labels`` ((B,) integers in [0, K), one per row of the
        batch; None: the unconditional model), with guidance scale ``cfg`` (None: unchanged). A
        conditional guide gets the same labels."""
        if labels is not None:
            labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
            if self.num_classes == 0:
                raise ValueError("class labels for a network that is not class-conditional")
        self.labels = labels
        if cfg is not None:
            self.cfg = float(cfg)
        if self.guide is not None and self.guide.num_classes > 0:
            self.guide.set_labels(labels)
        return self

    def set_cond(self, cond) -> Denoiser:
        """Condition the next calls on the images ``cond`` ((B, C', H, W) in model space, one per row of
        the batch: SR3's bicubic-upsampled observation; None: none). A conditional guide gets the same."""
        if cond is not None:
            cond = torch.as_tensor(cond)
            if self.cond_channels == 0:
                raise ValueError("a condition image for a network that takes none")
        self.cond = cond
        if self.guide is not None and self.guide.cond_channels > 0:
            self.guide.set_cond(cond)
        return self

    def set_guide(self, guide: Denoiser | None, guidance: float) -> Denoiser:
        """Turn on autoguidance by ``guide`` with weight ``guidance`` (off for None or w = 1)."""
        if guide is not None and guide.clip is not None:
            raise ValueError("the guide denoiser must not clip (the guided x0 is clipped)")
        self.guide = guide if guide is not None and guidance != 1.0 else None
        self.guidance = float(guidance)
        return self

    def reset(self) -> None:
        """Forget the previous x0 estimate (self-conditioned networks): a new batch starts."""
        self._x0_prev = None
        if self.guide is not None:
            self.guide.reset()

    @contextlib.contextmanager
    def uncounted(self) -> Iterator[Denoiser]:
        """Evaluations inside the block are not counted in ``nfe`` (bookkeeping such as a
        trajectory's x0, not part of a sampler's cost)."""
        nfe = self.nfe
        try:
            yield self
        finally:
            self.nfe = nfe

    def __call__(self, x: torch.Tensor, t) -> Prediction:
        t = torch.as_tensor(t, dtype=torch.float64)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        alpha, sigma = marginal(self.process, t)
        out = self._output(x, t)
        eps, x0 = to_eps_x0(out, x, alpha, sigma, self.prediction, self.process.sigma_data)
        if self.guide is not None:
            g, w = self.guide(x, t), self.guidance
            eps, x0 = g.eps + w * (eps - g.eps), g.x0 + w * (x0 - g.x0)
            self.nfe += 1
        if self.clip is not None:
            x0 = x0.clamp(*self.clip)
            eps = (x - _bcast(alpha, x) * x0) / _bcast(sigma, x)
        if self.self_cond:
            self._x0_prev = x0.detach()
        return Prediction(eps=eps, x0=x0)

    def _output(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's output at (x, t) (counted), guided by the classes when ``cfg`` != 1."""
        labels, cond = self.labels, self.cond
        if labels is not None and labels.shape[0] != x.shape[0]:
            raise ValueError(f"{labels.shape[0]} class labels for a batch of {x.shape[0]}")
        if self.cond_channels and cond is None:
            raise InputError("the network is image-conditional (SR3) and has no condition: use restore --method sr3")
        if cond is not None and cond.shape[0] != x.shape[0]:
            raise ValueError(f"{cond.shape[0]} condition images for a batch of {x.shape[0]}")
        guided = labels is not None and self.cfg != 1.0
        prev = self._x0_prev if self.self_cond and self._x0_prev is not None else None
        prev = prev if prev is not None and prev.shape == x.shape else None
        if guided:  # one call on [x, x] with [labels, null]: conditional and unconditional rows
            x, t = torch.cat([x, x]), torch.cat([t, t])
            labels = torch.cat([labels, torch.full_like(labels, self.num_classes)])
            prev = None if prev is None else torch.cat([prev, prev])
            cond = None if cond is None else torch.cat([cond, cond])
        kwargs = {} if labels is None else {"class_labels": labels.to(x.device)}
        if cond is not None:  # SR3's c, as it is (EDM's c_in scales x_t only)
            kwargs["image_cond"] = cond.to(device=x.device, dtype=x.dtype)
        if self.conditioning == "t":
            out = self.net(x, t.to(x.device), **kwargs)
        else:
            c_noise = self.process.c_noise(t).to(device=x.device, dtype=torch.float32)
            if self.prediction == "edm":  # the network sees EDM's c_in x~ (Table 1)
                x = net_input(x, *marginal(self.process, t), self.prediction, self.process.sigma_data)
            if self.self_cond:
                out = self.net(x, c_noise, prev, **kwargs)
            else:
                out = self.net(x, c_noise, **kwargs)
        out = out.to(x.dtype)
        self.nfe += 2 if guided else 1
        if guided:
            cond, uncond = out.chunk(2)
            out = uncond + self.cfg * (cond - uncond)
        return out


# --------------------------------------------------------------------------------------------
# data normalisation (data units <-> model space)


@dataclass
class Normalization:
    """model = data * scale + shift. Images: [0, 1] -> [-1, 1] (scale 2, shift -1)."""

    scale: float = 2.0
    shift: float = -1.0

    def to_model(self, x):
        return x * self.scale + self.shift

    def to_data(self, x):
        return (x - self.shift) / self.scale

    def as_dict(self) -> dict:
        return {"scale": float(self.scale), "shift": float(self.shift)}


IMAGE_NORMALIZATION = Normalization(2.0, -1.0)
IDENTITY_NORMALIZATION = Normalization(1.0, 0.0)


def forward_noise(
    process: Process,
    x0: np.ndarray,
    times: list[float],
    generator: torch.Generator,
    normalization: Normalization = IMAGE_NORMALIZATION,
) -> np.ndarray:
    """Noise data (in data units) to several times with one eps per sample:
    returns (N, K, ...) in data units (x_t mapped back with ``normalization.to_data``)."""
    # a copy: inputs may be read-only memory maps
    x = normalization.to_model(torch.from_numpy(np.array(x0, dtype=np.float64)))
    eps = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    outs = [normalization.to_data(q_sample(process, x, t, eps)) for t in times]
    return torch.stack(outs, dim=1).to(torch.float32).numpy()
