"""Sample quality against network evaluations (NFE) for every sampler.

1. The exact model of a 2-d Gaussian mixture (ddpmctl.exact): a perfect score, so every error is
   the sampler's. Quality: MMD2e4 = 1e4 x the unbiased squared MMD to the exact mixture (Gaussian
   kernels; exact samples score 0 +- noise; first 4000 samples), SW1 = sliced 1-Wasserstein
   distance (64 directions, exact projected quantiles; ``/floor`` divides by the SW1 of n exact
   samples), and the worst component weight / covariance errors (responsibilities). For
   deterministic samplers, ``ode-err`` is the median distance to the exact ODE solution from the
   same x_T (rk45, rtol 1e-7).
   The goal lines check: the ODE with DPM-Solver++(2M) or Heun at <= 20 NFE is within 10% of
   1000-step DDPM on MMD2 (mean over --repeats seeds; since MMD2 is ~0 +- noise for good
   samplers, "within 10%" allows 2 standard errors of the difference). SW1 is shown too, but it
   rewards slightly under-dispersed samples (1000-step DDPM with the beta-tilde variance shrinks
   components by ~1-2% and scores below the SW1 of exact samples), so it is not the criterion.
2. Optionally a trained checkpoint (CKPT) with reference data (--data): points are scored by SW1,
   images by the Frechet distance of raw pixels (FD-raw), both against --data.

Usage:
    python benchmarks/sampler_quality.py                      # exact model, VP process
    python benchmarks/sampler_quality.py --process ve --quick
    python benchmarks/sampler_quality.py runs/tri --data tri.npy --n 500

Prints one table per model: sampler, steps, NFE, quality, ms per sample.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from ddpmctl.exact import ExactGMM, mixture_quality, mmd2, sliced_wasserstein, swd_floor  # noqa: E402
from ddpmctl.gmm import GaussianMixture  # noqa: E402
from ddpmctl.sampling import generate  # noqa: E402
from ddpmctl.schedules import make_process  # noqa: E402


def configs(process_kind: str, quick: bool) -> list[tuple[str, dict, list[int]]]:
    """(label, generate() options, list of --steps) per sampler; steps chosen to span 10..1000 NFE."""
    q = quick
    out = [
        ("ddpm", {"sampler": "ddpm"}, [10, 20, 50, 100] if q else [10, 20, 50, 100, 200, 500, 1000]),
        ("ddim", {"sampler": "ddim"}, [10, 20, 50] if q else [10, 20, 50, 100, 200, 500]),
        ("sde", {"sampler": "sde"}, [20, 50, 100] if q else [20, 50, 100, 200, 500, 1000]),
        ("pc r=0.16", {"sampler": "pc"}, [10, 25, 50] if q else [10, 25, 50, 100, 250, 500]),
        ("ode euler", {"sampler": "ode", "solver": "euler"}, [10, 20, 50] if q else [10, 20, 50, 100, 200]),
        ("ode heun", {"sampler": "ode", "solver": "heun"}, [6, 10, 18] if q else [6, 10, 18, 25, 50]),
        ("ode heun karras", {"sampler": "ode", "solver": "heun", "spacing": "karras"}, [10, 18] if q else [10, 18, 25, 50]),
        ("ode dpm++2m", {"sampler": "ode", "solver": "dpm++2m"}, [10, 15, 20] if q else [10, 15, 20, 30, 50, 100]),
        ("ode dpm++2m quad", {"sampler": "ode", "solver": "dpm++2m", "spacing": "quadratic"}, [10, 20] if q else [10, 20, 50]),
        ("ode rk45 1e-3", {"sampler": "ode", "solver": "rk45", "rtol": 1e-3, "atol": 1e-3}, [0]),
        ("ode rk45 1e-5", {"sampler": "ode", "solver": "rk45"}, [0]),
    ]
    if process_kind == "ve":
        out.append(("langevin M=2", {"sampler": "langevin"}, [10, 25, 50] if q else [10, 25, 50, 100, 250, 500]))
    return out


def fmt_row(cols, widths):
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))


def exact_benchmark(args) -> None:
    if args.mixture:
        mixture = GaussianMixture.load(args.mixture)
    else:
        mixture = GaussianMixture.random(6, 2, np.random.default_rng(3))
    model = ExactGMM(mixture, make_process(args.process))
    n = args.n
    floor = swd_floor(mixture, n)
    print(f"# exact model: {model.describe()}; n = {n} samples; SW1 of n exact samples (floor) = {floor:.4f}")
    ref, _ = generate(model, "ode", solver="rk45", rtol=1e-7, atol=1e-7, n=n, batch=n, seed=0)
    widths = (18, 6, 6, 8, 6, 9, 8, 8, 9, 10)
    print(fmt_row(("sampler", "steps", "NFE", "SW1", "/floor", "MMD2e4", "w-err", "cov-err", "ode-err", "ms/sample"), widths))
    for label, opts, steps_list in configs(args.process, args.quick):
        for steps in steps_list:
            t0 = time.perf_counter()
            x, info = generate(model, n=n, batch=n, seed=0, steps=steps or None, **opts)
            dt = time.perf_counter() - t0
            q = mixture_quality(x, mixture)
            deterministic = opts["sampler"] == "ode" or (opts["sampler"] == "ddim")
            ode_err = f"{np.median(np.linalg.norm(x - ref, axis=1)):.4f}" if deterministic else "-"
            print(
                fmt_row(
                    (label, "-" if info["solver"] == "rk45" else info["steps"], info["nfe"], f"{q['swd']:.4f}", f"{q['swd'] / floor:.2f}",
                     f"{1e4 * q['mmd2']:.2f}", f"{q['weight_error']:.4f}", f"{q['cov_error']:.3f}", ode_err, f"{1000 * dt / n:.3f}"),
                    widths,
                ),
                flush=True,
            )
    # the goal: fast ODE at <= 20 NFE within 10% of 1000-step DDPM (averaged over seeds)
    m_n = min(n, 10_000)
    print(f"\n# goal: ODE at <= 20 NFE within 10% of 1000-step DDPM (mean +- s.e. over {args.repeats} seeds, n = {n}; MMD2 on {m_n})")
    runs = {
        "ddpm 1000": {"sampler": "ddpm", "steps": 1000},
        "ode dpm++2m 20": {"sampler": "ode", "solver": "dpm++2m", "steps": 20},
        "ode heun 10 (19 NFE)": {"sampler": "ode", "solver": "heun", "steps": 10},
        "exact samples": None,
    }
    stats = {}
    rng = np.random.default_rng(2024)
    for label, opts in runs.items():
        sw, mm, nfe, secs = [], [], 0, 0.0
        for seed in range(1, args.repeats + 1):
            t0 = time.perf_counter()
            if opts is None:
                x = mixture.sample(n, rng)[0]
            else:
                x, info = generate(model, n=n, batch=n, seed=seed, **opts)
                nfe = info["nfe"]
            secs += time.perf_counter() - t0
            sw.append(sliced_wasserstein(x, mixture))
            mm.append(1e4 * mmd2(x, mixture, max_n=m_n))
        se = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0  # noqa: E731
        stats[label] = (float(np.mean(sw)), se(sw), float(np.mean(mm)), se(mm))
        print(
            f"{label:22s} NFE {nfe:5d}  SW1 {np.mean(sw):.4f} +- {se(sw):.4f}  MMD2e4 {np.mean(mm):6.2f} +- {se(mm):.2f}"
            f"  ({1000 * secs / (n * args.repeats):.3f} ms/sample)"
        )
    b_sw, b_sw_se, b_mm, b_mm_se = stats["ddpm 1000"]
    for label in ("ode dpm++2m 20", "ode heun 10 (19 NFE)"):
        sw, sw_se, mm, mm_se = stats[label]
        # MMD2 is unbiased (exact samples: 0 +- noise), so "within 10%" allows the noise of the difference
        allowed = max(0.1 * abs(b_mm), 2 * float(np.hypot(mm_se, b_mm_se)))
        verdict = "PASS" if mm <= b_mm + allowed else "FAIL"
        print(
            f"{label}: MMD2 {mm - b_mm:+.2f}e-4 vs ddpm 1000 (allowed +{allowed:.2f}e-4: 10% or 2 s.e.) -> {verdict}; "
            f"SW1 {100 * (sw / b_sw - 1):+.1f}%"
        )


def checkpoint_benchmark(args) -> None:
    from ddpmctl import io
    from ddpmctl.checkpoint import load_model
    from ddpmctl.device import resolve_device

    dev = resolve_device(args.device)
    model = load_model(args.checkpoint, device=dev)
    ref = None
    if args.data:
        ref, kind = io.read_data(args.data)
        ref = np.asarray(ref[: max(args.n, 2000)], dtype=np.float32)

    def quality(x):
        if ref is None:
            return "-"
        if model.data_kind == "points":
            return f"{sliced_wasserstein(x, ref):.4f}"
        from ddpmctl import fid

        a, b = fid.stats_of(x.reshape(len(x), -1).astype(np.float64)), fid.stats_of(ref.reshape(len(ref), -1).astype(np.float64))
        return f"{fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma):.3f}"

    measure = "SW1" if model.data_kind == "points" else "FD-raw"
    print(f"# checkpoint {args.checkpoint}: {model.process.describe()}, {model.data_kind} {model.data_shape}, n = {args.n}, device {dev}")
    widths = (18, 6, 6, 9, 10)
    print(fmt_row(("sampler", "steps", "NFE", measure, "ms/sample"), widths))
    plan = [
        ("ddpm", {"sampler": "ddpm"}, [50, 250, 1000]),
        ("ddim", {"sampler": "ddim"}, [20, 50, 100]),
        ("sde", {"sampler": "sde"}, [100, 500]),
        ("pc", {"sampler": "pc"}, [50, 250]),
        ("ode heun", {"sampler": "ode", "solver": "heun"}, [10, 18]),
        ("ode dpm++2m", {"sampler": "ode", "solver": "dpm++2m"}, [10, 20, 50]),
        ("ode rk45", {"sampler": "ode", "solver": "rk45"}, [0]),
    ]
    if model.process.kind == "ve":
        plan.append(("langevin", {"sampler": "langevin"}, [50, 250]))
    T = getattr(model.process, "T", None)
    for label, opts, steps_list in plan:
        for steps in steps_list:
            if T is not None and steps > T:
                continue
            t0 = time.perf_counter()
            x, info = generate(model, n=args.n, batch=args.batch, seed=0, steps=steps or None, **opts)
            dt = time.perf_counter() - t0
            print(fmt_row((label, "-" if info["solver"] == "rk45" else info["steps"], info["nfe"], quality(x), f"{1000 * dt / args.n:.2f}"), widths), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", help="a trained checkpoint to benchmark too")
    ap.add_argument("--data", help="reference data for the checkpoint's quality (.npy)")
    ap.add_argument("--mixture", help="a mixture .npz for the exact model [default: a random 6-component 2-d mixture]")
    ap.add_argument("--process", default="vp", choices=["ddpm", "vp", "subvp", "ve"], help="process of the exact model")
    ap.add_argument("--n", type=int, default=None, help="samples per run [exact: 10000 (quick 4000); checkpoint: 256]")
    ap.add_argument("--batch", type=int, default=256, help="checkpoint: batch size")
    ap.add_argument("--repeats", type=int, default=3, help="seeds averaged for the goal line")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="fewer step counts and samples")
    ap.add_argument("--skip-exact", action="store_true", help="only the checkpoint")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    n_given = args.n
    if not args.skip_exact:
        args.n = n_given or (4000 if args.quick else 10000)
        exact_benchmark(args)
    if args.checkpoint:
        args.n = n_given or 256
        print()
        checkpoint_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
