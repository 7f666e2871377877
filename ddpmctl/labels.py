"""Class labels: the files of a labelled data set, and the classes a sampling run asks for.

The file contract (docs/make-data.md): a data set ``DATA.npy`` has its labels beside it in
``DATA.labels.npy`` (integers (N,), label of row i; ``make-data shapes|moons|gmm --labels`` writes
it) and, optionally, the names of its classes in ``DATA.classes.txt`` (one per line, label c on
line c + 1; make-data writes it for shapes and moons). Without names, class c is called "c".
``sample -o S.npy`` writes the class of each sample the same way, to ``S.labels.npy``.

Every check raises ``InputError`` with one line naming the option (``--labels``, ``--class``, ...).
"""

from __future__ import annotations

import os
from pathlib import Path

from ddpmctl import io
from ddpmctl.errors import InputError
from ddpmctl.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use (docs/startup.md)

# classifier-free guidance scale s when classes are given without one and without autoguidance:
# 2, the best of s = 1-4 on the validation seed of benchmarks/conditional_quality.py for both
# 15-minute models of docs/conditional.md (shapes: class accuracy 92% -> 98% and clean shapes 74%
# -> 81% on the test seed against s = 1; MNIST: accuracy 92% -> 99%), at 2 NFE per step. With
# autoguidance (--guide) it is 1: one guidance at a time.
DEFAULT_CFG = 2.0


def default_cfg(cfg: float | None, guided: bool) -> float:
    """The CFG scale a run uses: ``cfg`` when given, else DEFAULT_CFG, or 1 (none) with autoguidance."""
    if cfg is not None:
        return float(cfg)
    return 1.0 if guided else DEFAULT_CFG


LABELS_SUFFIX = ".labels.npy"
NAMES_SUFFIX = ".classes.txt"
MAX_CLASSES = 100_000  # the most classes a network embeds (``nets``)


def _stem(path: str | os.PathLike) -> str:
    """X.labels.npy -> X, X.npy -> X, X -> X."""
    s = str(path)
    for suffix in (LABELS_SUFFIX, ".npy"):
        if s.lower().endswith(suffix):
            return s[: -len(suffix)]
    return s


def labels_path(data: str | os.PathLike) -> str:
    """Where the labels of ``data`` (or of samples written to ``data``) go: DATA.labels.npy."""
    return _stem(data) + LABELS_SUFFIX


def names_path(labels: str | os.PathLike) -> str:
    """Where the class names of a labels file are: X.classes.txt beside X.labels.npy (or X.npy)."""
    return _stem(labels) + NAMES_SUFFIX


def find_labels(data: str | os.PathLike) -> str | None:
    """The labels file beside an .npy data set (DATA.labels.npy), if there is one."""
    if not str(data).lower().endswith(".npy") or str(data).lower().endswith(LABELS_SUFFIX):
        return None
    path = labels_path(data)
    return path if Path(path).is_file() else None


def check_integers(values, option: str) -> np.ndarray:
    """``values`` as int64 (N,): integers (or whole floats) >= 0; InputError naming the first bad one."""
    a = np.asarray(values)
    if a.ndim != 1:
        raise InputError(f"{option}: expected one label per sample, shape (N,), got {a.shape}")
    if a.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(a) | (a != np.round(a)))
        if bad.size:
            raise InputError(f"{option}: label {a[bad[0]]!r} of row {bad[0]} is not an integer")
    elif a.dtype.kind not in "iu":
        raise InputError(f"{option}: labels must be integers, got dtype {a.dtype}")
    if a.size and a.min() < 0:
        row = int(np.argmax(a < 0))
        raise InputError(f"{option}: label {a[row]:g} of row {row} is negative (classes are 0, 1, ...)")
    if a.size and a.max() >= MAX_CLASSES:
        raise InputError(f"{option}: label {a.max():g} is too large (at most {MAX_CLASSES} classes)")
    return a.astype(np.int64)


def read_labels(path: str | os.PathLike, n: int, option: str = "--labels") -> np.ndarray:
    """The labels of a data set of ``n`` samples (int64 (n,)), checked."""
    where = f"{option} {path}"
    labels = check_integers(io.read_npy(path, mmap=False), where)
    if labels.shape[0] != n:
        raise InputError(f"{where}: {labels.shape[0]} labels for {n} samples (one per sample needed)")
    return labels


def read_names(path: str | os.PathLike, option: str = "--labels") -> list[str] | None:
    """The class names in a .classes.txt file (None if there is none)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{option}: {path}: cannot read the class names ({e})") from None
    while names and not names[-1]:
        names.pop()
    if not names or "" in names or len(set(names)) != len(names):
        raise InputError(f"{option}: {path}: class names must be one per line, non-empty and distinct")
    return names


def write_names(path: str | os.PathLike, names) -> None:
    io.write_text(path, "".join(f"{name}\n" for name in names))


def class_names(labels: np.ndarray, names: list[str] | None, option: str = "--labels") -> list[str]:
    """The names of the classes 0..K-1: ``names`` (every label must have one), else "0".."K-1" with
    K = the largest label + 1."""
    top = int(labels.max()) if labels.size else -1
    if names is None:
        return [str(c) for c in range(top + 1)]
    if top >= len(names):
        raise InputError(f"{option}: label {top} has no name ({len(names)} class names)")
    return list(names)


# --------------------------------------------------------------------------------------------
# the classes of a sampling run


def describe_classes(names: list[str]) -> str:
    shown = ", ".join(f"{i} {n}" if n != str(i) else n for i, n in enumerate(names[:12]))
    return shown + (", ..." if len(names) > 12 else "")


def parse_class(text: str, names: list[str], option: str = "--class") -> int:
    """A class given by its index or its name."""
    text = text.strip()
    if not names:
        raise InputError(f"{option}: the checkpoint is not class-conditional (it was trained without labels)")
    if text.lstrip("-").isdigit():
        c = int(text)
        if not 0 <= c < len(names):
            raise InputError(f"{option}: no class {c}; the checkpoint has {len(names)}: {describe_classes(names)}")
        return c
    if text in names:
        return names.index(text)
    raise InputError(f"{option}: no class '{text}'; the checkpoint has {len(names)}: {describe_classes(names)}")


def sample_labels(
    names: list[str], klass: str | None, classes: str | None, per_class: int | None, n: int
) -> np.ndarray | None:
    """The class of each of the samples (None: unconditional): ``klass`` for all ``n``; the
    comma-separated ``classes`` in turn (sample i gets the (i mod m)-th); ``per_class`` samples of
    every class, in class order (then there are per_class * K samples)."""
    given = [f for f, v in (("--class", klass), ("--classes", classes), ("--per-class", per_class)) if v is not None]
    if len(given) > 1:
        raise InputError(f"{given[1]}: not with {given[0]} (give one way of choosing the classes)")
    if not given:
        return None
    if klass is not None:
        return np.full(n, parse_class(klass, names), dtype=np.int64)
    if classes is not None:
        parts = [p for p in classes.split(",") if p.strip()]
        if not parts:
            raise InputError("--classes: expected comma-separated classes, e.g. 0,2 or triangle,disc")
        chosen = np.array([parse_class(p, names, "--classes") for p in parts], dtype=np.int64)
        return chosen[np.arange(n) % len(chosen)]
    if per_class < 1:
        raise InputError(f"--per-class: must be >= 1, got {per_class}")
    if not names:
        raise InputError("--per-class: the checkpoint is not class-conditional (it was trained without labels)")
    return np.repeat(np.arange(len(names), dtype=np.int64), per_class)
