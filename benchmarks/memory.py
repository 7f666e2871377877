"""Peak memory (RSS) of the commands that handle large sets: make-data, sample and fid.

    .venv/bin/python benchmarks/memory.py                     # the defaults below (~10 min on 1 CPU core)
    .venv/bin/python benchmarks/memory.py --make-data-n 1000000 --fid-raw-n 5000,50000 \
        --fid-inception-n 50000 --device cuda

Each command runs in a new process (``python -m ddpmctl ...``); its peak RSS is the ``ru_maxrss`` of
``os.wait4`` for that very child (Linux: VmHWM). The first row is the cost of starting Python
and importing torch + ddpmctl, which every command pays. Memory is bounded when the peak does not
grow with N: compare the rows of one command at N and 10 N.

* make-data triangles --n N: generated and written in chunks (NpyStreamWriter).
* sample -n N from a small untrained U-Net (3 x 32 x 32 images, 2 DDIM steps: the network's
  quality does not matter here): batches are streamed to the .npy output.
* fid --features raw on N random 3 x 32 x 32 images (3072-d features, A against itself): the
  .npy is read in sequential chunks and the mean and covariance are accumulated in float64.
* fid (Inception features) on N images (--save-stats of one set): a few hundred against twice
  as many on a CPU; give 50000 with --device cuda for the full-size run.

Everything is written to a temporary folder that is removed at the end (make-data at 10^6 writes
4 GB there).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run(args: list[str], python: list[str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS in MB (os.wait4 of this very child) of ``python -m ddpmctl ARGS``."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = [sys.executable, *(["-m", "ddpmctl"] if python is None else python), *args]
    with tempfile.TemporaryFile() as errf:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errf.seek(0)
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{errf.read().decode()}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KB


def random_images(path: Path, n: int, seed: int = 0) -> None:
    """n random float32 3 x 32 x 32 images in [0, 1], written in chunks."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, 3, 32, 32))
    rng = np.random.default_rng(seed)
    for i in range(0, n, 5000):
        out[i : i + 5000] = rng.random((min(5000, n - i), 3, 32, 32), dtype=np.float32)
    out.flush()
    del out


def small_checkpoint(folder: Path) -> None:
    import torch

    from ddpmctl.checkpoint import make_meta, save_model
    from ddpmctl.diffusion import IMAGE_NORMALIZATION
    from ddpmctl.nets import build_net, default_net_config, validate_net_config
    from ddpmctl.schedules import make_process

    torch.manual_seed(0)
    shape = (3, 32, 32)
    cfg = validate_net_config({**default_net_config("images", shape), "base": 16, "mults": [1, 2], "attn": []}, shape)
    folder.mkdir()
    save_model(
        folder / "model.safetensors",
        build_net(cfg),
        make_meta(cfg, make_process("ddpm", "linear", 1000), "eps", "images", shape, IMAGE_NORMALIZATION),
    )


def ints(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--make-data-n", default="100000,1000000", help="comma-separated N for make-data triangles (empty: skip)"
    )
    ap.add_argument("--sample-n", default="1000,10000", help="comma-separated N for sample (empty: skip)")
    ap.add_argument("--fid-raw-n", default="5000,50000", help="comma-separated N for fid --features raw (empty: skip)")
    ap.add_argument(
        "--fid-inception-n", default="200,400", help="comma-separated N for fid with Inception features (empty: skip)"
    )
    ap.add_argument("--device", default="cpu", help="device for sample and fid (cpu, cuda, ...)")
    ap.add_argument("--tmp", default=None, help="folder for the temporary files (default: the system's)")
    a = ap.parse_args()

    rows: list[tuple[str, float, float, str]] = []

    def report(what: str, seconds: float, rss: float, note: str = "") -> None:
        rows.append((what, seconds, rss, note))
        print(f"{what:<58} {rss:>9.0f} MB {seconds:>9.1f} s  {note}", flush=True)

    print(f"{'command':<58} {'peak RSS':>12} {'wall':>11}")
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        d = Path(tmp)
        s, rss = run(["-c", "import torch, numpy, ddpmctl.cli, ddpmctl.fid, ddpmctl.sampling"], python=[])
        report("python + import torch, ddpmctl (baseline)", s, rss)

        for n in ints(a.make_data_n):
            out = d / "tri.npy"
            s, rss = run(["make-data", "triangles", "--n", str(n), "-o", str(out), "--quiet"])
            report(f"make-data triangles --n {n}", s, rss, f"output {out.stat().st_size / 1e6:,.0f} MB")
            out.unlink()

        if ints(a.sample_n):
            small_checkpoint(d / "ck")
            for n in ints(a.sample_n):
                out = d / "samples.npy"
                args = ["sample", str(d / "ck"), "-n", str(n), "--batch", "256", "--sampler", "ddim", "--steps", "2"]
                s, rss = run([*args, "--device", a.device, "-o", str(out), "--quiet"])
                report(f"sample -n {n} (3x32x32, ddim 2 steps)", s, rss, f"output {out.stat().st_size / 1e6:,.0f} MB")
                out.unlink()

        for n in ints(a.fid_raw_n):
            x = d / f"x{n}.npy"
            random_images(x, n)
            s, rss = run(["fid", str(x), str(x), "--features", "raw", "--device", a.device, "--quiet"])
            report(f"fid --features raw, {n} x 3x32x32 (A vs A)", s, rss, f"input {x.stat().st_size / 1e6:,.0f} MB")
            x.unlink()

        for n in ints(a.fid_inception_n):
            x = d / f"x{n}.npy"
            random_images(x, n, seed=1)
            s, rss = run(["fid", str(x), "--save-stats", str(d / "s.npz"), "--device", a.device, "--quiet"])
            report(f"fid --save-stats (Inception), {n} x 3x32x32", s, rss, f"{n / s:.1f} images/s incl. start")
            x.unlink()


if __name__ == "__main__":
    main()
