"""Class-conditional quality against the classifier-free guidance scale W (issue #18).

For a class-conditional checkpoint CKPT trained on DATA.npy (labels in DATA.labels.npy):

1. A classifier is trained on the real data (a small CNN, Adam with a one-cycle learning rate,
   ``--epochs`` passes over 80% of DATA; its accuracy on the other 20% is reported: the ceiling of
   what "class accuracy" can show).
2. For every W in ``--cfg``, ``--per-class`` samples of every class are drawn with the default
   sampler (``--sampler``, ``--steps``), on a **validation** seed and on a **test** seed:
   * class accuracy: the share the classifier assigns to the requested class (95% Wilson interval);
   * for ``make-data shapes`` data, ``shape_check``: clean (a clean filled shape of some class) and
     "as asked" (clean and of the requested class by the shape fit, a second, classifier-free judge);
   * spread: the within-class diversity, the mean pairwise distance of the classifier's features
     among samples of one class over the same for held-out real images of that class (1 = the
     data's diversity, below 1 = CFG's fidelity-for-diversity trade);
   * seconds per image and the NFE.
   With ``--guide G`` it also draws the classes with autoguidance by G (Karras et al. 2024; the
   guide gets the same classes) at the weights ``--guidance``, without CFG.
3. The recommended CFG scale W is chosen on the validation seed: the best "as asked" (shapes) or accuracy
   (other data) among the W whose spread is at least ``--min-spread``, the smaller W on a tie
   within 0.5 points; the test seed's rows report it (never the samples that chose it).

With ``--train SECONDS`` and no CKPT yet, it first trains CKPT on DATA with ``--config`` for that
many seconds (``ddpmctl train --time-limit``), the 15-minute budget of the issue being 830 s.

Usage:
    python benchmarks/conditional_quality.py CKPT DATA.npy [--cfg 1,1.5,2,3,4] [--per-class 256] [--json F]
    python benchmarks/conditional_quality.py runs/cond shapes.npy --train 830   # train, then measure
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402
from stats import wilson  # noqa: E402
from torch import nn  # noqa: E402

from ddpmctl.checkpoint import load_model  # noqa: E402
from ddpmctl.datasets import SHAPE_CLASSES  # noqa: E402
from ddpmctl.labels import labels_path, names_path, read_labels, read_names  # noqa: E402
from ddpmctl.sampling import generate  # noqa: E402


class Classifier(nn.Module):
    """A small CNN: three 3x3 conv blocks (32-64-64, GroupNorm, SiLU, 2x2 pooling after the first
    two), global average pooling to a 64-d feature, a linear head."""

    def __init__(self, channels: int, classes: int):
        super().__init__()

        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1), nn.GroupNorm(8, o), nn.SiLU()]

        self.features = nn.Sequential(
            *block(channels, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2), *block(64, 64),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        return self.head(self.features(x))


def train_classifier(x: np.ndarray, y: np.ndarray, classes: int, epochs: int, seed: int):
    """(classifier, held-out accuracy, held-out images, their labels): trained on a random 80%."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=g).numpy()
    cut = int(0.8 * len(x))
    tr, te = order[:cut], order[cut:]
    net = Classifier(x.shape[1], classes)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    xt, yt = torch.from_numpy(x[tr]).float(), torch.from_numpy(y[tr]).long()
    batches = torch.arange(len(xt)).split(64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 5e-3, total_steps=epochs * len(batches))
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=g).split(64):
            loss = nn.functional.cross_entropy(net(2 * xt[idx] - 1), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    _, pred = embed(net, x[te])
    return net, float((pred == y[te]).mean()), x[te], y[te]


@torch.inference_mode()
def embed(net: Classifier, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 64), predicted classes (N,)) of images in [0, 1]."""
    feats, preds = [], []
    for i in range(0, len(x), 256):
        f = net.features(2 * torch.from_numpy(np.asarray(x[i : i + 256])).float() - 1)
        feats.append(f.numpy())
        preds.append(net.head(f).argmax(1).numpy())
    return np.concatenate(feats), np.concatenate(preds)


def mean_pairwise(f: np.ndarray) -> float:
    """Mean Euclidean distance over the distinct pairs of rows of f."""
    d = np.sqrt(np.maximum(((f[:, None] - f[None]) ** 2).sum(-1), 0.0))
    n = len(f)
    return float(d.sum() / max(n * (n - 1), 1))


def spread(f: np.ndarray, y: np.ndarray, f_real: np.ndarray, y_real: np.ndarray) -> float:
    """Mean over classes of (within-class mean pairwise feature distance of f) / (that of f_real)."""
    ratios = [
        mean_pairwise(f[y == c][:256]) / mean_pairwise(f_real[y_real == c][:256])
        for c in np.unique(y)
        if (y == c).sum() > 1 and (y_real == c).sum() > 1
    ]
    return float(np.mean(ratios)) if ratios else float("nan")


def measure(model, clf, real, w: float, args, seed: int, shapes: bool, guide=None) -> dict:
    """One row: samples of every class at CFG scale w (seed), or with autoguidance ``guide`` =
    (model, weight) and no CFG, judged by the classifier (and shapes)."""
    k = model.num_classes
    labels = np.repeat(np.arange(k), args.per_class)
    how = {"cfg": w} if guide is None else {"guide": guide[0], "guidance": guide[1]}
    t0 = time.perf_counter()
    x, info = generate(model, args.sampler, n=len(labels), steps=args.steps, seed=seed, batch=256, labels=labels, **how)
    seconds = time.perf_counter() - t0
    f, pred = embed(clf, x)
    acc = float((pred == labels).mean())
    row = {"cfg": w, "autoguidance": guide[1] if guide else None, "nfe": int(info["nfe"]), "n": len(labels)}
    row["accuracy"] = acc
    row["accuracy_ci"] = wilson(acc, len(labels))
    row["spread"] = spread(f, labels, *real)
    row["s_per_image"] = seconds / len(labels)
    if shapes:
        from shape_check import fraction_clean

        sc = fraction_clean(x, labels)
        row.update(clean=sc["clean_fraction"], as_asked=sc["as_labelled"], per_class=sc["per_class"])
        row["clean_ci"] = wilson(sc["clean_fraction"], len(labels))
        row["as_asked_ci"] = wilson(sc["as_labelled"], len(labels))
        row["accuracy_and_clean"] = float(((pred == labels) & (sc["found"] >= 0)).mean())
    return row


def choose(rows: list[dict], min_spread: float) -> float:
    """The recommended W from the validation rows (see the module docstring)."""
    key = "as_asked" if "as_asked" in rows[0] else "accuracy"
    ok = [r for r in rows if r["spread"] >= min_spread] or rows
    best = max(r[key] for r in ok)
    return min(r["cfg"] for r in ok if r[key] >= best - 0.005)


def train_first(args) -> None:
    """``ddpmctl train DATA --config CONFIG --time-limit S`` into CKPT (labels found beside DATA)."""
    cmd = [sys.executable, "-m", "ddpmctl", "train", args.data, "--config", args.config]
    cmd += ["--time-limit", str(args.train), "--seed", str(args.train_seed), "--quiet", "--force", "-o", args.ckpt]
    print("training:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)


def show(title: str, rows: list[dict]) -> None:
    print(title)
    shapes = "clean" in rows[0]
    head = "| W | NFE | class accuracy | " + ("clean | clean, of the asked class | " if shapes else "")
    head += "spread | s/image |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        w = f"{r['cfg']:g}" if r["autoguidance"] is None else f"1, autoguidance {r['autoguidance']:g}"
        cells = [w, str(r["nfe"]), _pct(r, "accuracy")]
        cells += [_pct(r, "clean"), _pct(r, "as_asked")] if shapes else []
        cells += [f"{r['spread']:.2f}", f"{r['s_per_image']:.3f}"]
        print("| " + " | ".join(cells) + " |")


def _pct(r: dict, key: str) -> str:
    lo, hi = r[key + "_ci"]
    return f"{100 * r[key]:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("data", help="the labelled training data (.npy with .labels.npy beside it)")
    ap.add_argument("--cfg", default="1,1.5,2,3,4", help="CFG scales W, comma-separated")
    ap.add_argument("--per-class", type=int, default=256, help="test samples per class and W")
    ap.add_argument("--val-per-class", type=int, default=64, help="validation samples per class and W")
    ap.add_argument("--val-seed", type=int, default=98)
    ap.add_argument("--test-seed", type=int, default=99)
    ap.add_argument("--sampler", default=None, help="default: the checkpoint's / ddpmctl's default")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=10, help="classifier training passes")
    ap.add_argument("--min-spread", type=float, default=0.8)
    ap.add_argument("--train", type=float, default=None, help="train CKPT first for this many seconds")
    ap.add_argument("--config", default=str(HERE.parent / "examples" / "triangles" / "demo.yaml"))
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--guide", help="also rows with autoguidance by this model (e.g. CKPT/snapshot-20.safetensors)")
    ap.add_argument("--guidance", default="2,4", help="autoguidance weights for --guide, comma-separated")
    ap.add_argument("--only-guide", action="store_true", help="only the autoguidance rows")
    ap.add_argument("--json", help="also write every row here")
    args = ap.parse_args()
    if args.train and not Path(args.ckpt, "model.safetensors").exists():
        train_first(args)
    torch.manual_seed(0)
    x = np.load(args.data, mmap_mode="r")
    y = read_labels(labels_path(args.data), len(x))
    names = read_names(names_path(args.data)) or []
    model = load_model(args.ckpt)
    t0 = time.perf_counter()
    clf, heldout_acc, x_real, y_real = train_classifier(np.asarray(x), y, model.num_classes, args.epochs, seed=0)
    real = embed(clf, x_real)[0], y_real
    took = time.perf_counter() - t0
    print(f"classifier: {100 * heldout_acc:.2f}% on {len(y_real)} held-out real images ({took:.0f} s)")
    shapes = tuple(names) == SHAPE_CLASSES
    runs = [] if args.only_guide else [(float(w), None) for w in args.cfg.split(",")]
    if args.guide:
        guide = load_model(args.guide)
        runs += [(1.0, (guide, float(g))) for g in args.guidance.split(",")]
    val_args = argparse.Namespace(**{**vars(args), "per_class": args.val_per_class})
    val = [measure(model, clf, real, w, val_args, args.val_seed, shapes, g) for w, g in runs]
    show(f"validation (seed {args.val_seed}, {args.val_per_class} per class):", val)
    cfg_rows = [r for r in val if r["autoguidance"] is None]
    chosen = choose(cfg_rows, args.min_spread) if cfg_rows else None
    print(f"CFG scale chosen on validation: W = {chosen:g}" if cfg_rows else "")
    test = [measure(model, clf, real, w, args, args.test_seed, shapes, g) for w, g in runs]
    show(f"test (seed {args.test_seed}, {args.per_class} per class):", test)
    if args.json:
        out = {"classifier_heldout_accuracy": heldout_acc, "chosen_cfg": chosen, "validation": val, "test": test}
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
