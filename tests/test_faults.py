"""Faults while writing: a full disk, an unwritable folder, a kill in the middle of a write.
Every case gives a one-line error and leaves the previous output intact (atomic writes)."""

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import run_cli

from ddpmctl import io


@pytest.fixture
def images(tmp_path):
    x = np.random.default_rng(0).random((8, 1, 8, 8)).astype(np.float32)
    p = tmp_path / "x.npy"
    np.save(p, x)
    return p


@pytest.mark.parametrize("ext", ["npy", "png"])
def test_full_disk_keeps_previous_output(tmp_path, images, monkeypatch, ext):
    out = tmp_path / f"out.{ext}"
    out.write_bytes(b"previous contents")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    r = run_cli("noise", images, "--t", "10", "-o", out)
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and len(err) == 1 and "No space left" in err[0], err
    assert out.read_bytes() == b"previous contents"
    assert sorted(os.listdir(tmp_path)) == sorted(["x.npy", f"out.{ext}"])  # no temp file left


def test_unwritable_folder_is_a_clear_error(tmp_path, images):
    # /proc refuses new files even for root (a read-only folder cannot be simulated with chmod as root)
    r = run_cli("noise", images, "--t", "10", "-o", "/proc/ddpmctl-test.npy")
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode in (1, 2) and len(err) == 1 and "ddpmctl-test.npy" in err[0], err
    r = run_cli("noise", images, "--t", "10", "-o", tmp_path / "no" / "such" / "dir.npy")
    assert r.returncode == 2 and b"does not exist" in r.stderr


def test_sigkill_during_write_leaves_no_partial_file(tmp_path):
    """Kill a long write at random moments: the target is either absent or the old file, never partial."""
    big = tmp_path / "big.npy"
    np.save(big, np.random.default_rng(0).random((6000, 1, 32, 32)).astype(np.float32))
    out = tmp_path / "out.npy"
    out.write_bytes(b"old")
    rng = np.random.default_rng(1)
    for _ in range(3):
        p = subprocess.Popen(
            [sys.executable, "-m", "ddpmctl", "noise", str(big), "--t", "1,2,3,4,5,6,7,8", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        time.sleep(float(rng.uniform(1.0, 4.0)))
        p.send_signal(signal.SIGKILL)
        p.wait()
        data = out.read_bytes()
        assert data == b"old" or np.load(out).shape == (6000, 8, 1, 32, 32)
        for f in tmp_path.iterdir():  # a kill may leave a hidden temp file, never a partial target
            assert f.name in ("big.npy", "out.npy") or f.name.startswith(".out.npy.ddpmctl-tmp-")


# --------------------------------------------------------------------------------------------
# SIGKILL during the writes of make-data, sample and restore (and Ctrl-C during make-data)

# Run the CLI with a slow disk: fsync sleeps, so a kill lands between writing the temporary file
# and renaming it onto the target (the moment a non-atomic writer would leave a partial file).
SLOW_DISK = (
    "import os, sys, time\n"
    "_fsync = os.fsync\n"
    "def slow(fd):\n"
    "    time.sleep(60)\n"
    "    _fsync(fd)\n"
    "os.fsync = slow\n"
    "from ddpmctl.cli import main\n"
    "main(sys.argv[1:])\n"
)
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny untrained image checkpoint (1 x 8 x 8, DDPM T = 50) and an inpainting observation."""
    import torch

    from ddpmctl.checkpoint import make_meta, save_model
    from ddpmctl.diffusion import IMAGE_NORMALIZATION
    from ddpmctl.nets import build_net, default_net_config, validate_net_config
    from ddpmctl.schedules import make_process

    d = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    cfg = validate_net_config(
        {**default_net_config("images", (1, 8, 8)), "base": 8, "mults": [1, 2], "groups": 4}, (1, 8, 8)
    )
    (d / "ck").mkdir()
    meta = make_meta(cfg, make_process("ddpm", "linear", 50), "eps", "images", (1, 8, 8), IMAGE_NORMALIZATION)
    save_model(d / "ck" / "model.safetensors", build_net(cfg), meta)
    np.save(d / "x.npy", np.random.default_rng(0).random((400, 1, 8, 8)).astype(np.float32))
    r = run_cli("degrade", d / "x.npy", "--task", "inpaint", "--box", "2,2,4,4", "-o", d / "y.npy")
    assert r.returncode == 0, r.stderr
    return d


def _temps(folder, name):
    return [f for f in folder.iterdir() if f.name.startswith(f".{name}.ddpmctl-tmp-")]


def _kill_when_writing(cmd, folder, name, min_bytes=0, timeout=240):
    """Start ``cmd``; as soon as its temporary output exists (and holds ``min_bytes``), SIGKILL it.
    Returns True if the kill landed while the write was under way (the process was still running)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    t_end = time.monotonic() + timeout
    writing = False
    try:
        while time.monotonic() < t_end and p.poll() is None and not writing:
            tmp = _temps(folder, name)
            writing = bool(tmp) and tmp[0].stat().st_size >= min_bytes
            if not writing:
                time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    return writing and p.returncode == -signal.SIGKILL


def _check_untouched(folder, name, old, allowed):
    out = folder / name
    assert out.read_bytes() == old, f"{name} changed"
    for f in folder.iterdir():  # a kill may leave a hidden temp file, never a partial target
        assert f.name in allowed or f.name.startswith(f".{name}.ddpmctl-tmp-"), f.name


def _kill_at_random(cmd, folder, name, old, expected_shape, allowed, delays):
    for delay in delays:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        out = folder / name
        assert out.read_bytes() == old or np.load(out).shape == expected_shape
        for f in folder.iterdir():
            assert f.name in allowed or f.name.startswith(f".{name}.ddpmctl-tmp-"), f.name


def test_sigkill_during_sample_streaming_write(tiny, tmp_path):
    """sample streams its batches into a temporary file: a kill in the middle of the stream, a kill
    between the write and the rename (slow disk) and kills at random moments leave the previous
    output as it was, or (a kill after the rename) the complete new one."""
    out = tmp_path / "s.npy"
    out.write_bytes(b"previous samples")
    args = [
        "sample",
        str(tiny / "ck"),
        "-n",
        "3000",
        "--batch",
        "100",
        "--sampler",
        "ddim",
        "--steps",
        "10",
        "-o",
        str(out),
        "--quiet",
    ]
    # mid-stream: the temporary file already holds the header and some batches
    assert _kill_when_writing(
        [sys.executable, "-m", "ddpmctl", *args], tmp_path, "s.npy", min_bytes=128 + 2 * 100 * 64 * 4
    )
    _check_untouched(tmp_path, "s.npy", b"previous samples", {"s.npy"})
    small = [a if a != "3000" else "200" for a in args]
    assert _kill_when_writing(
        [sys.executable, "-c", SLOW_DISK, *small], tmp_path, "s.npy", min_bytes=128 + 200 * 64 * 4
    )
    _check_untouched(tmp_path, "s.npy", b"previous samples", {"s.npy"})
    delays = np.random.default_rng(2).uniform(2.0, 5.0, size=1)
    cmd = [sys.executable, "-m", "ddpmctl", *args]
    _kill_at_random(cmd, tmp_path, "s.npy", b"previous samples", (3000, 1, 8, 8), {"s.npy"}, delays)


def test_sigkill_during_restore_write(tiny, tmp_path):
    out = tmp_path / "r.npy"
    out.write_bytes(b"previous restoration")
    args = ["restore", str(tiny / "ck"), str(tiny / "y.npy"), "--steps", "10", "-o", str(out), "--quiet"]
    assert _kill_when_writing([sys.executable, "-c", SLOW_DISK, *args], tmp_path, "r.npy", min_bytes=128 + 400 * 64 * 4)
    _check_untouched(tmp_path, "r.npy", b"previous restoration", {"r.npy"})
    delays = np.random.default_rng(3).uniform(2.0, 5.0, size=1)
    cmd = [sys.executable, "-m", "ddpmctl", *args]
    _kill_at_random(cmd, tmp_path, "r.npy", b"previous restoration", (400, 1, 8, 8), {"r.npy"}, delays)


def test_sigkill_during_make_data_write(tmp_path):
    out = tmp_path / "t.npy"
    out.write_bytes(b"previous data")
    args = ["make-data", "triangles", "--n", "100000", "--size", "16", "-o", str(out), "--quiet"]
    # make-data streams chunks into the temporary file: kill once some chunks are in
    assert _kill_when_writing([sys.executable, "-m", "ddpmctl", *args], tmp_path, "t.npy", min_bytes=1 << 20)
    _check_untouched(tmp_path, "t.npy", b"previous data", {"t.npy"})
    small = ["make-data", "triangles", "--n", "2000", "--size", "16", "-o", str(out), "--quiet"]
    assert _kill_when_writing(
        [sys.executable, "-c", SLOW_DISK, *small], tmp_path, "t.npy", min_bytes=128 + 2000 * 256 * 4
    )
    _check_untouched(tmp_path, "t.npy", b"previous data", {"t.npy"})


def test_ctrl_c_during_make_data(tmp_path):
    """Ctrl-C: exit 130, one line, no output file and no temporary file; the old output stays."""
    out = tmp_path / "t.npy"
    out.write_bytes(b"previous data")
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ddpmctl",
            "make-data",
            "triangles",
            "--n",
            "100000",
            "--size",
            "16",
            "-o",
            str(out),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
        preexec_fn=lambda: signal.signal(
            signal.SIGINT, signal.SIG_DFL
        ),  # as at a terminal, even if our parent ignores it
    )
    t_end = time.monotonic() + 240
    while time.monotonic() < t_end and p.poll() is None and not _temps(tmp_path, "t.npy"):
        time.sleep(0.01)
    time.sleep(0.2)  # some chunks are written
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    lines = err.decode().strip().splitlines()
    assert p.returncode == 130 and len(lines) == 1 and "interrupted" in lines[0], (p.returncode, err)
    assert out.read_bytes() == b"previous data"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["t.npy"]  # the temporary file is removed


def test_streamed_sample_file_equals_one_generate_call(tiny, tmp_path):
    """sample -o X.npy writes batch by batch (bounded memory); the file equals one generate() call."""
    from ddpmctl.checkpoint import load_model
    from ddpmctl.sampling import generate

    r = run_cli("sample", tiny / "ck", "-n", "10", "--batch", "3", "--sampler", "ddim", "--steps", "4", "--seed", "5",
                "-o", tmp_path / "s.npy", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    x, info = generate(load_model(tiny / "ck"), "ddim", n=10, steps=4, seed=5, batch=10)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), x)
    import json

    j = json.loads(r.stdout)
    assert j["n"] == 10 and j["nfe"] == info["nfe"] == 4 and j["shape"] == [10, 1, 8, 8]
