"""The demo's quality figure: the fraction of clean filled triangles among samples, and among the data.

    python benchmarks/demo_quality.py SAMPLES.npy [--data triangles.npy] [--n-data 500] [--json]

Runs ``triangle_check.check_triangle`` (see its docstring for the criteria) on every sample and on
the first ``--n-data`` training images (the check's own pass rate on real data, for reference), and
prints both fractions with the reasons for failing. With --min FRACTION it exits 1 when the samples'
clean fraction is below it.

With --data it also compares how the clean samples spread over sizes, orientations, shapes and
positions with the clean data (``triangle_check.triangle_features``: area, direction of the longest
side, smallest angle, centroid): the 10th / 50th / 90th percentiles of each, and the two-sample
Kolmogorov-Smirnov p-value (small p: the samples' distribution differs from the data's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stats import ks_pvalues  # noqa: E402
from triangle_check import FEATURES, clean_features  # noqa: E402


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
    out["samples"]["clean_fraction"], out["samples"]["reasons"], fs = clean_features(x)
    out["samples"]["seconds"] = round(time.perf_counter() - t0, 2)
    spread = None
    if args.data:
        t0 = time.perf_counter()
        d = np.asarray(np.load(args.data, allow_pickle=False, mmap_mode="r")[: args.n_data])
        out["data"] = {"n": len(d)}
        out["data"]["clean_fraction"], out["data"]["reasons"], fd = clean_features(d)
        out["data"]["seconds"] = round(time.perf_counter() - t0, 2)
        if len(fs) >= 2 and len(fd) >= 2:
            ks = ks_pvalues(fs, fd, range(len(FEATURES)))
            spread = {
                name: {
                    "data": np.percentile(fd[:, i], [10, 50, 90]).round(1).tolist(),
                    "samples": np.percentile(fs[:, i], [10, 50, 90]).round(1).tolist(),
                    "ks_p": round(ks[i], 3),
                }
                for i, name in enumerate(FEATURES)
            }
    if args.json:
        print(json.dumps(dict(out, spread=spread) if spread else out))
    else:
        for k, v in out.items():
            print(
                f"{k}: {v['clean_fraction'] * 100:.1f}% of {v['n']} are clean filled triangles "
                f"({v['seconds']} s)  {v['reasons']}"
            )
        if spread:
            print("spread of the clean ones, 10/50/90th percentiles, data vs samples (KS p-value):")
            print(
                "  "
                + "; ".join(
                    f"{k} {'/'.join(f'{q:g}' for q in v['data'])} vs "
                    f"{'/'.join(f'{q:g}' for q in v['samples'])} (p {v['ks_p']:.2f})"
                    for k, v in spread.items()
                )
            )
    if args.min is not None and out["samples"]["clean_fraction"] < args.min:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
