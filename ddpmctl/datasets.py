"""Synthetic data sets and image-folder import (pure numpy; no CLI code).

Images are float32 ``(N, C, H, W)`` in [0, 1], point sets float32 ``(N, D)`` (README, "The file
contract"). Every generator takes a ``numpy.random.Generator``::

    import numpy as np
    from ddpmctl import datasets
    x = datasets.triangles(1000, 32, np.random.default_rng(0))          # (1000, 1, 32, 32)
    x, labels = datasets.shapes(1000, 32, np.random.default_rng(0))    # 4 classes
    p = datasets.swissroll(5000, np.random.default_rng(0), noise=0.05)  # (5000, 2)

``make`` / ``iter_chunks`` build a whole data set from a seed. They cut it into blocks of
``BLOCK`` samples (fewer for samples of more than 4096 values) and block ``b`` draws from its own
stream ``SeedSequence(seed, spawn_key=(0, b))``, so the result does not depend on the chunk size
used to write it, and a data set of ``n`` samples is the first ``n`` samples of any larger one
with the same seed and options.

Rendering (triangles, squares, discs, ellipses): each pixel row is cut into ``supersample``
horizontal scan lines through the sub-row centres; on each line a convex shape covers one interval
``[x_l, x_r]`` (found analytically), and the covered length of every pixel of the line is
integrated *exactly* in x. A pixel's value is the mean over its scan lines, i.e. its covered area
fraction, exact in x and midpoint-sampled in y. The per-pixel work is two ``bincount`` and one
cumulative sum over the interval ends (see ``_coverage``), so the cost grows with the number of scan
lines, not scan lines x pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ddpmctl import io
from ddpmctl.errors import InputError
from ddpmctl.gmm import GaussianMixture
from ddpmctl.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use (docs/startup.md)

BLOCK = 1024  # samples per random stream (changing it changes every data set: keep fixed)
BLOCK_ELEMENTS = 1 << 22  # ... fewer for big samples: at most this many values per block (16 MB)
IMAGE_KINDS = ("triangles", "shapes")
POINT_KINDS = ("swissroll", "moons", "gmm", "checkerboard")
KINDS = IMAGE_KINDS + POINT_KINDS + ("folder",)
SHAPE_CLASSES = ("triangle", "square", "disc", "ellipse")  # label = index
MOON_CLASSES = ("upper", "lower")
MIN_SIZE, MAX_SIZE = 4, 1024

DEFAULT_MIN_AREA = 0.02  # fraction of the image area
DEFAULT_MIN_ANGLE = 10.0  # degrees
DEFAULT_SUPERSAMPLE = 16  # scan lines per pixel row
DEFAULT_MARGIN = 1.0  # pixels kept free at the border for vertices / shapes

# swiss roll t cos t, t sin t with t ~ U(1.5 pi, 4.5 pi): exact mean (2, 2 / (3 pi)), rms std 6.789
_ROLL_MEAN = (2.0, 2.0 / (3.0 * math.pi))
_ROLL_STD = 6.789
# two moons: mean (0.5, 0.25), rms std 0.705
_MOONS_MEAN = (0.5, 0.25)
_MOONS_STD = 0.705


# --------------------------------------------------------------------------------------------
# rasterization


def _check_size(size: int) -> int:
    size = int(size)
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(f"--size: must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    return size


def _scan_y(size: int, supersample: int) -> np.ndarray:
    """y of every scan line: pixel row i has lines at i + (r + 0.5) / supersample."""
    return (np.arange(size * supersample, dtype=np.float64) + 0.5) / supersample


def _coverage(xl: np.ndarray, xr: np.ndarray, size: int, supersample: int) -> np.ndarray:
    """Pixel coverage from scan-line intervals ``xl, xr`` of shape (n, size * supersample).

    Empty lines have ``xl >= xr``. Returns float32 (n, size, size) in [0, 1]: pixel (i, j) is the
    mean over the lines of row i of ``|[xl, xr] ∩ [j, j + 1]| = G(j + 1) - G(j)`` with
    ``G(x) = ramp(x - xl) - ramp(x - xr)``. For one end ``a`` with ``k = ceil(a)``,
    ``ramp(j + 1 - a) - ramp(j - a)`` is 1 if ``k <= j``, ``k - a`` if ``k = j + 1``, else 0: so
    pixel j gets (running count of the ends with ``k <= j``) + (sum of ``k - a`` over ends with
    ``k = j + 1``), left ends counted +1, right ends -1: two ``bincount`` and one ``cumsum``.
    Pixels entirely inside are exactly 1, entirely outside exactly 0.
    """
    n = xl.shape[0]
    empty = ~(xr > xl)  # both ends at 0 (fractions exactly 0, no round-off left in the sums)
    a = np.where(empty, 0.0, np.clip(xl, 0.0, size))
    b = np.where(empty, 0.0, np.clip(xr, 0.0, size))
    ka, kb = np.ceil(a), np.ceil(b)
    bins = size + 1
    base = (np.arange(n * size, dtype=np.int64) * bins).repeat(supersample).reshape(n, -1)
    idx = np.concatenate([(base + ka.astype(np.int64)).ravel(), (base + kb.astype(np.int64)).ravel()])
    sign = np.concatenate([np.ones(a.size), -np.ones(b.size)])
    frac = np.concatenate([(ka - a).ravel(), (b - kb).ravel()])  # k - a for left ends, -(k - b) for right
    m = n * size * bins
    count = np.cumsum(np.bincount(idx, weights=sign, minlength=m).reshape(n * size, bins), axis=1)
    part = np.bincount(idx, weights=frac, minlength=m).reshape(n * size, bins)
    cov = ((count[:, :-1] + part[:, 1:]) * (1.0 / supersample)).astype(np.float32).reshape(n, size, size)
    return np.clip(cov, 0.0, 1.0, out=cov)


def polygon_intervals(vertices: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intervals ``[xl, xr]`` where the lines ``y`` (L,) cut convex polygons ``vertices`` (n, V, 2).

    Each edge crossing a line gives one x; the interval spans the smallest and largest. Lines that
    miss a polygon get ``xl = +inf, xr = -inf`` (empty)."""
    x0, y0 = vertices[:, :, 0, None], vertices[:, :, 1, None]
    nxt = np.roll(vertices, -1, axis=1)
    x1, y1 = nxt[:, :, 0, None], nxt[:, :, 1, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (y[None, None, :] - y0) / (y1 - y0)  # horizontal edges: inf / nan -> never valid
    valid = (t >= 0.0) & (t <= 1.0)
    x = x0 + t * (x1 - x0)
    xl = np.where(valid, x, np.inf).min(axis=1)
    xr = np.where(valid, x, -np.inf).max(axis=1)
    return xl, xr


def triangle_intervals(vertices: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``polygon_intervals`` for triangles (n, 3, 2), from the long edge and the two-edge chain.

    With the vertices sorted by y (a, b, c), one boundary is the long edge a-c and the other the
    chain a-b-c; that chain is convex towards the outside, so it is ``max`` of the lines through
    a-b and b-c when b lies left of a-c (``-max(-.)`` when right). Lines are ``x = s y + c``."""
    o = np.argsort(vertices[:, :, 1], axis=1)
    v = np.take_along_axis(vertices, o[:, :, None], axis=1)
    (xa, ya), (xb, yb), (xc, yc) = v[:, 0].T, v[:, 1].T, v[:, 2].T

    def line(x0, y0, x1, y1):
        dy = y1 - y0
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(dy != 0, (x1 - x0) / dy, 0.0)
        return slope, x0 - slope * y0, dy != 0

    s_ac, c_ac, _ = line(xa, ya, xc, yc)
    s_ab, c_ab, ok_ab = line(xa, ya, xb, yb)
    s_bc, c_bc, ok_bc = line(xb, yb, xc, yc)
    sign = np.where(xb < s_ac * yb + c_ac, 1.0, -1.0)
    c_ab = np.where(ok_ab, sign * c_ab, -np.inf)  # a horizontal edge takes no part
    c_bc = np.where(ok_bc, sign * c_bc, -np.inf)
    col = lambda a: a[:, None]  # noqa: E731
    yy = y[None, :]
    chain = np.maximum(yy * col(sign * s_ab) + col(c_ab), yy * col(sign * s_bc) + col(c_bc))
    chain *= col(sign)
    long = yy * col(s_ac) + col(c_ac)
    xl, xr = np.minimum(chain, long), np.maximum(chain, long)
    inside = (yy >= col(ya)) & (yy <= col(yc))
    return xl, np.where(inside, xr, xl)  # empty line: xr == xl


def ellipse_intervals(
    center: np.ndarray, axes: np.ndarray, angle: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Intervals where lines ``y`` cut ellipses (centre (n, 2), semi-axes (n, 2), rotation (n,)).

    Inside: ``d^T M d <= 1`` with ``M = u u^T / a^2 + v v^T / b^2``, ``u = (cos, sin)``,
    ``v = (-sin, cos)``; for a fixed ``dy`` the roots in ``dx`` are
    ``(-M01 dy ± sqrt(M00 - det(M) dy^2)) / M00``."""
    c, s = np.cos(angle), np.sin(angle)
    ia2, ib2 = 1.0 / axes[:, 0] ** 2, 1.0 / axes[:, 1] ** 2
    m00 = c * c * ia2 + s * s * ib2
    m01 = c * s * (ia2 - ib2)
    m11 = s * s * ia2 + c * c * ib2
    det = m00 * m11 - m01 * m01
    dy = y[None, :] - center[:, 1, None]
    disc = m00[:, None] - det[:, None] * dy * dy
    root = np.sqrt(np.maximum(disc, 0.0))
    mid = center[:, 0, None] - m01[:, None] * dy / m00[:, None]
    half = root / m00[:, None]
    empty = disc <= 0.0
    return np.where(empty, np.inf, mid - half), np.where(empty, -np.inf, mid + half)


def render_polygons(vertices: np.ndarray, size: int, supersample: int = DEFAULT_SUPERSAMPLE) -> np.ndarray:
    """Anti-aliased filled convex polygons (n, V, 2) in pixel units (x right, y down, the image is
    ``[0, size]^2``) as float32 (n, size, size) coverage images."""
    vertices = np.asarray(vertices, dtype=np.float64)
    y = _scan_y(size, supersample)
    intervals = triangle_intervals if vertices.shape[1] == 3 else polygon_intervals
    return _render(len(vertices), size, supersample, lambda sl: intervals(vertices[sl], y))


def render_ellipses(center, axes, angle, size: int, supersample: int = DEFAULT_SUPERSAMPLE) -> np.ndarray:
    """Anti-aliased filled ellipses as float32 (n, size, size) coverage images (see ``render_polygons``)."""
    center, axes, angle = (np.asarray(a, np.float64) for a in (center, axes, angle))
    y = _scan_y(size, supersample)
    return _render(len(center), size, supersample, lambda sl: ellipse_intervals(center[sl], axes[sl], angle[sl], y))


def _render(
    n: int, size: int, supersample: int, intervals: Callable[[slice], tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Coverage images in sub-batches of about 32k scan lines, so the temporaries stay in the CPU cache."""
    out = np.empty((n, size, size), dtype=np.float32)
    step = max(1, 32768 // (size * supersample))
    for i in range(0, n, step):
        sl = slice(i, min(n, i + step))
        out[sl] = _coverage(*intervals(sl), size, supersample)
    return out


# --------------------------------------------------------------------------------------------
# triangles and shapes


def triangle_area(v: np.ndarray) -> np.ndarray:
    """Areas of triangles (n, 3, 2) (shoelace formula)."""
    e1, e2 = v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]
    return 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def triangle_min_angle(v: np.ndarray) -> np.ndarray:
    """Smallest interior angle of triangles (n, 3, 2), in degrees."""
    angles = []
    for i in range(3):
        p, q, r = v[:, i], v[:, (i + 1) % 3], v[:, (i + 2) % 3]
        u, w = q - p, r - p
        nu, nw = np.linalg.norm(u, axis=1), np.linalg.norm(w, axis=1)
        cos = np.sum(u * w, axis=1) / np.maximum(nu * nw, 1e-300)
        angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return np.min(angles, axis=0)


def _check_triangle_options(min_area: float, min_angle: float) -> None:
    if not 0.0 <= min_area < 0.4:
        raise InputError(f"--min-area: must be in [0, 0.4) (a fraction of the image area), got {min_area}")
    if not 0.0 <= min_angle < 50.0:
        raise InputError(f"--min-angle: must be in [0, 50) degrees, got {min_angle}")


def random_triangles(
    n: int,
    size: int,
    rng: np.random.Generator,
    min_area: float = DEFAULT_MIN_AREA,
    min_angle: float = DEFAULT_MIN_ANGLE,
    margin: float = DEFAULT_MARGIN,
) -> np.ndarray:
    """Vertices (n, 3, 2) uniform in ``[margin, size - margin]^2``; triangles with an area below
    ``min_area * size^2`` or an angle below ``min_angle`` degrees are drawn again (vectorised rounds)."""
    _check_triangle_options(min_area, min_angle)
    lo, hi = margin, size - margin
    v = rng.uniform(lo, hi, size=(n, 3, 2))

    def bad(t: np.ndarray) -> np.ndarray:
        return (triangle_area(t) < min_area * size * size) | (triangle_min_angle(t) < min_angle)

    todo = np.flatnonzero(bad(v))
    for _ in range(200):
        if todo.size == 0:
            return v
        v[todo] = rng.uniform(lo, hi, size=(todo.size, 3, 2))
        todo = todo[bad(v[todo])]
    if todo.size:
        raise InputError(f"--min-area {min_area} / --min-angle {min_angle}: too strict, almost no triangle qualifies")
    return v


def triangles(
    n: int,
    size: int = 32,
    rng: np.random.Generator | None = None,
    *,
    min_area: float = DEFAULT_MIN_AREA,
    min_angle: float = DEFAULT_MIN_ANGLE,
    supersample: int = DEFAULT_SUPERSAMPLE,
) -> np.ndarray:
    """``n`` images (n, 1, size, size) float32: a filled triangle (1) with random vertices on 0,
    edges anti-aliased (exact coverage in x, ``supersample`` lines per pixel in y)."""
    size = _check_size(size)
    rng = np.random.default_rng() if rng is None else rng
    v = random_triangles(int(n), size, rng, min_area, min_angle)
    return render_polygons(v, size, supersample)[:, None]


def shapes(
    n: int,
    size: int = 32,
    rng: np.random.Generator | None = None,
    *,
    min_area: float = DEFAULT_MIN_AREA,
    min_angle: float = DEFAULT_MIN_ANGLE,
    supersample: int = DEFAULT_SUPERSAMPLE,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (n, 1, size, size) of one filled shape each and their labels (int64, index into
    ``SHAPE_CLASSES``: 0 triangle, 1 square, 2 disc, 3 ellipse), classes equally likely.

    Squares: side 0.25..0.65 size, any rotation. Discs: radius 0.1..0.4 size. Ellipses: semi-major
    axis 0.2..0.45 size, minor/major 0.3..0.7, any rotation. Centres are uniform where the shape fits
    inside the image (with the margin)."""
    size = _check_size(size)
    rng = np.random.default_rng() if rng is None else rng
    n = int(n)
    labels = rng.integers(0, len(SHAPE_CLASSES), size=n).astype(np.int64)
    out = np.zeros((n, 1, size, size), dtype=np.float32)
    m = DEFAULT_MARGIN
    idx = np.flatnonzero(labels == 0)
    if idx.size:
        out[idx, 0] = render_polygons(random_triangles(idx.size, size, rng, min_area, min_angle), size, supersample)
    idx = np.flatnonzero(labels == 1)
    if idx.size:
        side = rng.uniform(0.25, 0.65, idx.size) * size
        theta = rng.uniform(0.0, np.pi / 2, idx.size)
        half_extent = side / 2 * (np.abs(np.cos(theta)) + np.abs(np.sin(theta)))
        center = _centers(rng, half_extent, half_extent, size, m)
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) / 2
        rot = np.stack(
            [np.stack([np.cos(theta), -np.sin(theta)], -1), np.stack([np.sin(theta), np.cos(theta)], -1)], -2
        )
        verts = center[:, None, :] + side[:, None, None] * np.einsum("nij,vj->nvi", rot, corners)
        out[idx, 0] = render_polygons(verts, size, supersample)
    idx = np.flatnonzero(labels == 2)
    if idx.size:
        r = rng.uniform(0.1, 0.4, idx.size) * size
        center = _centers(rng, r, r, size, m)
        out[idx, 0] = render_ellipses(center, np.stack([r, r], 1), np.zeros(idx.size), size, supersample)
    idx = np.flatnonzero(labels == 3)
    if idx.size:
        a = rng.uniform(0.2, 0.45, idx.size) * size
        b = a * rng.uniform(0.3, 0.7, idx.size)
        theta = rng.uniform(0.0, np.pi, idx.size)
        hx = np.sqrt((a * np.cos(theta)) ** 2 + (b * np.sin(theta)) ** 2)  # half extents of the rotated ellipse
        hy = np.sqrt((a * np.sin(theta)) ** 2 + (b * np.cos(theta)) ** 2)
        center = _centers(rng, hx, hy, size, m)
        out[idx, 0] = render_ellipses(center, np.stack([a, b], 1), theta, size, supersample)
    return out, labels


def _centers(rng, hx, hy, size, margin) -> np.ndarray:
    """Centres uniform where a box of half extents (hx, hy) fits in [margin, size - margin]^2."""
    hx = np.minimum(hx + margin, size / 2)
    hy = np.minimum(hy + margin, size / 2)
    return np.stack([rng.uniform(hx, size - hx), rng.uniform(hy, size - hy)], 1)


# --------------------------------------------------------------------------------------------
# 2-D point sets


def swissroll(n: int, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """The 2-D swiss roll ``(t cos t, t sin t)``, ``t ~ U(1.5 pi, 4.5 pi)`` (as sklearn's
    ``make_swiss_roll`` x/z plane), centred and divided by 6.789 (unit rms std), plus
    N(0, noise^2) (in the scaled units). float32 (n, 2)."""
    t = rng.uniform(1.5 * np.pi, 4.5 * np.pi, int(n))
    x = (np.stack([t * np.cos(t), t * np.sin(t)], 1) - _ROLL_MEAN) / _ROLL_STD
    return (x + noise * rng.standard_normal(x.shape)).astype(np.float32)


def moons(n: int, rng: np.random.Generator, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles (upper ``(cos t, sin t)``, lower ``(1 - cos t, 0.5 - sin t)``,
    ``t ~ U(0, pi)``), centred and divided by 0.705 (unit rms std), plus N(0, noise^2).
    Returns float32 (n, 2) and the moon of each point (int64, 0 upper, 1 lower)."""
    n = int(n)
    labels = rng.integers(0, 2, n).astype(np.int64)
    t = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], 1)
    x = np.where(labels[:, None] == 0, upper, lower)
    x = (x - _MOONS_MEAN) / _MOONS_STD
    return (x + noise * rng.standard_normal(x.shape)).astype(np.float32), labels


def checkerboard(n: int, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """Uniform points on the 8 dark cells of a 4 x 4 checkerboard covering [-2, 2]^2 (cell (i, j)
    is dark when i + j is even), plus N(0, noise^2). float32 (n, 2); std per axis 4/sqrt(12) = 1.15."""
    n = int(n)
    cell = rng.integers(0, 8, n)
    row = cell // 2
    col = 2 * (cell % 2) + (row % 2)  # the dark cells of row `row`
    u = rng.uniform(0.0, 1.0, (n, 2))
    x = np.stack([col + u[:, 0], row + u[:, 1]], 1) - 2.0
    return (x + noise * rng.standard_normal(x.shape)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# whole data sets from a seed, in chunks


@dataclass
class Spec:
    """A data set: kind, per-sample shape, dtype, whether it has labels, and its block generator."""

    kind: str
    sample_shape: tuple[int, ...]
    block: Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray | None]] = field(repr=False)
    has_labels: bool = False
    mixture: GaussianMixture | None = None
    class_names: tuple[str, ...] | None = None  # of labels 0, 1, ... (None: the labels are their names)

    @property
    def is_images(self) -> bool:
        return len(self.sample_shape) == 3

    @property
    def block_len(self) -> int:
        """Samples per random stream: ``BLOCK``, fewer for samples over 4096 values (fixed by the shape)."""
        return max(1, min(BLOCK, BLOCK_ELEMENTS // int(np.prod(self.sample_shape))))


def block_rng(seed: int, b: int) -> np.random.Generator:
    """The random stream of block ``b`` of the data set with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0, int(b))))


def params_rng(seed: int) -> np.random.Generator:
    """The random stream for data-set parameters (the mixture of ``gmm``)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(1,)))


def spec(
    kind: str,
    seed: int = 0,
    *,
    size: int = 32,
    min_area: float = DEFAULT_MIN_AREA,
    min_angle: float = DEFAULT_MIN_ANGLE,
    supersample: int = DEFAULT_SUPERSAMPLE,
    noise: float = 0.0,
    components: int = 8,
    dim: int = 2,
    mixture: GaussianMixture | None = None,
) -> Spec:
    """Describe the data set ``kind`` with these options (validates them; ``InputError`` if bad)."""
    if kind not in KINDS or kind == "folder":
        raise InputError(
            f"{kind}: unknown data set (choose from {', '.join(IMAGE_KINDS + POINT_KINDS)}; or folder DIR)"
        )
    if not np.isfinite(noise) or noise < 0:
        raise InputError(f"--noise: must be >= 0, got {noise}")
    if kind in IMAGE_KINDS:
        size = _check_size(size)
        _check_triangle_options(min_area, min_angle)
        if not 1 <= int(supersample) <= 64:
            raise InputError(f"--supersample: must be between 1 and 64, got {supersample}")
        opts = dict(min_area=min_area, min_angle=min_angle, supersample=int(supersample))
        if kind == "triangles":
            return Spec(kind, (1, size, size), lambda m, r: (triangles(m, size, r, **opts), None))
        return Spec(
            kind, (1, size, size), lambda m, r: shapes(m, size, r, **opts), has_labels=True, class_names=SHAPE_CLASSES
        )
    if kind == "swissroll":
        return Spec(kind, (2,), lambda m, r: (swissroll(m, r, noise), None))
    if kind == "moons":
        return Spec(kind, (2,), lambda m, r: moons(m, r, noise), has_labels=True, class_names=MOON_CLASSES)
    if kind == "checkerboard":
        return Spec(kind, (2,), lambda m, r: (checkerboard(m, r, noise), None))
    # gmm
    if mixture is None:
        if not 1 <= int(components) <= 10_000:
            raise InputError(f"--components: must be between 1 and 10000, got {components}")
        if not 1 <= int(dim) <= 4096:
            raise InputError(f"--dim: must be between 1 and 4096, got {dim}")
        if int(components) * int(dim) ** 2 > 1 << 26:
            raise InputError(f"--components {components} x --dim {dim}: the covariances would not fit in 512 MB")
        mixture = GaussianMixture.random(int(components), int(dim), params_rng(seed))

    def gmm_block(m: int, r: np.random.Generator):
        x, lab = mixture.sample(m, r)
        if noise:
            x = (x + noise * r.standard_normal(x.shape)).astype(np.float32)
        return x, lab

    return Spec(kind, (mixture.dim,), gmm_block, has_labels=True, mixture=mixture)


def default_chunk(data: Spec) -> int:
    """Samples per written chunk: about 32 MB of float32."""
    return max(1, (8 << 20) // int(np.prod(data.sample_shape)))


def iter_chunks(
    data: Spec, n: int, seed: int = 0, chunk: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield ``(samples, labels or None)`` chunks of a data set of ``n`` samples, in order.

    ``chunk`` (samples; default ``default_chunk``) is rounded up to whole blocks; the concatenated
    chunks do not depend on it."""
    n = int(n)
    if n < 1:
        raise InputError(f"--n: must be >= 1, got {n}")
    blen = data.block_len
    chunk = default_chunk(data) if chunk is None else int(chunk)
    blocks_per_chunk = max(1, -(-chunk // blen))
    n_blocks = -(-n // blen)
    for b0 in range(0, n_blocks, blocks_per_chunk):
        xs, ls = [], []
        for b in range(b0, min(n_blocks, b0 + blocks_per_chunk)):
            x, lab = data.block(blen, block_rng(seed, b))  # always a whole block: prefixes agree
            keep = min(blen, n - b * blen)
            xs.append(x[:keep])
            ls.append(None if lab is None else lab[:keep])
        x = np.concatenate(xs) if len(xs) > 1 else xs[0]
        lab = None if ls[0] is None else (np.concatenate(ls) if len(ls) > 1 else ls[0])
        yield np.ascontiguousarray(x, dtype=np.float32), lab


def make(kind: str, n: int, seed: int = 0, **options) -> tuple[np.ndarray, np.ndarray | None]:
    """A whole data set in memory: ``(samples, labels or None)`` (see ``spec`` for the options)."""
    data = spec(kind, seed, **options)
    parts = list(iter_chunks(data, n, seed))
    x = np.concatenate([p[0] for p in parts])
    lab = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
    return x, lab


def preview_count(n: int) -> int:
    return min(int(n), 64)


# --------------------------------------------------------------------------------------------
# image folders


@dataclass
class FolderImport:
    files: list[Path]
    channels: int
    size: int
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def folder_files(folder: str | os.PathLike) -> list[Path]:
    """The image files (by extension, sorted by name) of a folder; ``InputError`` if none or no folder."""
    p = Path(folder)
    if not p.exists():
        raise InputError(f"{folder}: no such folder")
    if not p.is_dir():
        raise InputError(f"{folder}: not a folder")
    return io.list_image_files(p)


def import_folder(
    folder: str | os.PathLike,
    size: int,
    channels: int | None = None,
    skip_bad: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, FolderImport]:
    """All images of ``folder`` as (N, C, size, size) float32 in [0, 1], each read by
    ``io.read_image`` (centre square, Lanczos resize to ``size``).

    ``channels`` None: 1 if every image is grayscale, else 3. A bad file raises ``InputError``
    naming it, or with ``skip_bad`` is left out and listed in the returned ``FolderImport.skipped``."""
    size = _check_size(size)
    if channels is not None and channels not in (1, 3):
        raise InputError(f"--channels: must be 1 or 3, got {channels}")
    files = folder_files(folder)
    if channels is None:
        channels = io.image_channels(files)
    info = FolderImport(files=[], channels=channels, size=size)
    out = np.empty((len(files), channels, size, size), dtype=np.float32)
    k = 0
    for f in files:
        try:
            out[k] = io.read_image(f, channels, size=size)
        except InputError as e:
            if not skip_bad:
                raise
            info.skipped.append((f, str(e)))
        else:
            info.files.append(f)
            k += 1
        if progress is not None:
            progress(1)
    if k == 0:
        raise InputError(f"{folder}: no readable image (all {len(files)} skipped)")
    return out[:k], info
