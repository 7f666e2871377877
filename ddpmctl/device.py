"""Device selection shared by every command: ``auto`` picks cuda, then mps, then cpu."""

from __future__ import annotations

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
    import contextlib

    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
