"""ddpmctl fid: Frechet Inception Distance (and KID) between two sets, or statistics of one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import typer

from ddpmctl import fid_options as opts
from ddpmctl.cli.common import (
    at_least,
    batch_option,
    choice_option,
    device_option,
    emit_json,
    err,
    flag_option,
    handle_errors,
    json_option,
    progress,
    quiet_option,
    seed_option,
)
from ddpmctl.errors import InputError

if TYPE_CHECKING:
    from ddpmctl import fid as fidlib

HELP_A = "First set (e.g. generated samples): .npy, image folder, stats .npz, or - (stdin)."
HELP_B = "Second set (the reference), same kinds. Leave out to only compute A's statistics with --save-stats."
HELP_FEATURES = (
    "inception (2048-d pool3 of the FID Inception-v3) or raw (the flattened values) "
    "(default: inception for images, raw for points)."
)
HELP_WEIGHTS = (
    f"Inception weights: pytorch-fid's {opts.PYTORCH_FID_FILE} (or a .safetensors / TorchScript file of the same "
    f"weights) (default: ${opts.ENV_WEIGHTS}, the torch hub cache, then the {opts.PACKAGE} package)."
)
HELP_PREPROCESS = (
    "pytorch-fid (bilinear resize, 2x-1) or tf (8-bit, TensorFlow-1 resize, (v-128)/128: TTUR, torch-fidelity, "
    "clean-fid legacy_tensorflow) (default: pytorch-fid, or what a stats file records)."
)
HELP_SAVE_STATS = (
    "Write the statistics (float64 mu, sigma, n, features) of B, or of A when B is left out, to this .npz "
    "(pytorch-fid / clean-fid format)."
)
HELP_KID = "Also compute the Kernel Inception Distance (unbiased, polynomial kernel) over random subsets, with its std."


@handle_errors("fid")
def command(
    a: str = typer.Argument(..., help=HELP_A, metavar="A", show_default=False),
    b: Optional[str] = typer.Argument(None, help=HELP_B, metavar="[B]", show_default=False),
    features: Optional[str] = choice_option(None, "--features", opts.FEATURES, HELP_FEATURES),
    weights: Optional[str] = typer.Option(None, "--weights", help=HELP_WEIGHTS),
    preprocess: Optional[str] = choice_option(None, "--preprocess", opts.PREPROCESS, HELP_PREPROCESS),
    batch: Optional[int] = batch_option(None, "(default: Inception 200 on CUDA, 4 on CPU; raw 4096)"),
    device: str = device_option(),
    save_stats: Optional[str] = typer.Option(None, "--save-stats", help=HELP_SAVE_STATS),
    kid: bool = flag_option("--kid", help=HELP_KID),
    kid_subsets: int = typer.Option(
        opts.KID_SUBSETS, "--kid-subsets", callback=at_least("--kid-subsets", 1), help="KID: number of subsets."
    ),
    kid_subset_size: int = typer.Option(
        opts.KID_SUBSET_SIZE,
        "--kid-subset-size",
        callback=at_least("--kid-subset-size", 2),
        help="KID: samples per subset (at most the smaller set).",
    ),
    seed: int = seed_option(0, "(KID subsets)"),
    json_out: bool = json_option(),
    quiet: bool = quiet_option(),
) -> None:
    """Frechet Inception Distance between two image sets (or point sets), offline.

    A and B are each an .npy array (images (N, C, H, W) in [0, 1], or points (N, D)), a folder of
    images, or a statistics .npz (mu, sigma) as pytorch-fid and clean-fid write them. Images go
    through the FID Inception-v3 (the TF 2015-12-05 graph, pytorch-fid's port) with pytorch-fid's
    preprocessing; points use their raw values. Large sets are read in batches. Warns when a set
    has fewer samples than feature dimensions (2048): FID is then biased upward.

    Example: ddpmctl fid samples.npy reference/ --kid

    Example: ddpmctl fid cifar10_train/ --save-stats cifar10_train.npz && ddpmctl fid samples.npy cifar10_train.npz
    """
    from ddpmctl import fid as fidlib
    from ddpmctl.device import resolve_device

    target = b if b is not None else a  # the set whose statistics --save-stats writes
    if b is None and save_stats is None:
        raise InputError("give two sets to compare, or one set with --save-stats OUT.npz")
    if save_stats is not None and not fidlib.is_stats_file(save_stats):
        raise InputError(f"--save-stats {save_stats}: statistics files end in .npz")
    if save_stats is not None and fidlib.is_stats_file(target):
        raise InputError(f"--save-stats: {target} is already a statistics file")
    dev = resolve_device(device)
    sources = [fidlib.open_source(a)] + ([fidlib.open_source(b)] if b is not None else [])
    total = sum(s.n for s in sources if s.kind != "stats")
    with progress(total or None, "fid features", quiet=quiet) as update:
        result = fidlib.compute(
            *sources,
            features=features,
            weights=weights,
            preprocess_mode=preprocess,
            batch=batch,
            device=dev,
            kid_subsets=kid_subsets if kid else None,
            kid_subset_size=kid_subset_size,
            seed=seed,
            progress=update,
        )
    saved = result.b if b is not None else result.a
    if save_stats is not None:
        saved.save(save_stats)
    _warn(result)
    if json_out:
        emit_json({**result.as_dict(), "a": a, "b": b, "stats_saved": save_stats})
        return
    _print(result, sources)
    if save_stats is not None:
        print(f"  wrote {save_stats}: statistics of {saved.n} samples of {target}")


def _warn(result: fidlib.FidResult) -> None:
    for w in result.warnings:
        err(f"ddpmctl fid: warning: {w}")
    if result.weights is not None and not result.weights.verified:
        err(
            f"ddpmctl fid: warning: {result.weights.path}: SHA-256 {result.weights.sha256[:16]}... is not a known "
            "file of the TF-2015 Inception weights; numbers may not be comparable with other tools"
        )


def _describe(source: fidlib.Source, st: fidlib.Stats) -> str:
    if source.kind == "stats":
        return f"{source.name} (statistics, {f'{st.n} samples' if st.n is not None else 'N not recorded'})"
    return f"{source.name} ({st.n} samples)"


def _print(result: fidlib.FidResult, sources: list[fidlib.Source]) -> None:
    """The human-readable report: FID, KID, then what was compared and how."""
    if result.fid is not None:
        print(f"FID {result.fid:.6f}")
    if result.kid_mean is not None:
        print(
            f"KID {result.kid_mean:.6f} +- {result.kid_std:.6f} "
            f"({result.kid_subsets} subsets of {result.kid_subset_size})"
        )
    sets = [_describe(s, st) for s, st in zip(sources, [result.a, result.b])]
    what = f"{result.features} features, {result.dims}-d"
    if result.preprocess:
        what += f", {result.preprocess} preprocessing"
    w = result.weights
    if w is not None:
        what += f", weights from {w.origin} ({'verified' if w.verified else 'unverified'} sha256 {w.sha256[:8]})"
    print(f"  {' vs '.join(sets)}; {what}")
