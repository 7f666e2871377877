"""Fixed-seed ``sample`` and ``restore`` outputs are bit-identical to the references recorded in
tests/data/bit_identical.json (written by the code before the issue #16 refactor; the restore cases
rewritten on 2026-12-07, when their clean images stopped depending on the machine's LAPACK).

The models need no training: the exact Gaussian-mixture model (``ddpmctl.exact.ExactGMM``) on
2-d points and test_restore.py's exact Gaussian prior on 1x4x4 "images".
Each case stores the sha256 of its float32 output bytes (and of the trajectory / std), the NFE and
a few values, so a failure shows how far off the output is. Regenerate (only when a change of
output is intended) with:

    PYTHONPATH=. python tests/test_bit_identical.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_restore import SHAPE, GaussianImages  # the exact Gaussian prior on 1x4x4 images

from ddpmctl.exact import ExactGMM
from ddpmctl.gmm import GaussianMixture
from ddpmctl.operators import degrade, make_operator
from ddpmctl.restore import restore
from ddpmctl.sampling import generate, generate_to_npy
from ddpmctl.schedules import make_process

REFERENCE = Path(__file__).resolve().parent / "data" / "bit_identical.json"
MIXTURE = GaussianMixture.random(3, 2, np.random.default_rng(7))
GUIDE_MIXTURE = GaussianMixture(MIXTURE.weights, MIXTURE.means + 0.3, MIXTURE.covs * 1.5)
PROCESSES = {
    "vp": dict(sde="vp"),
    "ve": dict(sde="ve"),
    "ddpm": dict(sde="ddpm", T=100),
    "cosine": dict(sde="ddpm", schedule="cosine", T=50),
}

# name: (process, sampler, generate keywords)
SAMPLE_CASES = {
    "ddpm-small-vp": ("vp", "ddpm", dict(steps=12)),
    "ddpm-large-ddpm": ("ddpm", "ddpm", dict(variance="large")),  # default steps: T
    "ddim-eta0-vp": ("vp", "ddim", dict(steps=10)),
    "ddim-eta05-ddpm": ("ddpm", "ddim", dict(steps=10, eta=0.5, spacing="quadratic")),
    "sde-vp": ("vp", "sde", dict(steps=15)),
    "sde-ddpm": ("ddpm", "sde", dict(steps=20)),
    "pc-vp": ("vp", "pc", dict(steps=8, corrector_steps=2)),
    "pc-ve": ("ve", "pc", dict(steps=8, snr=0.2)),
    "langevin-ve": ("ve", "langevin", dict(steps=6)),
    "ode-euler-vp": ("vp", "ode", dict(steps=9, solver="euler")),
    "ode-heun-ve-karras": ("ve", "ode", dict(steps=6, solver="heun", spacing="karras")),
    "ode-dpm2m-vp": ("vp", "ode", dict(steps=10, solver="dpm++2m")),
    "ode-dpm2m-ddpm": ("ddpm", "ode", dict(steps=10, solver="dpm++2m")),
    "ode-dpm2m-cosine-karras": ("cosine", "ode", dict(steps=12, solver="dpm++2m", spacing="karras", rho=5.0)),
    "ode-dpm2m-ve-uniform": ("ve", "ode", dict(steps=12, solver="dpm++2m", spacing="uniform")),
    "ode-dpm3m-ddpm": ("ddpm", "ode", dict(steps=10)),
    "ode-dpm3m-vp-uniform": ("vp", "ode", dict(steps=12, spacing="uniform")),
    "ode-rk45-vp": ("vp", "ode", dict(solver="rk45", rtol=1e-4, atol=1e-4)),
    "ode-rk45-vp-trajectory": ("vp", "ode", dict(solver="rk45", rtol=1e-3, atol=1e-3, trajectory=3)),
    "ode-heun-vp-trajectory": ("vp", "ode", dict(steps=5, solver="heun", trajectory=4)),
    "ddpm-vp-trajectory": ("vp", "ddpm", dict(steps=6, trajectory=3)),
    "ode-dpm3m-vp-guided": ("vp", "ode", dict(steps=8, guide=True, guidance=2.0)),
    "ddim-images-clip": ("images", "ddim", dict(steps=7, eta=1.0, clip_x0=True)),
    "pc-images": ("images", "pc", dict(steps=5)),
    "ddpm-vp-start3": ("vp", "ddpm", dict(steps=5, start_index=3)),
}

TASKS = {
    "inpaint": (dict(box=(0, 0, 2, 4)), 0.0),
    "denoise": ({}, 0.2),
    "sr": (dict(scale=2), 0.05),
    "deblur": (dict(kernel_sigma=1.0, kernel_size=3), 0.02),
}
# name: (process, task, method, restore keywords)
RESTORE_CASES = {
    "ddnm-inpaint-vp": ("vp", "inpaint", "ddnm", dict(steps=12)),
    "ddnm-sr-ddpm": ("ddpm", "sr", "ddnm", dict(steps=10, samples=3, std=True)),
    "ddnm-deblur-ve": ("ve", "deblur", "ddnm", dict(steps=10, eta=0.5)),
    "dps-inpaint-vp": ("vp", "inpaint", "dps", dict(steps=10, samples=2)),
    "dps-deblur-ddpm": ("ddpm", "deblur", "dps", dict(steps=10)),  # default zeta
    "repaint-inpaint-vp": ("vp", "inpaint", "repaint", dict(steps=12, jump_length=4, jump_n=3, samples=3, std=True)),
    "repaint-sr-ddpm": ("ddpm", "sr", "repaint", dict(steps=8, jump_length=2, jump_n=2)),
    "sdedit-denoise-vp": ("vp", "denoise", "sdedit", dict(steps=20, samples=2, std=True)),
    "sdedit-denoise-ddpm": ("ddpm", "denoise", "sdedit", dict(steps=30, eta=0.3)),
    "ddnm-denoise-vp": ("vp", "denoise", "ddnm", dict(steps=10, batch=4)),
}


def _digest(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a, dtype=np.float32)
    flat = a.reshape(-1)
    return {
        "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
        "shape": list(a.shape),
        "head": [float(v) for v in flat[:3]],
    }


def run_sample(name: str) -> dict:
    kind, sampler, kw = SAMPLE_CASES[name]
    kw = dict(kw)
    if kind == "images":
        model = GaussianImages(make_process(sde="vp"))
    else:
        model = ExactGMM(MIXTURE, make_process(**PROCESSES[kind]))
    process = model.process
    if kw.pop("guide", False):
        kw["guide"] = ExactGMM(GUIDE_MIXTURE, process)
    x, info = generate(model, sampler, n=7, seed=5, batch=3, **kw)
    out = {"x": _digest(x), "nfe": info["nfe"], "steps": info["steps"]}
    if "trajectory" in info:
        out["trajectory"] = _digest(info["trajectory"])
        out["trajectory_times"] = info["trajectory_times"]
    return out


def _observation(kind: str, task: str, n: int = 4):
    params, sigma = TASKS[task]
    # clean images drawn without linear algebra: multivariate_normal factors SIGMA by an SVD whose
    # signs differ between LAPACK builds and CPUs, and with them its draws (they did, 2026-12-07)
    clean = np.random.default_rng(3).uniform(0.1, 0.9, size=(n, *SHAPE)).astype(np.float32)
    op = make_operator(task, SHAPE, **params)
    y = degrade(clean, op, sigma, seed=4)
    return GaussianImages(make_process(**PROCESSES[kind])), op, y, sigma


def run_restore(name: str) -> dict:
    kind, task, method, kw = RESTORE_CASES[name]
    kw = dict(kw)
    model, op, y, sigma = _observation(kind, task)
    std = kw.pop("std", False)
    result = restore(model, y, op, sigma, method, seed=9, batch=kw.pop("batch", 5), return_std=std, **kw)
    out = {"x": _digest(result[0]), "nfe": result[-1]["nfe"], "steps": result[-1]["steps"]}
    if std:
        out["std"] = _digest(result[1])
    return out


def run_streamed(tmp: Path) -> dict:
    """generate_to_npy: batches appended to a .npy file (the CLI's path for .npy outputs)."""
    model = ExactGMM(MIXTURE, make_process(sde="vp"))
    path = tmp / "s.npy"
    head, info = generate_to_npy(model, "ddim", 9, 4, str(path), keep=None, steps=6, eta=0.3, seed=2)
    return {"x": _digest(np.load(path)), "head": _digest(head), "nfe": info["nfe"]}


def _reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("name", sorted(SAMPLE_CASES))
def test_sample_is_bit_identical(name):
    assert run_sample(name) == _reference()["sample"][name]


@pytest.mark.parametrize("name", sorted(RESTORE_CASES))
def test_restore_is_bit_identical(name):
    assert run_restore(name) == _reference()["restore"][name]


def test_streamed_sample_is_bit_identical(tmp_path):
    assert run_streamed(tmp_path) == _reference()["streamed"]


if __name__ == "__main__":
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        ref = {
            "torch": torch.__version__,
            "sample": {k: run_sample(k) for k in sorted(SAMPLE_CASES)},
            "restore": {k: run_restore(k) for k in sorted(RESTORE_CASES)},
            "streamed": run_streamed(Path(tmp)),
        }
    lines = [f'"torch": {json.dumps(ref["torch"])}', f'"streamed": {json.dumps(ref["streamed"], sort_keys=True)}']
    for part in ("sample", "restore"):
        cases = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in ref[part].items())
        lines.append(f'"{part}": {{\n{cases}\n}}')
    REFERENCE.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one case a line: diffs show which changed
    print(f"wrote {REFERENCE}", file=sys.stderr)
