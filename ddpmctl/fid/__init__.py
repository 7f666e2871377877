"""Frechet Inception Distance (FID), Kernel Inception Distance (KID) and feature statistics files.

* ``metric``: the Frechet distance (Heusel et al. 2017, eq. 6) in its symmetric eigenvalue form,
  and KID (Binkowski et al. 2018, eq. 4);
* ``stats``: ``Stats`` (mean, covariance, what they were computed with), the streaming float64
  accumulator, statistics ``.npz`` files (pytorch-fid / clean-fid format);
* ``sources``: the inputs (memory-mapped ``.npy`` read in chunks, image folders read file by file,
  arrays, statistics files), so 50,000 images never sit in memory as floats at once;
* ``inception``: the weights of the FID Inception-v3 (network: ``ddpmctl.nets.inception``), the
  preprocessing, and the feature extractors ``inception`` (2048-d pool3) and ``raw``;
* ``compute``: ``compute`` / ``fid`` / ``compute_stats``, the whole computation.

The choices and defaults (features, preprocessing, KID) and the weights' names are defined in
``ddpmctl.fid_options`` (no torch: ``ddpmctl fid --help`` starts without it) and re-exported here.

>>> from ddpmctl import fid
>>> fid.fid("samples.npy", "reference.npz")            # doctest: +SKIP
>>> fid.compute_stats("reference/").save("ref.npz")    # doctest: +SKIP
"""

from ddpmctl.fid.compute import FidResult, check_source, compute, compute_stats, default_batch, extract, fid
from ddpmctl.fid.inception import (
    InceptionFeatures,
    RawFeatures,
    WeightsInfo,
    exact_float32,
    find_weights,
    hub_weights_path,
    load_inception,
    make_extractor,
    package_weights_path,
    preprocess,
    read_weights,
    sha256_file,
    tf1_resize_matrix,
)
from ddpmctl.fid.metric import (
    covariance_factor,
    frechet_distance,
    kid,
    polynomial_kernel,
    trace_sqrt_product,
    trace_sqrt_product_factor,
)
from ddpmctl.fid.sources import Source, open_source
from ddpmctl.fid.stats import Stats, StatsAccumulator, is_stats_file, stats_of
from ddpmctl.fid_options import (
    ENV_WEIGHTS,
    FEATURES,
    HOW_TO_GET_WEIGHTS,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    MAX_RAW_DIMS,
    PACKAGE,
    PACKAGE_FILE,
    PACKAGE_MODULE,
    PACKAGE_SHA256,
    PACKAGE_VERSION,
    PREPROCESS,
    PYTORCH_FID_FILE,
    PYTORCH_FID_SHA256,
    WEIGHTS_LABEL,
)

__all__ = [
    "ENV_WEIGHTS",
    "FEATURES",
    "HOW_TO_GET_WEIGHTS",
    "KID_SUBSET_SIZE",
    "KID_SUBSETS",
    "MAX_RAW_DIMS",
    "PACKAGE",
    "PACKAGE_FILE",
    "PACKAGE_MODULE",
    "PACKAGE_SHA256",
    "PACKAGE_VERSION",
    "PREPROCESS",
    "PYTORCH_FID_FILE",
    "PYTORCH_FID_SHA256",
    "WEIGHTS_LABEL",
    "check_source",
    "compute",
    "compute_stats",
    "covariance_factor",
    "default_batch",
    "exact_float32",
    "extract",
    "fid",
    "FidResult",
    "find_weights",
    "frechet_distance",
    "hub_weights_path",
    "InceptionFeatures",
    "is_stats_file",
    "kid",
    "load_inception",
    "make_extractor",
    "open_source",
    "package_weights_path",
    "polynomial_kernel",
    "preprocess",
    "RawFeatures",
    "read_weights",
    "sha256_file",
    "Source",
    "Stats",
    "stats_of",
    "StatsAccumulator",
    "tf1_resize_matrix",
    "trace_sqrt_product",
    "trace_sqrt_product_factor",
    "WeightsInfo",
]
