"""Methods that guide each step with a gradient through the network: DPS (the gradient of
||y - A x0(x_t)||) and PiGDM (the pseudo-inverse guided score).

Both take one backward pass through the network per step (a vector-Jacobian product).
"""

from __future__ import annotations

import torch

from ddpmctl import samplers as S
from ddpmctl.diffusion import Prediction
from ddpmctl.restore.base import Observation


def _f(v) -> float:
    return float(v)


def dps(denoiser, x, times, generator, callback=None, *, obs: Observation, zeta: float = 0.5) -> torch.Tensor:
    """Diffusion posterior sampling (Chung et al. 2023, seed 001 Algorithm "DPS - Gaussian") with
    ancestral steps: ``x_s <- x_s - zeta grad_{x_t} ||y - A x0(x_t)||`` through the network. The
    paper writes ``zeta_i grad ||.||^2`` with ``zeta_i = zeta' / ||y - A x0||``; that equals the
    code's ``zeta grad ||.||`` (norm not squared) with ``zeta = 2 zeta'``. NFE = steps, each with a
    backward pass through the network."""
    process, op, y = denoiser.process, obs.op, obs.y
    for i, (t, s) in enumerate(S._steps(times)):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            pred = denoiser(xg, t)
            residual = (y - op.A(pred.x0)).reshape(x.shape[0], -1)
            norm = torch.linalg.vector_norm(residual.float(), dim=1)  # per sample: batch-independent
            (grad,) = torch.autograd.grad(norm.sum(), xg)
        pred = Prediction(eps=pred.eps.detach(), x0=pred.x0.detach())
        z = S.randn_like(x, generator) if s > 0 else None
        x_next = S.ancestral_step(x, pred, t, s, process, "small", z)
        if s > 0:
            x_next = x_next - zeta * grad.to(x.dtype)
        else:
            x_next = pred.x0  # the last step returns x0 (Algorithm 1, line 9)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": pred.x0})
        x = x_next.detach()
    return x


def pigdm_r2(alpha: float, sigma: float) -> float:
    """PiGDM's r_t^2 = sigma~^2 / (1 + sigma~^2) with the VE noise level sigma~ = sigma_t / alpha_t
    (Song et al. 2023, section 3.2): the variance of x0 given x_t under a N(0, I) prior, which is
    sigma_t^2 / (alpha_t^2 + sigma_t^2) (1 - alpha_bar_t on VP)."""
    return sigma**2 / (alpha**2 + sigma**2)


def pigdm(
    denoiser, x, times, generator, callback=None, *, obs: Observation, eta: float = 1.0, weight: float = 1.0
) -> torch.Tensor:
    """Pseudoinverse-guided diffusion (PiGDM; Song, Vahdat, Mardani & Kautz 2023, eq. 7-8): with
    p(y | x_t) ~ N(A x0^, r_t^2 A A^T + sigma_y^2 I), the likelihood's score is

        g = (d x0^/d x_t)^T A^T (r_t^2 A A^T + sigma_y^2 I)^-1 (y - A x0^)
          = (d x0^/d x_t)^T V diag(s / (r_t^2 s^2 + sigma_y^2)) U^T (y - A x0^)

    (one vector-Jacobian product through the network; noise-free it is
    ((A^+ y - A^+ A x0^)^T d x0^/d x_t)^T / r_t^2). Added to the prior's score, Tweedie's formula
    gives the guided x0 = x0^ + ``weight`` sigma_t^2 / alpha_t g, and the step is DDIM(eta) from
    (x_t, x0) with eps = (x_t - alpha_t x0) / sigma_t. For a N(0, I) prior d x0^/d x_t =
    alpha_t / (alpha_t^2 + sigma_t^2) I and the guided x0 is exactly DDNM's x0^ + A^+ (y - A x0^)
    (noisy y: exactly E[x0 | x_t, y]). With a trained network the factor sigma_t^2 / alpha_t (about
    1 / alpha_t early) amplifies the Jacobian's errors, so the guided x0 is clipped to the data range
    where the denoiser clips (images), as the denoiser's own x0 is. NFE = steps, each with a backward
    pass through the network."""
    process, op, y, sigma_y = denoiser.process, obs.op, obs.y, obs.sigma_y
    for i, (t, s) in enumerate(S._steps(times)):
        a_t, sg_t = _f(process.alpha(t)), _f(process.sigma(t))
        r2 = pigdm_r2(a_t, sg_t)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            pred = denoiser(xg, t)
            residual = (y - op.A(pred.x0)).detach()
            v = op.pinv_filter(residual, lambda sv, r2=r2: sv / (r2 * sv**2 + sigma_y**2))
            (g,) = torch.autograd.grad(pred.x0, xg, grad_outputs=v.to(pred.x0.dtype))
        x0 = pred.x0.detach() + (weight * sg_t**2 / a_t) * g.to(x.dtype)
        if denoiser.clip is not None:  # the data range, as the denoiser's own x0
            x0 = x0.clamp(*denoiser.clip)
        eps = (x - a_t * x0) / sg_t
        z = S.randn_like(x, generator) if eta > 0 and s > 0 else None
        x_next = S.ddim_step(x, Prediction(eps=eps, x0=x0), t, s, process, eta, z)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": x0})
        x = x_next.detach()
    return x
