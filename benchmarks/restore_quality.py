"""Restoration quality: diffusion methods (ddpmctl restore) against classical baselines, side by side.

On held-out triangles (``ddpmctl.datasets.make("triangles", seed=--data-seed)``, a seed the training set
did not use), for each task the same observations y = A x + n go to every method:

  task     observation                        diffusion methods        classical baselines
  inpaint  centre box of half the size hidden ddnm, repaint, dps       biharmonic (scikit-image)
  denoise  sigma 0.2                          ddnm, dps, sdedit        BM3D (bm3d), total variation (scikit-image)
  sr       x4 average pooling                 ddnm, repaint, dps       bicubic (PIL), nearest (= A^+ y)
  deblur   Gaussian blur sigma 2, noise 0.01  ddnm, dps                Wiener, Richardson-Lucy (circular, numpy)

It prints mean PSNR / SSIM per method and the wall time per image (diffusion: batch time / n).
Tunable baselines (TV weight, Wiener balance, Richardson-Lucy iterations) get their best value
on a separate validation set of 10 images (oracle-tuned, so they are not handicapped).
scikit-image and bm3d are optional: a missing one prints 'not installed'. Run them from a separate
environment, e.g.

    python -m venv /work/restbench && /work/restbench/bin/pip install torch==2.13.0 scikit-image bm3d \
        numpy scipy safetensors pyyaml pillow typer rich matplotlib
    PYTHONPATH=. /work/restbench/bin/python benchmarks/restore_quality.py CKPT --n 100

On a CPU, shorten the runs with e.g. ``--n 20 --steps 50``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddpmctl import datasets  # noqa: E402
from ddpmctl.checkpoint import load_model  # noqa: E402
from ddpmctl.device import resolve_device  # noqa: E402
from ddpmctl.metrics import psnr, ssim  # noqa: E402
from ddpmctl.operators import centre_box, degrade, make_operator  # noqa: E402
from ddpmctl.restore import restore  # noqa: E402

TASKS = {
    "inpaint": ({"box": None}, 0.0, ["ddnm", "repaint", "dps"]),
    "denoise": ({}, 0.2, ["ddnm", "dps", "sdedit"]),
    "sr": ({"scale": 4}, 0.0, ["ddnm", "repaint", "dps"]),
    "deblur": ({"kernel_sigma": 2.0}, 0.01, ["ddnm", "dps"]),
}


def optional(name):
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        return None


# ------------------------------------------------------------------------------------------
# classical baselines: f(y_file, op, sigma, **param) -> x (N, C, H, W)


def per_image(fn, images):
    return np.stack([np.stack([fn(im[c]) for c in range(im.shape[0])]) for im in images]).astype(np.float32)


def biharmonic(y, op, sigma):
    restoration = optional("skimage.restoration")
    missing = op.mask.expand(y.shape).numpy() < 0.5
    return np.stack(
        [
            np.stack([restoration.inpaint_biharmonic(y[i, c], missing[i, c]) for c in range(y.shape[1])])
            for i in range(len(y))
        ]
    ).astype(np.float32)


def bm3d_denoise(y, op, sigma):
    bm3d = optional("bm3d")
    return per_image(lambda im: bm3d.bm3d(im, sigma_psd=sigma), y)


def tv(y, op, sigma, weight):
    restoration = optional("skimage.restoration")
    return per_image(lambda im: restoration.denoise_tv_chambolle(im, weight=weight), y)


def bicubic(y, op, sigma):
    from PIL import Image

    h, w = op.x_shape[1:]
    return per_image(
        lambda im: np.asarray(Image.fromarray(im.astype(np.float32), mode="F").resize((w, h), Image.BICUBIC)), y
    )


def nearest(y, op, sigma):
    return op.pinv(torch.from_numpy(y).double()).numpy().astype(np.float32)


def wiener(y, op, sigma, balance):
    """X = conj(K) Y / (|K|^2 + balance), with the operator's own circular kernel (K unthresholded)."""
    from ddpmctl.operators import gaussian_kernel

    h, w = op.x_shape[1:]
    full = np.zeros((h, w))
    full[: op.kernel_size, : op.kernel_size] = gaussian_kernel(op.kernel_size, op.kernel_sigma)
    k = np.fft.rfft2(np.roll(full, (-(op.kernel_size // 2),) * 2, axis=(0, 1)))
    return np.fft.irfft2(np.conj(k) * np.fft.rfft2(y) / (np.abs(k) ** 2 + balance), s=(h, w)).astype(np.float32)


def richardson_lucy(y, op, sigma, iterations):
    """x <- x * A^T(y / A x) (A 1 = 1 for a normalised kernel), from a flat start, circular blur."""
    yt = torch.from_numpy(np.clip(y, 1e-6, None)).double()
    x = torch.full_like(yt, 0.5)
    for _ in range(iterations):
        x = x * op.At(yt / op.A(x).clamp(min=1e-6))
    return x.numpy().astype(np.float32)


BASELINES = {
    "inpaint": [("biharmonic", biharmonic, "skimage", None)],
    "denoise": [
        ("bm3d", bm3d_denoise, "bm3d", None),
        ("tv", tv, "skimage", ("weight", [0.02, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3])),
    ],
    "sr": [("bicubic", bicubic, None, None), ("nearest", nearest, None, None)],
    "deblur": [
        ("wiener", wiener, None, ("balance", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2])),
        ("richardson-lucy", richardson_lucy, None, ("iterations", [10, 30, 100, 300, 1000])),
    ],
}


def score(x, truth):
    x = np.clip(x, 0, 1)
    return float(np.mean(psnr(x, truth))), float(np.mean(ssim(x, truth)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument(
        "--data-seed", type=int, default=12345, help="seed of the held-out triangles (not the training seed)"
    )
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--methods", default="ddnm,dps,repaint,sdedit")
    ap.add_argument(
        "--steps", type=int, default=None, help="steps for every diffusion method (default: each method's own)"
    )
    ap.add_argument("--dps-steps", type=int, default=None)
    ap.add_argument("--zeta", type=float, default=None, help="DPS step size (default: restore's per task)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--samples",
        type=int,
        default=1,
        help="also run each diffusion method as the mean of this many restorations (restore --samples)",
    )
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    dev = resolve_device(args.device)
    model = load_model(args.checkpoint, device=dev)
    c, h, w = model.data_shape
    truth, _ = datasets.make("triangles", args.n + 10, seed=args.data_seed, size=h)
    truth, valid = truth[: args.n], truth[args.n :]
    print(
        f"checkpoint {args.checkpoint} ({model.process.describe()}), {args.n} held-out triangles {h}x{w}, device {dev}"
    )
    rows = []
    methods = args.methods.split(",")
    for task in args.tasks.split(","):
        kw, sigma, task_methods = TASKS[task]
        if "box" in kw:
            kw = {"box": centre_box(model.data_shape)}
        op = make_operator(task, model.data_shape, args.n, **kw)
        y = degrade(truth, op, sigma, seed=1)
        vop = make_operator(task, model.data_shape, len(valid), **kw)
        vy = degrade(valid, vop, sigma, seed=2)
        shown = op.display(op.decode(torch.from_numpy(y))).numpy()
        p, s = score(shown, truth)
        rows.append({"task": task, "method": "observation", "psnr": p, "ssim": s, "seconds_per_image": 0.0})
        print(f"\n{task} (noise {sigma:g}): observation PSNR {p:.2f} dB SSIM {s:.3f}")
        for name, fn, needs, tune in BASELINES[task]:
            if needs and optional(needs) is None:
                print(f"  {name:18s} not installed ({needs})")
                rows.append({"task": task, "method": name, "psnr": None, "note": "not installed"})
                continue
            extra = {}
            if tune is not None:  # oracle-tuned on the validation images
                key, grid = tune
                best = max(grid, key=lambda v: score(fn(vy, vop, sigma, **{key: v}), valid)[0])
                extra = {key: best}
            t0 = time.perf_counter()
            x = fn(y, op, sigma, **extra)
            sec = (time.perf_counter() - t0) / args.n
            p, s = score(x, truth)
            rows.append({"task": task, "method": name, "psnr": p, "ssim": s, "seconds_per_image": sec, **extra})
            print(f"  {name:18s} PSNR {p:6.2f} dB  SSIM {s:.3f}  {sec * 1e3:9.2f} ms/image  {extra or ''}")
        for method in task_methods:
            if method not in methods:
                continue
            steps = args.dps_steps if (method == "dps" and args.dps_steps) else args.steps
            for k in sorted({1, args.samples}):
                x, info = restore(
                    model,
                    y,
                    op,
                    sigma,
                    method,
                    steps,
                    zeta=args.zeta,
                    seed=args.seed,
                    batch=args.batch,
                    device=dev,
                    samples=k,
                )
                p, s = score(x, truth)
                label = method if k == 1 else f"{method} mean of {k}"
                rows.append(
                    {
                        "task": task,
                        "method": label,
                        "psnr": p,
                        "ssim": s,
                        "samples": k,
                        "seconds_per_image": info["seconds_per_image"],
                        "steps": info["steps"],
                        "nfe": info["nfe"],
                    }
                )
                print(
                    f"  {label:18s} PSNR {p:6.2f} dB  SSIM {s:.3f}  {info['seconds_per_image'] * 1e3:9.2f} ms/image  "
                    f"({info['nfe']} NFE{' x ' + str(k) if k > 1 else ''}"
                    f"{', zeta ' + str(info['zeta']) if 'zeta' in info else ''})"
                )
    print("\nbest diffusion method vs best classical baseline (PSNR, dB):")
    for task in args.tasks.split(","):
        diff = [r for r in rows if r["task"] == task and "samples" in r and r.get("psnr") is not None]
        base = [
            r
            for r in rows
            if r["task"] == task and "samples" not in r and r["method"] != "observation" and r.get("psnr") is not None
        ]
        if diff and base:
            bd, bb = max(diff, key=lambda r: r["psnr"]), max(base, key=lambda r: r["psnr"])
            print(
                f"  {task:8s} {bd['method']} {bd['psnr']:.2f} vs {bb['method']} {bb['psnr']:.2f}: "
                f"{bd['psnr'] - bb['psnr']:+.2f}"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"checkpoint": args.checkpoint, "n": args.n, "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
