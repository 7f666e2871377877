"""Degradation operators of linear inverse problems ``y = A x + n`` (seed 001, "Diffusion models for
imaging inverse problems"): A, its adjoint A^T, its Moore-Penrose pseudo-inverse A^+, and the
spectral filters the restoration methods need.

Every operator here has a simple singular value decomposition ``A = U diag(s) V^T``:

==========  ===========================  ===============================  =========================
task        A x                          singular values s                A^+ y
==========  ===========================  ===============================  =========================
inpaint     m * x (mask m in {0, 1})     m (pixel basis)                  m * y
denoise     x                            1                                y
sr          s x s average pooling        1/scale (block-constant basis)   nearest upsampling of y
deblur      circular Gaussian blur (FFT) |K(f)| (Fourier basis)           F^-1[F y / K] (|K| > eps)
==========  ===========================  ===============================  =========================

Two primitives expose the SVD without forming it (DDNM+ and the tests use them):

* ``filter(v, h)  = V diag(h(s)) V^T v``  over the whole x space (h(0) acts on the null space);
* ``pinv_filter(r, g) = V diag(g(s)) U^T r`` for ``s > 0`` only (so ``g(s) = 1/s`` gives A^+).

Deblurring: the kernel's frequency response K(f) of a Gaussian falls to ~1e-9 at high frequencies,
so ``A`` here is the circular blur *with the frequencies whose gain |K(f)| < eps (1e-3) removed*.
Those frequencies keep less than 0.1 % of their amplitude after blurring, and removing them makes
``A^+`` the exact pseudo-inverse (``A A^+ A = A`` to rounding) with a gain bounded by 1/eps.

Images are tensors ``(N, C, H, W)``; inpainting and denoising also take points ``(N, D)``.
Operators act in any units: a linear operator maps model space ``x_m = scale x + shift`` to
``A x_m = scale A x + shift A 1`` (see ``to_model_observation``).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ddpmctl.errors import InputError
from ddpmctl.restore_registry import TASKS  # the task names, torch-free (ddpmctl degrade --help)

FILL = 0.5  # what an inpainting observation file holds at the missing pixels (grey; ignored on reading)
BLUR_EPS = 1e-3  # frequencies with gain below this are outside A's range (see the module docstring)

Spectral = Callable[[torch.Tensor], torch.Tensor]


def _s(value: float, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float64, device=like.device)


class Operator(abc.ABC):
    """A linear degradation operator acting on a batch ``(N, *x_shape)`` -> ``(N, *y_shape)``."""

    task: str = ""

    def __init__(self, x_shape: tuple[int, ...]):
        self.x_shape = tuple(int(v) for v in x_shape)
        self.y_shape = self.x_shape

    # -- the operator -------------------------------------------------------------------------
    @abc.abstractmethod
    def A(self, x: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def At(self, y: torch.Tensor) -> torch.Tensor:
        """The adjoint: <A x, y> = <x, A^T y>."""
        ...

    @abc.abstractmethod
    def filter(self, v: torch.Tensor, h: Spectral) -> torch.Tensor:
        """V diag(h(s)) V^T v (h evaluated at every singular value, 0 on the null space)."""
        ...

    @abc.abstractmethod
    def pinv_filter(self, r: torch.Tensor, g: Spectral) -> torch.Tensor:
        """V diag(g(s)) U^T r over the non-zero singular values s."""
        ...

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """The Moore-Penrose pseudo-inverse A^+ y."""
        return self.pinv_filter(y, lambda s: 1.0 / s)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """A^+ A x: the orthogonal projection onto the row space (the part of x that y determines)."""
        return self.pinv(self.A(x))

    # -- observations and files ---------------------------------------------------------------
    def noise_support(self, y: torch.Tensor) -> torch.Tensor | float:
        """Where observation noise lands (1 everywhere; the mask for inpainting)."""
        return 1.0

    def observe(self, x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """y = A x + n, n ~ N(0, sigma^2 I) on the observed entries."""
        y = self.A(x)
        if sigma > 0:
            z = torch.randn(y.shape, generator=generator, dtype=y.dtype, device="cpu").to(y.device)
            y = y + sigma * self.noise_support(y) * z
        return y

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """The array written to the observation file (inpainting: missing pixels set to FILL)."""
        return y

    def decode(self, y_file: torch.Tensor) -> torch.Tensor:
        """Inverse of ``encode``: the observation y = A x + n from the file's array."""
        return y_file

    def display(self, y: torch.Tensor) -> torch.Tensor:
        """The observation shown at the clean image's size (for pictures and 'observation' metrics)."""
        return self.encode(y)

    def to_model_observation(self, y: torch.Tensor, scale: float, shift: float) -> torch.Tensor:
        """y in data units -> model units: A (scale x + shift) = scale A x + shift A 1."""
        ones = torch.ones((1,) + self.x_shape, dtype=y.dtype, device=y.device)
        return scale * y + shift * self.A(ones)

    # -- bookkeeping -------------------------------------------------------------------------
    def params(self) -> dict:
        """JSON-able parameters (the sidecar's ``operator`` entry, with ``task``)."""
        return {"task": self.task}

    def select(self, index: slice) -> Operator:
        """The operator for a slice of the batch (only per-image masks differ)."""
        return self

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Operator:
        return self

    def describe(self) -> str:
        return self.task


class Identity(Operator):
    """Denoising: A = I."""

    task = "denoise"

    def A(self, x):
        return x

    def At(self, y):
        return y

    def filter(self, v, h):
        return h(_s(1.0, v)).to(v.dtype) * v

    def pinv_filter(self, r, g):
        return g(_s(1.0, r)).to(r.dtype) * r


class Mask(Operator):
    """Inpainting: A x = m * x with m in {0, 1} (1 = known). y lives in x's shape, zero where m = 0;
    the file holds FILL there. ``mask`` broadcasts against the batch: (1 or N, 1 or C, H, W) / (1 or N, D)."""

    task = "inpaint"

    def __init__(self, x_shape, mask: torch.Tensor, params: dict | None = None):
        super().__init__(x_shape)
        mask = torch.as_tensor(mask)
        self.mask = (mask > 0.5).to(torch.float32)
        self._params = dict(params or {})

    def A(self, x):
        return self.mask.to(x.dtype) * x

    At = A

    def filter(self, v, h):
        m = self.mask.to(v.dtype)
        return h(_s(1.0, v)).to(v.dtype) * m * v + h(_s(0.0, v)).to(v.dtype) * (1 - m) * v

    def pinv_filter(self, r, g):
        return g(_s(1.0, r)).to(r.dtype) * self.mask.to(r.dtype) * r

    def noise_support(self, y):
        return self.mask.to(y.dtype)

    def encode(self, y):
        m = self.mask.to(y.dtype)
        return m * y + (1 - m) * FILL

    def decode(self, y_file):
        return self.mask.to(y_file.dtype) * y_file

    def params(self):
        return {"task": self.task, **self._params}

    def select(self, index):
        if self.mask.shape[0] == 1:
            return self
        return Mask(self.x_shape, self.mask[index], self._params)

    def to(self, device, dtype=None):
        self.mask = self.mask.to(device)
        return self

    def describe(self):
        return f"inpaint ({100 * float(self.mask.mean()):.0f}% of pixels known)"


class AveragePool(Operator):
    """Super-resolution: A = scale x scale average pooling, (C, H, W) -> (C, H/scale, W/scale).
    A A^T = I / scale^2, so every singular value is 1/scale and A^+ = scale^2 A^T = nearest upsampling."""

    task = "sr"

    def __init__(self, x_shape, scale: int):
        super().__init__(x_shape)
        c, h, w = self.x_shape
        self.scale = int(scale)
        self.y_shape = (c, h // self.scale, w // self.scale)

    def A(self, x):
        return torch.nn.functional.avg_pool2d(x, self.scale)

    def _up(self, y):
        return y.repeat_interleave(self.scale, dim=-2).repeat_interleave(self.scale, dim=-1)

    def At(self, y):
        return self._up(y) / self.scale**2

    def filter(self, v, h):
        s = _s(1.0 / self.scale, v)
        h1, h0 = h(s).to(v.dtype), h(_s(0.0, v)).to(v.dtype)
        return h0 * v + (h1 - h0) * self._up(self.A(v))  # up(A v) = V V^T v, the block means

    def pinv_filter(self, r, g):
        return (g(_s(1.0 / self.scale, r)) / self.scale).to(r.dtype) * self._up(r)

    def display(self, y):
        return self._up(y)

    def params(self):
        return {"task": self.task, "scale": self.scale}

    def describe(self):
        return f"sr x{self.scale}"


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """A normalised (size, size) Gaussian kernel, centred."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k1 = np.exp(-0.5 * (r / sigma) ** 2)
    k = np.outer(k1, k1)
    return k / k.sum()


class Blur(Operator):
    """Deblurring: circular convolution with a Gaussian kernel, diagonal in the Fourier basis.
    y = F^-1[K F x] with K = F(kernel centred at pixel (0, 0)); frequencies with |K| < eps are zeroed
    (module docstring), so A^+ y = F^-1[F y / K] on the rest is exact."""

    task = "deblur"

    def __init__(self, x_shape, kernel_sigma: float, kernel_size: int, eps: float = BLUR_EPS):
        super().__init__(x_shape)
        _, h, w = self.x_shape
        self.kernel_sigma, self.kernel_size, self.eps = float(kernel_sigma), int(kernel_size), float(eps)
        kernel = gaussian_kernel(self.kernel_size, self.kernel_sigma)
        full = np.zeros((h, w), dtype=np.float64)
        full[: self.kernel_size, : self.kernel_size] = kernel
        half = self.kernel_size // 2
        full = np.roll(full, (-half, -half), axis=(0, 1))  # kernel centre at (0, 0)
        k_hat = torch.fft.rfft2(torch.from_numpy(full))
        self.k_hat = torch.where(k_hat.abs() >= self.eps, k_hat, torch.zeros_like(k_hat))
        self.gain = self.k_hat.abs()  # singular values per frequency

    def _conv(self, x, response):
        shape = x.shape[-2:]
        out = torch.fft.irfft2(torch.fft.rfft2(x.to(torch.float64)) * response, s=shape)
        return out.to(x.dtype)

    def A(self, x):
        return self._conv(x, self.k_hat)

    def At(self, y):
        return self._conv(y, self.k_hat.conj())

    def filter(self, v, h):
        on = self.gain > 0
        resp = torch.where(on, h(self.gain), h(torch.zeros_like(self.gain)))
        return self._conv(v, resp.to(torch.complex128))

    def pinv_filter(self, r, g):
        on = self.gain > 0
        safe = torch.where(on, self.gain, torch.ones_like(self.gain))
        phase = torch.where(on, self.k_hat.conj() / safe, torch.zeros_like(self.k_hat))
        return self._conv(r, torch.where(on, g(safe), torch.zeros_like(safe)) * phase)

    def params(self):
        return {"task": self.task, "kernel_sigma": self.kernel_sigma, "kernel_size": self.kernel_size}

    def to(self, device, dtype=None):
        self.k_hat, self.gain = self.k_hat.to(device), self.gain.to(device)
        return self

    def describe(self):
        return f"deblur (Gaussian sigma {self.kernel_sigma:g}, {self.kernel_size}x{self.kernel_size})"


# --------------------------------------------------------------------------------------------
# building operators from options (degrade, restore, sidecars)


def parse_box(text: str, name: str = "--box") -> tuple[int, int, int, int]:
    try:
        vals = [int(v) for v in str(text).replace(" ", "").split(",")]
    except ValueError:
        raise InputError(f"{name}: expected x,y,w,h (integers), got '{text}'") from None
    if len(vals) != 4:
        raise InputError(f"{name}: expected x,y,w,h (4 integers), got '{text}'")
    return tuple(vals)  # type: ignore[return-value]


def box_mask(x_shape: tuple[int, ...], box) -> torch.Tensor:
    """Mask (1, 1, H, W): 0 inside the box (x, y, w, h: column, row, width, height), 1 outside."""
    if len(x_shape) != 3:
        raise InputError("--box: needs images (N, C, H, W); for points use --keep or --mask")
    _, h, w = x_shape
    bx, by, bw, bh = (int(v) for v in box)
    if bw < 1 or bh < 1:
        raise InputError(f"--box: width and height must be >= 1, got {bw}x{bh}")
    if bx < 0 or by < 0 or bx + bw > w or by + bh > h:
        raise InputError(f"--box: {bx},{by},{bw},{bh} is not inside the {w}x{h} image")
    if bw == w and bh == h:
        raise InputError("--box: covers the whole image; nothing would be known")
    m = torch.ones((1, 1, h, w))
    m[..., by : by + bh, bx : bx + bw] = 0
    return m


def centre_box(x_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The default inpainting hole: a centred box of half the image's height and width."""
    _, h, w = x_shape
    bw, bh = max(1, w // 2), max(1, h // 2)
    return ((w - bw) // 2, (h - bh) // 2, bw, bh)


def random_mask(n: int, x_shape: tuple[int, ...], keep: float, seed: int) -> torch.Tensor:
    """Per-image random masks keeping a fraction ``keep`` of pixels (shared by channels)."""
    if not (0 < keep <= 1):
        raise InputError(f"--keep: must lie in (0, 1], got {keep}")
    rng = np.random.default_rng([int(seed), 0x6D61736B])  # its own stream ("mask"), apart from the noise
    shape = (n, 1) + tuple(x_shape[1:]) if len(x_shape) == 3 else (n,) + tuple(x_shape)
    return torch.from_numpy((rng.random(shape) < keep).astype(np.float32))


def mask_from_array(arr: np.ndarray, n: int, x_shape: tuple[int, ...], name: str) -> torch.Tensor:
    """A mask file's array (1 = known) shaped to broadcast against (n, *x_shape)."""
    a = np.asarray(arr)
    if a.dtype.kind not in "fuib":
        raise InputError(f"{name}: mask dtype {a.dtype} is not numeric")
    a = a.astype(np.float32)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise InputError(f"{name}: mask contains NaN or inf")
    if a.max(initial=0) > 1.0:  # uint8 0/255 masks
        a = a / 255.0
    want = "(H, W), (C, H, W) or (N, C, H, W)" if len(x_shape) == 3 else "(D,) or (N, D)"
    if len(x_shape) == 3:
        c, h, w = x_shape
        if a.ndim == 2:
            a = a[None, None]
        elif a.ndim == 3:
            a = a[None]
        ok = a.ndim == 4 and a.shape[-2:] == (h, w) and a.shape[1] in (1, c) and a.shape[0] in (1, n)
    else:
        if a.ndim == 1:
            a = a[None]
        ok = a.ndim == 2 and a.shape[1] == x_shape[0] and a.shape[0] in (1, n)
    if not ok:
        raise InputError(
            f"{name}: mask shape {tuple(np.asarray(arr).shape)} does not fit data of shape "
            f"{(n,) + tuple(x_shape)} (expected {want})"
        )
    m = torch.from_numpy(a)
    if float((m > 0.5).float().mean()) == 0.0:
        raise InputError(f"{name}: mask keeps no pixel (1 = known, 0 = missing)")
    return m


def make_operator(
    task: str,
    x_shape: tuple[int, ...],
    n: int = 1,
    *,
    box=None,
    keep: float | None = None,
    mask: np.ndarray | None = None,
    mask_name: str = "--mask",
    mask_seed: int = 0,
    scale: int | None = None,
    kernel_sigma: float | None = None,
    kernel_size: int | None = None,
) -> Operator:
    """The operator of ``task`` for data of per-sample shape ``x_shape`` (n samples).

    inpaint: one of ``box`` (x, y, w, h hole), ``keep`` (random fraction kept, per image, from
    ``mask_seed``) or ``mask`` (array, 1 = known); none -> the centre box. sr: ``scale`` (2 or 4).
    deblur: ``kernel_sigma`` (pixels, default 2) and ``kernel_size`` (odd, default 2 ceil(3 sigma) + 1)."""
    x_shape = tuple(int(v) for v in x_shape)
    images = len(x_shape) == 3
    if task not in TASKS:
        raise InputError(f"--task: unknown task '{task}' (choose from {', '.join(TASKS)})")
    if task == "denoise":
        return Identity(x_shape)
    if task == "inpaint":
        given = [k for k, v in (("--box", box), ("--keep", keep), ("--mask", mask)) if v is not None]
        if len(given) > 1:
            raise InputError(f"inpaint: give one of --box, --keep, --mask (got {' and '.join(given)})")
        if mask is not None:
            return Mask(x_shape, mask_from_array(mask, n, x_shape, mask_name), {"mask": mask_name})
        if keep is not None:
            params = {"keep": float(keep), "mask_seed": int(mask_seed)}
            return Mask(x_shape, random_mask(n, x_shape, float(keep), mask_seed), params)
        if box is None:
            if not images:
                raise InputError("inpaint: points need --keep or --mask")
            box = centre_box(x_shape)
        box = parse_box(box) if isinstance(box, str) else tuple(int(v) for v in box)
        return Mask(x_shape, box_mask(x_shape, box), {"box": list(box)})
    if not images:
        raise InputError(f"{task}: needs images (N, C, H, W); the data are points of dimension {x_shape[0]}")
    _, h, w = x_shape
    if task == "sr":
        scale = 4 if scale is None else int(scale)
        if scale < 2:
            raise InputError(f"--scale: must be >= 2, got {scale}")
        if h % scale or w % scale:
            raise InputError(f"--scale: the {h}x{w} image is not divisible by {scale}")
        return AveragePool(x_shape, scale)
    sigma = 2.0 if kernel_sigma is None else float(kernel_sigma)
    if not (sigma > 0) or not math.isfinite(sigma):
        raise InputError(f"--kernel-sigma: must be > 0, got {kernel_sigma}")
    size = 2 * math.ceil(3 * sigma) + 1 if kernel_size is None else int(kernel_size)
    if size < 1 or size % 2 == 0:
        raise InputError(f"--kernel-size: must be odd and >= 1, got {size}")
    if size > min(h, w):
        if kernel_size is not None:
            raise InputError(f"--kernel-size: {size} is larger than the {h}x{w} image")
        size = min(h, w) - (1 - min(h, w) % 2)  # the default, clipped to the image
    return Blur(x_shape, sigma, size)


# --------------------------------------------------------------------------------------------
# observations: degrade, and the sidecar that lets restore rebuild the operator

SIDECAR_FORMAT = 1


def sidecar_path(y_path) -> Path:
    """``Y.npy`` -> ``Y.json``."""
    return Path(y_path).with_suffix(".json")


def degrade(clean: np.ndarray, op: Operator, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """The observation file's array for clean data (data units): encode(A x + n), n ~ N(0, noise^2)
    on the observed entries, drawn from a generator seeded with ``seed``. Not clipped (the noise
    stays Gaussian), float32."""
    if not (noise >= 0) or not math.isfinite(noise):
        raise InputError(f"--noise: sigma must be >= 0, got {noise}")
    x = torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float64))
    gen = torch.Generator().manual_seed(int(seed))
    y = op.observe(x, float(noise), gen)
    return op.encode(y).to(torch.float32).numpy()


def observation_meta(op: Operator, noise: float, seed: int, clean_shape, y_shape, kind: str) -> dict:
    """The sidecar: everything ``restore`` needs to rebuild the operator and the noise level."""
    return {
        "format": SIDECAR_FORMAT,
        "kind": "ddpmctl-observation",
        "data": kind,
        "operator": op.params(),
        "noise": float(noise),
        "noise_units": "data ([0, 1] for images)",
        "seed": int(seed),
        "clean_shape": [int(v) for v in clean_shape],
        "observation_shape": [int(v) for v in y_shape],
        "fill": FILL if op.task == "inpaint" else None,
    }


def read_sidecar(y_path) -> dict | None:
    """The sidecar next to ``y_path`` (None when there is none); InputError when it is unreadable."""
    import json

    path = sidecar_path(y_path)
    if str(y_path) == "-" or not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable observation sidecar ({e.__class__.__name__})") from None
    if (
        not isinstance(meta, dict)
        or meta.get("kind") != "ddpmctl-observation"
        or not isinstance(meta.get("operator"), dict)
    ):
        raise InputError(f"{path}: not an observation sidecar written by 'ddpmctl degrade'")
    return meta


def observation_operator(
    y_path,
    y_shape: tuple[int, ...],
    x_shape: tuple[int, ...],
    *,
    task: str | None = None,
    noise: float | None = None,
    **flags,
) -> tuple[Operator, float, dict | None]:
    """The operator and noise level of the observation in ``y_path``: from its sidecar, with the
    given flags (``task``, ``noise``, ``box``, ``mask``, ``scale``, ``kernel_sigma``, ``kernel_size``)
    overriding it. Checks that the operator maps ``x_shape`` to the observation's shape."""
    from pathlib import Path

    from ddpmctl.io import read_array

    meta = read_sidecar(y_path)
    flags = {k: v for k, v in flags.items() if v is not None}
    if meta is None and task is None:
        raise InputError(
            f"{y_path}: no sidecar {sidecar_path(y_path).name} (written by 'ddpmctl degrade'); "
            "give --task and its options"
        )
    params = dict(meta["operator"]) if meta is not None else {}
    if task is not None and task != params.get("task"):
        params = {"task": task}
    if {"box", "mask", "keep"} & set(flags):
        for k in ("box", "mask", "keep", "mask_seed"):
            params.pop(k, None)
    n = int(y_shape[0])
    mask = None
    if params.get("mask") is not None and "mask" not in flags:  # a mask file named in the sidecar
        mask_path = Path(params["mask"])
        flags["mask"] = str(mask_path if mask_path.is_absolute() else sidecar_path(y_path).parent / mask_path)
    if "mask" in flags:
        mask = np.asarray(read_array(flags["mask"], mmap=False))
    params.update(flags)
    op = make_operator(
        params["task"],
        x_shape,
        n,
        box=params.get("box"),
        keep=params.get("keep"),
        mask=mask,
        mask_name=str(params.get("mask", "--mask")),
        mask_seed=int(params.get("mask_seed", 0)),
        scale=params.get("scale"),
        kernel_sigma=params.get("kernel_sigma"),
        kernel_size=params.get("kernel_size"),
    )
    if tuple(y_shape[1:]) != op.y_shape:
        raise InputError(
            f"{y_path}: observation shape {tuple(y_shape)} does not fit {op.describe()} of data shaped "
            f"{tuple(x_shape)} (expected (N, {', '.join(str(v) for v in op.y_shape)}))"
        )
    sigma = float(meta.get("noise", 0.0)) if (noise is None and meta is not None) else float(noise or 0.0)
    if not (sigma >= 0) or not math.isfinite(sigma):
        raise InputError(f"--noise: sigma must be >= 0, got {sigma}")
    return op, sigma, meta
