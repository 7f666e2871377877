"""Speed, quality and memory of `ddpmctl make-data triangles` against a naive PIL renderer.

    .venv/bin/python benchmarks/make_data_speed.py            # everything (writes ~4 GB to a temp dir)
    .venv/bin/python benchmarks/make_data_speed.py --big 0    # skip the 1,000,000-image run

Prints, for 10,000 triangles at 32 x 32:
  * ddpmctl.datasets (in process, best of --repeat) and the CLI end to end (a new process: includes
    Python + import time and writing the .npy), images/s and wall time;
  * the peer baseline: PIL ImageDraw.polygon per image, rendered at 1x (the thesis' jagged
    images) or at 8x and downsized with LANCZOS (the thesis' fix), images/s;
  * mean / max absolute pixel error of each against a reference (exact in x, 256 scan lines per
    pixel in y);
  * peak RSS (getrusage of the child process) and wall time of `make-data triangles --n 1000000`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from ddpmctl import datasets


def pil_triangles(vertices: np.ndarray, size: int, factor: int) -> np.ndarray:
    """The naive way: draw each triangle with ImageDraw at factor x size, then downsize (LANCZOS)."""
    from PIL import Image, ImageDraw

    out = np.empty((len(vertices), size, size), np.float32)
    big = size * factor
    for i, v in enumerate(vertices):
        im = Image.new("L", (big, big), 0)
        ImageDraw.Draw(im).polygon([(float(x) * factor, float(y) * factor) for x, y in v], fill=255)
        if factor > 1:
            im = im.resize((size, size), Image.LANCZOS)
        out[i] = np.asarray(im, np.float32) / 255.0
    return out


def best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run_cli(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB, from os.wait4 of this very child) of one `ddpmctl` run."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    with tempfile.TemporaryFile() as errf:
        t = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ddpmctl", *args], stdout=subprocess.DEVNULL, stderr=errf, env=env
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errf.seek(0)
            sys.exit(f"ddpmctl {' '.join(args)} failed: {errf.read().decode().strip()}")
    return wall, usage.ru_maxrss / 1024.0  # Linux: KB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline-n", type=int, default=2_000, help="images drawn by the (slow) PIL baseline")
    ap.add_argument("--big", type=int, default=1_000_000, help="N of the memory run (0: skip)")
    args = ap.parse_args()
    n, size = args.n, args.size
    print(
        f"machine: {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"load {os.getloadavg()[0]:.1f}"
    )

    # --- speed: ours in process
    seconds = best_time(lambda: datasets.make("triangles", n, 0, size=size), args.repeat)
    print(
        f"ddpmctl.datasets.make triangles   n={n} {size}x{size}: {seconds:7.3f} s  "
        f"{n / seconds:10,.0f} images/s  (best of {args.repeat})"
    )
    rng = np.random.default_rng(0)
    v = datasets.random_triangles(n, size, rng)
    render = best_time(lambda: datasets.render_polygons(v, size), args.repeat)
    print(f"  of which rendering only                : {render:7.3f} s  {n / render:10,.0f} images/s")

    # --- speed: the CLI end to end
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "tri.npy")
        wall, rss = run_cli(["make-data", "triangles", "--n", str(n), "--size", str(size), "-o", out, "--quiet"])
        print(
            f"ddpmctl make-data (new process, incl. start-up and write): {wall:7.3f} s  "
            f"{n / wall:10,.0f} images/s  peak RSS {rss:.0f} MB"
        )

    # --- the peer baseline
    m = min(args.baseline_n, n)
    for factor in (1, 8):
        pil_triangles(v[:m], size, factor)  # warm-up
        s = best_time(lambda factor=factor: pil_triangles(v[:m], size, factor), 1)
        label = "PIL ImageDraw 1x (jagged)" if factor == 1 else f"PIL ImageDraw {factor}x + LANCZOS"
        print(f"{label:<38}: {s * n / m:7.3f} s  {m / s:10,.0f} images/s  (timed on {m}, scaled to n={n})")

    # --- quality against a reference
    k = 500
    ref = datasets.render_polygons(v[:k], size, supersample=256)
    rows = [("ddpmctl (16 scan lines, exact x)", datasets.render_polygons(v[:k], size))]
    rows += [("ddpmctl --supersample 4", datasets.render_polygons(v[:k], size, supersample=4))]
    rows += [(f"PIL {f}x" + (" + LANCZOS" if f > 1 else ""), pil_triangles(v[:k], size, f)) for f in (1, 4, 8)]
    print(f"pixel error against the reference (exact x, 256 lines per pixel), {k} triangles:")
    for name, img in rows:
        e = np.abs(img - ref)
        area = np.abs(img.sum((1, 2)) - datasets.triangle_area(v[:k]))
        print(f"  {name:<34} mean {e.mean():.5f}  max {e.max():.4f}  |area error| mean {area.mean():.3f} px")

    # --- memory: a million triangles, chunked
    if args.big:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "big.npy")
            wall, rss = run_cli(
                ["make-data", "triangles", "--n", str(args.big), "--size", str(size), "-o", out, "--quiet"]
            )
            gb = os.path.getsize(out) / 1e9
            print(
                f"make-data triangles --n {args.big:,}: {wall:7.1f} s  {args.big / wall:10,.0f} images/s  "
                f"file {gb:.2f} GB  peak RSS {rss:.0f} MB"
            )


if __name__ == "__main__":
    main()
