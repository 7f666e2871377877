"""Sample quality against network evaluations (NFE) for every sampler.

1. The exact model of a 2-d Gaussian mixture (ddpmctl.exact): a perfect score, so every error is
   the sampler's. Quality = SW1, the sliced 1-Wasserstein distance to the exact mixture (256 fixed
   directions, exact projected quantiles), at n samples, mean +- standard error over --seeds seeds.
   SW1 has a floor: n exact samples score about c / sqrt(n), not 0, and one draw varies by ~20%
   around it. So the table also gives the excess over the floor, SW1 - floor:

   * floor = the mean SW1 of --floor-draws independent sets of n exact mixture samples;
   * deterministic samplers (ode, ddim eta = 0) are *paired*: their excess is SW1(x) - SW1(x*) where
     x* is the exact probability-flow ODE solution (rk45, rtol 1e-8) from the same initial noise,
     i.e. a set of exact samples sharing their noise, so the noise of the floor cancels (marked p);
   * stochastic samplers: excess = mean SW1 - floor (its standard error is that of SW1's mean).

   ``ode-err`` is the median distance to x* (deterministic samplers), ``ms/sample`` the wall time.
   Each sampler runs at about 10, 20, 50, 100 and 1000 NFE (--nfe).

   The goal lines check the issue's target, "the ODE at <= 20 NFE within 10% of 1000-step DDPM":
   E[SW1] of the ODE <= 1.1 E[SW1] of DDPM. Conservatively (DDPM-1000 treated as exact, since
   E[SW1] of any sampler is at least about the floor), it holds when the ODE's paired excess is at
   most 10% of the floor; the direct ratio of mean SW1s is printed too (noisier: DDPM is not paired).
   --goal-only prints the floor and the goal lines alone (e.g. over more --goal-seeds).
2. Optionally a trained checkpoint (CKPT) with reference data (--data): points are scored by SW1,
   images by the Frechet distance of raw pixels (FD-raw), both against --data.
3. With --clean, a checkpoint of triangles (the demo's): every sampler at each --nfe budget (1000
   for ddpm and ddim only), the share of clean filled triangles among --n samples (default 1024)
   with its 95% Wilson interval and the seconds per image, then every row at <= 20 NFE as a ratio
   to DDPM at the largest budget (issue #17's "within 10% of DDPM-1000"); with --data, the KS
   p-values of the clean samples' areas and orientations against the data's. With --guide SNAPSHOT
   every row is autoguided at w = --guidance (2 NFE per step: the steps of half the budget).

Usage:
    python benchmarks/sampler_quality.py                              # exact model: vp, ve, ddpm
    python benchmarks/sampler_quality.py --process ve --quick
    python benchmarks/sampler_quality.py runs/tri --data tri.npy --n 500 --skip-exact
    python benchmarks/sampler_quality.py runs/tri --skip-exact --clean --nfe 10,20,40,100,1000
    python benchmarks/sampler_quality.py runs/tri --skip-exact --clean --guide runs/tri/snapshot-20.safetensors
    python benchmarks/sampler_quality.py --process vp --goal-only --goal-seeds 32

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

from ddpmctl.exact import ExactGMM, sliced_wasserstein  # noqa: E402
from ddpmctl.gmm import GaussianMixture  # noqa: E402
from ddpmctl.sampling import generate  # noqa: E402
from ddpmctl.schedules import make_process  # noqa: E402

N_PROJ = 256
DETERMINISTIC = ("ode", "ddim")


def steps_for(label: str, nfe: int) -> int:
    """Steps that give about ``nfe`` evaluations: heun, edm and pc (M = 1) take 2 steps - 1, langevin (M = 2)
    2 steps + 1, restart (K = 2, N = 2) 2 steps - 1 + 8 (at least 2 steps)."""
    if label.startswith(("ode heun", "pc", "edm")):
        return (nfe + 1) // 2
    if label.startswith("restart"):
        return max(2, (nfe - 7) // 2)
    if label.startswith("langevin"):
        return max(1, (nfe - 1) // 2)
    return nfe


def configs(process_kind: str) -> list[tuple[str, dict]]:
    out = [
        ("ddpm", {"sampler": "ddpm"}),
        ("ddim eta=0", {"sampler": "ddim"}),
        ("sde", {"sampler": "sde"}),
        ("pc r=0.16 M=1", {"sampler": "pc"}),
        ("ode euler", {"sampler": "ode", "solver": "euler"}),
        ("ode heun", {"sampler": "ode", "solver": "heun"}),
        ("ode dpm++2m", {"sampler": "ode", "solver": "dpm++2m"}),
        ("ode dpm++3m", {"sampler": "ode", "solver": "dpm++3m"}),
        ("edm churn=40", {"sampler": "edm"}),
        ("euler-a eta=1", {"sampler": "euler-a"}),
        ("dpm++2m-sde eta=1", {"sampler": "dpm++2m-sde"}),
        ("restart K=2 N=2", {"sampler": "restart"}),
    ]
    if process_kind == "ve":
        out.append(("langevin M=2", {"sampler": "langevin"}))
    return out


SPACING_STUDY = [  # (label, options) at 10/20/30 NFE: the ODE's spacings and solvers
    (f"ode {solver} {spacing}", {"sampler": "ode", "solver": solver, "spacing": spacing})
    for solver in ("dpm++2m", "dpm++3m", "heun")
    for spacing in ("logsnr", "karras", "quadratic", "uniform")
]


def fmt_row(cols, widths):
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))


def mean_se(v) -> tuple[float, float]:
    v = np.asarray(v, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


class Bench:
    """Runs configurations on the exact model with fixed seeds, the exact-ODE reference per seed cached."""

    def __init__(self, model: ExactGMM, n: int, floor_draws: int):
        self.model, self.mixture, self.n = model, model.mixture, n
        self._ref: dict[int, tuple[np.ndarray, float]] = {}
        rng = np.random.default_rng(2024)
        draws = [self.sw1(self.mixture.sample(n, rng)[0]) for _ in range(floor_draws)]
        self.floor, self.floor_se = mean_se(draws)
        self.floor_sd = float(np.std(draws, ddof=1))

    def sw1(self, x) -> float:
        return sliced_wasserstein(x, self.mixture, n_proj=N_PROJ, seed=0)

    def reference(self, seed: int) -> tuple[np.ndarray, float]:
        """The exact ODE solution from seed's initial noise, and its SW1 (the paired floor)."""
        if seed not in self._ref:
            x, _ = generate(self.model, "ode", solver="rk45", rtol=1e-8, atol=1e-8, n=self.n, batch=self.n, seed=seed)
            self._ref[seed] = (x, self.sw1(x))
        return self._ref[seed]

    def run(self, opts: dict, steps: int | None, seeds) -> dict:
        sw, excess, err, secs, nfe, used = [], [], [], 0.0, 0, 0
        paired = opts["sampler"] in DETERMINISTIC and opts.get("eta", 0.0) == 0.0
        for seed in seeds:
            t0 = time.perf_counter()
            x, info = generate(self.model, n=self.n, batch=self.n, seed=seed, steps=steps, **opts)
            secs += time.perf_counter() - t0
            nfe, used = info["nfe"], info["steps"]
            s = self.sw1(x)
            sw.append(s)
            if paired:
                ref, ref_sw = self.reference(seed)
                excess.append(s - ref_sw)
                err.append(float(np.median(np.linalg.norm(x.astype(np.float64) - ref, axis=1))))
            else:
                excess.append(s - self.floor)
        return {
            "nfe": nfe,
            "steps": used,
            "sw1": mean_se(sw),
            "excess": mean_se(excess),
            "paired": paired,
            "ode_err": float(np.mean(err)) if err else None,
            "ms": 1000 * secs / (self.n * len(list(seeds))),
        }


WIDTHS = (22, 5, 5, 18, 20, 9, 9)
HEADER = ("sampler", "steps", "NFE", "SW1 (+- s.e.)", "SW1 - floor", "ode-err", "ms/sample")


def print_result(label: str, r: dict, solver_adaptive: bool = False) -> None:
    sw, se = r["sw1"]
    ex, ex_se = r["excess"]
    print(
        fmt_row(
            (
                label,
                "-" if solver_adaptive else r["steps"],
                r["nfe"],
                f"{sw:.5f} +- {se:.5f}",
                f"{ex:+.5f} +- {ex_se:.5f}{' p' if r['paired'] else '  '}",
                "-" if r["ode_err"] is None else f"{r['ode_err']:.1e}",
                f"{r['ms']:.3f}",
            ),
            WIDTHS,
        ),
        flush=True,
    )


def exact_benchmark(args, process_kind: str) -> None:
    if args.mixture:
        mixture = GaussianMixture.load(args.mixture)
    else:
        mixture = GaussianMixture.random(6, 2, np.random.default_rng(3))
    model = ExactGMM(mixture, make_process(process_kind))
    n = args.n
    bench = Bench(model, n, args.floor_draws)
    seeds = list(range(1, args.seeds + 1))
    print(f"\n## exact model: {model.describe()}")
    print(
        f"# n = {n} samples, {args.seeds} seeds, SW1 over {N_PROJ} fixed directions; floor (SW1 of n exact samples, "
        f"{args.floor_draws} draws) = {bench.floor:.5f} +- {bench.floor_se:.5f} (one draw: sd {bench.floor_sd:.5f})"
    )
    if not args.goal_only:
        exact_table(args, bench, process_kind, seeds)
    goal_lines(args, bench)


def exact_table(args, bench: Bench, process_kind: str, seeds: list[int]) -> None:
    """The exact model's table: every sampler at every --nfe budget, rk45, and (--spacings) the ODE's grids."""
    print(fmt_row(HEADER, WIDTHS))
    for label, opts in configs(process_kind):
        for nfe in args.nfe:
            print_result(label, bench.run(opts, steps_for(label, nfe), seeds))
    for tol in (1e-3, 1e-5):
        r = bench.run({"sampler": "ode", "solver": "rk45", "rtol": tol, "atol": tol}, None, seeds)
        print_result(f"ode rk45 tol {tol:g}", r, solver_adaptive=True)
    if args.spacings:
        print(f"\n# the ODE's spacings (paired excess; {args.seeds} seeds)")
        print(fmt_row(HEADER, WIDTHS))
        for label, opts in SPACING_STUDY:
            for nfe in (10, 20, 30):
                print_result(label, bench.run(opts, steps_for(label, nfe), seeds))


def goal_lines(args, bench: Bench) -> None:
    """The goal: the ODE at <= 20 NFE within 10% of 1000-step DDPM, over --goal-seeds seeds."""
    n = bench.n
    goal_seeds = list(range(1, args.goal_seeds + 1))
    print(f"\n# goal: ODE at <= 20 NFE within 10% of 1000-step DDPM on E[SW1] (n = {n}, {len(goal_seeds)} seeds)")
    print(f"exact samples (floor)        SW1 {bench.floor:.5f} +- {bench.floor_se:.5f}")
    base = bench.run({"sampler": "ddpm"}, 1000, goal_seeds)
    b_sw, b_se = base["sw1"]
    excess, excess_se = b_sw - bench.floor, np.hypot(b_se, bench.floor_se)
    print(f"ddpm 1000 steps (1000 NFE)   SW1 {b_sw:.5f} +- {b_se:.5f}  excess {excess:+.5f} +- {excess_se:.5f}")
    for label, opts, steps in (
        ("ode dpm++3m 20 steps", {"sampler": "ode", "solver": "dpm++3m"}, 20),
        ("ode dpm++2m 20 steps", {"sampler": "ode", "solver": "dpm++2m"}, 20),
        ("ode heun 10 steps", {"sampler": "ode", "solver": "heun"}, 10),
    ):
        r = bench.run(opts, steps, goal_seeds)
        sw, se = r["sw1"]
        ex, ex_se = r["excess"]
        ratio = sw / b_sw
        ratio_se = ratio * float(np.hypot(se / sw, b_se / b_sw))
        verdict = "PASS" if ex <= 0.1 * bench.floor else "FAIL"
        print(
            f"{label:20s} ({r['nfe']:2d} NFE) SW1 {sw:.5f} +- {se:.5f}  paired excess {ex:+.5f} +- {ex_se:.5f} = "
            f"{100 * ex / bench.floor:+.1f}% of the floor -> {verdict}; SW1 / DDPM's = {ratio:.3f} +- {ratio_se:.3f}",
            flush=True,
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
            return f"{sliced_wasserstein(x, ref, n_proj=N_PROJ):.4f}"
        from ddpmctl import fid

        a, b = (
            fid.stats_of(x.reshape(len(x), -1).astype(np.float64)),
            fid.stats_of(ref.reshape(len(ref), -1).astype(np.float64)),
        )
        return f"{fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma):.3f}"

    measure = "SW1" if model.data_kind == "points" else "FD-raw"
    print(
        f"\n## checkpoint {args.checkpoint}: {model.process.describe()}, {model.data_kind} {model.data_shape}, "
        f"n = {args.n}, device {dev}"
    )
    widths = (18, 6, 6, 9, 10)
    print(fmt_row(("sampler", "steps", "NFE", measure, "ms/sample"), widths))
    plan = [
        ("ddpm", {"sampler": "ddpm"}, [50, 250, 1000]),
        ("ddim", {"sampler": "ddim"}, [20, 50, 100]),
        ("sde", {"sampler": "sde"}, [100, 500]),
        ("pc", {"sampler": "pc"}, [50, 250]),
        ("ode heun", {"sampler": "ode", "solver": "heun"}, [10, 18]),
        ("ode dpm++2m", {"sampler": "ode", "solver": "dpm++2m"}, [10, 20, 50]),
        ("ode dpm++3m", {"sampler": "ode", "solver": "dpm++3m"}, [10, 20, 50]),
        ("ode rk45", {"sampler": "ode", "solver": "rk45"}, [0]),
        ("edm", {"sampler": "edm"}, [10, 32]),
        ("euler-a", {"sampler": "euler-a"}, [20, 50]),
        ("dpm++2m-sde", {"sampler": "dpm++2m-sde"}, [20, 50]),
        ("restart", {"sampler": "restart"}, [18]),
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
            print(
                fmt_row(
                    (
                        label,
                        "-" if info["solver"] == "rk45" else info["steps"],
                        info["nfe"],
                        quality(x),
                        f"{1000 * dt / args.n:.2f}",
                    ),
                    widths,
                ),
                flush=True,
            )


def clean_table(args, model, guide=None) -> None:
    """The trained-model table of issue #17: every sampler of ``configs`` (or those named by
    --samplers) at each --nfe budget, the share of clean filled triangles (triangle_check) among
    args.n samples with its 95% Wilson interval, and the wall time per image; then each row at
    <= 20 NFE against DDPM at the largest budget (the goal: within 10% of its clean fraction).
    With --data, each row also gives the two-sample KS p-values of the clean samples' areas and
    orientations against those of the first args.n data images (small p: they differ).
    With ``guide`` every row is autoguided at w = --guidance: 2 NFE per step, so each row takes
    half the steps of its budget (Heun-based rows: the steps of half the budget)."""
    from stats import ks_pvalues, wilson
    from triangle_check import clean_features

    wanted = [w.strip() for w in args.samplers.split(",")] if args.samplers else None
    plan = [(label, opts) for label, opts in configs(model.process.kind) if not wanted or label.split()[0] in wanted]
    per_step = 1 if guide is None else 2
    extra = {} if guide is None else {"guide": guide, "guidance": args.guidance}
    ref = clean_features(np.load(args.data, mmap_mode="r")[: args.n])[2] if args.data else None
    widths = (18, 6, 6, 24, 10) + ((16,) if ref is not None else ())
    how = "" if guide is None else f", autoguided by {args.guide} at w = {args.guidance:g}"
    print(f"\n## {args.checkpoint}: clean triangles, n = {args.n} per row, seed {args.seed}{how}")
    head = ("sampler", "steps", "NFE", "clean (95% CI)", "s/image") + (("KS p area/orient",) if ref is not None else ())
    print(fmt_row(head, widths))
    rows = []
    for label, opts in plan:
        for nfe in args.nfe:
            if nfe > 100 and label.split()[0] not in ("ddpm", "ddim"):
                continue  # 1000 NFE: the references only
            steps = steps_for(label, nfe // per_step)
            t0 = time.perf_counter()
            x, info = generate(model, n=args.n, batch=args.batch, seed=args.seed, steps=steps, **opts, **extra)
            dt = (time.perf_counter() - t0) / args.n
            frac, _, feats = clean_features(x)
            lo, hi = wilson(frac, args.n)
            rows.append((label, info["nfe"], frac))
            cells = (
                label,
                info["steps"],
                info["nfe"],
                f"{100 * frac:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})",
                f"{dt:.4f}",
            )
            if ref is not None:
                cells += ("/".join(f"{p:.2f}" for p in ks_pvalues(feats, ref, (0, 1))),)
            print(fmt_row(cells, widths), flush=True)
    ratio_lines(rows)


def ratio_lines(rows: list[tuple[str, int, float]]) -> None:
    """Each row at <= 20 NFE as a ratio to the clean fraction of DDPM at the largest budget of the table."""
    refs = [r for r in rows if r[0] == "ddpm"]
    if not refs:
        return
    ref = max(refs, key=lambda r: r[1])
    print(f"\nagainst ddpm at {ref[1]} NFE ({100 * ref[2]:.1f}% clean), rows at <= 20 NFE (goal: ratio >= 0.9):")
    for label, nfe, frac in rows:
        if nfe <= 20 and ref[2] > 0:
            print(f"  {label:18s} NFE {nfe:4d}: {frac / ref[2]:.3f}" + ("  within 10%" if frac >= 0.9 * ref[2] else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", help="a trained checkpoint to benchmark too")
    ap.add_argument("--data", help="reference data for the checkpoint's quality (.npy)")
    ap.add_argument("--mixture", help="a mixture .npz for the exact model [default: a random 6-component 2-d mixture]")
    ap.add_argument(
        "--process", default="vp,ve,ddpm", help="processes of the exact model, comma-separated [vp,ve,ddpm]"
    )
    ap.add_argument("--n", type=int, default=None, help="samples per run [exact: 10000 (quick 4000); checkpoint: 256]")
    ap.add_argument("--nfe", default="10,20,50,100,1000", help="NFE budgets of the table [10,20,50,100,1000]")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per table row [3]")
    ap.add_argument("--goal-seeds", type=int, default=8, help="seeds for the goal lines [8]")
    ap.add_argument("--floor-draws", type=int, default=40, help="sets of exact samples that estimate the floor [40]")
    ap.add_argument("--spacings", action="store_true", help="also compare the ODE's spacings at 10/20/30 NFE")
    ap.add_argument("--batch", type=int, default=256, help="checkpoint: batch size")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="fewer NFE budgets, samples and seeds")
    ap.add_argument("--skip-exact", action="store_true", help="only the checkpoint")
    ap.add_argument("--clean", action="store_true", help="checkpoint of triangles: the clean-fraction table")
    ap.add_argument("--samplers", help="--clean: only these samplers (first word of the label: ddpm,ode,...)")
    ap.add_argument("--seed", type=int, default=9001, help="--clean: the sampling seed [9001]")
    ap.add_argument("--guide", help="--clean: autoguide every row by this model (a snapshot), 2 NFE per step")
    ap.add_argument("--guidance", type=float, default=3.0, help="--clean with --guide: the weight w [3]")
    ap.add_argument("--goal-only", action="store_true", help="exact model: only the floor and the goal lines")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    args.nfe = [int(v) for v in args.nfe.split(",")]
    if args.quick:
        args.nfe = [v for v in args.nfe if v <= 100]
        args.seeds, args.goal_seeds, args.floor_draws = 2, 3, 10
    n_given = args.n
    if not args.skip_exact:
        args.n = n_given or (4000 if args.quick else 10000)
        for kind in args.process.split(","):
            exact_benchmark(args, kind.strip())
    if args.checkpoint and args.clean:
        from ddpmctl.checkpoint import load_model

        args.n = n_given or 1024
        guide = load_model(args.guide) if args.guide else None
        clean_table(args, load_model(args.checkpoint), guide)
    elif args.checkpoint:
        args.n = n_given or 256
        checkpoint_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
