"""The exact model of a Gaussian mixture: a perfect denoiser, in closed form, at every noise level.

If the data are ``x_0 ~ sum_k w_k N(mu_k, Sigma_k)`` and ``x_t = alpha_t x_0 + sigma_t eps`` (any
process of ``ddpmctl.schedules``), the noised marginal is again a mixture,

    p_t(x) = sum_k w_k N(x; alpha_t mu_k, C_k(t)),     C_k(t) = alpha_t^2 Sigma_k + sigma_t^2 I,

so with the responsibilities ``r_k(x) = w_k N_k(x) / p_t(x)`` (log-sum-exp, float64):

    score(x, t) = grad log p_t(x) = - sum_k r_k(x) C_k^{-1} (x - alpha_t mu_k)
    eps(x, t)   = - sigma_t score(x, t)                                     (seed 001, Tweedie)
    x0(x, t)    = E[x_0 | x_t = x] = (x + sigma_t^2 score) / alpha_t
                = sum_k r_k(x) (mu_k + alpha_t Sigma_k C_k^{-1} (x - alpha_t mu_k)).

``C_k`` shares the eigenvectors ``U_k`` of ``Sigma_k = U_k diag(lambda_k) U_k^T``:
``C_k = U_k diag(alpha^2 lambda_k + sigma^2) U_k^T``, so one eigendecomposition serves every t.

Class-conditional (``make-data gmm --labels``: the label of a point is its component): the data of
class c are the mixture of the components of class c, weights renormalised, whose exact score is the
same sum over those components only (r_k computed among them). ``ExactGMM`` is a class-conditional
model with one class per component (or the classes ``component_classes`` gives): called with class
labels it is the exact conditional denoiser, with the null class (label K) or no labels the exact
unconditional one, which is what classifier-free guidance combines.

``ExactGMM`` wraps this as a model that samplers use like a trained checkpoint
(``ddpmctl sample gmm.npz ...``): it shows what each sampler does with a perfect score, and the
tests use it to prove the samplers correct without training. ``mixture_quality`` measures how
well a set of points reproduces the mixture (means, covariances and weights through the
responsibilities, and a sliced Wasserstein distance computed against the exact projected CDFs).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ddpmctl.diffusion import IDENTITY_NORMALIZATION, Denoiser
from ddpmctl.errors import InputError
from ddpmctl.gmm import GaussianMixture
from ddpmctl.schedules import Process

LOG_2PI = math.log(2 * math.pi)


class ExactGMM:
    """The exact noise predictor of a Gaussian mixture under ``process``.

    Quacks like ``checkpoint.LoadedModel`` (``process``, ``prediction``, ``normalization``,
    ``data_kind``, ``data_shape``, ``meta``, ``denoiser()``), so ``sampling.generate`` and
    ``ddpmctl sample`` take either. Computes in float64 on ``device``.
    """

    prediction = "eps"
    data_kind = "points"
    normalization = IDENTITY_NORMALIZATION
    dtype = torch.float64

    def __init__(
        self, mixture: GaussianMixture, process: Process, device: str | torch.device = "cpu", component_classes=None
    ):
        self.mixture = mixture
        self.process = process
        self.data_shape = (mixture.dim,)
        # class of each component (default: component k is class k); K classes, the null class is K
        classes = np.arange(mixture.k) if component_classes is None else np.asarray(component_classes, dtype=np.int64)
        if classes.shape != (mixture.k,) or classes.min() < 0:
            raise InputError(f"exact model: component_classes must be {mixture.k} integers >= 0")
        self.component_classes = classes
        self.num_classes = int(classes.max()) + 1
        self.class_names = [str(c) for c in range(self.num_classes)]
        lam, vecs = np.linalg.eigh(mixture.covs)  # Sigma_k = U_k diag(lam_k) U_k^T
        k, d = mixture.k, mixture.dim
        # every component side by side (K*D columns), so each step is one matmul for all components:
        # y = x U - alpha mu U with U = [U_1 ... U_K], and sums over a component's D coordinates
        # are a product with the 0/1 matrix ``block`` (K*D, K)
        self._np = dict(
            log_w=np.log(mixture.weights),
            U=vecs.transpose(1, 0, 2).reshape(d, k * d),  # (D, K*D)
            Ut=vecs.transpose(0, 2, 1).reshape(k * d, d),  # [U_1^T; ...; U_K^T] (K*D, D)
            muU=np.einsum("kd,kde->ke", mixture.means, vecs).reshape(k * d),  # mu_k^T U_k
            lam=lam.reshape(k * d),
            block=np.kron(np.eye(k), np.ones((d, 1))),  # (K*D, K)
            classes=classes,
        )
        self.to(device)
        self.meta = {
            "exact": "gmm",
            "components": mixture.k,
            "dim": mixture.dim,
            "process": process.to_dict() if process.kind != "ddpm" else {"kind": "ddpm", "T": process.T},
        }

    def to(self, device: str | torch.device) -> ExactGMM:
        self.device = torch.device(device)
        self._t = {k: torch.as_tensor(v, dtype=torch.float64, device=self.device) for k, v in self._np.items()}
        self._t["classes"] = self._t["classes"].long()
        return self

    # -- the closed forms ------------------------------------------------------------------
    def _alpha_sigma(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_t, sigma_t shaped (B, 1), or (1, 1) when every sample has the same t."""
        t = torch.as_tensor(t, dtype=torch.float64).cpu()
        if t.ndim > 0 and t.numel() > 0 and bool((t == t.reshape(-1)[0]).all()):
            t = t.reshape(-1)[0]
        if t.ndim == 0:
            t = t.reshape(1)
        a, s = self.process.alpha(t), self.process.sigma(t)
        return a.to(self.device)[:, None], s.to(self.device)[:, None]

    def _parts(self, x, t, labels=None):
        """(log responsibilities (B, K), score (B, D), log p_t (B,), alpha, sigma (B|1, 1)); with class
        ``labels`` (B,) those of each row's class (the components of other classes left out; the
        null class K keeps them all).

        In the eigenbasis of component k, y_k = U_k^T (x - alpha mu_k) and C_k = diag(var_k),
        var_k = alpha^2 lam_k + sigma^2, so log N_k = -(|y_k / sqrt(var_k)|^2 + sum log var_k + D log 2 pi) / 2
        and the component's score is -C_k^{-1} (x - alpha mu_k) = -U_k (y_k / var_k)."""
        x = torch.as_tensor(x).to(device=self.device, dtype=torch.float64)
        if x.ndim != 2 or x.shape[1] != self.mixture.dim:
            raise InputError(f"exact model: expected points of shape (B, {self.mixture.dim}), got {tuple(x.shape)}")
        p = self._t
        a, s = self._alpha_sigma(x, t)  # (B or 1, 1)
        y = x @ p["U"] - a * p["muU"]  # (B, K*D)
        var = a**2 * p["lam"] + s**2  # (B|1, K*D)
        y_over = y / var
        log_n = -0.5 * ((y * y_over) @ p["block"] + torch.log(var) @ p["block"] + self.mixture.dim * LOG_2PI)  # (B, K)
        log_joint = p["log_w"] + log_n  # log w_k N_k(x)
        if labels is not None:  # p_t(x | c) is proportional to sum over the components of class c
            labels = torch.as_tensor(labels, dtype=torch.long, device=self.device)[:, None]
            keep = (p["classes"][None] == labels) | (labels == self.num_classes)
            log_joint = log_joint.masked_fill(~keep, -math.inf)
        log_p = torch.logsumexp(log_joint, dim=1)
        log_r = log_joint - log_p[:, None]
        score = -((log_r.exp() @ p["block"].T) * y_over) @ p["Ut"]  # -sum_k r_k U_k (y_k / var_k)   (B, D)
        return log_r, score, log_p, a, s

    def score(self, x, t, labels=None) -> torch.Tensor:
        """grad_x log p_t(x) (float64 (B, D)); with class ``labels``, grad_x log p_t(x | c)."""
        return self._parts(x, t, labels)[1]

    def eps(self, x, t, labels=None) -> torch.Tensor:
        """The exact noise prediction E[eps | x_t = x(, c)] = -sigma_t score (float64 (B, D))."""
        _, score, _, _, s = self._parts(x, t, labels)
        return -s * score

    def x0(self, x, t, labels=None) -> torch.Tensor:
        """The posterior mean E[x_0 | x_t = x(, c)] (Tweedie) (float64 (B, D))."""
        _, score, _, a, s = self._parts(x, t, labels)
        x = torch.as_tensor(x).to(device=self.device, dtype=torch.float64)
        return (x + s**2 * score) / a

    def log_prob(self, x, t) -> torch.Tensor:
        """log p_t(x) (float64 (B,))."""
        return self._parts(x, t)[2]

    def responsibilities(self, x, t) -> torch.Tensor:
        """r_k(x) = p(component k | x_t = x) (float64 (B, K))."""
        return self._parts(x, t)[0].exp()

    def class_mixture(self, labels) -> GaussianMixture:
        """What samples with these class ``labels`` (an int, or one per sample) follow: class c, in the
        proportion of the labels that are c, as the mixture of its components (their weights renormalised)."""
        m, labels = self.mixture, np.atleast_1d(np.asarray(labels, dtype=np.int64))
        share = np.bincount(labels, minlength=self.num_classes) / labels.size  # of each class
        own = np.bincount(self.component_classes, weights=m.weights, minlength=self.num_classes)
        w = m.weights * share[self.component_classes] / own[self.component_classes]
        keep = w > 0
        return GaussianMixture(w[keep], m.means[keep], m.covs[keep])

    def marginal(self, t: float) -> GaussianMixture:
        """The noised marginal p_t as a mixture: means alpha_t mu_k, covariances alpha_t^2 Sigma_k + sigma_t^2 I."""
        a, s = float(self.process.alpha(t)), float(self.process.sigma(t))
        eye = np.eye(self.mixture.dim)
        return GaussianMixture(self.mixture.weights, a * self.mixture.means, a**2 * self.mixture.covs + s**2 * eye)

    def posterior_mean(self, x, t, s) -> torch.Tensor:
        """E[x_s | x_t = x] = c_xt x + c_x0 E[x_0 | x_t] for s < t (the mean of DDPM's reverse step)."""
        from ddpmctl.diffusion import posterior

        c_xt, c_x0, _ = posterior(self.process, s, t)
        x = torch.as_tensor(x).to(device=self.device, dtype=torch.float64)
        return float(c_xt) * x + float(c_x0) * self.x0(x, torch.full((x.shape[0],), float(t), dtype=torch.float64))

    # -- the model interface ---------------------------------------------------------------
    def __call__(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """net(x, t[, class_labels]): the exact eps, in the dtype of x (class K or None: unconditional)."""
        return self.eps(x, t, class_labels).to(x.dtype)

    def denoiser(self, clip: bool | None = None) -> Denoiser:
        """A ``diffusion.Denoiser`` whose network is the exact eps (``clip`` is refused: points have no range)."""
        if clip:
            raise InputError("--clip-x0: the exact mixture model is points, which have no data range to clip to")
        return Denoiser(self, self.process, "eps", clip=None, conditioning="t")

    def describe(self) -> str:
        m = self.mixture
        return f"exact model of a {m.k}-component Gaussian mixture in {m.dim}-d, {self.process.describe()}"


# --------------------------------------------------------------------------------------------
# how well do points reproduce a mixture?


def _projections(dim: int, n_proj: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    th = rng.standard_normal((n_proj, dim))
    return th / np.linalg.norm(th, axis=1, keepdims=True)


def _mixture_quantiles(mixture: GaussianMixture, theta: np.ndarray, levels: np.ndarray, grid: int = 4096) -> np.ndarray:
    """Quantiles of the 1-d mixtures theta^T x (one per projection) at ``levels``: (P, n).

    The projected mixture has means theta.mu_k and variances theta^T Sigma_k theta; its CDF is
    tabulated on a fine grid and inverted by interpolation (monotone, exact to ~1e-4 of a std)."""
    from scipy.special import ndtr

    m = theta @ mixture.means.T  # (P, K)
    sd = np.sqrt(np.einsum("pd,kde,pe->pk", theta, mixture.covs, theta))
    lo = (m - 9 * sd).min(1)
    hi = (m + 9 * sd).max(1)
    z = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, grid)[None]  # (P, G)
    cdf = (mixture.weights * ndtr((z[:, :, None] - m[:, None, :]) / sd[:, None, :])).sum(2)
    out = np.empty((theta.shape[0], levels.size))
    for p in range(theta.shape[0]):
        c, keep = np.unique(cdf[p], return_index=True)
        out[p] = np.interp(levels, c, z[p, keep])
    return out


N_PROJ = (
    256  # directions of the sliced distance: a fixed set (seed 0), large enough that their choice adds little noise
)
_QUANTILE_CACHE: dict = {}


def _mixture_key(mixture: GaussianMixture) -> tuple:
    return (mixture.weights.tobytes(), mixture.means.tobytes(), mixture.covs.tobytes())


def sliced_wasserstein(samples: np.ndarray, target, n_proj: int = N_PROJ, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance: the mean over ``n_proj`` random directions theta (a fixed
    set: ``seed``) of W1(theta^T samples, theta^T target) (Rabin et al. 2011; Bonneel et al. 2015).

    ``target`` is a ``GaussianMixture`` (compared with its exact projected quantiles, so the only
    noise is that of ``samples``: about c / sqrt(n); see ``swd_floor``) or another point set."""
    x = np.asarray(samples, dtype=np.float64)
    theta = _projections(x.shape[1], n_proj, seed)
    px = np.sort(x @ theta.T, axis=0).T  # (P, n)
    n = x.shape[0]
    if isinstance(target, GaussianMixture):
        key = (*_mixture_key(target), n, n_proj, seed)
        if key not in _QUANTILE_CACHE:
            if len(_QUANTILE_CACHE) >= 8:
                _QUANTILE_CACHE.pop(next(iter(_QUANTILE_CACHE)))
            _QUANTILE_CACHE[key] = _mixture_quantiles(target, theta, (np.arange(n) + 0.5) / n)
        return float(np.abs(px - _QUANTILE_CACHE[key]).mean())
    y = np.asarray(target, dtype=np.float64)
    py = np.sort(y @ theta.T, axis=0).T
    m = py.shape[1]
    if m == n:
        return float(np.abs(px - py).mean())
    # unequal sizes: compare the two empirical quantile functions on the finer grid of levels
    levels = (np.arange(max(n, m)) + 0.5) / max(n, m)
    ia = np.minimum((levels * n).astype(int), n - 1)
    ib = np.minimum((levels * m).astype(int), m - 1)
    return float(np.abs(px[:, ia] - py[:, ib]).mean())


def mixture_quality(samples: np.ndarray, mixture: GaussianMixture, n_proj: int = N_PROJ, seed: int = 0) -> dict:
    """Errors of a point set against the mixture it should follow.

    With the responsibilities r_k(x) of the true mixture, E_p[r_k] = w_k, E_p[r_k x] = w_k mu_k and
    E_p[r_k (x - mu_k)(x - mu_k)^T] = w_k Sigma_k, so responsibility-weighted sample moments are
    unbiased estimates of each component's weight, mean and covariance. Returns

    * ``weight_error``: max_k |w_hat_k - w_k|
    * ``mean_error``: max_k ||mu_hat_k - mu_k|| / sqrt(trace Sigma_k / D) (in component stds)
    * ``cov_error``: max_k ||Sigma_hat_k - Sigma_k||_F / ||Sigma_k||_F
    * ``swd``: sliced 1-Wasserstein distance to the exact mixture (``sliced_wasserstein``, 256 directions)
    * ``swd_floor``: its expected value for n exact samples (the noise floor, from the mixture)
    * ``mmd2``: unbiased squared MMD to the exact mixture (``mmd2``; 0 +- O(1/n) for exact samples)
    * ``nonfinite``: the number of samples that are NaN or inf (they are dropped first)
    """
    x = np.asarray(samples, dtype=np.float64)
    finite = np.isfinite(x).all(1)
    x = x[finite]
    if len(x) == 0:
        return {
            "weight_error": float("inf"),
            "mean_error": float("inf"),
            "cov_error": float("inf"),
            "swd": float("inf"),
            "swd_floor": 0.0,
            "mmd2": float("inf"),
            "nonfinite": int((~finite).sum()),
            "n": 0,
        }
    r = _responsibilities(x, mixture)  # (n, K)
    w_hat = r.mean(0)
    mu_hat = (r.T @ x) / np.maximum(r.sum(0)[:, None], 1e-300)
    mean_err, cov_err = 0.0, 0.0
    for k in range(mixture.k):
        d = x - mixture.means[k]
        cov_hat = (r[:, k, None] * d).T @ d / max(r[:, k].sum(), 1e-300)
        scale = math.sqrt(np.trace(mixture.covs[k]) / mixture.dim)
        mean_err = max(mean_err, float(np.linalg.norm(mu_hat[k] - mixture.means[k]) / scale))
        cov_err = max(cov_err, float(np.linalg.norm(cov_hat - mixture.covs[k]) / np.linalg.norm(mixture.covs[k])))
    return {
        "weight_error": float(np.abs(w_hat - mixture.weights).max()),
        "mean_error": mean_err,
        "cov_error": cov_err,
        "swd": sliced_wasserstein(x, mixture, n_proj=n_proj, seed=seed),
        "swd_floor": swd_floor(mixture, len(x), n_proj=n_proj, seed=seed),
        "mmd2": mmd2(x, mixture),
        "nonfinite": int((~finite).sum()),
        "n": int(len(x)),
    }


def mmd2(samples: np.ndarray, mixture: GaussianMixture, scales=(0.5, 1.0, 2.0), max_n: int = 4000) -> float:
    """Unbiased squared maximum mean discrepancy between points and the exact mixture
    (Gretton et al. 2012), with Gaussian kernels k_h(x, y) = exp(-||x - y||^2 / (2 h^2)) summed over
    h = scale * s, s^2 = the mean component variance:

        MMD^2 = E_{q,q'} k - 2 E_{q,p} k + E_{p,p} k

    The first term is the U-statistic over pairs i != j, so E[estimate] = MMD^2 exactly and exact
    samples score 0 +- O(1/n) (unlike a Wasserstein distance, it does not reward under-dispersed
    samples); the others are closed forms, since a Gaussian kernel against a Gaussian is
    E_{y ~ N(m, C)} k_h(x, y) = h^D det(C + h^2 I)^{-1/2} exp(-(x - m)^T (C + h^2 I)^{-1} (x - m) / 2).
    O(n^2): uses the first ``max_n`` points."""
    x = np.asarray(samples, dtype=np.float64)[:max_n]
    n, d = x.shape
    if n < 2:
        return float("nan")
    w, mu, cov = mixture.weights, mixture.means, mixture.covs
    s2 = float(np.mean(np.trace(cov, axis1=1, axis2=2)) / d)
    h2s = [c * c * s2 for c in scales]

    def kernel_mean(points, m, cv, h2):  # E_{y ~ N(m, cv)} k_h(points, y)
        full = cv + h2 * np.eye(d)
        diff = points - m
        quad = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(full), diff)
        return h2 ** (d / 2) / np.sqrt(np.linalg.det(full)) * np.exp(-0.5 * quad)

    # sum over the pairs i < j (blocks on and above the diagonal), every bandwidth at once
    xt = torch.from_numpy(x)
    sq = (xt * xt).sum(1)
    pair_sums = [0.0] * len(h2s)
    block = 1024
    for i in range(0, n, block):
        d2 = (sq[i : i + block, None] + sq[None, i:] - 2 * xt[i : i + block] @ xt[i:].T).clamp_min(0)
        upper = torch.ones_like(d2, dtype=torch.bool).triu(1)  # j > i inside this row block
        d2 = d2[upper]
        for k, h2 in enumerate(h2s):
            pair_sums[k] += float(torch.exp(d2 / (-2 * h2)).sum())
    total = 0.0
    for k, h2 in enumerate(h2s):
        e_pp = sum(
            w[a] * w[b] * kernel_mean(mu[a][None], mu[b], cov[a] + cov[b], h2)[0]
            for a in range(mixture.k)
            for b in range(mixture.k)
        )
        e_qp = sum(w[a] * kernel_mean(x, mu[a], cov[a], h2) for a in range(mixture.k)).mean()
        e_qq = 2 * pair_sums[k] / (n * (n - 1))
        total += e_qq - 2 * e_qp + e_pp
    return float(total)


_FLOOR_CACHE: dict = {}


def swd_floor(mixture: GaussianMixture, n: int, n_proj: int = N_PROJ, seed: int = 0, repeats: int = 4) -> float:
    """The sliced W1 of n exact samples of the mixture (mean of ``repeats`` draws): what a perfect
    sampler scores on average with n samples (one draw varies by about 20% around it)."""
    key = (*_mixture_key(mixture), n, n_proj, seed, repeats)
    if key not in _FLOOR_CACHE:
        rng = np.random.default_rng(12345 + seed)
        draws = [sliced_wasserstein(mixture.sample(n, rng)[0], mixture, n_proj, seed) for _ in range(repeats)]
        _FLOOR_CACHE[key] = float(np.mean(draws))
    return _FLOOR_CACHE[key]


def _responsibilities(x: np.ndarray, mixture: GaussianMixture) -> np.ndarray:
    chol = np.linalg.cholesky(mixture.covs)
    inv = np.linalg.inv(chol)
    log_det = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
    z = np.einsum("kij,nkj->nki", inv, x[:, None, :] - mixture.means[None])
    lj = np.log(mixture.weights)[None] - 0.5 * ((z * z).sum(2) + log_det[None])
    lj -= lj.max(1, keepdims=True)
    r = np.exp(lj)
    return r / r.sum(1, keepdims=True)
