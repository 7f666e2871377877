"""Encode-decode reconstruction error against steps on a trained checkpoint (issue #19, DDIM Table 2).

For each solver and step count: latents z = encode(x) (the probability-flow ODE from the data up),
x' = decode(z) on the same grid reversed (`sample --from`), and the per-dimension mean squared
error |x - x'|^2 / D with images in [0, 1] (DDIM's measure, Song et al. 2021a, Table 2: CIFAR-10
test MSE 0.014 / 0.0065 / 0.0023 / 0.0009 / 0.0001 at 10 / 20 / 50 / 100 / 1000 steps).
Printed: mean over the images, its standard error, the median, NFE of encode + decode, seconds.

Usage:
    python benchmarks/encode_quality.py CKPT HELDOUT.npy [--steps 10,20,50,100,1000]
        [--solvers euler,dpm++2m] [--n 128] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ddpmctl.checkpoint import load_model  # noqa: E402
from ddpmctl.encode import decode, encode  # noqa: E402


def reconstruction(model, x: np.ndarray, solver: str, steps: int) -> dict:
    t0 = time.perf_counter()
    z, info_e = encode(model, x, steps=steps, solver=solver)
    back, info_d = decode(model, z, steps=steps, solver=solver)
    mse = ((back.astype(np.float64) - x) ** 2).reshape(len(x), -1).mean(1)
    return {
        "solver": solver,
        "steps": steps,
        "nfe": info_e["nfe"] + info_d["nfe"],
        "mse": float(mse.mean()),
        "se": float(mse.std(ddof=1) / np.sqrt(len(mse))) if len(mse) > 1 else float("nan"),
        "median": float(np.median(mse)),
        "latent_std": float(z.std()),
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("data", help="held-out images (N, C, H, W) in [0, 1]")
    ap.add_argument("--steps", default="10,20,50,100,1000")
    ap.add_argument("--solvers", default="euler,dpm++2m")
    ap.add_argument("--n", type=int, default=128, help="the first N images of DATA")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model = load_model(args.ckpt)
    x = np.load(args.data, allow_pickle=False)[: args.n].astype(np.float32)
    if not args.json:
        print(f"{len(x)} images of {args.data}; {args.ckpt}")
        print("| solver | steps | NFE (enc+dec) | MSE mean ± se | median | latent std | s |")
        print("|---|---|---|---|---|---|---|")
    for solver in args.solvers.split(","):
        for steps in (int(s) for s in args.steps.split(",")):
            r = reconstruction(model, x, solver, steps)
            if args.json:
                print(json.dumps(r), flush=True)
            else:
                print(f"| {solver} | {steps} | {r['nfe']} | {r['mse']:.2e} ± {r['se']:.1e} | {r['median']:.2e} "
                      f"| {r['latent_std']:.3f} | {r['seconds']:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
