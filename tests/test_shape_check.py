"""The shapes' check (benchmarks/shape_check.py), behind the conditional benchmark's clean fraction:
real shapes pass as their own class and as no other; corrupted ones fail; the moment fits recover
the true parameters in closed form."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import shape_check as sc  # noqa: E402

from ddpmctl.datasets import render_ellipses, shapes  # noqa: E402


@pytest.fixture(scope="module")
def real():
    x, y = shapes(120, 32, np.random.default_rng(5))
    return x[:, 0], y


def test_real_shapes_pass_as_their_class_and_no_other(real):
    x, y = real
    confusion = np.zeros((4, 4), dtype=int)
    for im, label in zip(x, y):
        for k in range(4):
            confusion[label, k] += sc.check_shape(im, k)[0]
    counts = np.bincount(y, minlength=4)
    assert (np.diag(confusion) >= 0.95 * counts).all(), confusion
    assert confusion.sum() - np.trace(confusion) == 0, confusion
    out = sc.fraction_clean(x[:, None], y)
    assert out["clean_fraction"] >= 0.95 and out["as_labelled"] >= 0.95
    assert (out["found"] == y).mean() == out["as_labelled"]


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda a, r: np.clip(a + 0.15 * r.standard_normal(a.shape), 0, 1),  # noise
        lambda a, r: ndimage.gaussian_filter(a, 0.8),  # blur
        lambda a, r: 0.7 * a,  # grey
        lambda a, r: np.maximum(a, ndimage.shift(a, (0, 9), order=0) * 0.6),  # a faint second copy
    ],
    ids=["noise", "blur", "grey", "ghost"],
)
def test_corrupted_shapes_fail(real, corrupt):
    rng = np.random.default_rng(0)
    x, _ = real
    bad = np.stack([corrupt(a.astype(np.float64), rng) for a in x[:40]])
    assert sc.fraction_clean(bad[:, None])["clean_fraction"] <= 0.1


def test_ellipse_moments_recover_the_parameters():
    truth = np.array([15.3, 16.8, 9.0, 4.0, 0.6])
    img = render_ellipses(truth[None, :2], truth[None, 2:4], truth[None, 4:], 32)[0].astype(np.float64)
    start = sc._ellipse_start(img)
    assert start[:4] == pytest.approx(truth[:4], abs=0.1)  # the 1/12 pixel term is exact inside only
    assert abs((start[4] - truth[4] + np.pi / 2) % np.pi - np.pi / 2) < 0.01  # the angle mod pi
    disc = render_ellipses(np.array([[16.0, 15.0]]), np.array([[7.0, 7.0]]), np.zeros(1), 32)[0]
    assert sc._disc_start(disc.astype(np.float64)) == pytest.approx([16.0, 15.0, 7.0], abs=0.02)


def test_a_round_ellipse_is_a_disc_not_an_ellipse():
    img = render_ellipses(np.array([[16.0, 16.0]]), np.array([[8.0, 7.9]]), np.zeros(1), 32)[0]
    assert sc.classify(img)[0] == 2
    assert not sc.check_shape(img, 3)[0]
    assert sc.classify(np.zeros((32, 32)))[0] == -1


def test_a_faint_background_does_not_spoil_the_fit(real):
    """The moments are taken near the shape: a uniform 0.03 background (within the tolerance of
    the far pixels) leaves every class passing, as the samples of a diffusion model have one."""
    x, y = real
    faint = np.clip(x[:40] + 0.03, 0, 1)
    assert sc.fraction_clean(faint[:, None], y[:40])["as_labelled"] >= 0.95
