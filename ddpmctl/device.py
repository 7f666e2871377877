"""Device selection shared by every command: ``auto`` picks cuda, then mps, then cpu."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ddpmctl.errors import InputError


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` -> torch.device (InputError if unavailable)."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device '{name}' asked for, but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device '{name}': only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError("device 'mps' asked for, but MPS is not available here")
    elif dev.type != "cpu":
        raise InputError(f"unsupported device '{name}' (use auto, cpu, cuda, cuda:N or mps)")
    return dev


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (when asked), a no-op context elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _is_channels_last(net: torch.nn.Module) -> bool:
    """Whether the 4-d weights of ``net`` are in channels_last layout (and not plain contiguous). Only
    the weights whose two layouts differ count: one input channel or a 1x1 kernel is the same memory
    either way."""
    weights = [p for p in net.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1]
    return bool(weights) and all(
        p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in weights
    )


@contextlib.contextmanager
def inference_layout(nets, data_kind: str, device: torch.device) -> Iterator[None]:
    """Image networks in channels_last while sampling on a CPU or CUDA, their own layout after.

    channels_last lets oneDNN (CPU) and cuDNN run the convolutions without reordering: sampling the
    demo's net took 6-12% less time than in NCHW on a 2-core EPYC (docs/sample.md, "Speed"). The
    weights are copied, not changed (the Parameter objects stay, so an optimizer holding them is
    not disturbed); the outputs move at the order of float32 sums. ``nets`` may hold None (no guide)
    or plain functions (exact models), which are left alone."""
    nets = [n for n in nets if isinstance(n, torch.nn.Module)]
    if data_kind != "images" or device.type not in ("cpu", "cuda") or not nets:
        yield
        return
    before = [_is_channels_last(n) for n in nets]
    for n in nets:
        n.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for n, was in zip(nets, before):
            if not was:
                n.to(memory_format=torch.contiguous_format)
