"""benchmarks/sample_speed.py runs end to end on a tiny network and prints its three rows and the ratio."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sample_speed_prints_the_rows_and_the_ratio_of_their_medians():
    net = '{"base": 8, "mults": [1, 2], "mid_attn": false}'
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sample_speed.py"), "--net", net, "--n", "4", "--steps", "2",
         "--rounds", "1", "--plain-batch", "2", "--sampler", "ddim", "--no-compile"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    row = r"^(plain|ddpmctl generate, NCHW|ddpmctl generate ddim).*? ([0-9.]+) \([0-9. ]+\) ms/img/NFE"
    rows = dict(re.findall(row, r.stdout, re.M))
    assert len(rows) == 3 and all(float(v) > 0 for v in rows.values()), r.stdout
    ratio = float(re.search(r"speed ratio ddpmctl / plain: ([0-9.]+)x", r.stdout).group(1))
    expected = float(rows["plain"]) / float(rows["ddpmctl generate ddim"])
    assert abs(ratio - expected) <= 0.02 * expected + 0.01, (ratio, expected)
    assert '"base": 8' in r.stdout and "goal 1.3x" in r.stdout
