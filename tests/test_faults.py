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
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        time.sleep(float(rng.uniform(1.0, 4.0)))
        p.send_signal(signal.SIGKILL)
        p.wait()
        data = out.read_bytes()
        assert data == b"old" or np.load(out).shape == (6000, 8, 1, 32, 32)
        for f in tmp_path.iterdir():  # a kill may leave a hidden temp file, never a partial target
            assert f.name in ("big.npy", "out.npy") or f.name.startswith(".out.npy.ddpmctl-tmp-")
