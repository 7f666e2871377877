"""Tests of the synthetic data sets (ddpmctl.datasets, ddpmctl.gmm) and the make-data command."""

from __future__ import annotations

import numpy as np
import pytest

from ddpmctl.errors import InputError
from ddpmctl.gmm import GaussianMixture

# ------------------------------------------------------------------------------------------
# gmm


def test_gmm_random_fields_and_spd():
    g = GaussianMixture.random(5, 3, np.random.default_rng(0))
    assert g.weights.shape == (5,) and g.means.shape == (5, 3) and g.covs.shape == (5, 3, 3)
    assert g.weights.dtype == g.means.dtype == g.covs.dtype == np.float64
    assert np.isclose(g.weights.sum(), 1.0)
    assert np.allclose(g.covs, g.covs.transpose(0, 2, 1))
    eig = np.linalg.eigvalsh(g.covs)
    assert eig.min() >= 0.2**2 - 1e-9 and eig.max() <= 0.8**2 + 1e-9
    assert np.abs(g.means).max() <= 2.0


def test_gmm_save_load_round_trip(tmp_path):
    g = GaussianMixture.random(4, 2, np.random.default_rng(1))
    g.save(tmp_path / "m.npz")
    h = GaussianMixture.load(tmp_path / "m.npz")
    assert np.array_equal(g.weights, h.weights) and np.array_equal(g.means, h.means) and np.array_equal(g.covs, h.covs)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert str(z["kind"]) == "gmm"


def test_gmm_load_rejects_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        GaussianMixture.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "a.npz", weights=np.ones(2) / 2, means=np.zeros((2, 2)))
    with pytest.raises(InputError, match="missing covs"):
        GaussianMixture.load(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", weights=np.ones(2) / 2, means=np.zeros((2, 2)), covs=-np.stack([np.eye(2)] * 2))
    with pytest.raises(InputError, match="positive definite"):
        GaussianMixture.load(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", weights=np.ones(3) / 3, means=np.zeros((2, 2)), covs=np.stack([np.eye(2)] * 2))
    with pytest.raises(InputError, match="means must have shape"):
        GaussianMixture.load(tmp_path / "c.npz")
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="d.npz"):
        GaussianMixture.load(tmp_path / "d.npz")


def test_gmm_sample_moments():
    g = GaussianMixture.random(3, 2, np.random.default_rng(2))
    x, labels = g.sample(200_000, np.random.default_rng(3))
    assert x.dtype == np.float32 and x.shape == (200_000, 2) and labels.dtype == np.int64
    assert np.allclose(np.bincount(labels, minlength=3) / len(labels), g.weights, atol=0.005)
    assert np.allclose(x.mean(0), g.mean(), atol=0.03)
    assert np.allclose(np.cov(x.T.astype(np.float64)), g.cov(), atol=0.05 * np.abs(g.cov()).max())
    for k in range(3):  # per-component moments
        xk = x[labels == k].astype(np.float64)
        assert np.allclose(xk.mean(0), g.means[k], atol=0.02)
        assert np.allclose(np.cov(xk.T), g.covs[k], atol=0.02)


def test_gmm_log_prob_matches_scipy_and_integrates_to_one():
    from scipy.stats import multivariate_normal

    g = GaussianMixture.random(3, 2, np.random.default_rng(4))
    x = np.random.default_rng(5).normal(size=(50, 2)) * 2
    ref = np.log(sum(w * multivariate_normal(m, c).pdf(x) for w, m, c in zip(g.weights, g.means, g.covs)))
    assert np.allclose(g.log_prob(x), ref, rtol=1e-10, atol=1e-10)
    grid = np.linspace(-6, 6, 401)
    xx, yy = np.meshgrid(grid, grid)
    pts = np.stack([xx.ravel(), yy.ravel()], 1)
    total = np.exp(g.log_prob(pts)).sum() * (grid[1] - grid[0]) ** 2
    assert abs(total - 1.0) < 1e-3


# ------------------------------------------------------------------------------------------
# triangles and shapes

from ddpmctl import datasets  # noqa: E402
from ddpmctl.io import NpyStreamWriter, read_npy  # noqa: E402


def _edge_sides(v: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Signed side of points (px, py) for the 3 edges of a triangle v (3, 2), oriented so that the
    interior is positive: shape (3, *px.shape)."""
    sides = []
    area2 = (v[1, 0] - v[0, 0]) * (v[2, 1] - v[0, 1]) - (v[1, 1] - v[0, 1]) * (v[2, 0] - v[0, 0])
    for i in range(3):
        p, q = v[i], v[(i + 1) % 3]
        sides.append(np.sign(area2) * ((q[0] - p[0]) * (py - p[1]) - (q[1] - p[1]) * (px - p[0])))
    return np.stack(sides)


def test_triangles_shape_dtype_range_and_determinism():
    x = datasets.triangles(300, 32, np.random.default_rng(7))
    assert x.shape == (300, 1, 32, 32) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.array_equal(x, datasets.triangles(300, 32, np.random.default_rng(7)))
    assert not np.array_equal(x, datasets.triangles(300, 32, np.random.default_rng(8)))
    frac = ((x > 0) & (x < 1)).mean()
    assert 0.005 < frac < 0.2  # anti-aliased edges: some grey pixels, not many
    assert datasets.triangles(5, 7, np.random.default_rng(0)).shape == (5, 1, 7, 7)


def test_triangles_are_filled_with_exact_area():
    size = 32
    rng = np.random.default_rng(3)
    v = datasets.random_triangles(200, size, rng)
    img = datasets.render_polygons(v, size)
    corners = np.arange(size + 1, dtype=np.float64)
    cx, cy = np.meshgrid(corners, corners)  # pixel corners, [row, col]
    n_inner = n_outer = 0
    for k in range(len(v)):
        s = _edge_sides(v[k], cx, cy)  # (3, size+1, size+1)
        # pixel (i, j) has corners (i..i+1, j..j+1): inside if all four corners are inside every edge
        inside_corner = (s >= 0).all(0)
        full = inside_corner[:-1, :-1] & inside_corner[1:, :-1] & inside_corner[:-1, 1:] & inside_corner[1:, 1:]
        # outside if all four corners lie strictly outside the same edge (a separating line)
        out_e = s < 0
        empty = (out_e[:, :-1, :-1] & out_e[:, 1:, :-1] & out_e[:, :-1, 1:] & out_e[:, 1:, 1:]).any(0)
        assert (img[k][full] == 1.0).all()
        assert (img[k][empty] == 0.0).all()
        n_inner += full.sum()
        n_outer += empty.sum()
        # pixels outside the bounding box are 0
        x0, x1 = int(np.floor(v[k, :, 0].min())), int(np.ceil(v[k, :, 0].max()))
        y0, y1 = int(np.floor(v[k, :, 1].min())), int(np.ceil(v[k, :, 1].max()))
        assert (
            img[k, :y0].sum() == 0
            and img[k, y1:].sum() == 0
            and img[k, :, :x0].sum() == 0
            and img[k, :, x1:].sum() == 0
        )
    assert n_inner > 1000 and n_outer > 10000
    area = datasets.triangle_area(v)
    err = np.abs(img.sum((1, 2)) - area)
    assert err.mean() < 0.02 and err.max() < 1.0  # exact in x, 16 scan lines per pixel in y
    # more scan lines converge to the exact area
    err64 = np.abs(datasets.render_polygons(v, size, supersample=64).sum((1, 2)) - area)
    assert err64.mean() < err.mean() / 2 + 1e-9


def test_triangles_match_a_high_resolution_reference():
    from PIL import Image, ImageDraw

    size, k = 16, 32
    v = datasets.random_triangles(10, size, np.random.default_rng(11))
    img = datasets.render_polygons(v, size)
    for i in range(len(v)):
        big = Image.new("L", (size * k, size * k), 0)
        ImageDraw.Draw(big).polygon([tuple(p * k) for p in v[i]], fill=255)
        ref = np.asarray(big.resize((size, size), Image.BOX), dtype=np.float32) / 255.0
        assert np.abs(ref - img[i]).max() < 0.05


def test_triangle_interval_fast_path_equals_general_polygon_path():
    v = datasets.random_triangles(500, 24, np.random.default_rng(5), min_area=0, min_angle=0)
    v[0, 1, 1] = v[0, 0, 1]  # a horizontal edge
    v[1, 2, 0] = v[1, 0, 0]  # a vertical edge
    y = datasets._scan_y(24, 8)
    a = datasets._coverage(*datasets.polygon_intervals(v, y), 24, 8)
    b = datasets._coverage(*datasets.triangle_intervals(v, y), 24, 8)
    assert np.abs(a - b).max() < 1e-6


@pytest.mark.parametrize("min_area,min_angle", [(0.05, 20.0), (0.0, 30.0), (0.15, 0.0)])
def test_min_area_and_min_angle_respected(min_area, min_angle):
    v = datasets.random_triangles(2000, 32, np.random.default_rng(1), min_area=min_area, min_angle=min_angle)
    assert (datasets.triangle_area(v) >= min_area * 32 * 32).all()
    assert (datasets.triangle_min_angle(v) >= min_angle).all()
    assert (v >= 1.0).all() and (v <= 31.0).all()  # the margin
    # the constraints bind: without them some triangles would violate them
    u = datasets.random_triangles(2000, 32, np.random.default_rng(1), min_area=0, min_angle=0)
    assert ((datasets.triangle_area(u) < min_area * 1024) | (datasets.triangle_min_angle(u) < min_angle)).any()


def test_triangle_options_validated():
    with pytest.raises(InputError, match="--min-angle"):
        datasets.random_triangles(10, 32, np.random.default_rng(0), min_angle=60)
    with pytest.raises(InputError, match="--min-area"):
        datasets.random_triangles(10, 32, np.random.default_rng(0), min_area=0.5)
    with pytest.raises(InputError, match="--size"):
        datasets.triangles(10, 3, np.random.default_rng(0))


def test_ellipse_and_square_areas():
    size = 32
    center = np.array([[16.0, 16.0], [10.3, 20.7]])
    axes = np.array([[10.0, 10.0], [8.0, 3.5]])
    img = datasets.render_ellipses(center, axes, np.array([0.0, 0.7]), size)
    assert np.allclose(img.sum((1, 2)), np.pi * axes[:, 0] * axes[:, 1], atol=0.2)
    assert img[0, 16, 16] == 1.0 and img[0, 0, 0] == 0.0
    sq = np.array([[[8.0, 8.0], [20.0, 8.0], [20.0, 20.0], [8.0, 20.0]]])
    im = datasets.render_polygons(sq, size)[0]
    assert im.sum() == pytest.approx(144.0) and im[8:20, 8:20].min() == 1.0 and im.sum() == im[8:20, 8:20].sum()


def test_shapes_labels_and_classes():
    x, labels = datasets.shapes(400, 32, np.random.default_rng(2))
    assert x.shape == (400, 1, 32, 32) and x.dtype == np.float32 and labels.dtype == np.int64
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert 0.0 <= x.min() and x.max() == 1.0
    area = x.sum((1, 2, 3))
    assert (area > 5).all()  # every image shows a shape
    # discs: radius 0.1..0.4 of the size -> area pi r^2 within those bounds
    disc = area[labels == 2]
    assert disc.min() >= np.pi * (3.2**2) - 1 and disc.max() <= np.pi * (12.8**2) + 1
    # squares have a 2x2 symmetric moment structure: equal second moments about their centre
    yy, xx = np.mgrid[0:32, 0:32] + 0.5
    for im in x[labels == 1][:20, 0]:
        m = im.sum()
        cx, cy = (im * xx).sum() / m, (im * yy).sum() / m
        sxx, syy = (im * (xx - cx) ** 2).sum() / m, (im * (yy - cy) ** 2).sum() / m
        assert abs(sxx - syy) < 0.05 * (sxx + syy)


# ------------------------------------------------------------------------------------------
# point sets


def test_point_sets():
    rng = np.random.default_rng(0)
    roll = datasets.swissroll(20000, rng)
    assert roll.shape == (20000, 2) and roll.dtype == np.float32
    assert np.abs(roll.mean(0)).max() < 0.05 and 0.9 < np.sqrt(roll.var(0).mean()) < 1.1
    r = np.linalg.norm(roll * datasets._ROLL_STD + datasets._ROLL_MEAN, axis=1)  # radius = t in [1.5 pi, 4.5 pi]
    assert r.min() >= 1.5 * np.pi - 1e-3 and r.max() <= 4.5 * np.pi + 1e-3
    noisy = datasets.swissroll(20000, np.random.default_rng(0), noise=0.1)
    assert (noisy - roll).std() == pytest.approx(0.1, rel=0.05)

    m, lab = datasets.moons(20000, rng)
    assert m.shape == (20000, 2) and lab.dtype == np.int64 and set(np.unique(lab)) == {0, 1}
    raw = m * datasets._MOONS_STD + datasets._MOONS_MEAN
    centre = np.where(lab[:, None] == 0, [0.0, 0.0], [1.0, 0.5])
    assert np.allclose(np.linalg.norm(raw - centre, axis=1), 1.0, atol=1e-5)
    assert np.abs(m.mean(0)).max() < 0.05 and 0.9 < np.sqrt(m.var(0).mean()) < 1.1

    c = datasets.checkerboard(20000, rng)
    assert c.shape == (20000, 2) and np.abs(c).max() <= 2.0
    cell = np.floor(c + 2.0).astype(int)
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()
    assert len({tuple(p) for p in cell}) == 8


# ------------------------------------------------------------------------------------------
# whole data sets: seeds, chunks, prefixes


@pytest.mark.parametrize("kind", ["triangles", "shapes", "swissroll", "moons", "gmm", "checkerboard"])
def test_make_is_deterministic_and_chunking_does_not_matter(kind):
    spec = datasets.spec(kind, 5, size=12)
    n = 2 * datasets.BLOCK + 300
    parts = {c: list(datasets.iter_chunks(spec, n, 5, chunk=c)) for c in (1, 1500, 10**6)}
    full = np.concatenate([p[0] for p in parts[10**6]])
    assert full.dtype == np.float32 and full.shape == (n,) + spec.sample_shape
    assert len(parts[1]) == 3 and len(parts[1500]) == 2 and len(parts[10**6]) == 1
    for c in (1, 1500):
        assert np.array_equal(np.concatenate([p[0] for p in parts[c]]), full)
        if spec.has_labels:
            assert np.array_equal(
                np.concatenate([p[1] for p in parts[c]]), np.concatenate([p[1] for p in parts[10**6]])
            )
    x1, l1 = datasets.make(kind, 700, 5, size=12)
    assert np.array_equal(x1, full[:700])  # a smaller set is a prefix of a larger one
    assert np.array_equal(datasets.make(kind, 700, 5, size=12)[0], x1)
    assert not np.array_equal(datasets.make(kind, 700, 6, size=12)[0], x1)
    assert (l1 is None) == (not spec.has_labels)


def test_block_length_bounded_for_big_images():
    spec = datasets.spec("triangles", 0, size=256)
    assert spec.block_len == 64 and spec.block_len * 256 * 256 <= datasets.BLOCK_ELEMENTS
    assert datasets.spec("triangles", 0, size=32).block_len == datasets.BLOCK


def test_stream_writer_equals_np_save(tmp_path):
    x, _ = datasets.make("triangles", 1500, 1, size=8)
    with NpyStreamWriter(tmp_path / "s.npy", x.shape) as out:
        for i in range(0, len(x), 400):
            out.write(x[i : i + 400])
    np.save(tmp_path / "r.npy", x)
    assert (tmp_path / "s.npy").read_bytes() == (tmp_path / "r.npy").read_bytes()
    from ddpmctl.errors import RunError

    with pytest.raises(RunError, match="wrote 400 of 1500"):
        with NpyStreamWriter(tmp_path / "short.npy", x.shape) as out:
            out.write(x[:400])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.npy", "s.npy"]


def test_gmm_data_set_uses_its_mixture():
    spec = datasets.spec("gmm", 3, components=3, dim=4)
    assert spec.mixture.k == 3 and spec.mixture.dim == 4 and spec.sample_shape == (4,)
    x, lab = datasets.make("gmm", 30000, 3, components=3, dim=4)
    assert x.shape == (30000, 4) and lab.max() == 2
    for k in range(3):
        assert np.allclose(x[lab == k].mean(0), spec.mixture.means[k], atol=0.05)
    again = datasets.spec("gmm", 3, components=3, dim=4).mixture
    assert np.array_equal(again.means, spec.mixture.means)
    with pytest.raises(InputError, match="unknown data set"):
        datasets.spec("circles")


# ------------------------------------------------------------------------------------------
# folder import


def _png(path, array, mode=None):
    from PIL import Image

    Image.fromarray(array, mode=mode).save(path)


def test_folder_import_crop_resize_channels(tmp_path):
    rgb = np.zeros((20, 60, 3), np.uint8)  # left red, middle green, right blue: centre crop = green
    rgb[:, :20, 0] = 255
    rgb[:, 20:40, 1] = 200
    rgb[:, 40:, 2] = 255
    _png(tmp_path / "a.png", rgb)
    gray = np.full((50, 50), 128, np.uint8)
    _png(tmp_path / "b.png", gray)
    (tmp_path / "notes.txt").write_text("not an image, ignored by extension")
    x, info = datasets.import_folder(tmp_path, 8)
    assert info.channels == 3 and x.shape == (2, 3, 8, 8) and x.dtype == np.float32
    assert np.allclose(x[0, 1], 200 / 255, atol=1 / 255) and np.allclose(x[0, [0, 2]], 0, atol=1 / 255)
    assert np.allclose(x[1], 128 / 255, atol=1 / 255)
    x1, info1 = datasets.import_folder(tmp_path, 8, channels=1)
    assert x1.shape == (2, 1, 8, 8) and info1.channels == 1
    assert np.allclose(x1[0], 0.587 * 200 / 255, atol=2 / 255)  # ITU-R 601 luma of the green crop


def test_folder_import_resizes_with_antialiasing_and_keeps_16_bit(tmp_path):
    stripes = np.zeros((64, 64), np.uint8)
    stripes[:, ::2] = 255  # 1-pixel stripes average to grey, not alias
    _png(tmp_path / "s.png", stripes)
    x, info = datasets.import_folder(tmp_path, 16)
    assert info.channels == 1 and np.allclose(x, 0.5, atol=0.06)  # nearest-neighbour would give 0 or 1
    assert np.allclose(x[..., 2:-2, 2:-2], 0.5, atol=0.01)  # Lanczos rings a little at the border only
    deep = np.full((10, 10), 1000, np.uint16)
    _png(tmp_path / "t.png", deep)
    x, _ = datasets.import_folder(tmp_path, 16)
    assert np.allclose(x[1], 1000 / 65535, atol=1e-5)


def test_folder_import_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        datasets.import_folder(tmp_path / "missing", 8)
    with pytest.raises(InputError, match="no PNG/JPEG"):
        datasets.import_folder(tmp_path, 8)
    _png(tmp_path / "a.png", np.zeros((9, 9), np.uint8))
    (tmp_path / "b.png").write_bytes(b"this is not a png")
    with pytest.raises(InputError, match="b.png: not a readable image"):
        datasets.import_folder(tmp_path, 8)
    x, info = datasets.import_folder(tmp_path, 8, skip_bad=True)
    assert x.shape == (1, 1, 8, 8) and [p.name for p, _ in info.skipped] == ["b.png"]
    with pytest.raises(InputError, match="--channels"):
        datasets.import_folder(tmp_path, 8, channels=2)


# ------------------------------------------------------------------------------------------
# the make-data command


def test_cli_triangles_npy_preview_and_determinism(cli, tmp_path):
    r = cli(
        "make-data",
        "triangles",
        "--n",
        "1100",
        "--size",
        "16",
        "--seed",
        "3",
        "-o",
        "a.npy",
        "--preview",
        "a.png",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    a = read_npy(tmp_path / "a.npy")
    assert a.shape == (1100, 1, 16, 16) and a.dtype == np.float32
    assert np.array_equal(a, datasets.make("triangles", 1100, 3, size=16)[0])
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = cli(
        "make-data", "triangles", "--n", "1100", "--size", "16", "--seed", "3", "-o", "b.npy", "--quiet", cwd=tmp_path
    )
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    r = cli("make-data", "triangles", "--n", "1100", "--size", "16", "--seed", "3", "-o", "-", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == (tmp_path / "a.npy").read_bytes()


def test_cli_png_output_default_name_and_json(cli, tmp_path):
    r = cli("make-data", "shapes", "--n", "200", "-o", "s.png", cwd=tmp_path)
    assert r.returncode == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["s.png"]
    from PIL import Image

    with Image.open(tmp_path / "s.png") as im:
        assert im.size[0] > 8 * 32
    r = cli("make-data", "moons", "--n", "500", "--labels", "--noise", "0.05", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import json

    info = json.loads(r.stdout)
    assert info["kind"] == "moons" and info["n"] == 500 and info["shape"] == [500, 2] and info["output"] == "moons.npy"
    assert info["labels"] == "moons.labels.npy"
    lab = read_npy(tmp_path / "moons.labels.npy")
    assert lab.dtype == np.int64 and lab.shape == (500,)
    r = cli("make-data", "swissroll", "--n", "300", "-o", "roll.png", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "roll.png").exists()


def test_cli_gmm_writes_mixture_beside_points(cli, tmp_path):
    r = cli("make-data", "gmm", "--n", "3000", "--components", "3", "--dim", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    g = GaussianMixture.load(tmp_path / "gmm.npz")
    x = read_npy(tmp_path / "gmm.npy")
    assert x.shape == (3000, 3) and g.k == 3 and g.dim == 3
    assert np.allclose(x.mean(0), g.mean(), atol=0.1)
    # -o - needs --params; with it the stream and the mixture match the file run
    r = cli("make-data", "gmm", "--n", "3000", "--components", "3", "--dim", "3", "-o", "-", cwd=tmp_path)
    assert r.returncode == 2 and b"--params" in r.stderr and r.stdout == b""
    r = cli(
        "make-data",
        "gmm",
        "--n",
        "3000",
        "--components",
        "3",
        "--dim",
        "3",
        "-o",
        "-",
        "--params",
        "p.npz",
        cwd=tmp_path,
    )
    assert r.returncode == 0 and r.stdout == (tmp_path / "gmm.npy").read_bytes()
    assert (tmp_path / "p.npz").exists()
    # sampling again from the saved mixture
    r = cli("make-data", "gmm", "--n", "100", "--mixture", "p.npz", "-o", "more.npy", cwd=tmp_path)
    assert r.returncode == 0 and read_npy(tmp_path / "more.npy").shape == (100, 3)


def test_cli_folder_import(cli, tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(3):
        _png(src / f"{i}.png", np.full((30, 40, 3), 60 * i, np.uint8))
    r = cli("make-data", "folder", str(src), "--size", "8", "-o", "f.npy", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    x = read_npy(tmp_path / "f.npy")
    assert x.shape == (3, 3, 8, 8) and np.allclose(x[2], 120 / 255, atol=1 / 255)
    (src / "bad.jpg").write_bytes(b"\xff\xd8 broken")
    r = cli("make-data", "folder", str(src), "--size", "8", "-o", "g.npy", cwd=tmp_path)
    assert r.returncode == 2 and b"bad.jpg" in r.stderr and not (tmp_path / "g.npy").exists()
    r = cli("make-data", "folder", str(src), "--size", "8", "-o", "g.npy", "--skip-bad", cwd=tmp_path)
    assert r.returncode == 0 and read_npy(tmp_path / "g.npy").shape[0] == 3 and b"skipped" in r.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["circles"], "circles: unknown data set"),
        (["triangles", "--n", "0"], "--n"),
        (["triangles", "--n", "-5"], "--n"),
        (["triangles", "--size", "3"], "--size"),
        (["triangles", "--size", "100000"], "--size"),
        (["triangles", "--min-angle", "75"], "--min-angle"),
        (["swissroll", "--size", "16"], "--size: only for"),
        (["triangles", "--labels"], "--labels"),
        (["folder"], "folder"),
        (["folder", "nowhere", "--size", "8"], "nowhere: no such folder"),
        (["folder", "emptydir", "--size", "8"], "emptydir: folder holds no PNG/JPEG"),
        (["folder", "junkdir", "--size", "8"], "junk.png: not a readable image"),
        (["triangles", "-o", "x.txt"], "x.txt"),
        (["triangles", "-o", "nodir/x.npy"], "nodir"),
        (["triangles", "-o", "-", "--json"], "--json"),
        (["gmm", "--dim", "0"], "--dim"),
        (["gmm", "--mixture", "missing.npz"], "missing.npz: no such file"),
    ],
)
def test_cli_bad_input(cli, tmp_path, args, needle):
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "junkdir").mkdir()
    (tmp_path / "junkdir" / "junk.png").write_bytes(b"junk")
    before = sorted(p.name for p in tmp_path.iterdir())
    r = cli("make-data", *args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing left behind
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_cli_pipe_through_a_real_process(tmp_path):
    from conftest import run_cli_subprocess

    r = run_cli_subprocess("make-data", "checkerboard", "--n", "50", "-o", "-", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == b""
    import io as _io

    pts = np.load(_io.BytesIO(r.stdout), allow_pickle=False)
    assert pts.shape == (50, 2) and np.array_equal(pts, datasets.make("checkerboard", 50, 0)[0])
