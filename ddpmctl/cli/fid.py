"""ddpmctl fid: Frechet Inception Distance (and KID) between two sets, or statistics of one."""

from __future__ import annotations

from typing import Optional

import typer

from ddpmctl import fid as fidlib
from ddpmctl.cli.common import (
    HELP_BATCH,
    HELP_DEVICE,
    HELP_JSON,
    HELP_QUIET,
    HELP_SEED,
    emit_json,
    err,
    fail,
    handle_errors,
    progress,
)
from ddpmctl.device import resolve_device


def _describe(name: str, st: fidlib.Stats, was_stats: bool) -> str:
    n = f"{st.n} samples" if st.n is not None else "N not recorded"
    return f"{name} (statistics, {n})" if was_stats else f"{name} ({st.n} samples)"


@handle_errors("fid")
def command(
    a: str = typer.Argument(..., help="First set (e.g. generated samples): .npy, image folder, stats .npz, or - (stdin).", metavar="A", show_default=False),
    b: Optional[str] = typer.Argument(None, help="Second set (the reference), same kinds. Leave out to only compute A's statistics with --save-stats.", metavar="[B]", show_default=False),
    features: Optional[str] = typer.Option(None, "--features", help="inception (2048-d pool3 of the FID Inception-v3) or raw (the flattened values) (default: inception for images, raw for points)."),
    weights: Optional[str] = typer.Option(None, "--weights", help=f"Inception weights: pytorch-fid's {fidlib.PYTORCH_FID_FILE} (or a .safetensors / TorchScript file of the same weights) (default: ${fidlib.ENV_WEIGHTS}, the torch hub cache, then the {fidlib.PACKAGE} package)."),
    preprocess: Optional[str] = typer.Option(None, "--preprocess", help="pytorch-fid (bilinear resize, 2x-1) or tf (8-bit, TensorFlow-1 resize, (v-128)/128: TTUR, torch-fidelity, clean-fid legacy_tensorflow) (default: pytorch-fid, or what a stats file records)."),
    batch: Optional[int] = typer.Option(None, "--batch", help=HELP_BATCH + " (default: 200 on CUDA, 32 on CPU)"),
    device: str = typer.Option("auto", "--device", help=HELP_DEVICE),
    save_stats: Optional[str] = typer.Option(None, "--save-stats", help="Write the statistics (float64 mu, sigma, n, features) of B, or of A when B is left out, to this .npz (pytorch-fid / clean-fid format)."),
    kid: bool = typer.Option(False, "--kid", help="Also compute the Kernel Inception Distance (unbiased, polynomial kernel) over random subsets, with its std."),
    kid_subsets: int = typer.Option(fidlib.KID_SUBSETS, "--kid-subsets", help="KID: number of subsets."),
    kid_subset_size: int = typer.Option(fidlib.KID_SUBSET_SIZE, "--kid-subset-size", help="KID: samples per subset (at most the smaller set)."),
    seed: int = typer.Option(0, "--seed", help=HELP_SEED + " (KID subsets)"),
    json_out: bool = typer.Option(False, "--json", help=HELP_JSON),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=HELP_QUIET),
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
    if b is None and save_stats is None:
        fail("give two sets to compare, or one set with --save-stats OUT.npz")
    if save_stats is not None and not save_stats.lower().endswith(".npz"):
        fail(f"--save-stats {save_stats}: statistics files end in .npz")
    target = b if b is not None else a
    if save_stats is not None and fidlib.is_stats_file(target):
        fail(f"--save-stats: {target} is already a statistics file")
    if kid and b is None:
        fail("--kid needs two sets")
    if kid and (kid_subsets < 1 or kid_subset_size < 2):
        fail("--kid-subsets must be >= 1 and --kid-subset-size >= 2")
    if features is not None and features not in fidlib.FEATURES:
        fail(f"--features: unknown '{features}' (use {' or '.join(fidlib.FEATURES)})")
    if preprocess is not None and preprocess not in fidlib.PREPROCESS:
        fail(f"--preprocess: unknown mode '{preprocess}' (use {' or '.join(fidlib.PREPROCESS)})")
    if batch is not None and batch < 1:
        fail(f"--batch: must be >= 1, got {batch}")
    dev = resolve_device(device)

    sources = [fidlib.open_source(a)] + ([fidlib.open_source(b)] if b is not None else [])
    total = sum(s.n for s in sources if s.kind != "stats")
    with progress(total or None, "fid features", quiet=quiet) as update:
        result = fidlib.compute(
            sources[0],
            sources[1] if b is not None else None,
            features=features,
            weights=weights,
            preprocess_mode=preprocess,
            batch=batch,
            device=dev,
            kid_subsets=kid_subsets if kid else None,
            kid_subset_size=kid_subset_size,
            seed=seed,
            progress=lambda k: update(k),
        )
    saved = result.b if b is not None else result.a
    if save_stats is not None:
        saved.save(save_stats)
    for w in result.warnings:
        err(f"ddpmctl fid: warning: {w}")
    if result.weights is not None and not result.weights.verified:
        err(
            f"ddpmctl fid: warning: {result.weights.path}: SHA-256 {result.weights.sha256[:16]}... is not a known file of the "
            "TF-2015 Inception weights; numbers may not be comparable with other tools"
        )

    if json_out:
        out = result.as_dict()
        out["a"], out["b"] = a, b
        out["stats_saved"] = save_stats
        emit_json(out)
        return
    if result.fid is not None:
        print(f"FID {result.fid:.6f}")
    if result.kid_mean is not None:
        print(f"KID {result.kid_mean:.6f} +- {result.kid_std:.6f} ({result.kid_subsets} subsets of {result.kid_subset_size})")
    sets = [_describe(s.name, st, s.kind == "stats") for s, st in zip(sources, [result.a, result.b])]
    what = f"{result.features} features, {result.dims}-d"
    if result.preprocess:
        what += f", {result.preprocess} preprocessing"
    if result.weights is not None:
        what += f", weights from {result.weights.origin} ({'verified' if result.weights.verified else 'unverified'} sha256 {result.weights.sha256[:8]})"
    print(f"  {' vs '.join(sets)}; {what}")
    if save_stats is not None:
        print(f"  wrote {save_stats}: statistics of {saved.n} samples of {target}")

