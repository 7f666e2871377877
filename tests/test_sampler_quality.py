"""benchmarks/sampler_quality.py end to end on tiny inputs: the exact model's goal lines alone
(--goal-only), and the trained-model clean-triangle table (--clean), plain and autoguided, whose
rows must spend the NFE budgets they name (a guided row: half the steps, 2 NFE each)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "sampler_quality.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

from stats import ks_pvalues, median_range, wilson  # noqa: E402


def _run(*args: str) -> str:
    r = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def _rows(out: str) -> list[tuple[str, int, int, float]]:
    """(sampler label, steps, NFE, clean %) of each table row."""
    pat = re.compile(r"^(\S+(?: \S+=?\S*)?)\s+(\d+)\s+(\d+)\s+([\d.]+)% \(", re.M)
    return [(m[1].strip(), int(m[2]), int(m[3]), float(m[4])) for m in pat.finditer(out)]


def test_wilson_interval_closed_form():
    lo, hi = wilson(0.5, 100)  # centre 0.5, half-width 1.96 sqrt(0.25/100 + 1.96^2/40000) / (1 + 1.96^2/100)
    half = 1.96 * np.sqrt(0.0025 + 1.96**2 / 40000) / (1 + 1.96**2 / 100)
    assert lo == pytest.approx(0.5 - half) and hi == pytest.approx(0.5 + half)
    assert wilson(0.0, 50)[0] == pytest.approx(0.0, abs=1e-12) and 0 < wilson(0.0, 50)[1] < 0.08


def test_ks_pvalues_per_column():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((500, 2))
    same, shifted = ref[::2], ref[::2] + [0.0, 0.5]  # half the reference itself; that half moved in column 1
    p_same, p_shift = ks_pvalues(same, ref, (0, 1)), ks_pvalues(shifted, ref, (0, 1))
    assert min(p_same) > 0.5 and p_shift[0] == p_same[0] and p_shift[1] < 1e-4
    assert all(np.isnan(ks_pvalues(same[:1], ref, (0, 1))))


def test_goal_only_prints_the_goal_lines_and_no_table():
    out = _run("--process", "vp", "--goal-only", "--n", "400", "--goal-seeds", "2", "--floor-draws", "3")
    assert "# goal: ODE at <= 20 NFE within 10% of 1000-step DDPM" in out and "(n = 400, 2 seeds)" in out
    verdicts = re.findall(r"-> (PASS|FAIL); SW1 / DDPM's = ([\d.]+) \+- ([\d.]+)", out)
    assert len(verdicts) == 3  # dpm++3m, dpm++2m, heun
    assert all(float(ratio) > 0 for _, ratio, _ in verdicts)
    assert "ode rk45" not in out and "ddim eta=0" not in out  # the table was skipped


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("sq")
    data, ck = d / "tri.npy", d / "ck"
    py = [sys.executable, "-m", "ddpmctl"]
    make = ["make-data", "triangles", "--n", "32", "--size", "16", "-o", str(data)]
    r = subprocess.run(py + make, capture_output=True)
    assert r.returncode == 0, r.stderr
    cfg = d / "tiny.yaml"
    cfg.write_text("net: {base: 8, mults: [1, 2], blocks: 1, attn: []}\nbatch: 8\nsteps: 4\nwarmup: 0\n")
    args = ["train", str(data), "--config", str(cfg), "--snapshot", "0.5", "--quiet", "-o", str(ck)]
    r = subprocess.run(py + args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return ck


def test_clean_table_rows_spend_their_budgets(tiny_checkpoint):
    ck = str(tiny_checkpoint)
    data = str(tiny_checkpoint.parent / "tri.npy")
    args = ["--samplers", "ddpm,edm", "--nfe", "10,20", "--n", "4", "--batch", "4", "--data", data]
    out = _run(ck, "--skip-exact", "--clean", *args)
    rows = _rows(out)
    assert [(label.split()[0], steps, nfe) for label, steps, nfe, _ in rows] == [
        ("ddpm", 10, 10),
        ("ddpm", 20, 20),
        ("edm", 5, 9),  # Heun: 2 steps - 1
        ("edm", 10, 19),
    ]
    assert all(0 <= clean <= 100 for *_, clean in rows)
    assert "against ddpm at 20 NFE" in out and "KS p area/orient" in out


def test_clean_table_guided_rows_halve_the_steps(tiny_checkpoint):
    ck = str(tiny_checkpoint)
    guide = str(tiny_checkpoint / "snapshot-50.safetensors")
    args = ["--skip-exact", "--clean", "--samplers", "ddpm", "--nfe", "10,20", "--n", "4", "--batch", "4"]
    out = _run(ck, *args, "--guide", guide, "--guidance", "2")
    assert "autoguided by" in out and "w = 2" in out
    assert [(steps, nfe) for _, steps, nfe, _ in _rows(out)] == [(5, 10), (10, 20)]


def test_median_range_quotes_the_median_and_the_extremes():
    assert median_range([3.0, 1.0, 2.0]) == "2.0 (1.0 .. 3.0)"
    assert median_range([4, 1, 2, 10], ".2f", "-") == "3.00 (1.00-10.00)"  # even count: mean of the middle two
