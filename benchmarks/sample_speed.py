"""Sampling speed per network evaluation: ``ddpmctl.sampling.generate`` (the sampler and the batch
driver that ``ddpmctl sample`` runs) against the same network run plainly, in one run.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/sample_speed.py                  # the demo's net
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/sample_speed.py --net default --rounds 7

"Plain" is the network alone, ``net(x, c)`` under ``torch.no_grad()`` in PyTorch's default NCHW
layout at ``sample``'s old default batch (256 rows), called once per NFE: no sampler maths, so
the peer is if anything flattered. ddpmctl is ``generate`` with ``--sampler`` / ``--steps`` at
its default batch and layout, timed end to end (noise, sampler updates, clipping, copy-out), and
divided by its NFE; it is also timed with the network left in NCHW, to show what the
channels_last layout of ``ddpmctl.device.inference_layout`` adds, and with ``compile=True``
(``sample --compile``: torch.compile, one static graph kept for every round, so its compile is
paid once and printed apart, the way a long run pays it). Weights are random (speed does
not depend on them). The variants take turns, one timed pass over ``--n`` samples each per round;
prints the median ms per image per NFE with the range over rounds, and the ratio of the medians
(issue #21's goal: at least 1.3x).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from stats import median_range  # noqa: E402

from ddpmctl import sampling  # noqa: E402
from ddpmctl.checkpoint import LoadedModel  # noqa: E402
from ddpmctl.compiled import CompiledNets  # noqa: E402
from ddpmctl.diffusion import IMAGE_NORMALIZATION  # noqa: E402
from ddpmctl.nets import build_net, default_net_config  # noqa: E402
from ddpmctl.schedules import make_process  # noqa: E402

DEMO_NET = {"base": 24, "mults": [1, 2, 2], "blocks": 1, "attn": [], "dropout": 0.0, "patch": 2}  # demo.yaml


def plain(net, shape, n: int, batch: int, nfe: int) -> float:
    """Seconds per image per NFE of ``net`` alone, NCHW, no_grad, ``batch`` rows per call."""
    net = net.to(memory_format=torch.contiguous_format)
    x, c = torch.randn(batch, *shape), torch.rand(batch) * 1000
    with torch.no_grad():
        net(x, c)
        t = time.perf_counter()
        for _ in range(-(-n // batch) * nfe):
            net(x, c)
    return (time.perf_counter() - t) / (-(-n // batch) * batch * nfe)


def ours(model, n: int, sampler: str, steps: int, batch: int | None, layout: bool = True, compiled=None) -> float:
    """Seconds per image per NFE of ``sampling.generate`` end to end; ``layout`` False keeps the
    network in NCHW (``inference_layout`` off), to show what channels_last adds; ``compiled`` (a
    ``CompiledNets``, the same in every round) runs the compiled network."""
    saved = sampling.inference_layout
    if not layout:
        sampling.inference_layout = lambda *a: contextlib.nullcontext()
    opts = {} if compiled is None else {"compile": compiled}
    warm = min(n, 8) if compiled is None else min(n, batch or 256)  # a compiled graph keeps its first rows
    try:
        _, info = sampling.generate(model, sampler, n=warm, steps=steps, seed=1, batch=batch, **opts)  # warm-up
        t = time.perf_counter()
        _, info = sampling.generate(model, sampler, n=n, steps=steps, seed=0, batch=batch, **opts)
        return (time.perf_counter() - t) / (n * info["nfe"])
    finally:
        sampling.inference_layout = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default="demo", help="demo (examples/triangles/demo.yaml), default, or JSON keys")
    ap.add_argument("--n", type=int, default=512, help="samples per timed pass")
    ap.add_argument("--sampler", default="dpm++2m-sde")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=None, help="ddpmctl's batch (default: generate's own)")
    ap.add_argument("--plain-batch", type=int, default=256, help="the plain peer's batch")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--no-compile", action="store_true", help="leave out the compiled variant (it compiles for a minute)"
    )
    args = ap.parse_args()
    shape = (1, 32, 32)
    cfg = default_net_config("images", shape, "sinusoidal")
    presets = {"demo": DEMO_NET, "default": {}}
    cfg.update(presets[args.net] if args.net in presets else json.loads(args.net))
    torch.manual_seed(0)
    net = build_net(cfg).eval().requires_grad_(False)
    process = make_process("ddpm", "cosine")
    model = LoadedModel(net, process, "v", IMAGE_NORMALIZATION, "images", shape)
    times = {"plain": [], "nchw": [], "ddpmctl": [], **({} if args.no_compile else {"compiled": []})}
    compiled = CompiledNets()
    for r in range(args.rounds):
        times["plain"].append(plain(net, shape, args.n, args.plain_batch, args.steps))
        times["nchw"].append(ours(model, args.n, args.sampler, args.steps, args.batch, layout=False))
        times["ddpmctl"].append(ours(model, args.n, args.sampler, args.steps, args.batch))
        if "compiled" in times:
            times["compiled"].append(ours(model, args.n, args.sampler, args.steps, args.batch, compiled=compiled))
        print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"net {json.dumps(cfg)}")
    print(
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; {args.n} samples per pass, {args.rounds} rounds"
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    labels = {
        "plain": f"plain net(x, c), NCHW, no_grad, batch {args.plain_batch}",
        "nchw": f"ddpmctl generate, NCHW (inference_layout off), batch {args.batch or 'default'}",
        "ddpmctl": f"ddpmctl generate {args.sampler} {args.steps} steps, batch {args.batch or 'default'}",
        "compiled": "the same with compile=True (sample --compile)",
    }
    for k, v in times.items():
        print(f"{labels[k]:<60} {median_range([1e3 * t for t in v], '.3f')} ms/img/NFE")
    if "compiled" in times:
        print(f"compile (once, in round 1's warm-up): {compiled.compile_seconds:.1f} s")
    names = {"ddpmctl": "ddpmctl", "compiled": "ddpmctl --compile"}
    for key, name in ((k, v) for k, v in names.items() if k in times):
        ratio = med["plain"] / med[key]
        per_round = [p / o for p, o in zip(times["plain"], times[key])]
        print(f"speed ratio {name} / plain: {ratio:.2f}x (per round {min(per_round):.2f} .. {max(per_round):.2f}); "
              f"goal 1.3x {'met' if ratio >= 1.3 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
