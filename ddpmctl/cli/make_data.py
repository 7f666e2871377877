"""ddpmctl make-data: synthetic data sets (triangles, shapes, 2-D point sets, mixtures) and image-folder import."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ddpmctl import data, io
from ddpmctl.cli.common import HELP_JSON, HELP_QUIET, HELP_SEED, emit_json, err, handle_errors, progress, report_stream
from ddpmctl.errors import InputError, RunError
from ddpmctl.gmm import GaussianMixture

MAX_N = 1_000_000_000
PREVIEW_IMAGES = 64
SCATTER_POINTS = 100_000

KIND_HELP = (
    "Data set: triangles, shapes (images); swissroll, moons, gmm, checkerboard (2-D points; gmm any D); "
    "folder DIR (import images)."
)


def _suffixed(output: str, suffix: str) -> str:
    """x.npy -> x<suffix> (e.g. .labels.npy, .npz)."""
    return (output[:-4] if output.lower().endswith(".npy") else output) + suffix


def _check_folder(path: str, option: str) -> None:
    folder = Path(path).parent
    if str(folder) and not folder.exists():
        raise InputError(f"{option} {path}: folder {folder} does not exist")


def _only_for(value, option: str, kinds: tuple[str, ...], kind: str) -> None:
    if value is not None and kind not in kinds:
        raise InputError(f"{option}: only for {', '.join(kinds)} (not {kind})")


@handle_errors("make-data")
def command(
    kind: str = typer.Argument(..., help=KIND_HELP, metavar="KIND", show_default=False),
    source: Optional[str] = typer.Argument(None, help="The image folder (make-data folder DIR).", metavar="DIR", show_default=False),
    n: Optional[int] = typer.Option(None, "--n", "-n", help="Number of samples (default: 10000)."),
    size: Optional[int] = typer.Option(None, "--size", help="Image size S: images are S x S (4..1024; default: 32)."),
    seed: int = typer.Option(0, "--seed", help=HELP_SEED),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", help="Output: .npy, .png (a preview grid or scatter plot only), or - (.npy stream on stdout); default: KIND.npy."
    ),
    preview: Optional[str] = typer.Option(None, "--preview", help="Also write a preview PNG (first 64 images, or a scatter plot of the points)."),
    labels: bool = typer.Option(False, "--labels", help="shapes, moons, gmm: also write the class labels (int64) to OUT.labels.npy."),
    min_area: Optional[float] = typer.Option(None, "--min-area", help=f"triangles/shapes: smallest triangle area, a fraction of the image (default: {data.DEFAULT_MIN_AREA})."),
    min_angle: Optional[float] = typer.Option(None, "--min-angle", help=f"triangles/shapes: smallest triangle angle in degrees (default: {data.DEFAULT_MIN_ANGLE:g})."),
    supersample: Optional[int] = typer.Option(None, "--supersample", help=f"triangles/shapes: anti-aliasing scan lines per pixel row (x is exact; default: {data.DEFAULT_SUPERSAMPLE})."),
    noise: Optional[float] = typer.Option(None, "--noise", help="Point sets: std of Gaussian noise added to every point (default: 0)."),
    components: Optional[int] = typer.Option(None, "--components", "-K", help="gmm: number of mixture components (default: 8)."),
    dim: Optional[int] = typer.Option(None, "--dim", help="gmm: dimension D (default: 2)."),
    params: Optional[str] = typer.Option(None, "--params", help="gmm: where to save the mixture (.npz; default: OUT with .npz; required with -o -)."),
    mixture: Optional[str] = typer.Option(None, "--mixture", help="gmm: sample from this saved mixture (.npz) instead of a random one."),
    channels: Optional[int] = typer.Option(None, "--channels", help="folder: 1 (grayscale) or 3 (RGB) (default: 1 if every image is grayscale, else 3)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="folder: skip unreadable image files (with a warning) instead of stopping."),
    json_out: bool = typer.Option(False, "--json", help=HELP_JSON),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=HELP_QUIET),
) -> None:
    """Make a data set: anti-aliased triangles or shapes, 2-D point sets, a Gaussian mixture, or import an image folder.

    Images are float32 (N, 1, S, S) in [0, 1], points float32 (N, D). The same --seed gives the
    same bytes, whatever the chunking; N samples are the first N of any larger set with the same
    options. Large N is generated and written in chunks (memory stays bounded).

    Example: ddpmctl make-data triangles --n 10000 -o tri.npy --preview tri.png

    Example: ddpmctl make-data gmm --components 4 -o gmm.npy   (also writes the mixture gmm.npz)

    Example: ddpmctl make-data folder photos/ --size 64 --channels 3 -o faces.npy
    """
    t0 = time.perf_counter()
    if kind not in data.KINDS:
        raise InputError(f"{kind}: unknown data set (choose from {', '.join(data.KINDS)})")
    if kind == "folder" and source is None:
        raise InputError("folder: give the image folder: make-data folder DIR --size S")
    if kind != "folder" and source is not None:
        raise InputError(f"{source}: unexpected argument ({kind} takes no DIR)")
    image_kinds = data.IMAGE_KINDS
    _only_for(size, "--size", image_kinds + ("folder",), kind)
    for value, option in ((min_area, "--min-area"), (min_angle, "--min-angle"), (supersample, "--supersample")):
        _only_for(value, option, image_kinds, kind)
    _only_for(noise, "--noise", data.POINT_KINDS, kind)
    for value, option in ((components, "--components"), (dim, "--dim"), (params, "--params"), (mixture, "--mixture")):
        _only_for(value, option, ("gmm",), kind)
    _only_for(channels, "--channels", ("folder",), kind)
    _only_for(True if skip_bad else None, "--skip-bad", ("folder",), kind)
    _only_for(n if kind == "folder" else None, "--n", data.IMAGE_KINDS + data.POINT_KINDS, kind)
    if labels and kind not in ("shapes", "moons", "gmm"):
        raise InputError(f"--labels: {kind} has no class labels (shapes, moons and gmm have)")
    if mixture is not None and (components is not None or dim is not None):
        raise InputError("--mixture: the mixture fixes the components and the dimension; drop --components/--dim")

    output = output if output is not None else f"{kind}.npy"
    out_kind = io.output_kind(output)
    if out_kind == "folder":
        raise InputError(f"-o {output}: make-data writes .npy, .png or - (stdout)")
    to_stdout = output == io.STDIO
    if json_out and to_stdout:
        raise InputError("--json: not with -o - (stdout carries the data)")
    if preview is not None and not preview.lower().endswith(".png"):
        raise InputError(f"--preview {preview}: must be a .png file")
    if labels and (out_kind != "npy" or to_stdout):
        raise InputError("--labels: needs an .npy file output (-o OUT.npy) to put OUT.labels.npy beside")
    labels_path = _suffixed(output, ".labels.npy") if labels else None
    if kind == "gmm" and params is None and mixture is None and out_kind == "npy":
        if to_stdout:
            raise InputError("--params: with -o - give --params FILE.npz for the mixture (or sample a saved one with --mixture)")
        params = _suffixed(output, ".npz")
    if params is not None and not params.lower().endswith(".npz"):
        raise InputError(f"--params {params}: must be a .npz file")
    for path, option in ((output, "-o"), (preview, "--preview"), (labels_path, "--labels"), (params, "--params")):
        if path is not None and path != io.STDIO:
            _check_folder(path, option)
    n_value = 10_000 if n is None else n
    if kind != "folder" and not 1 <= n_value <= MAX_N:
        raise InputError(f"--n: must be between 1 and {MAX_N}, got {n_value}")

    if kind == "folder":
        _folder(source, size if size is not None else 32, channels, skip_bad, output, out_kind, preview, json_out, quiet, t0)
        return

    loaded = GaussianMixture.load(mixture) if mixture is not None else None
    spec = data.spec(
        kind,
        seed,
        size=32 if size is None else size,
        min_area=data.DEFAULT_MIN_AREA if min_area is None else min_area,
        min_angle=data.DEFAULT_MIN_ANGLE if min_angle is None else min_angle,
        supersample=data.DEFAULT_SUPERSAMPLE if supersample is None else supersample,
        noise=0.0 if noise is None else noise,
        components=8 if components is None else components,
        dim=2 if dim is None else dim,
        mixture=loaded,
    )
    shape = (n_value,) + spec.sample_shape
    if out_kind == "npy" and not to_stdout:
        need = int(np.prod(shape, dtype=np.float64)) * 4 + 128
        free = shutil.disk_usage(Path(output).parent if str(Path(output).parent) else ".").free
        if need > free:
            raise RunError(f"-o {output}: needs {need / 1e9:.2f} GB, only {free / 1e9:.2f} GB free")

    written: list[str] = []
    gen_seconds = None
    try:
        if out_kind == "png":  # a picture only: generate just what it shows (the same first samples)
            count = min(n_value, PREVIEW_IMAGES if spec.is_images else SCATTER_POINTS)
            first, _ = _collect(data.iter_chunks(spec, count, seed))
            _save_preview(output, first)
            written.append(output)
            head = None
        else:
            t_gen = time.perf_counter()
            head, label_parts = _write_stream(spec, n_value, seed, output, labels, quiet)
            gen_seconds = time.perf_counter() - t_gen
            if not to_stdout:
                written.append(output)
            if labels_path is not None:
                io.save_npy(labels_path, np.concatenate(label_parts))
                written.append(labels_path)
        if params is not None:
            spec.mixture.save(params)
            written.append(params)
        if preview is not None:
            if head is None or (not spec.is_images and len(head) < min(n_value, SCATTER_POINTS)):
                head, _ = _collect(data.iter_chunks(spec, min(n_value, SCATTER_POINTS), seed))
            _save_preview(preview, head)
            written.append(preview)
    except BaseException:
        for path in written:  # all or nothing
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    seconds = time.perf_counter() - t0
    _report(
        json_out,
        to_stdout,
        quiet,
        {
            "kind": kind,
            "n": n_value,
            "shape": list(shape) if out_kind == "npy" else None,
            "dtype": "float32",
            "output": output,
            "seed": seed,
            "labels": labels_path,
            "params": params,
            "mixture": mixture,
            "preview": preview if preview is not None else (output if out_kind == "png" else None),
            "seconds": round(seconds, 4),
            "per_second": round(n_value / gen_seconds, 1) if gen_seconds else None,  # generate + write
        },
    )


def _collect(chunks) -> tuple[np.ndarray, np.ndarray | None]:
    parts = list(chunks)
    return np.concatenate([p[0] for p in parts]), None


def _write_stream(spec: data.Spec, n: int, seed: int, output: str, want_labels: bool, quiet: bool):
    """Generate and write in chunks; returns (the first samples for a preview, label chunks)."""
    head_count = PREVIEW_IMAGES if spec.is_images else SCATTER_POINTS
    head: list[np.ndarray] = []
    have = 0
    label_parts: list[np.ndarray] = []
    with progress(n, f"make-data {spec.kind}", quiet=quiet) as update:
        with io.NpyStreamWriter(output, (n,) + spec.sample_shape, np.float32) as out:
            for x, lab in data.iter_chunks(spec, n, seed):
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


def _folder(source, size, channels, skip_bad, output, out_kind, preview, json_out, quiet, t0) -> None:
    files = data.folder_files(source)
    with progress(len(files), "make-data folder", quiet=quiet) as update:
        x, info = data.import_folder(source, size, channels=channels, skip_bad=skip_bad, progress=update)
    for f, why in info.skipped:
        err(f"ddpmctl make-data: warning: skipped {why}")
    written: list[str] = []
    try:
        if out_kind == "png":
            _save_preview(output, x)
        else:
            io.save_npy(output, x)
        if output != io.STDIO:
            written.append(output)
        if preview is not None:
            _save_preview(preview, x)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    seconds = time.perf_counter() - t0
    _report(
        json_out,
        output == io.STDIO,
        quiet,
        {
            "kind": "folder",
            "source": str(source),
            "n": int(x.shape[0]),
            "shape": list(x.shape),
            "dtype": "float32",
            "channels": info.channels,
            "output": output,
            "preview": preview if preview is not None else (output if out_kind == "png" else None),
            "skipped": [str(f) for f, _ in info.skipped],
            "seconds": round(seconds, 4),
        },
    )


def _report(json_out: bool, to_stdout: bool, quiet: bool, result: dict) -> None:
    if json_out:
        emit_json({k: v for k, v in result.items()})
        return
    if to_stdout:  # stdout carries the data: silent on success, like any filter
        return
    stream = report_stream(to_stdout)
    what = f"{result['kind']}" + (f" from {result['source']}" if "source" in result else "")
    if result["shape"] is not None:
        shape = " x ".join(str(s) for s in result["shape"])
        rate = f", {result['per_second']:,.0f}/s" if result.get("per_second") else ""
        where = "stdout" if to_stdout else result["output"]
        print(f"wrote {where}: {what}, {shape} float32, seed {result.get('seed', '-')}, {result['seconds']:.2f} s{rate}", file=stream)
    for key, label in (("labels", "labels"), ("params", "mixture"), ("preview", "preview")):
        if result.get(key):
            print(f"wrote {result[key]}: {label}", file=stream)
    if result.get("skipped"):
        print(f"skipped {len(result['skipped'])} unreadable file(s)", file=stream)
