"""Training data: the data set read lazily, and the stream of batches and seeds.

Data indices are an endless stream of per-epoch permutations (permutation e seeded by (seed, e)):
the batch of step s holds stream positions s*B .. s*B + B - 1, so the sampler's state *is* the
step. Times, noise, flips, label dropout, the condition's noise and dropout of step s come from
generators seeded by
(seed, s).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpmctl import io as dio
from ddpmctl.diffusion import IDENTITY_NORMALIZATION, IMAGE_NORMALIZATION, Normalization
from ddpmctl.errors import InputError
from ddpmctl.train.config import TrainConfig, net_flags_to_config


@dataclass
class TrainData:
    """A training set read lazily: ``array`` may be a read-only memory map; ``batch`` converts the
    rows it is asked for (uint8 -> [0, 1], (N, H, W) -> one channel) and maps them to model space."""

    array: np.ndarray
    kind: str  # "images" | "points"
    shape: tuple  # (C, H, W) or (D,)
    normalization: Normalization
    name: str
    labels: np.ndarray | None = None  # int64 (N,): the class of each sample (``attach_labels``)
    classes: list[str] | None = None  # the names of the classes 0..K-1
    condition: Any = None  # SR3's condition (``conditions.SRCondition``, ``attach_condition``)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        rows = np.asarray(self.array[indices])
        if self.kind == "images":
            if rows.ndim == 3:
                rows = rows[:, None]
            rows = rows.astype(np.float32) / 255.0 if rows.dtype == np.uint8 else rows.astype(np.float32)
        else:
            rows = rows.astype(np.float32)
        return self.normalization.to_model(torch.from_numpy(np.ascontiguousarray(rows)))

    def batch_labels(self, indices: np.ndarray, drop: torch.Tensor) -> torch.Tensor:
        """The classes of the rows (int64), the null class K where ``drop`` (label dropout)."""
        labels = torch.from_numpy(self.labels[indices])
        return torch.where(drop, torch.full_like(labels, len(self.classes)), labels)


def attach_labels(data: TrainData, cfg: TrainConfig) -> TrainData:
    """Read ``cfg.labels`` (one class per sample of ``data``) and the class names beside them
    (``labels.names_path``), and make ``cfg.net`` a class-conditional network of that many classes
    (``num_classes``). Without labels, ``cfg.net`` must not ask for classes."""
    from ddpmctl import labels as lab

    if cfg.labels is None:
        if cfg.net.get("num_classes"):
            raise InputError(f"--labels: the network has num_classes = {cfg.net['num_classes']}; give the labels")
        return data
    labels = lab.read_labels(cfg.labels, len(data))
    data.labels = labels
    data.classes = lab.class_names(labels, lab.read_names(lab.names_path(cfg.labels)))
    cfg.labels = str(Path(cfg.labels).resolve())
    cfg.net = {**cfg.net, "num_classes": len(data.classes)}
    return data


def attach_condition(data: TrainData, cfg: TrainConfig) -> TrainData:
    """Check the image condition ``cfg.condition`` (SR3, ``sr:F``) against ``data`` and make ``cfg.net``
    a network that takes its channels (``cond_channels``). Without a condition, ``cfg.net`` must not
    ask for condition channels."""
    from ddpmctl.conditions import parse_condition

    if cfg.condition is None:
        if cfg.net.get("cond_channels"):
            raise InputError(f"--condition: the network has cond_channels = {cfg.net['cond_channels']}; give one")
        return data
    data.condition = parse_condition(cfg.condition)
    cfg.net = {**cfg.net, "cond_channels": data.condition.check(data.kind, data.shape)}
    return data


def condition_noise(data: TrainData, cfg: TrainConfig, generator: torch.Generator, device) -> torch.Tensor | None:
    """``--condition-noise`` s: noise for the training observations A x0 of a global batch, s (data
    units) times the normalisation's scale times N(0, I), shaped like A x0; None when s = 0."""
    sigma = cfg.condition_noise * abs(data.normalization.scale)
    if data.condition is None or not sigma > 0:
        return None
    shape = (cfg.batch, *data.condition.low_shape(data.shape))
    return sigma * torch.randn(shape, generator=generator, device=device)


def open_data(path: str | os.PathLike, normalize: str = "auto") -> TrainData:
    """Open ``.npy`` (memory-mapped), an image file or a folder of images for training.

    The whole array is validated (shape, dtype, NaN/inf, image range) in chunks, without copying a
    memory map. Images map [0, 1] -> [-1, 1]. Points are standardised with one scalar mean and
    standard deviation over all coordinates (so the geometry is kept) when ``normalize`` is
    ``auto``, and used as they are with ``none``; the normalisation is recorded in the checkpoint.
    """
    name = str(path)
    if name == dio.STDIO:
        raise InputError("-: train reads a file (the data is visited many times), not stdin")
    p = Path(path)
    if not p.exists():
        raise InputError(f"{name}: no such file or folder")
    if p.is_dir() or dio.is_image_file(p):
        arr = dio.read_images(p)
    else:
        arr = dio.read_npy(p, mmap=True)
    if arr.ndim == 2:
        kind, check = "points", dio.as_points
    elif arr.ndim in (3, 4):
        kind, check = "images", dio.as_float_images
    else:
        raise InputError(
            f"{name}: expected images (N, C, H, W) / (N, H, W) or points (N, D), got shape {tuple(arr.shape)}"
        )
    if arr.shape[0] == 0:
        raise InputError(f"{name}: holds no samples (N = 0)")
    # validate in chunks of about 64 MB (as_* checks dtype, NaN / inf and the image range)
    row_bytes = max(1, int(np.prod(arr.shape[1:])) * max(arr.dtype.itemsize, 4))
    chunk = max(1, (64 << 20) // row_bytes)
    total, total_sq, count = 0.0, 0.0, 0
    for i in range(0, arr.shape[0], chunk):
        part = check(np.asarray(arr[i : i + chunk]), name)
        if kind == "points":
            part64 = part.astype(np.float64)
            total += float(part64.sum())
            total_sq += float(np.square(part64).sum())
            count += part64.size
    if kind == "images":
        shape = (1, *arr.shape[1:]) if arr.ndim == 3 else tuple(arr.shape[1:])
        return TrainData(arr, "images", tuple(int(s) for s in shape), IMAGE_NORMALIZATION, name)
    norm = IDENTITY_NORMALIZATION
    if normalize == "auto":
        mean = total / count
        std = math.sqrt(max(total_sq / count - mean * mean, 0.0))
        if not std > 1e-12 * max(1.0, abs(mean)):
            raise InputError(f"{name}: all values are equal (zero variance); nothing to learn")
        norm = Normalization(scale=1.0 / std, shift=-mean / std)
    return TrainData(arr, "points", (int(arr.shape[1]),), norm, name)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([int(seed), int(epoch), 0x5EED]).permutation(n)


class IndexStream:
    """Positions s*B .. s*B + B - 1 of the endless stream perm_0 ++ perm_1 ++ ... (perm_e is the
    permutation of epoch e, seeded by (seed, e)). Stateless: the batch depends on the step only."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._cache: dict[int, np.ndarray] = {}

    def perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = epoch_permutation(self.seed, epoch, self.n)
        return self._cache[epoch]

    def batch(self, step: int, batch: int) -> np.ndarray:
        pos = np.arange(step * batch, (step + 1) * batch, dtype=np.int64)
        epochs, offsets = pos // self.n, pos % self.n
        out = np.empty(batch, dtype=np.int64)
        for e in np.unique(epochs):
            m = epochs == e
            out[m] = self.perm(int(e))[offsets[m]]
        return out


def step_seeds(seed: int, step: int, rank: int = 0) -> tuple[int, int, int]:
    """Seeds of step ``step`` (well mixed by numpy's SeedSequence): (global batch indices / times /
    flips, global noise, this rank's dropout)."""
    w = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(step)]).generate_state(3, dtype=np.uint64)
    mask = (1 << 63) - 1
    return int(w[0]) & mask, int(w[1]) & mask, (int(w[2]) + 0x9E3779B97F4A7C15 * int(rank)) & mask


def seed_global_rng(seed: int, device: torch.device) -> None:
    """Reseed the global RNG that dropout draws from. (``torch.manual_seed`` would also queue a lazy
    CUDA seeding with a stack trace on CUDA-less machines at every call: a slow leak.)"""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)  # CUDA is initialised by now: seeds the current device directly


def open_run_data(cfg: TrainConfig, data: str | os.PathLike | None = None, net_flags: dict | None = None) -> TrainData:
    """The data of a run: ``data``, else the path ``cfg`` records (a resumed run's), with the labels
    ``cfg.labels`` (``attach_labels``). Records the absolute path in ``cfg.data`` and maps the generic
    network flags (``--base``, ``--mults``, ...) to the config keys of the network the data gets."""
    if data is None:
        data = cfg.data
        if data is None:
            raise InputError("missing DATA (the training data file or folder)")
    train_data = open_data(data, cfg.normalize)
    cfg.data = str(Path(data).resolve())
    if net_flags:
        cfg.net = {**cfg.net, **net_flags_to_config(train_data.kind, net_flags)}
    return attach_condition(attach_labels(train_data, cfg), cfg)
