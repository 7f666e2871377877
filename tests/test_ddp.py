"""Distributed training: `torchrun --nproc_per_node=2` on CPU (gloo) against one process with the
same global batch.

Why the curves can match closely: every rank draws the *global* batch (indices, times, noise) from
generators seeded by (seed, step) and keeps its own half, so both runs see exactly the same
samples; DDP averages the two half-batch gradients, which equals the gradient of the mean over the
whole batch. What differs is only the order of floating-point sums (two half-batch means
all-reduced vs one mean, and gloo's all-reduce), i.e. float32 rounding, about 1e-7 relative per
step. Adam divides by sqrt(v), which does not blow such differences up over a few steps, so we
allow 1e-5 (relative) on the per-step losses and 1e-5 (absolute) on the final weights: a hundred
times the rounding, and far below what a wrong sharding, a missing gradient average or a
different batch would give (those change the loss in the first or second digit).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import torch
from conftest import run_cli

from ddpmctl import checkpoint as ckpt


def _why(r: subprocess.CompletedProcess) -> str:
    """The lines of a failed torchrun run that say why (a rank's error, C++ terminate, Python
    exception), then the tail: the launcher's summary alone does not name the cause."""
    err = r.stderr.decode(errors="replace")
    keys = re.compile(r"terminate|what\(\)|Error|error:|Abort|exitcode|Traceback")
    lines = [s for s in err.splitlines() if keys.search(s)]
    return "\n".join(lines[:40]) + "\n--- tail ---\n" + err[-1500:]


def test_torchrun_two_ranks_matches_one_process(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "pts.npy", (rng.standard_normal((100, 2)) * [2.0, 0.5]).astype(np.float32))
    opts = ["--base", "32", "--blocks", "1", "--steps", "8", "--batch", "16", "--lr", "1e-3", "--warmup", "2",
            "--log-every", "1", "--device", "cpu", "--sde", "vp"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "ddpmctl", "train", "pts.npy", *opts, "-o", "ddp", "--force"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=300)
    if r.returncode != 0 and "(SIGABRT)" in r.stderr.decode():
        # A rank killed by SIGABRT (once in CI, never in 140 runs here) comes from gloo's C++
        # side, not from ddpmctl (which raises Python errors): run once more, and say so.
        warnings.warn(f"torchrun: a rank aborted; retrying once. {_why(r)}", stacklevel=1)
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert r.returncode == 0, _why(r)
    # only rank 0 reports and writes: one summary line, one metrics record per step
    assert r.stdout.decode().count("trained 8 of 8 steps") == 1, r.stdout
    single = run_cli("train", tmp_path / "pts.npy", *opts, "-o", tmp_path / "one", "-q")
    assert single.returncode == 0, single.stderr
    ddp = [json.loads(s) for s in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    one = [json.loads(s) for s in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in ddp] == [m["step"] for m in one] == list(range(1, 9))
    loss_ddp, loss_one = np.array([m["loss"] for m in ddp]), np.array([m["loss"] for m in one])
    assert np.allclose(loss_ddp, loss_one, rtol=1e-5, atol=0), (loss_ddp, loss_one)
    assert np.allclose([m["grad_norm"] for m in ddp], [m["grad_norm"] for m in one], rtol=1e-4)
    assert np.ptp(loss_one) > 1e-2  # the losses do vary from step to step: the comparison means something
    a, b = ckpt.load_state(tmp_path / "ddp"), ckpt.load_state(tmp_path / "one")
    assert a["step"] == b["step"] == 8
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5, rtol=0), k
    assert ckpt.load_model(tmp_path / "ddp").meta["train"]["batch"] == 16
