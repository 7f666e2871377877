"""Training speed of ddpmctl's default image network, against diffusers' UNet2DModel.

Prints, for each network: parameters, forward GFLOP per image, training images/s (one step =
forward + backward + AdamW step, batch 64), achieved FLOP/s and the fraction of this machine's
matmul peak. FLOPs are counted by torch.utils.flop_counter (2 per multiply-add of convolutions,
matmuls and attention); the training FLOPs are the counted forward + backward of one step.

    python benchmarks/train_speed.py                 # device auto: CUDA if there is one, else CPU
    python benchmarks/train_speed.py --device cpu --repeats 5
    /work/benchenv/bin/python benchmarks/train_speed.py   # a venv with diffusers installed
    python benchmarks/train_speed.py --ops --net '{"base": 24, "mults": [1, 2, 2], "attn": [], "patch": 2}'
    python benchmarks/train_speed.py --levers --repeats 8 --steps 3   # eager / compiled, layouts, micro-batches
    python benchmarks/train_speed.py --profile                         # where a step's CPU time goes

CPU: fp32, each net measured in NCHW and channels_last (whichever is faster counts). The peak is
the best large fp32 sgemm (torch.mm) seen. CUDA: bf16 autocast + channels_last; the peak is the
best large bf16 matmul (fp32 peak printed too). Timings are the best of ``--repeats`` rounds of
``--steps`` steps after warm-up; the peak is re-measured between networks and its best counts.
On a shared machine run the script a few times and keep the best, or use ``--cpu-time``
(one thread, timed in CPU seconds of this process: other programs then barely matter).

diffusers is an optional, benchmark-only dependency: when it is not importable the script says
'diffusers not installed' and measures ddpmctl alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from stats import median_range  # noqa: E402

from ddpmctl.device import autocast, resolve_device  # noqa: E402
from ddpmctl.nets import build_net, count_flops, count_params, default_net_config, flop_counter  # noqa: E402

TIMER = time.perf_counter  # --cpu-time: time.process_time


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Best FLOP/s of an n x n x n matmul."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    inner = 1 if device.type == "cpu" else 20
    for _ in range(2):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = TIMER()
        for _ in range(inner):
            a @ b
        sync(device)
        best = min(best, (TIMER() - t) / inner)
    return 2 * n**3 / best


class DiffusersWrapper(torch.nn.Module):
    """net(x, c_noise) -> tensor, like ddpmctl's nets."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, c_noise):
        return self.model(x, c_noise).sample


def diffusers_unet(channels: tuple[int, ...], layers: int, attn_levels: tuple[int, ...], in_ch: int, size: int):
    from diffusers import UNet2DModel

    n = len(channels)
    down = tuple("AttnDownBlock2D" if i in attn_levels else "DownBlock2D" for i in range(n))
    up = tuple("AttnUpBlock2D" if n - 1 - i in attn_levels else "UpBlock2D" for i in range(n))
    return DiffusersWrapper(
        UNet2DModel(
            sample_size=size,
            in_channels=in_ch,
            out_channels=in_ch,
            block_out_channels=channels,
            layers_per_block=layers,
            down_block_types=down,
            up_block_types=up,
            norm_num_groups=8,
        )
    )


def diffusers_matched(params: int, in_ch: int, size: int):
    """The UNet2DModel (w, 2w, 2w), 1 layer per block, attention only in its middle block (its
    default), closest in size to ``params``."""
    best = None
    for w in range(16, 129, 8):
        m = diffusers_unet((w, 2 * w, 2 * w), 1, (), in_ch, size)
        gap = abs(count_params(m) - params)
        if best is None or gap < best[0]:
            best = (gap, m, f"diffusers UNet2DModel ({w},{2 * w},{2 * w}) x1, mid attention")
    return best[1], best[2]


def train_flops(net, shape, device) -> int:
    """Counted FLOPs of forward + backward of one image (batch 2, divided by 2)."""
    x = torch.randn(2, *shape, device=device)
    c = torch.randint(0, 1000, (2,), device=device).float()
    with flop_counter() as counter:
        net(x, c).square().mean().backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() // 2


def net_config(shape, keys: str | None) -> dict:
    """ddpmctl's default image net config for ``shape``, with the JSON ``keys`` of --net replacing its own."""
    cfg = default_net_config("images", shape, "sinusoidal")
    cfg.update(json.loads(keys) if keys else {})
    return cfg


def step_ops(net, shape, batch: int = 64) -> int:
    """Operators that compute something in one training step (forward, backward, AdamW step), on
    the CPU: every aten op the dispatcher runs below autograd, less the views and aliases, which
    launch no kernel. On CUDA each launches about one kernel, so the count times a launch's cost
    bounds a small net's step from below (docs/nets.md, "On a GPU: an estimate")."""
    from torch.utils._python_dispatch import TorchDispatchMode

    free = {"view", "_unsafe_view", "t", "transpose", "expand", "detach", "alias", "as_strided", "permute",
            "unsqueeze", "squeeze", "reshape", "slice", "select", "split", "split_with_sizes", "unbind",
            "lift_fresh"}  # fmt: skip

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ not in free:
                Count.n += 1
            return func(*args, **(kwargs or {}))

    net = net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, foreach=True)
    x, eps, c = torch.randn(batch, *shape), torch.randn(batch, *shape), torch.rand(batch) * 1000
    for counting in (False, True):  # the first step creates AdamW's state
        with Count() if counting else contextlib.nullcontext():
            loss = (net(x, c) - eps).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return Count.n


def training_step(model, opt, x, c, eps, chunks: int, device, amp: bool) -> None:
    """One AdamW step on the batch (x, c, eps), computed in ``chunks`` micro-batches whose
    gradients add up to the whole batch's (each chunk's mean loss weighted by its share)."""
    size = -(-len(x) // chunks)
    opt.zero_grad(set_to_none=True)
    for i in range(0, len(x), size):
        with autocast(device, amp):
            loss = (model(x[i : i + size], c[i : i + size]).float() - eps[i : i + size]).square().mean()
        (loss * (len(x[i : i + size]) / len(x))).backward()
    opt.step()


def make_step(net, shape, device, batch, channels_last, amp, compiled=False, chunks=1):
    """A training step of ``net`` (forward + backward + AdamW) on a fixed batch, warmed up by 2
    steps. ``compiled``: the network through ``torch.compile`` (the compile time is printed);
    ``chunks``: the batch in that many micro-batches, their gradients summed (the same step)."""
    mem = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(device=device, memory_format=mem).train()
    model = torch.compile(net) if compiled else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, *shape, generator=g).to(device).contiguous(memory_format=mem)
    eps = torch.randn(batch, *shape, generator=g).to(device).contiguous(memory_format=mem)
    c = torch.randint(0, 1000, (batch,), generator=g).float().to(device)

    def step():
        training_step(model, opt, x, c, eps, chunks, device, amp)

    t = TIMER()
    for _ in range(2):
        step()
    sync(device)
    if compiled:
        print(f"  compile + 2 warm-up steps: {TIMER() - t:.1f} s", file=sys.stderr, flush=True)
    return step


def timed_round(step, steps: int, device) -> float:
    """Seconds per step over ``steps`` steps."""
    t = TIMER()
    for _ in range(steps):
        step()
    sync(device)
    return (TIMER() - t) / steps


def measure(net, shape, device, batch, steps, repeats, channels_last, amp) -> float:
    """Training images/s: best of ``repeats`` rounds of ``steps`` AdamW steps (after 2 warm-up steps)."""
    step = make_step(net, shape, device, batch, channels_last, amp)
    return batch / min(timed_round(step, steps, device) for _ in range(repeats))


def profile(args) -> None:
    """--profile: where a training step of ddpmctl's net (channels_last, batch --batch) spends its
    CPU time: torch.profiler over 5 steps after 3 warm-up steps, the top operators by self time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    shape = (args.channels, args.size, args.size)
    torch.manual_seed(0)
    step = make_step(build_net(net_config(shape, args.net)), shape, torch.device("cpu"), args.batch, True, False)
    step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=45))


def levers(args) -> None:
    """--levers: the speed levers of issue #21 on ddpmctl's net. Every variant is built (and
    compiled) first; then they take turns, ``--steps`` steps each per round, for ``--repeats``
    rounds, so a busy moment of a shared machine hits them alike. Prints median (range) images/s."""
    shape = (args.channels, args.size, args.size)
    cfg = net_config(shape, args.net)
    device = torch.device("cpu")
    print(f"ddpmctl net {json.dumps(cfg)}; batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{args.repeats} rounds of {args.steps} steps, taking turns")  # fmt: skip
    kinds = [("eager NCHW", dict(channels_last=False)), ("eager channels_last", dict(channels_last=True))]
    kinds += [(f"compiled {fmt}", dict(channels_last=cl, compiled=True)) for fmt, cl in
              (("NCHW", False), ("channels_last", True))]  # fmt: skip
    kinds += [(f"eager NCHW, {k} micro-batches", dict(channels_last=False, chunks=int(k)))
              for k in args.chunks.split(",") if int(k) > 1]  # fmt: skip
    steps = {}
    for label, kw in kinds:
        torch.manual_seed(0)
        steps[label] = make_step(build_net(cfg), shape, device, args.batch, amp=False, **kw)
    ips = {label: [] for label in steps}
    for _ in range(args.repeats):
        for label, step in steps.items():
            ips[label].append(args.batch / timed_round(step, args.steps, device))
    for label, v in ips.items():
        print(f"{label:<40} {median_range(v)} images/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2, help="steps per timed round")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds; the best counts")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--net", default=None, help="JSON keys replacing ddpmctl's default net config")
    ap.add_argument("--no-diffusers", action="store_true", help="measure ddpmctl's net only")
    ap.add_argument(
        "--no-reference",
        action="store_true",
        help="skip diffusers' 1.6M reference UNet2DModel (32,64,64) x2 with attention at 16x16",
    )
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="CPU only: one thread, timed in CPU seconds of this process (time.process_time), so "
        "other programs on a busy machine do not slow the figures down",
    )
    ap.add_argument(
        "--ops",
        action="store_true",
        help="only count the operators of one training step of ddpmctl's net (about a GPU's kernel launches) "
        "and time that step at batch 1 on the CPU",
    )
    ap.add_argument(
        "--levers",
        action="store_true",
        help="only time ddpmctl's net eager and compiled in both layouts, and in micro-batches (--chunks), "
        "the variants taking turns for --repeats rounds; median and range",
    )
    ap.add_argument("--chunks", default="1,2,4,16", help="--levers: micro-batch counts to time")
    ap.add_argument("--profile", action="store_true", help="only profile a training step of ddpmctl's net")
    args = ap.parse_args()
    if args.levers:
        return levers(args)
    if args.profile:
        return profile(args)
    if args.ops:
        shape = (args.channels, args.size, args.size)
        cfg = net_config(shape, args.net)
        net = build_net(cfg)
        ops = step_ops(net, shape, args.batch)
        tiny = measure(net, shape, torch.device("cpu"), 1, 10, args.repeats, False, amp=False)  # images/s at batch 1
        print(f"ddpmctl net {json.dumps(cfg)}: {ops} operators per training step (batch {args.batch});")
        print(f"one step at batch 1 on this CPU: {1e3 / tiny:.2f} ms = {1e6 / tiny / ops:.1f} us per operator")
        return
    if args.cpu_time:
        global TIMER
        TIMER = time.process_time
        torch.set_num_threads(1)

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    shape = (args.channels, args.size, args.size)
    torch.manual_seed(0)

    print(
        f"device: {device}"
        + (
            f" ({torch.cuda.get_device_name(device)})"
            if cuda
            else f", {torch.get_num_threads()} threads, mkldnn {torch.backends.mkldnn.is_available()}"
        )
    )
    # the peak is re-measured between the networks and the best value counts: on a shared
    # machine a single measurement may fall in a busy moment
    peak_dtype = torch.bfloat16 if cuda else torch.float32
    peaks = [matmul_peak(device, peak_dtype, 8192 if cuda else 2048, 10 if cuda else 8)]
    if cuda:
        print(f"fp32 matmul peak: {matmul_peak(device, torch.float32, 8192, 10) / 1e12:.1f} TFLOP/s (TF32 off)")

    cfg = net_config(shape, args.net)
    nets = [("ddpmctl default" if not args.net else "ddpmctl (--net)", build_net(cfg))]
    print("ddpmctl net config:", json.dumps(cfg))
    if not args.no_diffusers:
        try:
            import diffusers  # noqa: F401
        except ImportError:
            print("diffusers not installed")
        else:
            matched, label = diffusers_matched(count_params(nets[0][1]), args.channels, args.size)
            nets.append((label, matched))
            if not args.no_reference:
                ref = diffusers_unet((32, 64, 64), 2, (1,), args.channels, args.size)
                nets.append(("diffusers UNet2DModel (32,64,64) x2, attn 16x16 + mid", ref))

    formats = [True] if cuda else [False, True]
    rows = []
    for name, net in nets:
        params = count_params(net)
        fwd = count_flops(net, shape)
        trn = train_flops(net, shape, torch.device("cpu"))
        for cl in formats:
            ips = measure(net, shape, device, args.batch, args.steps, args.repeats, cl, amp=cuda)
            rows.append((name, params, fwd, trn, "channels_last" if cl else "NCHW", ips))
            print(f"  measured {name} [{rows[-1][4]}]: {ips:.1f} images/s", file=sys.stderr, flush=True)
            peaks.append(matmul_peak(device, peak_dtype, 8192 if cuda else 2048, 10 if cuda else 8))
    peak = max(peaks)
    print(
        f"{'bf16' if cuda else 'fp32'} matmul peak: {peak / 1e9:.1f} GFLOP/s (best of {len(peaks)} measurements: "
        f"{', '.join(f'{p / 1e9:.0f}' for p in peaks)})"
    )

    print()
    head = (
        f"{'network':58s} {'params':>7s} {'fwd GF/img':>10s} {'train GF/img':>12s} {'format':>13s} "
        f"{'img/s':>7s} {'GFLOP/s':>8s} {'of peak':>7s}"
    )
    print(head)
    print("-" * len(head))
    for name, params, fwd, trn, fmt, ips in rows:
        achieved = trn * ips
        print(
            f"{name:58s} {params / 1e6:6.2f}M {fwd / 1e9:10.3f} {trn / 1e9:12.3f} {fmt:>13s} "
            f"{ips:7.1f} {achieved / 1e9:8.1f} {achieved / peak:7.1%}"
        )
    print(
        f"\n(batch {args.batch}, {args.size}x{args.size}x{args.channels}, "
        f"{'bf16 autocast' if cuda else 'fp32'}; best of {args.repeats} x {args.steps} steps; "
        f"{'1 thread, CPU time; ' if args.cpu_time else ''}"
        f"peak {peak / 1e9:.1f} GFLOP/s)"
    )


if __name__ == "__main__":
    main()
