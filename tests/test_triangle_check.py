"""The demo's shape check (benchmarks/triangle_check.py): it must pass real triangles and measure
their features (area, orientation, smallest angle, centroid) as the true vertices give them."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import triangle_check as tc  # noqa: E402

from ddpmctl.datasets import random_triangles, render_polygons  # noqa: E402


def test_triangle_features_closed_form():
    area, orientation, min_angle, cx, cy = tc.triangle_features(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0]]))
    assert area == pytest.approx(25.0)
    assert orientation == pytest.approx(math.degrees(math.atan2(5, -10)) % 180)  # the hypotenuse
    assert min_angle == pytest.approx(math.degrees(math.atan(0.5)))
    assert (cx, cy) == pytest.approx((10 / 3, 5 / 3))
    # the same triangle listed in another order or reflected has the same area and smallest angle
    f2 = tc.triangle_features(np.array([[0.0, 5.0], [0.0, 0.0], [10.0, 0.0]]))
    assert f2 == pytest.approx(tc.triangle_features(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0]])))


def test_fitted_features_match_the_true_triangles():
    rng = np.random.default_rng(5)
    tris = random_triangles(40, 32, rng)
    images = render_polygons(tris, 32)[:, None]
    frac, reasons, feats = tc.clean_features(images)
    assert frac >= 0.95, reasons
    truth = np.array([tc.triangle_features(t) for t, im in zip(tris, images) if tc.check_triangle(im)[0]])
    assert feats.shape == truth.shape
    assert np.allclose(feats[:, 0], truth[:, 0], rtol=0.05)  # area
    d = np.abs(feats[:, 1] - truth[:, 1]) % 180
    assert np.minimum(d, 180 - d).max() < 3.0  # orientation, modulo 180 degrees
    assert np.abs(feats[:, 2] - truth[:, 2]).max() < 3.0  # smallest angle
    assert np.abs(feats[:, 3:] - truth[:, 3:]).max() < 0.3  # centroid
    # a square is no triangle, and has no features
    square = render_polygons(np.array([[[8.0, 8.0], [24.0, 8.0], [24.0, 24.0], [8.0, 24.0]]]), 32)
    frac, _, feats = tc.clean_features(square[:, None])
    assert frac == 0.0 and feats.shape == (0, len(tc.FEATURES))
