"""The Frechet distance and KID on feature statistics (float64 numpy; no network, no files).

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash
equilibrium", eq. 6) between two sets with feature means mu_1, mu_2 and covariances S_1, S_2:

    FID = ||mu_1 - mu_2||^2 + Tr S_1 + Tr S_2 - 2 Tr (S_1 S_2)^{1/2}.

``Tr (S_1 S_2)^{1/2}`` is computed in its symmetric eigenvalue form: S_1 S_2 is similar to
R S_2 R with R = S_1^{1/2} (R^{-1} (R R S_2) R = R S_2 R), a symmetric positive semi-definite
matrix, so Tr (S_1 S_2)^{1/2} = sum_i sqrt(lambda_i(R S_2 R)). Both steps use symmetric
eigensolvers (backward stable, real) and eigenvalues that round below zero are clipped, so
near-singular covariances (fewer samples than feature dimensions) give a finite number
(docs/fid.md compares this with pytorch-fid's ``sqrtm`` and torch-fidelity's ``eigvals``).

KID (Binkowski et al. 2018, "Demystifying MMD GANs", eq. 4 with the kernel of sec. 4):
the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over random subsets; reported with
the standard deviation over subsets.
"""

from __future__ import annotations

import numpy as np
import torch

from ddpmctl.errors import InputError
from ddpmctl.fid_options import KID_SUBSET_SIZE, KID_SUBSETS


def _as_matrix(s: np.ndarray) -> np.ndarray:
    s = np.atleast_2d(np.asarray(s, dtype=np.float64))
    return (s + s.T) / 2  # covariances are symmetric; remove rounding asymmetry


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _sum_sqrt_eigvals(m: np.ndarray) -> float:
    """sum_i sqrt(lambda_i(m)) of a symmetric PSD matrix, negative round-off clipped to 0."""
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr (S_1 S_2)^{1/2} = sum sqrt(eig(R S_2 R)), R = S_1^{1/2}, for covariances S_1, S_2 (float64)."""
    r = _psd_sqrt(_as_matrix(sigma1))
    return _sum_sqrt_eigvals(r @ _as_matrix(sigma2) @ r)


def trace_sqrt_product_factor(factor: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr (S_1 S_2)^{1/2} when S_1 = A^T A with A (n, d), n < d (a covariance of n + 1 or fewer
    samples: A = (X - mu) / sqrt(N - 1)). S_1 S_2 = A^T (A S_2) has the nonzero eigenvalues of
    A S_2 A^T, a symmetric PSD n x n matrix: exact, and O(n d^2) instead of O(d^3)."""
    a = np.asarray(factor, np.float64)
    return _sum_sqrt_eigvals(a @ _as_matrix(sigma2) @ a.T)


def covariance_factor(feats: np.ndarray) -> np.ndarray:
    """A = (X - mean) / sqrt(N - 1), so that A^T A is ``np.cov(X, rowvar=False)``."""
    x = np.asarray(feats, np.float64)
    return (x - x.mean(0)) / np.sqrt(max(x.shape[0] - 1, 1))


def frechet_distance(mu1, sigma1, mu2, sigma2, factor1=None, factor2=None) -> float:
    """||mu_1 - mu_2||^2 + Tr S_1 + Tr S_2 - 2 Tr (S_1 S_2)^{1/2}, in float64.

    ``factor1`` / ``factor2`` (optional): A with A^T A = S_1 (resp. S_2) for a set of fewer samples
    than dimensions; the trace then uses the exact low-rank form (``trace_sqrt_product_factor``)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = _as_matrix(sigma1), _as_matrix(sigma2)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise InputError(f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    pairs = ((factor1, s2), (factor2, s1))
    factors = [(f.shape[0], f, s) for f, s in pairs if f is not None and f.shape[0] < s1.shape[0]]
    if factors:
        _, f, other = min(factors, key=lambda t: t[0])
        tr = trace_sqrt_product_factor(f, other)
    else:
        tr = trace_sqrt_product(s1, s2)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr)


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x.y / d + 1)^3 (KID's kernel), for rows of x and y."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kid(
    feats_a: np.ndarray | torch.Tensor,
    feats_b: np.ndarray | torch.Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[float, float, int]:
    """Unbiased KID over ``subsets`` random subsets (without replacement) of
    m = min(subset_size, n_a, n_b) samples from each set; returns (mean, std, m).

    MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
              - 2 sum_{i,j} k(x_i, y_j) / m^2.
    """
    device = torch.device(device)
    if device.type == "mps":  # no float64 on MPS
        device = torch.device("cpu")
    a = torch.as_tensor(np.asarray(feats_a) if not isinstance(feats_a, torch.Tensor) else feats_a)
    b = torch.as_tensor(np.asarray(feats_b) if not isinstance(feats_b, torch.Tensor) else feats_b)
    a, b = a.to(device, torch.float64), b.to(device, torch.float64)
    m = min(int(subset_size), a.shape[0], b.shape[0])
    if m < 2:
        raise InputError(f"KID needs at least 2 samples in each set (got {a.shape[0]} and {b.shape[0]})")
    if subsets < 1:
        raise InputError(f"--kid-subsets: must be >= 1, got {subsets}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(subsets)):
        x = a[torch.from_numpy(rng.choice(a.shape[0], m, replace=False)).to(device)]
        y = b[torch.from_numpy(rng.choice(b.shape[0], m, replace=False)).to(device)]
        kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
        off = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        values.append(float(off - 2.0 * kxy.sum() / (m * m)))
    v = np.asarray(values)
    return float(v.mean()), float(v.std()), m
