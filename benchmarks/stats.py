"""Small statistics shared by the benchmarks and the examples' tables."""

from __future__ import annotations

import math


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion p observed on n trials."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def ks_pvalues(samples, reference, columns) -> list[float]:
    """Two-sample Kolmogorov-Smirnov p-value of each of ``columns``, samples (K, F) against the
    reference (M, F): small p, the two distributions differ; nan when either has fewer than 2 rows."""
    from scipy.stats import ks_2samp

    if len(samples) < 2 or len(reference) < 2:
        return [float("nan")] * len(columns)
    return [float(ks_2samp(samples[:, c], reference[:, c]).pvalue) for c in columns]


def median_range(values, fmt: str = ".1f", sep: str = " .. ") -> str:
    """``"median (min .. max)"`` of timings over rounds: the form every speed table of the docs quotes."""
    v = sorted(float(x) for x in values)
    mid = len(v) // 2
    med = v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2
    return f"{med:{fmt}} ({v[0]:{fmt}}{sep}{v[-1]:{fmt}})"
