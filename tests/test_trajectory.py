"""Trajectories (`sample --trajectory K`, `--trajectory-at LIST`, `--trajectory-show`): the frames
kept, the arrays and the pictures (issue #19: seed 004's progressive-generation figure)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from ddpmctl import samplers as S
from ddpmctl.errors import InputError
from ddpmctl.exact import ExactGMM
from ddpmctl.gmm import GaussianMixture
from ddpmctl.sampling import TRAJECTORY_SHOWS, frame_times, generate, trajectory_frames
from ddpmctl.schedules import make_process

GRID = torch.tensor([1.0, 0.7, 0.4, 0.1, 0.02], dtype=torch.float64)  # 4 steps; the output is time 0


def test_frame_times_end_with_the_output_at_time_zero():
    assert frame_times(GRID).tolist() == [1.0, 0.7, 0.4, 0.1, 0.0]


@pytest.mark.parametrize(
    "at, frames",
    [
        ([1.0, 0.4, 0.0], [0, 2, 4]),
        ([0.9, 0.45, 0.06, 0.0], [0, 2, 3, 4]),  # |0.1 - 0.06| < |0 - 0.06|: the state before the last step
        ([0.0, 0.9], [0, 4]),  # any order: kept from t_max to the output
        ([0.72, 0.68], [1]),  # both nearest to 0.7: kept once
        ([0.03], [4]),  # the last grid time 0.02 is not a frame of its own: the output (0) is
    ],
)
def test_trajectory_at_keeps_the_nearest_grid_times(at, frames):
    assert trajectory_frames(GRID, 0, at) == frames
    assert trajectory_frames(GRID, len(at), at) == frames  # a K that agrees is accepted


def test_trajectory_at_matches_brute_force_on_a_sampler_grid():
    times = S.plan(make_process("ddpm", "cosine", 1000), "ddim", 50, None, 7.0).times
    grid = frame_times(times)
    at = np.linspace(0, 1, 37)
    got = trajectory_frames(times, 0, at)
    want = sorted({min(range(len(grid)), key=lambda i: (abs(grid[i] - v), i)) for v in at})
    assert got == want and got[0] == 0 and got[-1] == 50


def test_even_frames_are_unchanged():
    assert trajectory_frames(20, 5) == [0, 5, 10, 15, 20]
    assert trajectory_frames(GRID, 3) == [0, 2, 4]
    assert trajectory_frames(GRID, 1) == [4]


@pytest.mark.parametrize(
    "k, at, words",
    [
        (0, [], "at least one"),
        (0, [1.5, 0.0], "1.5 is outside [0, t_max = 1]"),
        (0, [-0.1], "-0.1 is outside"),
        (0, [float("nan")], "nan is outside"),
        (0, ["a"], "expected numbers"),
        (4, [1.0, 0.0], "--trajectory 4 and --trajectory-at (2 times) disagree"),
    ],
)
def test_trajectory_at_bad_values(k, at, words):
    with pytest.raises(InputError, match="--trajectory") as e:
        trajectory_frames(GRID, k, at)
    assert words in str(e.value)


def test_generate_keeps_the_states_of_the_chosen_times():
    """The states kept for --trajectory-at are those of a run keeping every state, same seed."""
    model = ExactGMM(GaussianMixture.random(3, 2, np.random.default_rng(7)), make_process("vp"))
    x, every = generate(model, "ddim", n=5, steps=10, batch=3, seed=2, trajectory=11)
    y, info = generate(model, "ddim", n=5, steps=10, batch=3, seed=2, trajectory_at=[1.0, 0.52, 0.0])
    frames = trajectory_frames(S.plan(model.process, "ddim", 10, None, 7.0).times, 0, [1.0, 0.52, 0.0])
    assert len(frames) == 3 and np.array_equal(x, y)
    assert np.array_equal(info["trajectory"], every["trajectory"][:, frames])
    assert info["trajectory_times"] == [every["trajectory_times"][f] for f in frames]
    assert info["trajectory_times"][0] == 1.0 and info["trajectory_times"][-1] == 0.0
    assert abs(info["trajectory_times"][1] - 0.52) <= 0.5 / 10  # within half a step of the asked time
    assert info["trajectory_at"] == [1.0, 0.52, 0.0]


# --------------------------------------------------------------------------------------------
# the command


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny (untrained) 1x8x8 image checkpoint on a discrete process and a mixture .npz."""
    from ddpmctl.checkpoint import make_meta, save_model
    from ddpmctl.diffusion import IMAGE_NORMALIZATION
    from ddpmctl.nets import build_net, default_net_config

    d = tmp_path_factory.mktemp("traj")
    torch.manual_seed(0)
    cfg = default_net_config("images", (1, 8, 8), "sinusoidal")
    cfg.update(base=16, head_channels=16)
    meta = make_meta(cfg, make_process("ddpm", "linear", 50), "eps", "images", (1, 8, 8), IMAGE_NORMALIZATION)
    save_model(d / "img.safetensors", build_net(cfg), meta)
    GaussianMixture.random(3, 2, np.random.default_rng(0)).save(d / "mix.npz")
    return d


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _cells(png: np.ndarray, rows: int, cols: int, size: int = 8, pad: int = 1) -> np.ndarray:
    """The (rows, cols, size, size) cells of an io.save_grid picture (pad pixels between them,
    enlarged by scale = max(1, min(4, 512 // the grid's longer side)))."""
    h, w = rows * (size + pad) + pad, cols * (size + pad) + pad
    scale = max(1, min(4, 512 // max(h, w)))
    assert png.shape == (h * scale, w * scale)
    grid = png[::scale, ::scale]
    at = [pad + i * (size + pad) for i in range(max(rows, cols))]
    return np.stack([[grid[at[r] : at[r] + size, at[c] : at[c] + size] for c in range(cols)] for r in range(rows)])


def _quantised(x: np.ndarray) -> np.ndarray:
    """As io.image_to_png_bytes writes a value in [0, 1] (after the picture's clipping)."""
    return (np.clip(x, 0, 1) * 255.0 + 0.5).astype(np.uint8)


@pytest.mark.parametrize(
    "show, n, rows, want",
    [
        ("x0", 5, "3", 3),  # seed 004's figure: one row of predicted x0 per sample
        ("xt", 5, None, 5),  # min(N, 8) rows of states
        ("both", 10, None, 8),  # today's picture: per sample a row of x_t, then one of x0 (default 8 samples)
        ("x0", 10, "16", 10),
    ],
)
def test_the_picture_holds_the_kept_arrays(ckpt, tmp_path, show, n, rows, want):
    extra = [] if rows is None else ["--trajectory-rows", rows]
    r = run_cli(
        "sample", ckpt / "img.safetensors", "-n", n, "--sampler", "ddim", "--steps", 4,
        "--trajectory-at", "1,0.5,0", "--trajectory-show", show, *extra, "-o", tmp_path / "s.png", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["trajectory_at"] == [1.0, 0.5, 0.0] and info["trajectory_shape"] == [n, 3, 2, 1, 8, 8]
    assert info["trajectory_times"][0] == 1.0 and info["trajectory_times"][-1] == 0.0
    assert info["trajectory_show"] == show and info["trajectory_rows"] == want
    traj = np.load(tmp_path / "s.trajectory.npy")
    kinds = {"both": [0, 1], "x0": [1], "xt": [0]}[show]
    cells = _cells(_png(tmp_path / "s.trajectory.png"), want * len(kinds), 3)
    expected = np.stack([traj[i, :, k, 0] for i in range(want) for k in kinds])  # (rows, K, 8, 8)
    assert np.array_equal(cells, _quantised(expected))
    # the right-hand column is the output: its x0 and state both equal the samples
    assert np.array_equal(traj[:, -1, 0], traj[:, -1, 1])


def test_report_names_the_kept_and_the_asked_times(ckpt, tmp_path):
    r = run_cli(
        "sample", ckpt / "img.safetensors", "-n", 2, "--sampler", "ddim", "--steps", 4, "--trajectory", 3,
        "--trajectory-at", "1,0.3,0", "--trajectory-show", "x0", "-o", tmp_path / "s.npy",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "predicted x0 of 2 samples" in out and "nearest to 1, 0.3, 0" in out, out
    assert np.load(tmp_path / "s.trajectory.npy").shape == (2, 3, 2, 1, 8, 8)


def test_points_show_one_row_of_panels(ckpt, tmp_path):
    heights = {}
    for show in TRAJECTORY_SHOWS:
        r = run_cli(
            "sample", ckpt / "mix.npz", "-n", 50, "--sampler", "ddim", "--steps", 5, "--trajectory-at", "1,0.4,0",
            "--trajectory-show", show, "-o", tmp_path / f"{show}.npy",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        png = _png(tmp_path / f"{show}.trajectory.png")
        heights[show] = png.shape[0]
        assert np.load(tmp_path / f"{show}.trajectory.npy").shape == (50, 3, 2, 2)
    assert heights["x0"] == heights["xt"] and heights["both"] == 2 * heights["x0"]


def test_the_cli_offers_the_core_choices():
    from ddpmctl.cli import sample

    assert sample.TRAJECTORY_SHOWS == TRAJECTORY_SHOWS


def test_save_trajectory_png_checks_its_options(tmp_path):
    from ddpmctl.sampling import save_trajectory_png

    traj = np.zeros((2, 3, 2, 1, 8, 8), np.float32)
    with pytest.raises(InputError, match="--trajectory-show"):
        save_trajectory_png(tmp_path / "t.png", traj, [1.0, 0.5, 0.0], "images", show="all")
    with pytest.raises(InputError, match="--trajectory-rows"):
        save_trajectory_png(tmp_path / "t.png", traj, [1.0, 0.5, 0.0], "images", rows=0)
    assert not (tmp_path / "t.png").exists()
