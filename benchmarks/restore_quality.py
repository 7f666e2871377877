"""Restoration quality: every diffusion method of ``ddpmctl restore`` against classical baselines
that use the known operator A, with hyperparameters chosen on a validation split and the figures
measured on a held-out test split.

Splits (``make-data triangles`` at the checkpoint's size, seeds the training set did not use):
validation ``--val-seed 98`` (``--val-n``, default 32 images), test ``--test-seed 99``
(``--test-n``, default 100). Tasks, as ``ddpmctl degrade`` makes them (noise seed 0):

  task     observation                      classical baselines (all see the same y)
  inpaint  --box 10,10,12,12, noise-free    TV least squares, biharmonic (scikit-image)
  denoise  --noise 0.2                      BM3D (bm3d), TV least squares
  sr       --scale 4, noise-free            TV least squares, bicubic (PIL), nearest (= A^+ y)
  deblur   --kernel-sigma 2 --noise 0.01    TV least squares, Wiener, Richardson-Lucy (circular)

1. Validation: every candidate configuration of every diffusion method (``candidates``: steps and
   options, each at most ``--max-nfe`` network evaluations) and every baseline's parameter grid
   (TV weight lam, Wiener balance, Richardson-Lucy iterations). The best configuration of each
   method by mean PSNR; the task's best diffusion method is the one ``restore`` should default to.
2. Test: each method's best configuration, DPS with 1000 steps (the reference, above the NFE
   limit) and the tuned baselines. Per task: PSNR and SSIM (mean and 95% CI = 1.96 standard
   errors over images), the PSNR of the pooled MSE (10 log10(1 / mean MSE)), consistency
   RMS(A x - y) over the observed entries (data units; about sigma_y for a noisy y), NFE and
   seconds per image; then the validation-chosen best diffusion method minus the
   validation-chosen best baseline, per image (paired), with its 95% CI.

scikit-image and bm3d are benchmark-only dependencies: a missing one prints "not installed".
Give them a separate environment that reuses the project's (torch included) through a .pth file:

    python3 -m venv /work/restbench
    echo $PWD/.venv/lib/python3.11/site-packages > /work/restbench/lib/python3.11/site-packages/main.pth
    /work/restbench/bin/pip install scikit-image bm3d
    PYTHONPATH=. /work/restbench/bin/python benchmarks/restore_quality.py CKPT --json out.json

``--quick`` runs one configuration per method on 4 + 4 images (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

# OpenMP threads spin-wait for each other by default; on a shared CPU that made every network call
# ~60x slower here (2 threads, other jobs running). ddpmctl's CLI sets the same (docs/architecture.md).
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tv import tv_restore  # noqa: E402

from ddpmctl import datasets  # noqa: E402
from ddpmctl.checkpoint import load_model  # noqa: E402
from ddpmctl.device import resolve_device  # noqa: E402
from ddpmctl.metrics import psnr, ssim  # noqa: E402
from ddpmctl.operators import degrade, make_operator  # noqa: E402
from ddpmctl.restore import RestoreOptions, plan_restore, restore  # noqa: E402

TASKS = {  # operator keywords, noise sigma (image units)
    "inpaint": ({"box": (10, 10, 12, 12)}, 0.0),
    "denoise": ({}, 0.2),
    "sr": ({"scale": 4}, 0.0),
    "deblur": ({"kernel_sigma": 2.0}, 0.01),
}
REFERENCE = ("dps", 1000, {})  # DPS as its paper runs it: over the NFE limit, measured on the test split


def candidates(task: str) -> list[tuple[str, int, dict]]:
    """(method, steps, options) to try on the validation split; every one at most 200 NFE."""
    out = [("ddnm", 100, {"eta": 0.85})]
    for steps, length, interval, repeat in ((50, 5, 5, 2), (100, 5, 10, 1)):  # 140 and 145 NFE
        out.append(("ddnm", steps, {"travel_length": length, "travel_interval": interval, "travel_repeat": repeat}))
    if task != "denoise":
        out.append(("repaint", 50, {"jump_length": 5, "jump_n": 3}))  # 140 NFE
    out.append(("dps", 200, {}))  # restore's zeta for 200 steps
    out += [("pigdm", 100, {"eta": eta}) for eta in (1.0, 0.5)]
    out += [("diffpir", 100, {"lam": lam, "zeta": z}) for lam, z in ((7.0, 0.3), (50.0, 0.3), (50.0, 0.9))]
    if task == "denoise":
        out.append(("sdedit", 100, {}))
    return out


def optional(name):
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        return None


# ------------------------------------------------------------------------------------------
# classical baselines: f(y, op, sigma, **param) -> x (N, C, H, W); y is the observation file's array


def per_image(fn, images):
    return np.stack([np.stack([fn(im[c]) for c in range(im.shape[0])]) for im in images]).astype(np.float32)


def decoded(y, op):
    return op.decode(torch.from_numpy(np.asarray(y, np.float64)))


def tv(y, op, sigma, lam):
    return tv_restore(op, decoded(y, op), lam).numpy().astype(np.float32)


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


def bicubic(y, op, sigma):
    from PIL import Image

    h, w = op.x_shape[1:]
    return per_image(
        lambda im: np.asarray(Image.fromarray(im.astype(np.float32), mode="F").resize((w, h), Image.BICUBIC)), y
    )


def nearest(y, op, sigma):
    return op.pinv(decoded(y, op)).numpy().astype(np.float32)


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


TV_NOISE_FREE = ("lam", [1e-4, 3e-4, 1e-3, 3e-3])  # lam grids: a smoke run put the best inside each
BASELINES = {  # name, function, the module it needs, (parameter, grid) tuned on the validation split
    "inpaint": [("tv", tv, None, TV_NOISE_FREE), ("biharmonic", biharmonic, "skimage", None)],
    "denoise": [("bm3d", bm3d_denoise, "bm3d", None), ("tv", tv, None, ("lam", [0.03, 0.1, 0.2, 0.3, 0.5]))],
    "sr": [("tv", tv, None, TV_NOISE_FREE), ("bicubic", bicubic, None, None), ("nearest", nearest, None, None)],
    "deblur": [
        ("tv", tv, None, ("lam", [1e-4, 3e-4, 1e-3, 3e-3, 0.01])),
        ("wiener", wiener, None, ("balance", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2])),
        ("richardson-lucy", richardson_lucy, None, ("iterations", [10, 30, 100, 300, 1000])),
    ],
}


# ------------------------------------------------------------------------------------------
# measuring


class Split:
    """One split of one task: the clean images, the operator and the observation file's array."""

    def __init__(self, model, task: str, n: int, seed: int):
        kw, self.sigma = TASKS[task]
        c, h, w = model.data_shape
        self.truth, _ = datasets.make("triangles", n, seed=seed, size=h)
        self.op = make_operator(task, model.data_shape, n, **kw)
        self.y = degrade(self.truth, self.op, self.sigma, seed=0)
        self.y_obs = decoded(self.y, self.op)

    def score(self, x: np.ndarray, seconds_per_image: float, nfe: int | None = None) -> dict:
        """Per-image PSNR and SSIM (clipped to [0, 1]) and their summaries, pooled PSNR, consistency."""
        x = np.clip(x, 0.0, 1.0)
        p, s = psnr(x, self.truth), ssim(x, self.truth)
        mse = np.mean((x.astype(np.float64) - self.truth) ** 2, axis=tuple(range(1, x.ndim)))
        residual = self.op.A(torch.from_numpy(x).double()) - self.y_obs
        support = self.op.noise_support(torch.ones_like(residual)) * torch.ones_like(residual)
        rms = torch.sqrt((residual**2).flatten(1).sum(1) / support.flatten(1).sum(1)).numpy()
        ci = 1.96 / math.sqrt(len(p))
        return {
            "psnr": float(np.mean(p)), "psnr_ci": float(ci * np.std(p, ddof=1)) if len(p) > 1 else 0.0,
            "ssim": float(np.mean(s)), "ssim_ci": float(ci * np.std(s, ddof=1)) if len(s) > 1 else 0.0,
            "psnr_pooled": float(10 * np.log10(1 / np.mean(mse))), "consistency": float(np.mean(rms)),
            "nfe": nfe, "seconds_per_image": float(seconds_per_image), "per_image_psnr": [float(v) for v in p],
        }  # fmt: skip


def run_diffusion(model, split: Split, config, args) -> dict:
    method, steps, options = config
    x, info = restore(
        model, split.y, split.op, split.sigma, method, steps, seed=args.seed, batch=args.batch, device=args.dev,
        **options,
    )  # fmt: skip
    return split.score(x, info["seconds_per_image"], info["nfe"])


def run_baseline(split: Split, fn, param: dict) -> dict:
    t0 = time.perf_counter()
    x = fn(split.y, split.op, split.sigma, **param)
    return split.score(x, (time.perf_counter() - t0) / len(split.y))


def label(config) -> str:
    method, steps, options = config
    opts = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in options.items())
    return f"{method} {steps} steps" + (f" ({opts})" if opts else "")


def validate(model, task: str, split: Split, args) -> tuple[dict, dict, list]:
    """The best configuration of each diffusion method (<= max NFE) and each baseline's parameter."""
    best_method, best_base, rows = {}, {}, []
    for config in candidates(task) if not args.quick else _quick(task):
        nfe = plan_restore(model, split.op, split.sigma, config[0], config[1], options=RestoreOptions(**config[2])).nfe
        if nfe > args.max_nfe:
            continue
        r = run_diffusion(model, split, config, args)
        rows.append({"task": task, "split": "validation", "config": label(config), **r})
        print(f"  val {label(config):62s} PSNR {r['psnr']:6.2f}  SSIM {r['ssim']:.3f}  {r['nfe']:4d} NFE", flush=True)
        if config[0] not in best_method or r["psnr"] > best_method[config[0]][1]["psnr"]:
            best_method[config[0]] = (config, r)
    for name, fn, needs, grid in BASELINES[task]:
        if needs and optional(needs) is None:
            continue
        for value in [None] if grid is None else grid[1]:
            param = {} if grid is None else {grid[0]: value}
            r = run_baseline(split, fn, param)
            print(f"  val {name} {param or ''}: PSNR {r['psnr']:6.2f}", flush=True)
            if name not in best_base or r["psnr"] > best_base[name][1]["psnr"]:
                best_base[name] = (param, r)
    return best_method, best_base, rows


def _quick(task: str) -> list:
    seen, out = set(), []
    for config in candidates(task):
        if config[0] not in seen:
            seen.add(config[0])
            out.append((config[0], min(config[1], 10), config[2]))
    return out


def test_phase(model, task: str, split: Split, best_method: dict, best_base: dict, args) -> list:
    """Each method's validation-best configuration, the DPS reference and the tuned baselines."""
    rows = []
    observation = split.score(split.op.display(split.y_obs).numpy(), 0.0)
    rows.append(
        {"task": task, "split": "test", "kind": "observation", "name": "observation", "config": "", **observation}
    )
    for name, (param, _) in best_base.items():
        fn = next(f for n, f, _, _ in BASELINES[task] if n == name)
        r = run_baseline(split, fn, param)
        rows.append({"task": task, "split": "test", "kind": "classical", "name": name, "config": str(param), **r})
    configs = [(m, c) for m, (c, _) in best_method.items()]
    if not args.quick and args.dps_steps:
        configs.append(("dps (reference)", (REFERENCE[0], args.dps_steps, REFERENCE[2])))
    for name, config in configs:
        r = run_diffusion(model, split, config, args)
        rows.append({"task": task, "split": "test", "kind": "diffusion", "name": name, "config": label(config), **r})
        print(f"  test {label(config):61s} PSNR {r['psnr']:6.2f}  SSIM {r['ssim']:.3f}", flush=True)
    return rows


def print_table(task: str, rows: list, default: str, classical: str) -> None:
    print(f"\n{task}: test split, {len(rows[0]['per_image_psnr'])} images (mean, 95% CI)")
    print("| method | configuration | PSNR (dB) | SSIM | PSNR of pooled MSE | RMS(Ax - y) | NFE | s/image |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = r["name"] + (" (default)" if r["name"] == default and r["kind"] == "diffusion" else "")
        nfe = "" if r["nfe"] is None else str(r["nfe"])
        print(
            f"| {name} | {r['config']} | {r['psnr']:.2f} ± {r['psnr_ci']:.2f} | {r['ssim']:.3f} ± {r['ssim_ci']:.3f} "
            f"| {r['psnr_pooled']:.2f} | {r['consistency']:.4f} | {nfe} | {r['seconds_per_image']:.3g} |"
        )
    d = next(r for r in rows if r["kind"] == "diffusion" and r["name"] == default)
    c = next((r for r in rows if r["kind"] == "classical" and r["name"] == classical), None)
    if c is not None:
        gap = np.array(d["per_image_psnr"]) - np.array(c["per_image_psnr"])
        ci = 1.96 * np.std(gap, ddof=1) / math.sqrt(len(gap)) if len(gap) > 1 else 0.0
        print(
            f"{task}: default {default} - best classical {classical} = {gap.mean():+.2f} ± {ci:.2f} dB PSNR (paired), "
            f"{d['ssim'] - c['ssim']:+.3f} SSIM"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--val-n", type=int, default=32)
    ap.add_argument("--test-n", type=int, default=100)
    ap.add_argument("--val-seed", type=int, default=98)
    ap.add_argument("--test-seed", type=int, default=99)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--max-nfe", type=int, default=200, help="NFE limit of the candidates (the default's budget)")
    ap.add_argument(
        "--dps-steps", type=int, default=1000, help="steps of the DPS reference on the test split (0: none)"
    )
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: fastest on a shared 2-core CPU)")
    ap.add_argument(
        "--reference-only", action="store_true", help="only the DPS reference on the test split (it is the slow part)"
    )
    ap.add_argument(
        "--sr3", default=None, help="an SR3 checkpoint (train --condition sr:4): compare it on the sr test split only"
    )
    ap.add_argument("--quick", action="store_true", help="one short configuration per method on 4 + 4 images")
    ap.add_argument("--json", default=None, help="also write every row (per-image PSNR included) here")
    args = ap.parse_args()
    if args.quick:
        args.val_n, args.test_n = 4, 4
    torch.set_num_threads(args.threads)
    args.dev = resolve_device(args.device)
    model = load_model(args.checkpoint, device=args.dev)
    print(f"checkpoint {args.checkpoint} ({model.process.describe()}), device {args.dev}, torch threads "
          f"{torch.get_num_threads()}; validation: {args.val_n} triangles (seed {args.val_seed}), "
          f"test: {args.test_n} (seed {args.test_seed})")  # fmt: skip
    rows, chosen = [], {}
    if args.sr3:
        _dump(args, {}, sr3_comparison(model, load_model(args.sr3, device=args.dev), args))
        return
    for task in args.tasks.split(","):
        print(f"\n== {task} (noise {TASKS[task][1]:g})", flush=True)
        if args.reference_only:
            rows += reference(model, task, Split(model, task, args.test_n, args.test_seed), args)
            continue
        best_method, best_base, val_rows = validate(model, task, Split(model, task, args.val_n, args.val_seed), args)
        default = max(best_method, key=lambda m: best_method[m][1]["psnr"])
        classical = max(best_base, key=lambda m: best_base[m][1]["psnr"]) if best_base else None
        chosen[task] = {"method": default, "config": label(best_method[default][0]), "classical": classical,
                        "best": {m: label(c) for m, (c, _) in best_method.items()}}  # fmt: skip
        test_rows = test_phase(
            model, task, Split(model, task, args.test_n, args.test_seed), best_method, best_base, args
        )
        print_table(task, test_rows, default, classical)
        rows += val_rows + test_rows
    if args.reference_only:
        _dump(args, {}, rows)
        return
    print("\nchosen on the validation split (the default of restore, at <= max NFE):")
    for task, c in chosen.items():
        print(f"  {task:8s} {c['config']}  (best classical: {c['classical']})")
    _dump(args, chosen, rows)


def reference(model, task: str, split: Split, args) -> list:
    config = (REFERENCE[0], args.dps_steps, REFERENCE[2])
    r = run_diffusion(model, split, config, args)
    print(f"  test {label(config)}: PSNR {r['psnr']:.2f} ± {r['psnr_ci']:.2f}  SSIM {r['ssim']:.3f} ± "
          f"{r['ssim_ci']:.3f}  pooled {r['psnr_pooled']:.2f}  RMS(Ax-y) {r['consistency']:.4f}  {r['nfe']} NFE  "
          f"{r['seconds_per_image']:.3g} s/image", flush=True)  # fmt: skip
    return [
        {"task": task, "split": "test", "kind": "diffusion", "name": "dps (reference)", "config": label(config), **r}
    ]


SR3_SAMPLERS = [(None, None), ("ddpm", 200)]  # restore --method sr3 (its default: ode 20 NFE); ancestral
SR3_ZERO_SHOT = [("dps", 200, {}), ("ddnm", 50, {"travel_length": 5, "travel_interval": 5, "travel_repeat": 2})]


def sr3_comparison(model, sr3_model, args) -> list:
    """x4 SR on the test split: the SR3 checkpoint (restore --method sr3, its default sampler)
    against the zero-shot methods of the unconditional checkpoint at their validation-best
    configurations (DPS 200 steps, DDNM with time travel), with the paired PSNR difference."""
    print("\n== sr: SR3 against zero-shot (test split)", flush=True)
    split = Split(model, "sr", args.test_n, args.test_seed)
    rows = []
    for sampler, steps in SR3_SAMPLERS:  # the default first: the paired difference is the default's
        x, info = restore(sr3_model, split.y, split.op, split.sigma, "sr3", steps, seed=args.seed, batch=args.batch,
                          device=args.dev, sampler=sampler)  # fmt: skip
        rows.append({"task": "sr", "split": "test", "kind": "diffusion", "name": "sr3",
                     "config": f"sr3, {info['sampler']} {info['steps']} steps",
                     **split.score(x, info["seconds_per_image"], info["nfe"])})  # fmt: skip
    for config in SR3_ZERO_SHOT:
        r = run_diffusion(model, split, config, args)
        rows.append({"task": "sr", "split": "test", "kind": "diffusion", "name": config[0],
                     "config": label(config), **r})  # fmt: skip
    for r in rows:
        print(f"  {r['config']:62s} PSNR {r['psnr']:6.2f} ± {r['psnr_ci']:.2f}  SSIM {r['ssim']:.3f} ± "
              f"{r['ssim_ci']:.3f}  RMS(Ax-y) {r['consistency']:.4f}  {r['nfe']} NFE  "
              f"{r['seconds_per_image']:.3g} s/image")  # fmt: skip
    dps = rows[len(SR3_SAMPLERS)]
    gap = np.array(rows[0]["per_image_psnr"]) - np.array(dps["per_image_psnr"])
    ci = 1.96 * np.std(gap, ddof=1) / math.sqrt(len(gap)) if len(gap) > 1 else 0.0
    print(f"sr: sr3 - dps 200 steps = {gap.mean():+.2f} ± {ci:.2f} dB PSNR (paired), "
          f"{rows[0]['ssim'] - dps['ssim']:+.3f} SSIM")  # fmt: skip
    return rows


def _dump(args, chosen: dict, rows: list) -> None:
    if args.json:
        kept = {k: v for k, v in vars(args).items() if k != "dev"}
        Path(args.json).write_text(
            json.dumps({"checkpoint": args.checkpoint, "args": kept, "chosen": chosen, "rows": rows}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
