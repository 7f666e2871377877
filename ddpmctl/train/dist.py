"""Distributed training (torchrun, DDP) and stopping on SIGINT / SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ddpmctl.errors import InputError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_mean(self, values: list[float], device) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return (t / self.world).tolist()

    def any(self, flags: list[bool], device) -> list[bool]:
        """For each flag, whether it is set on any rank (one all-reduce for them all)."""
        if self.world == 1:
            return flags
        t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return [bool(v > 0) for v in t.tolist()]

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as td

    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    here = False
    if not td.is_initialized():
        td.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        here = True
    return Dist(rank=rank, world=world, local_rank=local, initialized_here=here)


@contextlib.contextmanager
def distributed(device: torch.device, batch: int) -> Iterator[tuple[Dist, torch.device]]:
    """Join the process group (under torchrun) for the run; yields (dist, this rank's device)."""
    dist = setup_distributed(device)
    try:
        if device.type == "cuda" and dist.world > 1:
            device = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(device)
        if batch % dist.world:
            raise InputError(f"--batch: the global batch {batch} must be divisible by the {dist.world} ranks")
        yield dist, device
        # Every rank is past its last collective before any rank tears the group down, so no
        # rank's gloo connection closes while a peer still reads from it.
        dist.barrier()
    finally:
        if dist.initialized_here:
            # DDP's reducer sits in reference cycles; collect it now, while the group and the
            # interpreter are alive, rather than at interpreter exit (where freeing its pending
            # gloo work can abort the process).
            import gc

            gc.collect()
            torch.distributed.destroy_process_group()


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after a SIGINT / SIGTERM once the checkpoint is saved; ``exit_code`` 130 / 143."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


class _StopSignals:
    """First SIGINT / SIGTERM: ask the loop to stop after the current step (it then saves a
    checkpoint). A second SIGINT: exit now (checkpoint files are replaced atomically, so the last
    complete one stays). A SIGTERM while stopping is ignored, so the save can finish."""

    def __init__(self, enabled: bool, label: str = "ddpmctl train"):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self.label = label
        self._old: dict[int, object] = {}

    def _handler(self, signum, frame):
        if self.signum is not None and signum == signal.SIGTERM:
            return  # already stopping (torchrun sends SIGTERM to its workers after a Ctrl-C): let the save finish
        if self.signum is not None:
            os.write(2, f"{self.label}: interrupted again; exiting now (the last checkpoint is intact)\n".encode())
            os._exit(130 if signum == signal.SIGINT else 128 + signum)
        self.signum = signum  # the loop saves a checkpoint after this step and raises TrainingInterrupted

    def __enter__(self):
        if self.enabled:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False
