"""The CLI's conventions, end to end through the real command: exit codes, one-line errors,
stdin/stdout streams, --json, atomic outputs; and the `schedule` and `noise` commands."""

import io as _io
import json
import pickle

import numpy as np
import pytest
from conftest import run_cli


def _npy(b: bytes) -> np.ndarray:
    return np.load(_io.BytesIO(b), allow_pickle=False)


def test_version_and_help():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.decode().startswith("ddpmctl ")
    for cmd in ("schedule", "noise"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and b"Example" in r.stdout, cmd


def test_usage_errors_are_one_line_exit_2():
    for args in (
        ["schedule", "linear", "--bogus"],
        ["schedule"],
        ["noise", "x.npy", "--T", "abc"],
        ["no-such-command"],
    ):
        r = run_cli(*args)
        assert r.returncode == 2, args
        lines = r.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0], (args, lines)
        assert b"Traceback" not in r.stderr


def test_schedule_table_json_file_and_plot(tmp_path):
    r = run_cli("schedule", "linear", "cosine", "--json")
    assert r.returncode == 0
    d = json.loads(r.stdout)
    lin, cos = d["schedules"]
    assert lin["name"] == "linear" and lin["T"] == 1000 and lin["beta_max"] == pytest.approx(0.02)
    assert lin["alpha_bar_T"] == pytest.approx(np.prod(1 - np.linspace(1e-4, 0.02, 1000)), rel=1e-9)
    assert cos["beta_max"] == pytest.approx(0.999)
    out, png = tmp_path / "b.npy", tmp_path / "s.png"
    r = run_cli("schedule", "power", "--power", "1.5", "--T", "300", "-o", out, "--plot", png)
    assert r.returncode == 0, r.stderr
    b = np.load(out)
    assert b.dtype == np.float64 and b.shape == (300,)
    np.testing.assert_allclose(b, 1e-4 + (0.02 - 1e-4) * np.linspace(0, 1, 300) ** 1.5)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert b"far from 0" in r.stderr  # power 1.5 at T=300 leaks data into x_T
    r = run_cli("schedule", "linear", "--T", "50", "-o", "-")
    np.testing.assert_allclose(_npy(r.stdout), np.linspace(1e-4, 0.02, 50))
    assert b"schedule" in r.stderr  # the table moves to stderr when stdout carries data


@pytest.mark.parametrize(
    "args,msg",
    [
        (["schedule", "nope"], "unknown schedule"),
        (["schedule", "linear", "--T", "0"], "--T"),
        (["schedule", "wave", "--amplitude", "2"], "amplitude"),
        (["schedule", "linear", "cosine", "-o", "x.npy"], "exactly one"),
    ],
)
def test_schedule_bad_input(tmp_path, args, msg):
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2 and msg in r.stderr.decode()
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def images(tmp_path):
    x = np.zeros((6, 1, 16, 16), np.float32)
    x[:, :, 4:12, 4:12] = 1.0
    p = tmp_path / "img.npy"
    np.save(p, x)
    return p


def test_noise_closed_form_statistics(tmp_path):
    x = np.full((4000, 1, 2, 2), 0.75, np.float32)  # model space value 0.5
    p = tmp_path / "c.npy"
    np.save(p, x)
    out = tmp_path / "n.npy"
    r = run_cli("noise", p, "--schedule", "linear", "--t", "0,100,999", "-o", out, "--seed", "3")
    assert r.returncode == 0, r.stderr
    y = np.load(out)
    assert y.shape == (4000, 3, 1, 2, 2)
    np.testing.assert_allclose(y[:, 0], x, atol=1e-6)  # t = 0 is the input
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    for j, t in ((1, 100), (2, 999)):
        m = 2 * y[:, j] - 1  # back to model space
        assert m.mean() == pytest.approx(np.sqrt(ab[t - 1]) * 0.5, abs=0.02)
        assert m.std() == pytest.approx(np.sqrt(1 - ab[t - 1]), rel=0.03)


def test_noise_sequential_matches_marginal(tmp_path):
    x = np.full((3000, 4), 1.0, np.float32)  # points: noised as they are
    p = tmp_path / "p.npy"
    np.save(p, x)
    r = run_cli("noise", p, "--schedule", "cosine", "--T", "100", "--t", "60", "--sequential", "-o", "-")
    assert r.returncode == 0, r.stderr
    y = _npy(r.stdout)
    assert y.shape == (3000, 4)
    ab = np.cumprod(1 - np.array(__import__("ddpmctl.schedules", fromlist=["x"]).get_betas("cosine", 100)))[59]
    assert y.mean() == pytest.approx(np.sqrt(ab), abs=0.03)
    assert y.var() == pytest.approx(1 - ab, rel=0.05)


def test_noise_pipeline_png_and_single_image(tmp_path, images):
    r1 = run_cli("noise", images, "--t", "500", "-o", "-")
    assert r1.returncode == 0
    assert _npy(r1.stdout).shape == (6, 1, 16, 16)
    png = tmp_path / "f.png"
    assert run_cli("noise", images, "--steps", "5", "-o", png).returncode == 0
    from PIL import Image

    im = Image.open(png)
    assert im.size[0] > im.size[1] // 2  # 5 columns of t
    one = tmp_path / "one.png"
    Image.fromarray((np.load(images)[0, 0] * 255).astype(np.uint8)).save(one)
    r = run_cli("noise", one, "--t", "0,10", "-o", tmp_path / "one_out.npy")
    assert r.returncode == 0 and np.load(tmp_path / "one_out.npy").shape == (1, 2, 1, 16, 16)


def test_noise_bad_inputs_leave_nothing(tmp_path, images):
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "pickled.npy", np.array([object()], dtype=object), allow_pickle=True)
    (bad / "trunc.npy").write_bytes(images.read_bytes()[:200])
    np.save(bad / "nan.npy", np.full((2, 1, 4, 4), np.nan, np.float32))
    np.save(bad / "shape.npy", np.zeros((2, 2, 2, 2, 2), np.float32))
    np.save(bad / "dtype.npy", np.zeros((2, 1, 4, 4), np.int32))
    (bad / "pickle.npy").write_bytes(pickle.dumps({"a": 1}))
    cases = [
        (bad / "missing.npy", "no such file"),
        (bad / "pickled.npy", "objects"),
        (bad / "trunc.npy", "truncated"),
        (bad / "nan.npy", "NaN"),
        (bad / "shape.npy", "shape"),
        (bad / "dtype.npy", "uint8"),
        (bad / "pickle.npy", "not an .npy"),
    ]
    out = tmp_path / "out"
    out.mkdir()
    for path, msg in cases:
        r = run_cli("noise", path, "--t", "10", "-o", out / "o.npy")
        err = r.stderr.decode().strip().splitlines()
        assert r.returncode == 2 and len(err) == 1 and msg in err[0], (path, err)
    for args in (
        ["--t", "1001"],
        ["--t", "1,x"],
        ["--schedule", "nope", "--t", "1"],
        ["--steps", "0"],
        ["--t", "5", "--steps", "3"],
    ):
        r = run_cli("noise", images, *args, "-o", out / "o.npy")
        assert r.returncode == 2, args
    assert list(out.iterdir()) == []
