"""The demo's quality figure: the fraction of clean filled triangles among samples, and among the data.

    python benchmarks/demo_quality.py SAMPLES.npy [--data triangles.npy] [--n-data 500] [--json]

Runs ``triangle_check.check_triangle`` (see its docstring for the criteria) on every sample and on
the first ``--n-data`` training images (the check's own pass rate on real data, for reference), and
prints both fractions with the reasons for failing. With --min FRACTION it exits 1 when the samples'
clean fraction is below it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from triangle_check import fraction_clean  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("samples", help=".npy of generated images (N, 1, H, W) in [0, 1]")
    ap.add_argument("--data", help=".npy of training images, for the check's pass rate on real data")
    ap.add_argument("--n-data", type=int, default=500)
    ap.add_argument("--min", type=float, default=None, help="exit 1 when the samples' fraction is below this")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict = {}
    t0 = time.perf_counter()
    x = np.asarray(np.load(args.samples, allow_pickle=False, mmap_mode="r"))
    out["samples"] = {"n": len(x)}
    out["samples"]["clean_fraction"], out["samples"]["reasons"] = fraction_clean(x)
    out["samples"]["seconds"] = round(time.perf_counter() - t0, 2)
    if args.data:
        t0 = time.perf_counter()
        d = np.asarray(np.load(args.data, allow_pickle=False, mmap_mode="r")[: args.n_data])
        out["data"] = {"n": len(d)}
        out["data"]["clean_fraction"], out["data"]["reasons"] = fraction_clean(d)
        out["data"]["seconds"] = round(time.perf_counter() - t0, 2)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v['clean_fraction'] * 100:.1f}% of {v['n']} are clean filled triangles "
                  f"({v['seconds']} s)  {v['reasons']}")
    if args.min is not None and out["samples"]["clean_fraction"] < args.min:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
