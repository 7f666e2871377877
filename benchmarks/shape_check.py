"""Is an image a clean filled shape of ``make-data shapes`` (triangle, square, disc or ellipse)?

The same criteria as ``triangle_check`` (its docstring): no speck, no holes, and a rendering of the
fitted shape, anti-aliased exactly as ``make-data shapes`` renders it, explains every pixel (max
|residual| <= 0.35, edge RMS <= 0.08, every pixel 2+ pixels from the edge within 0.25). Each
class has its own fit:

* triangle: ``triangle_check.check_and_fit`` (contour, largest hull triangle, refitted sides);
* disc and ellipse: the image moments. A filled ellipse with semi-axes a >= b has the covariance
  R diag(a^2, b^2) R^T / 4, and a coverage image's pixel moments fall short of the shape's by 1/12
  per axis (the variance of a uniform pixel), so a = 2 sqrt(lambda_1 + 1/12), b likewise, and R is
  the eigenvector basis; a disc takes r = sqrt(area / pi);
* square: centre from the first moments, side sqrt(area), angle from the smallest-area bounding
  rectangle of the 0.5 contour's convex hull (one of the hull's edge directions);

then a near miss (edge RMS under 3x its limit) is polished by Nelder-Mead on the squared residual
before the image is judged again. An ellipse counts only with minor/major <= 0.85 (the data's
ellipses have 0.3-0.7; rounder ones are discs), so disc and ellipse never both pass.

``classify(img)`` returns the class whose check passes (-1 when none does): a clean image is one of
some class; ``check_shape(img, k)`` asks for class k. Measured on ``make-data shapes --seed 5
--n 2000``: see ``tests/test_shape_check.py`` (every class >= 98% as itself, ~0% as another).

Usage: python benchmarks/shape_check.py IMAGES.npy [--labels LABELS.npy] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from scipy import ndimage, optimize
from scipy.spatial import ConvexHull, QhullError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import triangle_check as tc  # noqa: E402

from ddpmctl.datasets import SHAPE_CLASSES, render_ellipses, render_polygons  # noqa: E402

MAX_ROUNDNESS = 0.85  # an ellipse's minor/major at most this (data: 0.3-0.7); rounder is a disc
_SQUARE = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) / 2


def render_square(p: np.ndarray, h: int, w: int) -> np.ndarray:
    """Square with p = (cx, cy, side, angle) in pixels / radians, as (h, w) coverage."""
    cx, cy, side, th = p
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    verts = np.array([cx, cy]) + side * _SQUARE @ rot.T
    return render_polygons(verts[None], max(h, w), 4)[0, :h, :w].astype(np.float64)


def render_ellipse(p: np.ndarray, h: int, w: int) -> np.ndarray:
    """Ellipse with p = (cx, cy, a, b, angle) (a disc: b = a), as (h, w) coverage."""
    cx, cy, a, b, th = p
    img = render_ellipses(np.array([[cx, cy]]), np.array([[abs(a), abs(b)]]), np.array([th]), max(h, w), 4)
    return img[0, :h, :w].astype(np.float64)


def _moments(img: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Area, centre (x, y) and the shape's covariance (2, 2) (pixel moments + 1/12 per axis), of
    the pixels within 2 px of the 0.5 mask: a faint background far away would inflate the second
    moments (it is judged afterwards, by ``judge``)."""
    h, w = img.shape
    img = np.where(ndimage.distance_transform_edt(img <= 0.5) <= 2, img, 0.0)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    area = float(img.sum())
    c = np.array([(img * xx).sum(), (img * yy).sum()]) / area
    d = np.stack([xx - c[0], yy - c[1]])
    cov = np.einsum("ihw,jhw,hw->ij", d, d, img) / area + np.eye(2) / 12
    return area, c, cov


def _ellipse_start(img: np.ndarray) -> np.ndarray:
    _, c, cov = _moments(img)
    lam, vec = np.linalg.eigh(cov)  # ascending
    a, b = 2 * np.sqrt(np.maximum(lam[::-1], 1e-6))
    return np.array([c[0], c[1], a, b, np.arctan2(vec[1, 1], vec[0, 1])])


def _disc_start(img: np.ndarray) -> np.ndarray:
    area, c, _ = _moments(img)
    return np.array([c[0], c[1], np.sqrt(area / np.pi)])


def _square_start(img: np.ndarray) -> np.ndarray:
    area, c, _ = _moments(img)
    pts = tc.contour_points(img)
    angle = 0.0
    try:
        hull = pts[ConvexHull(pts).vertices]
        best = np.inf
        for e in np.diff(np.vstack([hull, hull[:1]]), axis=0):  # smallest bounding rectangle
            th = np.arctan2(e[1], e[0])
            rot = np.array([[np.cos(th), np.sin(th)], [-np.sin(th), np.cos(th)]])
            q = hull @ rot.T
            box = np.prod(q.max(0) - q.min(0))
            if box < best:
                best, angle = box, th
    except (QhullError, ValueError, IndexError):
        pass
    return np.array([c[0], c[1], np.sqrt(area), angle])


def _fitter(k: int):
    """(start, render) of class k's parameters (k = 1 square, 2 disc, 3 ellipse)."""
    if k == 1:
        return _square_start, render_square
    if k == 2:
        return _disc_start, lambda p, h, w: render_ellipse(np.array([p[0], p[1], p[2], p[2], 0.0]), h, w)
    return _ellipse_start, render_ellipse


def _fit_and_judge(img: np.ndarray, k: int, regions: int) -> tuple[bool, str, np.ndarray]:
    start, draw = _fitter(k)
    what = SHAPE_CLASSES[k]
    h, w = img.shape
    p = start(img)
    ok, why, rms = tc.judge(img, draw(p, h, w), regions, what)
    if not ok and rms < 3 * tc.EDGE_RMS:  # a near miss: polish, then judge again

        def loss(q: np.ndarray) -> float:
            return float(((draw(q, h, w) - img) ** 2).sum())

        opts = {"xatol": 1e-3, "fatol": 1e-6, "maxiter": 400, "adaptive": True}
        p = optimize.minimize(loss, p, method="Nelder-Mead", options=opts).x
        ok, why, _ = tc.judge(img, draw(p, h, w), regions, what)
    if ok and k == 3 and min(abs(p[2]), abs(p[3])) > MAX_ROUNDNESS * max(abs(p[2]), abs(p[3])):
        return False, "not an ellipse (round)", p
    return ok, why, p


def check_shape(img: np.ndarray, k: int) -> tuple[bool, str]:
    """(passes, reason): is img (H, W) or (1, H, W) in [0, 1] a clean filled shape of class k?"""
    img = np.asarray(img, dtype=np.float64).squeeze()
    if k == 0:
        return tc.check_triangle(img)
    mask = img > 0.5
    if mask.sum() < tc.MIN_PIXELS:
        return False, "empty or speck"
    _, regions = ndimage.label(mask, structure=np.ones((3, 3)))
    if (ndimage.binary_fill_holes(mask) != mask).any():
        return False, "holes"
    ok, why, _ = _fit_and_judge(img, k, regions)
    return ok, why


def classify(img: np.ndarray) -> tuple[int, str]:
    """(class, reason): the first class whose check passes, or (-1, the reason of the closest miss)."""
    whys = []
    for k in (2, 3, 1, 0):  # the cheap fits first
        ok, why = check_shape(img, k)
        if ok:
            return k, "ok"
        whys.append(why)
        if why in ("empty or speck", "holes"):
            break
    generic = [w for w in whys if not w.startswith("not a")]
    return -1, (generic[0] if generic else "no shape")


def fraction_clean(images: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Fraction of images that are a clean shape of some class, and (with labels) of their own
    class; per-class counts and the reasons for failing."""
    results = [classify(im) for im in images]
    found = np.array([k for k, _ in results], dtype=np.int64)
    reasons: dict[str, int] = {}
    for k, why in results:
        if k < 0:
            reasons[why] = reasons.get(why, 0) + 1
    out = {"n": len(images), "clean_fraction": float((found >= 0).mean()), "reasons": reasons}
    if labels is not None:
        labels = np.asarray(labels)
        out["as_labelled"] = float((found == labels).mean())
        out["per_class"] = {
            SHAPE_CLASSES[k]: float((found[labels == k] == k).mean()) for k in np.unique(labels) if k >= 0
        }
    out["found"] = found
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", help=".npy of images (N, 1, H, W) in [0, 1]")
    ap.add_argument("--labels", help=".npy of the requested classes (default: IMAGES.labels.npy if present)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    x = np.asarray(np.load(args.images, allow_pickle=False, mmap_mode="r"))
    lab = args.labels or args.images[: -len(".npy")] + ".labels.npy"
    labels = np.load(lab) if os.path.exists(lab) else None
    out = fraction_clean(x, labels)
    out.pop("found")
    if args.json:
        print(json.dumps(out))
    else:
        extra = f", {100 * out['as_labelled']:.1f}% of their label" if labels is not None else ""
        print(f"{len(x)} images: {100 * out['clean_fraction']:.1f}% clean shapes{extra}  {out['reasons']}")


if __name__ == "__main__":
    sys.exit(main())
