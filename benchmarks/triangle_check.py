"""Is an image a clean filled triangle? The shape check behind the demo's quality figure.

An image (H, W) in [0, 1] passes when all of these hold:

1. one solid region: the mask ``img > 0.5`` is a single 8-connected component without holes;
2. no grey specks or halos: every pixel at least 2 pixels away from the mask's edge is within
   ``tol`` (0.25) of its side's value (0 outside, 1 inside);
3. three straight sides: the anti-aliased filled triangle that best matches the image (least
   squares over its three corners) explains every pixel: max |residual| <= 0.35 and RMS residual
   <= 0.05 (a square or a disc leaves whole pixels unexplained);
4. not a speck itself: the region has at least 6 pixels.

Usage: python benchmarks/triangle_check.py IMAGES.npy [--json]  -> the fraction that pass.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np
from scipy import ndimage, optimize
from scipy.spatial import ConvexHull, QhullError


_SS = 8  # sub-samples per pixel side when rendering a candidate triangle


def render_triangle(v: np.ndarray, h: int, w: int, ss: int = _SS) -> np.ndarray:
    """Coverage (anti-aliased by ss x ss supersampling) of the triangle with corners v (3, 2) as (x, y)."""
    off = (np.arange(ss) + 0.5) / ss
    xs = (np.arange(w)[:, None] + off[None]).reshape(-1)
    ys = (np.arange(h)[:, None] + off[None]).reshape(-1)
    X, Y = np.meshgrid(xs, ys)
    (x0, y0), (x1, y1), (x2, y2) = v
    d = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    s = np.sign(d) if d != 0 else 1.0
    e0 = s * ((x1 - x0) * (Y - y0) - (y1 - y0) * (X - x0)) >= 0
    e1 = s * ((x2 - x1) * (Y - y1) - (y2 - y1) * (X - x1)) >= 0
    e2 = s * ((x0 - x2) * (Y - y2) - (y0 - y2) * (X - x2)) >= 0
    inside = (e0 & e1 & e2).astype(np.float64)
    return inside.reshape(h, ss, w, ss).mean(axis=(1, 3))


def fit_triangle(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The triangle whose rendering best matches img (least squares, Nelder-Mead from the largest
    triangle inscribed in the region's convex hull); returns (corners (3, 2), residual image)."""
    h, w = img.shape
    ys, xs = np.nonzero(img > 0.5)
    pts = np.stack([xs + 0.5, ys + 0.5], 1).astype(np.float64)
    try:
        hull = pts[ConvexHull(pts).vertices]
    except QhullError:
        hull = pts
    best, start = -1.0, None
    for i, j, k in itertools.combinations(range(len(hull)), 3):
        a, b, c = hull[i], hull[j], hull[k]
        area = abs((b[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (b[1] - a[1]))
        if area > best:
            best, start = area, np.stack([a, b, c])
    if start is None:
        return np.zeros((3, 2)), img
    # push the start corners outward by a pixel (pixel centres sit inside the true edges)
    start = start + np.sign(start - start.mean(0)) * 0.7
    loss = lambda p: ((render_triangle(p.reshape(3, 2), h, w) - img) ** 2).sum()  # noqa: E731
    x = start.reshape(-1)
    for _ in range(3):  # Nelder-Mead restarts get it out of the flat spots of a pixel-quantised loss
        x = optimize.minimize(loss, x, method="Nelder-Mead",
                              options={"xatol": 1e-3, "fatol": 1e-5, "maxiter": 2000, "adaptive": True}).x
    tri = x.reshape(3, 2)
    return tri, img - render_triangle(tri, h, w, ss=8)


def _max_triangle_area(pts: np.ndarray) -> float:
    n = len(pts)
    if n < 3:
        return 0.0
    best = 0.0
    # hull vertex counts are small (< 40): the cubic search is cheap and exact
    for i, j, k in itertools.combinations(range(n), 3):
        a, b, c = pts[i], pts[j], pts[k]
        area = abs((b[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (b[1] - a[1])) / 2
        best = max(best, area)
    return best


def check_triangle(img: np.ndarray, tol: float = 0.25) -> tuple[bool, str]:
    """(passes, reason) for one image (H, W) or (1, H, W) in [0, 1]."""
    img = np.asarray(img, dtype=np.float64).squeeze()
    mask = img > 0.5
    if mask.sum() < 6:
        return False, "empty or speck"
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n != 1:
        return False, f"{n} regions"
    if (ndimage.binary_fill_holes(mask) != mask).any():
        return False, "holes"
    # distance of every pixel to the other side of the edge
    d_in = ndimage.distance_transform_edt(mask)
    d_out = ndimage.distance_transform_edt(~mask)
    far = np.where(mask, d_in, d_out) >= 2
    if (np.abs(img - mask)[far] > tol).any():
        return False, "grey specks or halo"
    # three straight sides: the best anti-aliased triangle explains every pixel
    tri, resid = fit_triangle(img)
    if np.abs(resid).max() > 0.35 or np.sqrt((resid**2).mean()) > 0.05:
        return False, "not a triangle"
    return True, "ok"


def fraction_clean(images: np.ndarray) -> tuple[float, dict]:
    """Fraction of images (N, [1,] H, W) that pass, and a count of the reasons for failing."""
    reasons: dict[str, int] = {}
    ok = 0
    for im in images:
        passed, why = check_triangle(im)
        ok += passed
        reasons[why] = reasons.get(why, 0) + 1
    return ok / max(len(images), 1), reasons


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", help=".npy of images (N, 1, H, W) in [0, 1]")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    x = np.load(args.images, allow_pickle=False, mmap_mode="r")
    frac, reasons = fraction_clean(np.asarray(x))
    if args.json:
        print(json.dumps({"n": len(x), "clean_fraction": frac, "reasons": reasons}))
    else:
        print(f"{len(x)} images: {100 * frac:.1f}% clean filled triangles  {reasons}")


if __name__ == "__main__":
    sys.exit(main())
