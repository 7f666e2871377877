"""torch.compile for runs without gradients (``sample --compile``): one static graph per run.

``compiled_denoiser(denoiser, device, nets)`` swaps the network of a ``diffusion.Denoiser`` (and
of its guide) for ``FixedRows(torch.compile(net, dynamic=False))`` (kept in ``nets``, a
``CompiledNets``) while the block runs, and puts the network back afterwards. Inductor fuses the
elementwise work around the convolutions (GroupNorm, SiLU, the residual adds). On the demo's net
on a 2-core CPU that made ``generate`` 1.34x faster per NFE in ``benchmarks/sample_speed.py``,
but a 4,096-sample ``ddpmctl sample`` only 8% faster with a warm cache, and it gains nothing on
the default U-Net; a cold compile takes about 40 s (docs/sample.md, "--compile"). So it is not
the default.

``FixedRows`` keeps the graph static: it pads every call to the rows of the first one (a run's
last, smaller batch reuses the graph instead of compiling another), and slices the padding off
the output. Padded rows are zeros: x, the noise level, a class label or a condition image of 0
are valid inputs, and their outputs are dropped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

from ddpmctl.errors import InputError


class FixedRows(torch.nn.Module):
    """``fn`` called with the same kind of inputs every time, so that a static graph is compiled once:
    a call with fewer rows ``n`` than the first call has every tensor argument whose first dimension
    is ``n`` padded with zero rows (the output is cut back to ``n``), and inside
    ``torch.inference_mode`` every tensor argument is an inference tensor (dynamo guards on it; the
    first noise of a batch is drawn outside). ``first_call_seconds`` is the wall time of the first
    call (for a compiled ``fn``: the compile and one evaluation)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.rows: int | None = None
        self.first_call_seconds: float | None = None

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        n = x.shape[0]
        self.rows = self.rows or n
        pad = max(0, self.rows - n)
        inference = torch.is_inference_mode_enabled()

        def same_kind(a):
            if not isinstance(a, torch.Tensor):
                return a
            if pad and a.dim() > 0 and a.shape[0] == n:
                return torch.cat([a, a.new_zeros((pad, *a.shape[1:]))])
            return a.clone() if inference and not a.is_inference() else a

        t = time.perf_counter()
        out = self.fn(same_kind(x), *map(same_kind, args), **{k: same_kind(v) for k, v in kwargs.items()})
        if self.first_call_seconds is None:
            self.first_call_seconds = time.perf_counter() - t
        return out[:n]


class CompiledNets:
    """The compiled networks of one or more runs: ``get(net)`` compiles ``net`` at its first request
    and returns the same ``FixedRows`` after, so the runs of one stream (``sampling.generate_to_npy``:
    one run per batch) share one graph and its row count. Holds the networks as long as it lives."""

    def __init__(self) -> None:
        self._wrappers: dict[int, tuple[torch.nn.Module, FixedRows]] = {}

    @classmethod
    def for_option(cls, compile: bool | CompiledNets) -> CompiledNets | None:
        """``SampleOptions.compile`` as the holder of a run's compiled networks: the one given, a new
        one for True, None (eager) for False."""
        if isinstance(compile, CompiledNets):
            return compile
        return cls() if compile else None

    def get(self, net) -> FixedRows | None:
        """``net`` compiled for inference (``FixedRows`` around a static graph); None for what is not
        a module (an exact model's function)."""
        if not isinstance(net, torch.nn.Module):
            return None
        if id(net) not in self._wrappers:
            self._wrappers[id(net)] = (net, FixedRows(torch.compile(net, dynamic=False)))
        return self._wrappers[id(net)][1]

    @property
    def compile_seconds(self) -> float | None:
        """The first calls' wall time summed over the networks (None before any call)."""
        times = [w.first_call_seconds for _, w in self._wrappers.values() if w.first_call_seconds is not None]
        return sum(times) if times else None


@contextlib.contextmanager
def compiled_denoiser(denoiser, device: torch.device, nets: CompiledNets | None) -> Iterator[CompiledNets | None]:
    """While the block runs, ``denoiser``'s network and its guide's are their compiled versions from
    ``nets`` (``FixedRows``); yields ``nets``. Nothing changes for ``nets`` None (an eager run).
    Compile only inside ``torch.inference_mode`` or ``no_grad``, after any layout change."""
    if nets is None:
        yield None
        return
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"--compile: torch.compile runs on a CPU or CUDA device, not {device.type}")
    denoisers = [d for d in (denoiser, denoiser.guide) if d is not None]
    saved = [d.net for d in denoisers]
    try:
        for d in denoisers:
            d.net = nets.get(d.net) or d.net
        yield nets
    finally:
        for d, net in zip(denoisers, saved):
            d.net = net
