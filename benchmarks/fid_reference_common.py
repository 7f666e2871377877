"""What both sides of the FID reference fixture regenerate: the key-seeded Inception weights and
the image sets (issue #20). Imported by ``benchmarks/make_fid_fixture.py`` (run with pytorch-fid and
torch-fidelity, in their own environment), ``tests/test_fid_reference.py`` and
``benchmarks/fid_reference.py`` (run with ddpmctl).

Weights: pytorch-fid's own file (``pt_inception-2015-12-05-6726825d.pth``, 95 MB) cannot be
downloaded on our machines and is not ours to commit, so the fixture checks the *code* with other
weights that anyone can regenerate: every tensor of the state dict is a deterministic function of
its key and shape (``key_seeded_tensor``), drawn from numpy's PCG64 seeded by (``WEIGHTS_SEED``,
CRC-32 of the key). The scales keep activations O(1) through the network's 94 convolutions and
make the pool3 features depend on the image (values 0..~5, like the TF-2015 weights' 0..~6; no
feature is zero for every image): the convolution that reads the image is He-normal,
w ~ N(0, 2 / fan_in) (He et al. 2015, eq. 10); every later one reads ReLU outputs with a large
common mean, so its filters are centred (each output channel's weights sum to zero, which cancels
that mean instead of letting it push units to always-on or always-off) and scaled to variance
2.5 / fan_in (He's 2, raised for the variance that centring and pooling remove; the standard deviation of
every block's output measured 0.68 to 1.13 on the CI images). Batch norms are near
the identity but not equal to it (gamma ~ U(0.8, 1.2), beta and running mean ~ N(0, 0.02^2),
running variance ~ U(0.5, 1.5) > 0), so that a loader that dropped or swapped a batch-norm tensor
gives other features. ``state_dict_sha256`` fingerprints the result, so each side can check that
it built the very same tensors.

Images: ``IMAGE_SETS`` names ``make-data`` runs (kind, n, size, seed); a set of three runs is one
RGB set (the runs are its R, G and B channels, in that order). ``write_image_set`` writes a set as
8-bit PNG files with ``ddpmctl.io.save_folder`` (what ``ddpmctl sample -o DIR/`` writes), so
pytorch-fid and torch-fidelity read them with their own file readers, and ddpmctl with its own.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

WEIGHTS_SEED = 20  # issue #20; changing it changes every tensor (and needs a new fixture)

# name -> one make-data run (grey) or three (R, G, B): (kind, n, size, seed)
IMAGE_SETS: dict[str, list[tuple[str, int, int, int]]] = {
    # CI: two small sets, one grey 32 x 32 and one RGB 40 x 40
    "grey": [("shapes", 6, 32, 7)],
    "rgb": [("shapes", 6, 40, 8), ("triangles", 6, 40, 9), ("shapes", 6, 40, 10)],
    # benchmark: two sets of 2,100 (more than the 2,048 feature dimensions: full-rank covariances)
    "bench_a": [("shapes", 2100, 32, 11)],
    "bench_b": [("shapes", 2100, 32, 12)],
}
CI_SETS = ("grey", "rgb")
BENCH_SETS = ("bench_a", "bench_b")
STORED_PER_SET = 3  # the first 3 images of each CI set: their features are stored
# rows / columns of the 299 x 299 Inception input kept in the fixture (every 13th, and the last)
INPUT_INDEX = np.r_[0:299:13, 298]


def make_data_commands(name: str) -> list[str]:
    """The ``ddpmctl make-data`` command lines that give set ``name``'s channels."""
    return [
        f"ddpmctl make-data {kind} --n {n} --size {size} --seed {seed} -o {name}_{i}.npy"
        for i, (kind, n, size, seed) in enumerate(IMAGE_SETS[name])
    ]


def key_seeded_tensor(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The tensor for state-dict entry ``key``: float32 (int64 for ``num_batches_tracked``)."""
    rng = np.random.default_rng([WEIGHTS_SEED, zlib.crc32(key.encode())])
    shape = tuple(int(s) for s in shape)
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, np.int64)
    if key.endswith("conv.weight"):
        fan_in = int(np.prod(shape[1:]))
        v = rng.standard_normal(shape)
        if shape[1] == 3:  # the first convolution: reads the image in [-1, 1]
            v *= np.sqrt(2.0 / fan_in)
        else:  # reads ReLU outputs: centred filters
            v = (v - v.mean(axis=(1, 2, 3), keepdims=True)) * np.sqrt(2.5 / fan_in)
    elif key.endswith("bn.weight"):
        v = rng.uniform(0.8, 1.2, shape)
    elif key.endswith(("bn.bias", "bn.running_mean")):
        v = rng.normal(0.0, 0.02, shape)
    elif key.endswith("bn.running_var"):
        v = rng.uniform(0.5, 1.5, shape)
    elif key == "fc.weight":
        v = rng.standard_normal(shape) / np.sqrt(shape[1])
    elif key == "fc.bias":
        v = rng.normal(0.0, 0.01, shape)
    else:
        raise KeyError(f"no rule for state-dict key {key}")
    return v.astype(np.float32)


def key_seeded_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict:
    """``{key: torch.Tensor}`` for every key of ``shapes`` (a model's state-dict key -> shape)."""
    import torch

    return {k: torch.from_numpy(key_seeded_tensor(k, s)) for k, s in shapes.items()}


def state_dict_sha256(state: dict) -> str:
    """SHA-256 over the sorted keys, each key's dtype, shape and little-endian bytes."""
    h = hashlib.sha256()
    for k in sorted(state):
        a = state[k].detach().cpu().numpy() if hasattr(state[k], "detach") else np.asarray(state[k])
        a = np.ascontiguousarray(a, a.dtype.newbyteorder("<"))
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def make_image_set(name: str) -> np.ndarray:
    """Set ``name`` as float32 (N, C, H, W) in [0, 1], from ddpmctl's make-data code."""
    from ddpmctl import datasets

    channels = [datasets.make(kind, n, seed, size=size)[0] for kind, n, size, seed in IMAGE_SETS[name]]
    return np.ascontiguousarray(np.concatenate(channels, axis=1))


def write_image_set(name: str, folder) -> None:
    """Write set ``name`` as 8-bit PNG files ``000000.png, ...`` into ``folder``."""
    from ddpmctl import io

    io.save_folder(folder, make_image_set(name))


def png_files(folder) -> list:
    from pathlib import Path

    return sorted(Path(folder).glob("*.png"))


def pixels_sha256(folder) -> str:
    """SHA-256 of the decoded pixels (PIL, as stored: L or RGB) of the folder's PNG files, in order."""
    from PIL import Image

    h = hashlib.sha256()
    for f in png_files(folder):
        with Image.open(f) as im:
            h.update(f"{im.mode}|{im.size}|".encode())
            h.update(np.asarray(im).tobytes())
    return h.hexdigest()


def synthetic_statistics() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Means and covariances (``np.cov``, float64) of two 64-d sample sets of 400 each, full rank and
    well conditioned, with the SHA-256 of the samples: a check of the Frechet distance alone, where
    each tool's matrix square root is accurate (unlike the singular covariances of a few images)."""
    rng = np.random.default_rng([WEIGHTS_SEED, 1])
    d, n = 64, 400
    a = rng.standard_normal((n, d))
    mix = np.eye(d) + 0.3 * rng.standard_normal((d, d)) / np.sqrt(d)
    b = rng.standard_normal((n, d)) @ mix + 0.25
    digest = hashlib.sha256(a.tobytes() + b.tobytes()).hexdigest()
    return a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False), digest
