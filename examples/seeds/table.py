"""Collect examples/seeds/Makefile's results into one markdown table (stdout).

Usage: python table.py OUT NAME... (OUT holds clean-NAME.json, fid-NAME.json, bpd-NAME.json and
ckpt-NAME/metrics.jsonl for every NAME).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from stats import wilson  # noqa: E402


def final_metrics(path: Path, last: int = 10) -> dict:
    """The last logged record, with ``loss`` replaced by the mean of the last ``last`` logged losses
    (one logged loss is one batch's: too noisy to compare runs)."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [r for r in records if "loss" in r]
    tail = records[-last:]
    return {**tail[-1], "loss": sum(r["loss"] for r in tail) / len(tail)}


def row(out: Path, name: str) -> str:
    clean = json.loads((out / f"clean-{name}.json").read_text())
    fid = json.loads((out / f"fid-{name}.json").read_text())
    bpd = json.loads((out / f"bpd-{name}.json").read_text())
    m = final_metrics(out / f"ckpt-{name}" / "metrics.jsonl")
    lo, hi = wilson(clean["clean_fraction"], clean["n"])
    return (
        f"| {name} | {100 * clean['clean_fraction']:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}) | {clean['n']} "
        f"| {fid['fid']:.2f} | {bpd['bits_per_dim']:.3f} ± {bpd['bits_per_dim_se']:.3f} "
        f"| {m['loss']:.4f} | {m['step']} | {m['elapsed_s']:.0f} |"
    )


def main() -> None:
    out, names = Path(sys.argv[1]), sys.argv[2:]
    print("| run | clean (95% CI) | samples | raw FID | bits/dim (vlb) | final loss (last 10) | steps | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        print(row(out, name))


if __name__ == "__main__":
    main()
