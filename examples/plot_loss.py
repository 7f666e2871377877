"""Plot a training curve: CKPT/metrics.jsonl -> a PNG of the loss against the step.

    python examples/plot_loss.py CKPT_DIR/metrics.jsonl -o loss.png

The raw logged loss (one point per --log-every steps) is drawn faint, with a moving average over
10 points on top; log scale on the loss axis.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("metrics", help="metrics.jsonl written by ddpmctl train")
    ap.add_argument("-o", "--output", default="loss.png")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.metrics) if line.strip()]
    rows = [r for r in rows if "loss" in r and "step" in r]
    if not rows:
        print(f"{args.metrics}: no loss records", file=sys.stderr)
        return 2
    step = np.array([r["step"] for r in rows], float)
    loss = np.array([r["loss"] for r in rows], float)
    k = min(10, len(loss))
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(step, loss, color="tab:blue", alpha=0.3, lw=1, label="loss")
    ax.plot(step[k - 1 :], smooth, color="tab:blue", lw=2, label=f"mean of {k}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    last = rows[-1]
    ax.set_title(f"{len(rows)} records, final loss {smooth[-1]:.4f}, {last.get('elapsed_s', 0):.0f} s")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.output)
    print(f"wrote {args.output}: loss curve of {int(step[-1])} steps", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
