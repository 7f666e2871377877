"""The whole FID / KID computation: open the sets, choose features and preprocessing, one pass over
each set for its float64 statistics (and its features when KID or the low-rank trace needs them),
then the Frechet distance and KID."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ddpmctl.device import resolve_device
from ddpmctl.errors import InputError, RunError
from ddpmctl.fid.inception import InceptionFeatures, RawFeatures, WeightsInfo, exact_float32, make_extractor
from ddpmctl.fid.metric import covariance_factor, frechet_distance, kid
from ddpmctl.fid.sources import Source, open_source, prefetch
from ddpmctl.fid.stats import Stats, StatsAccumulator
from ddpmctl.fid_options import FEATURES, KID_SUBSET_SIZE, MAX_RAW_DIMS, PREPROCESS, check_choice


@dataclass
class FidResult:
    fid: float | None
    a: Stats
    b: Stats | None
    features: str
    dims: int
    preprocess: str | None
    weights: WeightsInfo | None
    kid_mean: float | None = None
    kid_std: float | None = None
    kid_subsets: int | None = None
    kid_subset_size: int | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = {
            "fid": self.fid,
            "n_a": self.a.n,
            "n_b": self.b.n if self.b is not None else None,
            "features": self.features,
            "dims": self.dims,
            "preprocess": self.preprocess,
            "weights": self.weights.as_dict() if self.weights else None,
            "warnings": self.warnings,
        }
        if self.kid_mean is not None:
            d["kid"] = {
                "mean": self.kid_mean,
                "std": self.kid_std,
                "subsets": self.kid_subsets,
                "subset_size": self.kid_subset_size,
            }
        return d


def default_batch(device: torch.device, features: str = "inception") -> int:
    """Images per Inception call: 200 on CUDA; 4 on a CPU, where a small batch keeps the 299 x 299
    activations in cache (docs/fid.md, "Speed": 4 gave 1.4x the images/s of 32 on a 2-core EPYC).
    Raw features are only copied: large batches."""
    if features == "raw":
        return 4096
    return 200 if device.type == "cuda" else 4


def check_source(source: Source, features: str) -> None:
    """``InputError`` when ``features`` cannot be computed from ``source`` (checked before any
    network is loaded, so bad input fails fast)."""
    if source.kind == "stats":
        raise InputError(f"{source.name}: is a statistics file, it has no samples")
    if features == "inception":
        if source.kind != "images":
            raise InputError(
                f"{source.name}: Inception features need images, this holds points (N, D); use --features raw"
            )
        if source.item_shape[0] not in (1, 3):
            raise InputError(f"{source.name}: the Inception features need 1 or 3 channels, got {source.item_shape[0]}")
        return
    d = int(np.prod(source.item_shape))
    if d > MAX_RAW_DIMS:
        raise InputError(
            f"{source.name}: raw features would have {d} dimensions (more than {MAX_RAW_DIMS}); "
            "use --features inception"
        )


def extract(
    source: Source,
    extractor: RawFeatures | InceptionFeatures,
    batch: int,
    progress: Callable[..., None] | None = None,
    keep: bool = False,
) -> tuple[Stats, np.ndarray | None]:
    """One pass over ``source``: float64 statistics of its features, and the features themselves
    (float32, (N, D)) when ``keep`` (for KID) or when there are fewer samples than dimensions."""
    check_source(source, extractor.name)
    acc = StatsAccumulator(extractor.device)
    keep = keep or source.n < extractor.dims(source.item_shape)  # the exact low-rank trace needs them
    kept = []
    with exact_float32(), torch.inference_mode():
        for arr in prefetch(source.batches(batch)):
            if extractor.name == "raw" and tuple(arr.shape[1:]) != tuple(source.item_shape):
                raise InputError(
                    f"{source.name}: samples of shape {tuple(arr.shape[1:])} and {tuple(source.item_shape)}; "
                    "raw features need one size (use 'ddpmctl make-data folder' to resize)"
                )
            f = extractor(arr)
            if not torch.isfinite(f).all():
                raise RunError(f"{source.name}: the features contain NaN or inf")
            acc.add(f)
            if keep:
                kept.append(f.float().cpu().numpy())
            if progress is not None:
                progress(arr.shape[0])
    stats = acc.result(features=extractor.name, preprocess=extractor.preprocess, weights=extractor.weights)
    return stats, (np.concatenate(kept) if keep else None)


def _choose_features(sources: list[Source], features: str | None) -> str:
    """``features``, or what the statistics files record, or raw for points and inception for images."""
    recorded = {s.stats.features for s in sources if s.kind == "stats" and s.stats.features}
    if features is None:
        if len(recorded) == 1:
            return recorded.pop()
        kinds = {s.kind for s in sources}
        return "raw" if "points" in kinds else "inception"
    check_choice(features, FEATURES, "--features")
    for s in sources:
        if s.kind == "stats" and s.stats.features and s.stats.features != features:
            raise InputError(f"{s.name}: holds statistics of {s.stats.features} features, not {features}")
    return features


def _choose_preprocess(sources: list[Source], features: str, preprocess_mode: str | None) -> str | None:
    """The Inception preprocessing: ``preprocess_mode``, or the one the statistics files record."""
    if features != "inception":
        return None
    recorded = {s.name: s.stats.preprocess for s in sources if s.kind == "stats" and s.stats.preprocess}
    if preprocess_mode is None:
        modes = set(recorded.values())
        if len(modes) > 1:
            listed = ", ".join(f"{k}: {v}" for k, v in recorded.items())
            raise InputError(f"the statistics files were computed with different preprocessing ({listed})")
        preprocess_mode = modes.pop() if modes else "pytorch-fid"
    check_choice(preprocess_mode, PREPROCESS, "--preprocess", "mode ")
    for name, mode in recorded.items():
        if mode != preprocess_mode:
            raise InputError(
                f"{name}: statistics computed with --preprocess {mode}, not {preprocess_mode}; "
                "the FID would not be comparable"
            )
    return preprocess_mode


def _check_request(sources: list[Source], features: str, want_kid: bool, batch: int | None) -> None:
    """Every check that needs no features: KID's sets, the batch size, what each set can give."""
    if want_kid:
        if len(sources) < 2:
            raise InputError("--kid needs two sets")
        for s in sources:
            if s.kind == "stats":
                raise InputError(f"{s.name}: --kid needs the samples, not a statistics file")
    if batch is not None and batch < 1:
        raise InputError(f"--batch: must be >= 1, got {batch}")
    for s in sources:
        if s.kind != "stats":
            check_source(s, features)


def _notes(sources: list[Source], stats: list[Stats]) -> list[str]:
    """Warnings on the sets' statistics; ``InputError`` when two sets' features cannot be compared."""
    dims = stats[0].dims
    notes: list[str] = []
    if len(stats) == 2:
        if stats[1].dims != dims:
            raise InputError(
                f"{sources[0].name} has {dims}-d features, {sources[1].name} {stats[1].dims}-d; they cannot be compared"
            )
        w = {st.weights for st in stats if st.weights}
        if len(w) > 1:
            notes.append(f"the two sets' features come from different Inception weights ({', '.join(sorted(w))})")
    for s, st in zip(sources, stats):
        if st.n is not None and st.n < dims:
            notes.append(
                f"{s.name}: {st.n} samples for {dims}-d features: the covariance is singular and FID is biased upward "
                f"(use at least {dims}; 50,000 is the usual number)"
            )
    return notes


def compute(
    a,
    b=None,
    *,
    features: str | None = None,
    weights: str | os.PathLike | None = None,
    preprocess_mode: str | None = None,
    batch: int | None = None,
    device: str | torch.device = "auto",
    kid_subsets: int | None = None,
    kid_subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
    fuse: bool = False,
    progress: Callable[..., None] | None = None,
) -> FidResult:
    """FID between ``a`` and ``b`` (paths, arrays or ``Stats``; see ``open_source``), or only the
    statistics of ``a`` when ``b`` is None. ``kid_subsets`` > 0 also computes KID."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    sources = [open_source(a)] + ([open_source(b)] if b is not None else [])
    feats = _choose_features(sources, features)
    mode = _choose_preprocess(sources, feats, preprocess_mode)
    want_kid = bool(kid_subsets)
    _check_request(sources, feats, want_kid, batch)
    extractor = None
    if any(s.kind != "stats" for s in sources):
        extractor = make_extractor(feats, dev, weights, mode or "pytorch-fid", fuse)
    batch = batch or default_batch(dev, feats)
    stats, kept = [], []
    for s in sources:
        st, f = (s.stats, None) if s.kind == "stats" else extract(s, extractor, batch, progress, keep=want_kid)
        stats.append(st)
        kept.append(f)
    notes = _notes(sources, stats)
    dims = stats[0].dims
    result = FidResult(
        None,
        stats[0],
        stats[1] if len(stats) == 2 else None,
        feats,
        dims,
        mode,
        getattr(extractor, "info", None),
        warnings=notes,
    )
    if len(stats) == 2:
        factors = [covariance_factor(f) if f is not None and f.shape[0] < dims else None for f in kept]
        result.fid = frechet_distance(stats[0].mu, stats[0].sigma, stats[1].mu, stats[1].sigma, *factors)
    if want_kid:
        result.kid_mean, result.kid_std, result.kid_subset_size = kid(
            kept[0], kept[1], kid_subsets, kid_subset_size, seed, dev
        )
        result.kid_subsets = int(kid_subsets)
    return result


def _warn(result: FidResult) -> None:
    for w in result.warnings:
        warnings.warn(w, stacklevel=3)  # at the caller of fid() / compute_stats()


def fid(a, b, **kwargs) -> float:
    """The FID between two sets (paths, arrays or ``Stats``); warnings go through ``warnings``.

    >>> fid("samples.npy", "reference.npz")  # doctest: +SKIP
    """
    r = compute(a, b, **kwargs)
    _warn(r)
    return r.fid


def compute_stats(a, **kwargs) -> Stats:
    """The feature statistics of one set (save them with ``.save(path)``)."""
    r = compute(a, None, **kwargs)
    _warn(r)
    return r.a
