"""Gaussian mixtures: a data set whose exact score is known (pure numpy).

``p(x) = sum_k w_k N(x; mu_k, Sigma_k)``. ``ddpmctl make-data gmm`` samples one and saves it as
``.npz`` (keys ``weights`` (K,), ``means`` (K, D), ``covs`` (K, D, D), ``kind = "gmm"``), so the
exact noisy-model maths (``ddpmctl/exact.py``) can use the very mixture the points came from.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ddpmctl.errors import InputError
from ddpmctl.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use (docs/startup.md)

LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class GaussianMixture:
    """Weights (K,) summing to 1, means (K, D), covariances (K, D, D) symmetric positive definite."""

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    def __post_init__(self) -> None:
        self.weights, self.means, self.covs = _validate(self.weights, self.means, self.covs, "mixture")

    @property
    def k(self) -> int:
        return int(self.weights.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    # ----------------------------------------------------------------------------------------
    @classmethod
    def random(
        cls,
        k: int,
        dim: int,
        rng: np.random.Generator,
        spread: float = 4.0,
        scale: tuple[float, float] = (0.2, 0.8),
    ) -> GaussianMixture:
        """A random mixture of ``k`` components in ``dim`` dimensions.

        Means are uniform in the cube ``[-spread/2, spread/2]^D``; each covariance is
        ``Q diag(s^2) Q^T`` with a random rotation ``Q`` and standard deviations ``s`` uniform in
        ``scale``; weights are Dirichlet(5, ..., 5) (no component is negligible).
        """
        k, dim = int(k), int(dim)
        if k < 1:
            raise InputError(f"--components: must be >= 1, got {k}")
        if dim < 1:
            raise InputError(f"--dim: must be >= 1, got {dim}")
        lo, hi = float(scale[0]), float(scale[1])
        if not (0 < lo <= hi):
            raise InputError(f"scale: need 0 < low <= high, got {scale}")
        weights = rng.dirichlet(np.full(k, 5.0))
        means = rng.uniform(-spread / 2.0, spread / 2.0, size=(k, dim))
        q, r = np.linalg.qr(rng.standard_normal((k, dim, dim)))
        q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]  # Haar-distributed rotation
        s = rng.uniform(lo, hi, size=(k, dim))
        covs = np.einsum("kij,kj,klj->kil", q, s**2, q)
        return cls(weights, means, 0.5 * (covs + covs.transpose(0, 2, 1)))

    # ----------------------------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points (float32 (n, D)) and their component labels (int64 (n,))."""
        n = int(n)
        labels = rng.choice(self.k, size=n, p=self.weights).astype(np.int64)
        z = rng.standard_normal((n, self.dim))
        chol = np.linalg.cholesky(self.covs)  # x = mu_k + L_k z with Sigma_k = L_k L_k^T
        x = np.empty((n, self.dim), dtype=np.float32)
        for k in range(self.k):
            idx = np.flatnonzero(labels == k)
            if idx.size:
                x[idx] = self.means[k] + z[idx] @ chol[k].T
        return x, labels

    def log_prob(self, x) -> np.ndarray:
        """``log p(x)`` for points ``x`` (n, D) (float64 (n,))."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InputError(f"points: expected shape (n, {self.dim}), got {tuple(x.shape)}")
        chol = np.linalg.cholesky(self.covs)  # Sigma_k = L_k L_k^T
        chol_inv = np.linalg.inv(chol)
        log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)  # (K,)
        out = np.empty(x.shape[0])
        step = max(1, (1 << 22) // max(1, self.k * self.dim))
        for i in range(0, x.shape[0], step):
            diff = x[i : i + step, None, :] - self.means[None]  # (n, K, D)
            z = np.einsum("kij,nkj->nki", chol_inv, diff)
            comp = -0.5 * (np.sum(z * z, axis=2) + log_det[None] + self.dim * LOG_2PI) + np.log(self.weights)[None]
            m = comp.max(axis=1, keepdims=True)
            out[i : i + step] = (m + np.log(np.exp(comp - m).sum(axis=1, keepdims=True)))[:, 0]
        return out

    def mean(self) -> np.ndarray:
        """Mixture mean ``sum_k w_k mu_k`` (D,)."""
        return self.weights @ self.means

    def cov(self) -> np.ndarray:
        """Mixture covariance ``sum_k w_k (Sigma_k + mu_k mu_k^T) - mu mu^T`` (D, D)."""
        mu = self.mean()
        second = np.einsum("k,kij->ij", self.weights, self.covs + np.einsum("ki,kj->kij", self.means, self.means))
        return second - np.outer(mu, mu)

    # ----------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write ``.npz`` (weights, means, covs, kind="gmm") atomically."""
        from ddpmctl.io import atomic_write

        with atomic_write(path) as f:
            np.savez(f, weights=self.weights, means=self.means, covs=self.covs, kind=np.array("gmm"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> GaussianMixture:
        """Read a mixture written by :meth:`save`; ``InputError`` naming the file if anything is off."""
        name = str(path)
        if not os.path.exists(path):
            raise InputError(f"{name}: no such file")
        from ddpmctl.io import read_npz

        z = read_npz(path)  # headers checked first: no pickle, no huge allocation
        missing = {"weights", "means", "covs"} - set(z)
        if missing:
            raise InputError(f"{name}: not a ddpmctl mixture (missing {', '.join(sorted(missing))})")
        if "kind" in z and str(z["kind"]) != "gmm":
            raise InputError(f"{name}: kind is '{z['kind']}', expected 'gmm'")
        weights, means, covs = z["weights"], z["means"], z["covs"]
        w, m, c = _validate(weights, means, covs, name)
        return cls(w, m, c)


def _validate(weights, means, covs, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        w = np.asarray(weights, dtype=np.float64)
        m = np.asarray(means, dtype=np.float64)
        c = np.asarray(covs, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name}: mixture parameters are not numeric ({e})") from None
    if w.ndim != 1 or w.shape[0] < 1:
        raise InputError(f"{name}: weights must have shape (K,), got {w.shape}")
    k = w.shape[0]
    if m.ndim != 2 or m.shape[0] != k or m.shape[1] < 1:
        raise InputError(f"{name}: means must have shape ({k}, D), got {m.shape}")
    d = m.shape[1]
    if c.shape != (k, d, d):
        raise InputError(f"{name}: covs must have shape ({k}, {d}, {d}), got {c.shape}")
    if not (np.isfinite(w).all() and np.isfinite(m).all() and np.isfinite(c).all()):
        raise InputError(f"{name}: mixture parameters contain NaN or inf")
    if (w < 0).any() or abs(w.sum() - 1.0) > 1e-6:
        raise InputError(f"{name}: weights must be >= 0 and sum to 1 (sum is {w.sum():.6g})")
    if not np.allclose(c, c.transpose(0, 2, 1), rtol=1e-6, atol=1e-9):
        raise InputError(f"{name}: covariances must be symmetric")
    try:
        np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        raise InputError(f"{name}: covariances must be positive definite") from None
    return w / w.sum(), m, c
