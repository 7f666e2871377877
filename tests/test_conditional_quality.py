"""benchmarks/conditional_quality.py: its pieces in closed form (pairwise distances, the spread
ratio, the choice of the CFG scale) and one run end to end: train a tiny model, then measure it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import conditional_quality as cq  # noqa: E402


def test_mean_pairwise_and_spread_closed_form():
    f = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])  # distances 5, 4, 3
    assert cq.mean_pairwise(f) == pytest.approx(4.0)
    real = np.concatenate([f, f + 10])
    y_real = np.array([0, 0, 0, 1, 1, 1])
    # samples of class 0 half as spread as the real ones, class 1 as spread: mean ratio 0.75
    samples = np.concatenate([f / 2, f - 7])
    assert cq.spread(samples, y_real, real, y_real) == pytest.approx(0.75)


def test_choose_prefers_the_best_then_the_smaller_scale():
    rows = [
        {"cfg": 1.0, "as_asked": 0.70, "spread": 1.2},
        {"cfg": 2.0, "as_asked": 0.81, "spread": 1.0},
        {"cfg": 3.0, "as_asked": 0.812, "spread": 0.9},  # within half a point: the smaller W wins
        {"cfg": 4.0, "as_asked": 0.95, "spread": 0.5},  # best, but collapsed (spread < 0.8)
    ]
    assert cq.choose(rows, 0.8) == 2.0
    assert cq.choose(rows, 0.4) == 4.0
    assert (
        cq.choose([{k: v for k, v in r.items() if k != "as_asked"} | {"accuracy": r["as_asked"]} for r in rows], 0.8)
        == 2.0
    )


def test_classifier_learns_separable_classes():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = np.zeros((200, 1, 8, 8), np.float32)
    x[y == 0, :, :4] = 1.0  # class 0: top half lit, class 1: bottom half
    x[y == 1, :, 4:] = 1.0
    x += 0.1 * rng.standard_normal(x.shape).astype(np.float32)
    _, acc, x_held, y_held = cq.train_classifier(x, y, 2, epochs=3, seed=0)
    assert acc >= 0.95 and len(x_held) == 40 and len(y_held) == 40


def test_end_to_end_trains_then_measures(tmp_path):
    py = [sys.executable]
    data = tmp_path / "s.npy"
    r = subprocess.run(
        py + ["-m", "ddpmctl", "make-data", "shapes", "--n", "64", "--size", "16", "--labels", "-o", str(data)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("net: {base: 8, mults: [1, 2], blocks: 1, attn: []}\nbatch: 8\nsteps: 3\nwarmup: 0\n")
    out = tmp_path / "q.json"
    args = ["--train", "60", "--config", str(cfg), "--cfg", "1,2", "--per-class", "2", "--val-per-class", "1"]
    args += ["--epochs", "1", "--steps", "3", "--json", str(out)]
    r = subprocess.run(
        py + [str(ROOT / "benchmarks" / "conditional_quality.py"), str(tmp_path / "ck"), str(data), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["chosen_cfg"] in (1.0, 2.0) and 0 <= res["classifier_heldout_accuracy"] <= 1
    assert [row["cfg"] for row in res["test"]] == [1.0, 2.0]
    assert [row["nfe"] for row in res["test"]] == [3, 6]  # CFG doubles the NFE
    for row in res["test"]:
        assert row["n"] == 8 and 0 <= row["clean"] <= 1 and 0 <= row["accuracy"] <= 1
    assert "class accuracy" in r.stdout and "chosen on validation" in r.stdout
