"""Feature statistics of one set: the ``Stats`` record, a streaming float64 accumulator, and
statistics files (``.npz`` with ``mu`` and ``sigma``, as pytorch-fid and clean-fid write them)."""

from __future__ import annotations

import io as _io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ddpmctl import io
from ddpmctl.errors import InputError


def is_stats_file(path) -> bool:
    return isinstance(path, (str, os.PathLike)) and str(path).lower().endswith(".npz")


@dataclass
class Stats:
    """Feature statistics of one set: float64 mean and covariance (``np.cov`` convention, N - 1),
    and what they were computed with (None where a pytorch-fid / clean-fid file does not say)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None = None
    features: str | None = None
    preprocess: str | None = None
    weights: str | None = None

    @property
    def dims(self) -> int:
        return int(self.mu.shape[0])

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` that pytorch-fid and clean-fid read (``mu``, ``sigma``) plus our fields."""
        if not is_stats_file(path):
            raise InputError(f"{path}: statistics files end in .npz")
        fields = (
            ("n", self.n),
            ("features", self.features),
            ("preprocess", self.preprocess),
            ("weights", self.weights),
        )
        extra = {k: np.array(v) for k, v in fields if v is not None}
        from ddpmctl import __version__

        buf = _io.BytesIO()
        mu, sigma = self.mu.astype(np.float64), self.sigma.astype(np.float64)
        np.savez_compressed(buf, mu=mu, sigma=sigma, ddpmctl_version=np.array(__version__), **extra)
        io.write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Stats:
        """Read ``mu``/``sigma`` (and our optional fields) from an ``.npz``; never unpickles."""
        name = str(path)
        if not Path(path).is_file():
            raise InputError(f"{name}: no such file")
        data = io.read_npz(path)  # headers checked first: no pickle, no huge allocation
        if "mu" not in data or "sigma" not in data:
            found = ", ".join(sorted(data)) or "none"
            raise InputError(f"{name}: a statistics file needs arrays 'mu' and 'sigma' (found {found})")
        if data["mu"].dtype.kind not in "fiu" or data["sigma"].dtype.kind not in "fiu":
            raise InputError(
                f"{name}: mu and sigma must be real numbers, got {data['mu'].dtype} and {data['sigma'].dtype}"
            )
        mu, sigma = np.asarray(data["mu"], np.float64).reshape(-1), np.asarray(data["sigma"], np.float64)
        d = mu.shape[0]
        if d == 0:
            raise InputError(f"{name}: mu is empty")
        if sigma.shape != (d, d):
            raise InputError(f"{name}: sigma has shape {sigma.shape}, expected ({d}, {d}) to match mu")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise InputError(f"{name}: mu or sigma contains NaN or inf")

        def text(key):
            return str(data[key]) if key in data and data[key].dtype.kind in "US" else None

        n = int(data["n"]) if "n" in data and data["n"].dtype.kind in "iu" else None
        return cls(mu, sigma, n, text("features"), text("preprocess"), text("weights"))


class StatsAccumulator:
    """Streaming float64 mean and covariance. Sums are taken around a shift K (the first batch's
    mean), which keeps sum (x-K)(x-K)^T free of the cancellation of sum x x^T - n mu mu^T:
    mu = K + s1/n, Sigma = (S2 - s1 s1^T / n) / (n - 1)."""

    def __init__(self, device: torch.device | str = "cpu"):
        device = torch.device(device)
        self.device = torch.device("cpu") if device.type == "mps" else device  # no float64 on MPS
        self.n = 0
        self.shift = self.s1 = self.s2 = None

    def add(self, feats: torch.Tensor) -> None:
        x = feats.to(self.device, torch.float64).reshape(feats.shape[0], -1)
        if self.shift is None:
            self.shift = x.mean(0)
            d = x.shape[1]
            self.s1 = torch.zeros(d, dtype=torch.float64, device=self.device)
            self.s2 = torch.zeros(d, d, dtype=torch.float64, device=self.device)
        x = x - self.shift
        self.s1 += x.sum(0)
        self.s2.addmm_(x.T, x)  # in place: no (D, D) temporary per batch
        self.n += x.shape[0]

    def result(self, **info) -> Stats:
        if self.n == 0:
            raise InputError("no samples")
        n = self.n
        mu = (self.shift + self.s1 / n).cpu().numpy()
        if n > 1:
            sigma = ((self.s2 - torch.outer(self.s1, self.s1) / n) / (n - 1)).cpu().numpy()
        else:
            sigma = np.zeros((mu.size, mu.size))
        return Stats(mu, (sigma + sigma.T) / 2, n, **info)


def stats_of(feats: np.ndarray, **info) -> Stats:
    """Statistics of a feature matrix (N, D) held in memory."""
    acc = StatsAccumulator()
    acc.add(torch.as_tensor(np.asarray(feats)))
    return acc.result(**info)
