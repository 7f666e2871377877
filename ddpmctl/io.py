"""Reading and writing the file contract: ``.npy`` arrays, PNG grids, image folders, stdin/stdout.

Conventions (see README, "The file contract"):

* images are ``float32`` arrays of shape ``(N, C, H, W)`` with values in ``[0, 1]``; ``(N, H, W)``
  is read as one channel and ``uint8`` is scaled by 1/255;
* vectors / point sets are ``float32`` arrays of shape ``(N, D)``;
* ``-`` means stdin (reading) or stdout (writing) as an ``.npy`` stream;
* every write is atomic: a temporary file in the target folder, fsync, then ``os.replace``.

Nothing here ever unpickles: ``.npy`` headers are parsed and checked before any data is touched,
so a header that declares a huge shape, an object array or a truncated file is refused with an
``InputError`` that names the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ddpmctl.errors import InputError, RunError
from ddpmctl.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use (docs/startup.md)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
STDIO = "-"


# --------------------------------------------------------------------------------------------
# atomic writes


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success fsync it and rename it onto ``path``.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path`` is
    left untouched. A SIGKILL can leave a ``.ddpmctl-tmp-*`` file behind, never a partial ``path``.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise InputError(f"{path}: output folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.ddpmctl-tmp-", dir=folder)
    except OSError as e:
        raise RunError(f"{path}: cannot write in {folder}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _umask_mode(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise RunError(f"{path}: write failed: {e.strerror or e}") from None
        raise


def _umask_mode(path: str) -> None:
    """mkstemp creates 0600 files; give the output the usual 0666 & ~umask instead."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, or to stdout when ``path`` is ``-``."""
    if str(path) == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with atomic_write(path) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------
# .npy


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` atomically (``-``: to stdout). Object arrays are refused."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise InputError(f"{path}: refusing to write an object array")
    if str(path) == STDIO:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, array, allow_pickle=False)
        write_bytes(STDIO, buf.getvalue())
        return
    with atomic_write(path) as f:
        np.lib.format.write_array(f, array, allow_pickle=False)


def _read_header(f: IO, name: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Parse an .npy header; returns (shape, fortran_order, dtype, header_end_offset)."""
    try:
        version = np.lib.format.read_magic(f)
    except ValueError:
        raise InputError(f"{name}: not an .npy file (bad magic string)") from None
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise InputError(f"{name}: unsupported .npy version {version}")
    except InputError:
        raise
    except Exception as e:  # numpy raises ValueError/SyntaxError on malformed headers
        raise InputError(f"{name}: malformed .npy header ({e})") from None
    if dtype.hasobject:
        raise InputError(f"{name}: holds Python objects (a pickled array); refused, ddpmctl never unpickles")
    return tuple(int(s) for s in shape), bool(fortran), dtype, f.tell()


def read_npy(path: str | os.PathLike, *, mmap: bool = True) -> np.ndarray:
    """Read an ``.npy`` file (``-``: stdin) safely.

    The header is validated first: object dtypes are refused without unpickling, and the data size
    the header declares must match the file size (catches truncated files and headers that declare
    a huge shape before anything is allocated). Files are memory-mapped read-only when ``mmap``.
    """
    name = str(path)
    if name == STDIO:
        data = sys.stdin.buffer.read()
        if not data:
            raise InputError("-: stdin is empty (expected an .npy stream)")
        f = io.BytesIO(data)
        shape, fortran, dtype, offset = _read_header(f, "-")
        expected = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if len(data) - offset < expected:
            raise InputError(f"-: truncated .npy stream ({len(data) - offset} of {expected} data bytes)")
        arr = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=offset)
        return arr.reshape(shape, order="F" if fortran else "C")
    p = existing_file(path, "an .npy file")
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            shape, fortran, dtype, offset = _read_header(f, name)
    except OSError as e:
        raise InputError(f"{name}: cannot read ({e.strerror or e})") from None
    expected = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if size - offset < expected:
        raise InputError(f"{name}: truncated .npy file ({size - offset} of {expected} data bytes present)")
    try:
        if mmap and expected > 0:
            return np.load(p, mmap_mode="r", allow_pickle=False)
        return np.load(p, allow_pickle=False)
    except Exception as e:
        raise InputError(f"{name}: cannot load .npy ({e})") from None


def iter_npy_chunks(path: str | os.PathLike, rows: int) -> Iterator[np.ndarray]:
    """Read an ``.npy`` file in chunks of ``rows`` along axis 0 with plain sequential reads.

    Unlike slicing a memory map (whose touched pages count in the process's RSS until the whole
    file is resident), memory holds one chunk. The header is validated as in ``read_npy``.
    Fortran-ordered and 0-d arrays are read through ``read_npy`` instead."""
    name = str(path)
    arr = read_npy(path, mmap=True)  # validates the header and the file size
    if (
        arr.ndim == 0
        or (arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous)
        or not isinstance(arr, np.memmap)
    ):
        for i in range(0, max(1, arr.shape[0] if arr.ndim else 1), rows):
            yield np.asarray(arr[i : i + rows] if arr.ndim else arr)
        return
    shape, dtype, offset = arr.shape, arr.dtype, int(arr.offset)
    row = int(np.prod(shape[1:], dtype=np.int64))
    del arr
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            for i in range(0, shape[0], rows):
                m = min(rows, shape[0] - i)
                chunk = np.fromfile(f, dtype=dtype, count=m * row)
                if chunk.size != m * row:
                    raise InputError(f"{name}: truncated .npy file (changed while reading?)")
                yield chunk.reshape((m,) + tuple(shape[1:]))
    except OSError as e:
        raise InputError(f"{name}: cannot read ({e.strerror or e})") from None


def existing_file(path: str | os.PathLike, expected: str) -> Path:
    """``path`` as a Path; InputError naming it when it does not exist or is a folder
    (``expected`` says what it should be, e.g. "an .npy file")."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if p.is_dir():
        raise InputError(f"{path}: is a folder, expected {expected}")
    return p


def _npz_members(path: str | os.PathLike, keys=None, read: bool = True) -> dict:
    """The arrays of an ``.npz`` (zip of ``.npy``) without ``np.load``: every member's header is
    checked first (object dtypes refused, the declared size must match the member's size, so a
    header declaring a huge shape allocates nothing). Returns {key: array} or, with ``read=False``,
    {key: (shape, dtype)}."""
    import zipfile
    import zlib

    name = str(path)
    p = existing_file(path, "an .npz file")
    out: dict = {}
    try:
        with zipfile.ZipFile(p) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[:-4]
                if keys is not None and key not in keys:
                    continue
                with zf.open(info) as f:
                    shape, fortran, dtype, offset = _read_header(f, f"{name} (array '{key}')")
                    count = int(np.prod(shape, dtype=np.float64))
                    expected = count * dtype.itemsize
                    if info.file_size - offset < expected:
                        raise InputError(
                            f"{name}: array '{key}' is truncated "
                            f"({max(0, info.file_size - offset)} of {expected} data bytes present)"
                        )
                    if not read:
                        out[key] = (shape, dtype)
                        continue
                    data = f.read(expected)
                if len(data) < expected:
                    raise InputError(f"{name}: array '{key}' is truncated")
                arr = np.frombuffer(data, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")
                out[key] = arr.copy()
    except InputError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise InputError(f"{name}: not a readable .npz file ({e.__class__.__name__}: {e})") from None
    return out


def read_npz(path: str | os.PathLike, keys=None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (all, or only ``keys``), read safely (never unpickles, no
    allocation beyond what the file holds); ``InputError`` naming the file otherwise."""
    return _npz_members(path, keys, read=True)


def npz_headers(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{key: (shape, dtype)} of an ``.npz`` file's arrays, validated, without reading their data."""
    return _npz_members(path, None, read=False)


class NpyStreamWriter:
    """Write a large ``.npy`` array in order, chunk by chunk, with sequential writes (``-``: stdout).

    >>> with NpyStreamWriter("big.npy", (1_000_000, 1, 32, 32)) as out:
    ...     out.write(chunk)          # chunks along axis 0, in order

    Unlike a memory map (whose written pages stay resident: RSS grows to the file size) memory
    stays at one chunk. The bytes equal ``np.save`` of the whole array. A file appears
    atomically, only when the block ends without error and exactly ``shape[0]`` rows were written.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype="float32"):
        self.path = str(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._ctx = None
        self._f: IO | None = None

    def __enter__(self) -> NpyStreamWriter:
        if self.path == STDIO:
            self._f = sys.stdout.buffer
        else:
            self._ctx = atomic_write(self.path)
            self._f = self._ctx.__enter__()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(self._f, header)
        return self

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.shape[1:] != self.shape[1:] or self.rows + chunk.shape[0] > self.shape[0]:
            raise RunError(f"{self.path}: chunk of shape {chunk.shape} does not fit the declared shape {self.shape}")
        self._f.write(memoryview(chunk).cast("B"))
        self.rows += chunk.shape[0]

    def __exit__(self, exc_type, exc, tb):
        short = None
        if exc_type is None and self.rows != self.shape[0]:
            short = RunError(f"{self.path}: wrote {self.rows} of {self.shape[0]} rows")
            exc_type, exc = RunError, short
        if self._ctx is None:
            self._f.flush()
        else:
            self._ctx.__exit__(exc_type, exc, tb)  # removes the temporary file on error
        if short is not None:
            raise short
        return False


# --------------------------------------------------------------------------------------------
# validation


def check_finite(arr: np.ndarray, name: str, chunk: int = 1 << 22) -> None:
    """Raise InputError if ``arr`` holds NaN or inf (checked in chunks, so memory maps stay cheap)."""
    if arr.dtype.kind not in "fc":
        return
    flat = arr.reshape(-1) if arr.flags.c_contiguous else np.ravel(arr)
    for i in range(0, flat.size, chunk):
        if not np.isfinite(flat[i : i + chunk]).all():
            raise InputError(f"{name}: contains NaN or inf values")


def as_float_images(arr: np.ndarray, name: str, *, check_range: bool = True) -> np.ndarray:
    """Interpret an array as images ``(N, C, H, W)`` in [0, 1] (not copied when already so).

    ``(N, H, W)`` becomes one channel; ``uint8`` is scaled by 1/255; other integer or bool dtypes
    and other ranks are refused. With ``check_range``, values outside [0, 1] are refused.
    """
    if arr.dtype.kind not in "fuib":
        raise InputError(f"{name}: dtype {arr.dtype} is not numeric")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise InputError(f"{name}: expected images of shape (N, C, H, W) or (N, H, W), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise InputError(f"{name}: holds no images (N = 0)")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype.kind in "uib":
        raise InputError(f"{name}: integer images must be uint8 (0..255), got {arr.dtype}")
    check_finite(arr, name)
    if check_range and arr.size:
        lo, hi = _minmax(arr)
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise InputError(f"{name}: image values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]")
    return arr if arr.dtype == np.float32 else arr.astype(np.float32)


def _minmax(arr: np.ndarray, chunk: int = 4096) -> tuple[float, float]:
    lo, hi = np.inf, -np.inf
    for i in range(0, arr.shape[0], chunk):
        part = np.asarray(arr[i : i + chunk])
        lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
    return lo, hi


def as_points(arr: np.ndarray, name: str) -> np.ndarray:
    """Interpret an array as vectors ``(N, D)`` (float32)."""
    if arr.ndim != 2:
        raise InputError(f"{name}: expected points of shape (N, D), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name}: holds no points (shape {tuple(arr.shape)})")
    if arr.dtype.kind not in "fui":
        raise InputError(f"{name}: dtype {arr.dtype} is not numeric")
    check_finite(arr, name)
    return arr if arr.dtype == np.float32 else arr.astype(np.float32)


# --------------------------------------------------------------------------------------------
# images: reading (the one image reader: folder import, fid sources, read_array)

# PIL modes read as one grey channel: bilevel, 8-bit grey with or without alpha, 32-bit int and
# float; every 16-bit mode (I;16, I;16B, I;16L, I;16N) too. Palette images (P, PA) are colour.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_grey_mode(mode: str) -> bool:
    """Whether a PIL image ``mode`` is read as one grey channel (``GREY_MODES`` and ``I;16*``)."""
    return mode in GREY_MODES or mode.startswith("I;16")


def image_channels(files: list[Path]) -> int:
    """1 if every image of ``files`` is grey, else 3 (reads only the headers; a file that cannot
    be opened is skipped here and reported when it is read)."""
    from PIL import Image, UnidentifiedImageError

    for f in files:
        try:
            with Image.open(f) as im:
                if not is_grey_mode(im.mode):
                    return 3
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            continue
    return 1


def read_image(path: str | os.PathLike, channels: int | None = None, size: int | None = None) -> np.ndarray:
    """One image file as ``(C, H, W)`` float32 in [0, 1]; ``InputError`` naming the file if unreadable.

    The EXIF orientation is applied. C is ``channels``, or 1 for a grey mode (``is_grey_mode``) and
    3 otherwise. 8-bit values are divided by 255; 16-bit and 32-bit integer grey by 65535 and float
    images clipped to [0, 1], both at full precision. Colour becomes luma (PIL's ITU-R 601 "L") for
    C = 1, grey is repeated for C = 3, palette images go through their palette, alpha is dropped.
    With ``size``: the centre square is cropped and resized to size x size with Lanczos
    (anti-aliased; the crop comes first so the filter sees no pixel outside it).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = str(path)
    try:
        with Image.open(path) as im:
            im.load()
            channels = channels if channels is not None else (1 if is_grey_mode(im.mode) else 3)
            a = _pixels(ImageOps.exif_transpose(im), channels, size, name)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{name}: not a readable image ({e.__class__.__name__}: {e})") from None
    if a.ndim == 3:
        return np.ascontiguousarray(a.transpose(2, 0, 1))
    return a[None] if channels == 1 else np.repeat(a[None], 3, axis=0)


def _pixels(im, channels: int, size: int | None, name: str) -> np.ndarray:
    """The values of an open PIL image as (H, W) or (H, W, 3) float32 in [0, 1] (see ``read_image``)."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode in ("I", "F"):  # kept at full precision as float
        a = np.asarray(im, dtype=np.float32)
        if im.mode != "F":
            a = a / 65535.0
        im, scale = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F"), 1.0
    else:
        im, scale = im.convert("L" if channels == 1 else "RGB"), 255.0
    if size is not None:
        w, h = im.size
        if w < 1 or h < 1:
            raise InputError(f"{name}: empty image")
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.LANCZOS)
    return np.clip(np.asarray(im, dtype=np.float32) / scale, 0.0, 1.0)


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"{folder}: folder holds no PNG/JPEG images")
    return files


def read_array(path: str | os.PathLike, *, mmap: bool = True) -> np.ndarray:
    """Read any array input: ``.npy`` (or ``-``), one image file, or a folder of images.

    Images from files come as ``(N, C, H, W)`` float32 in [0, 1]; every image in a folder must have
    the same size (use ``ddpmctl make-data folder`` to crop and resize a mixed folder).
    """
    name = str(path)
    if name == STDIO or not (Path(path).is_dir() or is_image_file(path)):
        return read_npy(path, mmap=mmap)
    if Path(path).is_dir():
        files = list_image_files(path)
        imgs = [read_image(files[0])]
        for f in files[1:]:
            im = read_image(f, channels=imgs[0].shape[0])
            if im.shape != imgs[0].shape:
                raise InputError(
                    f"{f}: size {im.shape[1]}x{im.shape[2]} differs from {files[0].name} "
                    f"({imgs[0].shape[1]}x{imgs[0].shape[2]}); use 'ddpmctl make-data folder' to resize"
                )
            imgs.append(im)
        return np.stack(imgs)
    return read_image(path)[None]


def read_images(path: str | os.PathLike, *, check_range: bool = True, mmap: bool = True) -> np.ndarray:
    """Read an image set as ``(N, C, H, W)`` float32 in [0, 1] (see ``read_array``)."""
    return as_float_images(read_array(path, mmap=mmap), str(path), check_range=check_range)


def read_data(path: str | os.PathLike, *, mmap: bool = True) -> tuple[np.ndarray, str]:
    """Read images or points; returns (array, kind) with kind ``"images"`` or ``"points"``."""
    arr = read_array(path, mmap=mmap)
    if arr.ndim == 2:
        return as_points(arr, str(path)), "points"
    return as_float_images(arr, str(path)), "images"


# --------------------------------------------------------------------------------------------
# images: writing


def make_grid(images: np.ndarray, nrow: int | None = None, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images in [0, 1] into one ``(C, H', W')`` grid (values clipped)."""
    images = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    n, c, h, w = images.shape
    if nrow is None:
        nrow = int(np.ceil(np.sqrt(n)))
    ncol_rows = int(np.ceil(n / nrow))
    grid = np.full((c, ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value, dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, y : y + h, x : x + w] = images[i]
    return grid


def image_to_png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """A ``(C, H, W)`` image in [0, 1] (C = 1 or 3) as PNG bytes, optionally enlarged."""
    from PIL import Image

    a = (np.clip(image, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    if a.shape[0] == 1:
        im = Image.fromarray(a[0], mode="L")
    elif a.shape[0] == 3:
        im = Image.fromarray(a.transpose(1, 2, 0), mode="RGB")
    else:  # other channel counts: show the first channel
        im = Image.fromarray(a[0], mode="L")
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(path: str | os.PathLike, images: np.ndarray, nrow: int | None = None, scale: int | None = None) -> None:
    """Write images ``(N, C, H, W)`` in [0, 1] as one PNG grid, atomically."""
    grid = make_grid(images, nrow=nrow)
    if scale is None:  # small images are enlarged so a person can see them
        scale = max(1, min(4, 512 // max(grid.shape[1:])))
    write_bytes(path, image_to_png_bytes(grid, scale=scale))


def save_scatter(
    path: str | os.PathLike, points: np.ndarray | list[np.ndarray], titles: list[str] | None = None
) -> None:
    """Scatter plot(s) of the first two coordinates of point sets, as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = points if isinstance(points, list) else [points]
    fig, axes = plt.subplots(1, len(sets), figsize=(4 * len(sets), 4), squeeze=False)
    for i, (ax, p) in enumerate(zip(axes[0], sets)):
        p = np.asarray(p)
        ax.scatter(p[:, 0], p[:, 1] if p.shape[1] > 1 else np.zeros(len(p)), s=2, alpha=0.5)
        ax.set_aspect("equal", adjustable="datalim")
        if titles:
            ax.set_title(titles[i])
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def save_folder(path: str | os.PathLike, images: np.ndarray) -> None:
    """Write images as ``000000.png, 000001.png, ...`` in a folder (each file atomically)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        write_bytes(folder / f"{i:06d}.png", image_to_png_bytes(np.asarray(im)))


def output_kind(path: str | os.PathLike) -> str:
    """``npy``, ``png`` or ``folder``, from the output path (``-`` is an .npy stream)."""
    name = str(path)
    if name == STDIO or name.lower().endswith(".npy"):
        return "npy"
    if name.lower().endswith(".png"):
        return "png"
    if name.endswith(os.sep) or Path(name).is_dir() or Path(name).suffix == "":
        return "folder"
    raise InputError(f"{name}: unknown output format (use .npy, .png, a folder, or - for stdout)")


def save_output(path: str | os.PathLike, array: np.ndarray, *, nrow: int | None = None) -> None:
    """Write an array in the format ``path`` names: ``.npy``/``-`` as is, ``.png`` as a grid (images)
    or scatter plot (points), a folder as one PNG per image."""
    kind = output_kind(path)
    if kind == "npy":
        save_npy(path, array)
    elif array.ndim == 2:
        if kind == "folder":
            raise InputError(f"{path}: points cannot be written as a folder of images; use .npy or .png")
        save_scatter(path, array)
    elif kind == "png":
        save_grid(path, array, nrow=nrow)
    else:
        save_folder(path, array)
