"""End-to-end tests of `ddpmctl sample`: the exact mixture model, checkpoints, outputs, errors."""

from __future__ import annotations

import io as _io
import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from typer.testing import CliRunner

from ddpmctl.cli import app
from ddpmctl.gmm import GaussianMixture


def run(*args):
    """The real CLI entry point in-process; returns (exit code, stdout, stderr)."""
    r = run_cli("sample", *args)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A mixture .npz, a tiny (untrained) image checkpoint on a discrete process and a tiny point
    checkpoint on a VE process."""
    from ddpmctl.checkpoint import make_meta, save_model
    from ddpmctl.diffusion import IDENTITY_NORMALIZATION, IMAGE_NORMALIZATION
    from ddpmctl.nets import build_net, default_net_config
    from ddpmctl.schedules import make_process

    d = tmp_path_factory.mktemp("sample")
    mix = GaussianMixture.random(3, 2, np.random.default_rng(0))
    mix.save(d / "mix.npz")
    torch.manual_seed(0)
    cfg = default_net_config("images", (1, 8, 8), "sinusoidal")
    cfg.update(base=16, head_channels=16)
    (d / "img").mkdir()
    save_model(
        d / "img" / "model.safetensors",
        build_net(cfg),
        make_meta(cfg, make_process("ddpm", "linear", 50), "eps", "images", (1, 8, 8), IMAGE_NORMALIZATION),
    )
    pcfg = default_net_config("points", (2,), "fourier")
    pcfg.update(hidden=32, blocks=1, emb_dim=16)
    save_model(
        d / "pts.safetensors",
        build_net(pcfg),
        make_meta(pcfg, make_process("ve"), "eps", "points", (2,), IDENTITY_NORMALIZATION),
    )
    return d, mix


def test_exact_mixture_default_sampler_json(files, tmp_path):
    d, mix = files
    code, out, err = run(d / "mix.npz", "-n", 300, "-o", tmp_path / "s.npy", "--json", "--seed", 3)
    assert code == 0, err
    info = json.loads(out)
    assert info["sampler"] == "ode" and info["solver"] == "dpm++3m" and info["nfe"] == 20 and info["steps"] == 20
    assert info["quality"]["swd"] < 0.15 and info["quality"]["n"] == 300
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (300, 2) and x.dtype == np.float32
    # the same seed gives the same samples, whatever the batch
    code, _, err = run(d / "mix.npz", "-n", 300, "--batch", 7, "-o", tmp_path / "t.npy", "--seed", 3, "--quiet")
    assert code == 0, err
    assert np.array_equal(x, np.load(tmp_path / "t.npy"))


@pytest.mark.parametrize(
    "args, nfe",
    [
        (["--sampler", "ddpm", "--steps", "30"], 30),
        (["--sampler", "ddim", "--steps", "12", "--eta", "0.5"], 12),
        (["--sampler", "sde", "--steps", "25"], 25),
        (["--sampler", "pc", "--steps", "10", "--corrector-steps", "2", "--process", "ve"], 10 + 2 * 9),
        (["--solver", "heun", "--steps", "8", "--spacing", "karras", "--process", "subvp"], 15),
        (["--sampler", "langevin", "--steps", "10", "--process", "ve"], 21),
        (["--sampler", "ddpm", "--process", "ddpm", "--T", "40", "--variance", "large"], 40),
        (["--solver", "dpm++2m", "--steps", "12", "--process", "ve"], 12),
        (["--solver", "dpm++3m", "--steps", "20", "--process", "ddpm"], 20),  # 20 distinct steps of T = 1000
    ],
)
def test_every_sampler_from_the_cli(files, tmp_path, args, nfe):
    d, _ = files
    code, out, err = run(d / "mix.npz", "-n", 50, *args, "-o", tmp_path / "s.npy", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["nfe"] == nfe
    assert np.isfinite(np.load(tmp_path / "s.npy")).all()


def test_trajectory_and_png_outputs(files, tmp_path):
    d, _ = files
    code, out, err = run(
        d / "mix.npz", "-n", 40, "--sampler", "ddpm", "--steps", 20, "--trajectory", 4, "-o", tmp_path / "s.png"
    )
    assert code == 0, err
    assert "NFE 20" in out and "sliced W1" in out
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tr = np.load(tmp_path / "s.trajectory.npy")
    assert tr.shape == (40, 4, 2, 2)
    assert (tmp_path / "s.trajectory.png").read_bytes()[:4] == b"\x89PNG"


def test_image_checkpoint_outputs(files, tmp_path):
    d, _ = files
    code, out, err = run(
        d / "img", "-n", 5, "--steps", 4, "--batch", 2, "-o", tmp_path / "x.npy", "--json", "--trajectory", 3
    )
    assert code == 0, err
    info = json.loads(out)
    assert info["nfe"] == 4 and info["data_kind"] == "images" and info["clip_x0"] is True
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (5, 1, 8, 8) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    assert np.load(tmp_path / "x.trajectory.npy").shape == (5, 3, 2, 1, 8, 8)
    # default ddpm on a discrete process: all T = 50 steps (Algorithm 2)
    code, out, err = run(
        d / "img" / "model.safetensors",
        "--sampler",
        "ddpm",
        "-n",
        2,
        "-o",
        tmp_path / "g.png",
        "--json",
        "--no-clip-x0",
    )
    assert code == 0, err
    info = json.loads(out)
    assert info["nfe"] == 50 and info["clip_x0"] is False
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = run(d / "img", "-n", 3, "--steps", 2, "-o", tmp_path / "folder")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["000000.png", "000001.png", "000002.png"]


def test_point_checkpoint_and_stdout(files, tmp_path):
    d, _ = files
    r = CliRunner().invoke(
        app, ["sample", str(d / "pts.safetensors"), "--sampler", "langevin", "--steps", 5, "-n", 6, "-o", "-"]
    )
    assert r.exit_code == 0, r.stderr
    x = np.load(_io.BytesIO(r.stdout_bytes), allow_pickle=False)
    assert x.shape == (6, 2)
    assert "NFE 11" in r.stderr  # the report goes to stderr when stdout carries data
    for extra, word in ((["--json"], "--json"), (["--trajectory", "3"], "--trajectory")):
        r = CliRunner().invoke(app, ["sample", str(d / "mix.npz"), "-n", 4, *extra, "-o", "-"])
        one_line_error(r.exit_code, r.stderr, word)
        assert r.stdout_bytes == b""


def one_line_error(code, err, *words):
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--sampler", "foo"], ["--sampler", "'foo'"]),
        (["--steps", "0"], ["--steps"]),
        (["--steps", "-3"], ["--steps"]),
        (["--sampler", "langevin"], ["langevin does not apply to a vp model"]),
        (["--solver", "rk4"], ["--solver", "rk4"]),
        (["--sampler", "ddim", "--eta", "2"], ["--eta"]),
        (["--spacing", "cubic"], ["--spacing"]),
        (["-n", "0"], ["-n"]),
        (["--process", "wiener"], ["unknown process"]),
        (["--clip-x0"], ["--clip-x0"]),
        (["--guidance", "2"], ["--guidance", "needs --guide"]),
        (["--guide", "missing.npz"], ["missing.npz"]),
    ],
)
def test_bad_options_exit_2_without_output(files, tmp_path, args, words):
    d, _ = files
    code, _, err = run(d / "mix.npz", *args, "-o", tmp_path / "s.npy")
    one_line_error(code, err, *words)
    assert list(tmp_path.iterdir()) == []


def test_not_a_checkpoint(files, tmp_path):
    d, _ = files
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a checkpoint at all")
    np.save(tmp_path / "arr.npy", np.zeros((3, 2), np.float32))
    (tmp_path / "empty").mkdir()
    for path, word in [
        (junk, "junk.safetensors"),
        (tmp_path / "arr.npy", "not a checkpoint"),
        (tmp_path / "missing", "no such file"),
        (tmp_path / "empty", "model.safetensors"),
    ]:
        code, _, err = run(path, "-o", tmp_path / "out.npy")
        one_line_error(code, err, word)
    code, _, err = run(d / "img", "--process", "ve", "-o", tmp_path / "out.npy")
    one_line_error(code, err, "--process")
    code, _, err = run(d / "img", "--sampler", "langevin", "-o", tmp_path / "out.npy")
    one_line_error(code, err, "langevin does not apply to a ddpm model")
    code, _, err = run(d / "pts.safetensors", "-o", tmp_path / "pts_folder/")
    one_line_error(code, err, "folder")
    assert not (tmp_path / "out.npy").exists() and not (tmp_path / "pts_folder").exists()


def test_help_has_an_example():
    r = CliRunner().invoke(app, ["sample", "--help"])
    assert r.exit_code == 0 and "Example: ddpmctl sample" in r.stdout


def test_autoguidance_from_the_cli(files, tmp_path):
    """--guide with a checkpoint: NFE doubles and --json reports it; a model guiding itself gives
    its own samples; --guidance 1 is no guidance; a guide of another kind or process is refused."""
    d, _ = files
    code, out, err = run(d / "img", "-n", 6, "--steps", 5, "--seed", 2, "-o", tmp_path / "a.npy", "--json")
    assert code == 0, err
    plain = json.loads(out)
    code, out, err = run(
        d / "img",
        "-n",
        6,
        "--steps",
        5,
        "--seed",
        2,
        "-o",
        tmp_path / "b.npy",
        "--json",
        "--guide",
        d / "img" / "model.safetensors",
        "--guidance",
        2.5,
    )
    assert code == 0, err
    guided = json.loads(out)
    assert plain["nfe"] == 5 and guided["nfe"] == 10 and guided["guidance"] == 2.5
    assert guided["guide"].endswith("model.safetensors")
    assert np.allclose(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"), atol=1e-5)
    code, out, err = run(
        d / "img", "-n", 6, "--steps", 5, "--seed", 2, "-o", tmp_path / "c.npy", "--guide", d / "img", "--guidance", 1
    )
    assert code == 0 and "NFE 5" in out and "autoguidance w=" not in out, err
    code, out, err = run(d / "img", "-n", 2, "--steps", 3, "-o", tmp_path / "d.npy", "--guide", d / "img")
    assert code == 0 and "autoguidance w=3" in out and "NFE 6" in out, err
    for guide, word in [
        (d / "mix.npz", "same kind"),
        (d / "pts.safetensors", "the guide's process"),
        (tmp_path / "nothing", "nothing"),
    ]:
        code, _, err = run(d / "img", "-n", 2, "-o", tmp_path / "e.npy", "--guide", guide)
        one_line_error(code, err, word)
    assert not (tmp_path / "e.npy").exists()


def test_cli_choices_are_the_registries():
    import typer

    from ddpmctl import restore
    from ddpmctl import samplers as S

    group = typer.main.get_command(app)
    expected = {
        ("sample", "--sampler"): S.SAMPLERS,
        ("sample", "--solver"): S.SOLVERS,
        ("sample", "--spacing"): S.SPACINGS,
        ("sample", "--variance"): S.VARIANCES,
        ("restore", "--method"): tuple(restore.METHODS),
    }
    for (cmd, flag), choices in expected.items():
        (param,) = [p for p in group.commands[cmd].params if flag in p.opts]
        assert tuple(param.metavar.split("|")) == tuple(choices), (cmd, flag)
        for choice in choices:
            assert choice in param.help or flag in ("--variance", "--spacing"), (flag, choice)
    r = run_cli("sample", "mix.npz", "--sampler", "euler")
    assert r.returncode == 2 and "--sampler" in r.stderr.decode()
