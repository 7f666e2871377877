"""ddpmctl info on every kind of file, and a real shell pipe through several commands."""

import json
import subprocess
import sys

import numpy as np
from conftest import run_cli


def test_info_array_stats_and_json(tmp_path):
    x = np.zeros((5, 1, 8, 8), np.float32)
    x[:, :, 2:6, 2:6] = 1
    np.save(tmp_path / "x.npy", x)
    r = run_cli("info", tmp_path / "x.npy", "--json")
    d = json.loads(r.stdout)
    assert r.returncode == 0 and d["kind"] == "images" and d["shape"] == [5, 1, 8, 8]
    assert d["stats"]["mean"] == 0.25 and d["stats"]["max"] == 1.0 and d["stats"]["nonfinite"] == 0
    np.save(tmp_path / "p.npy", np.array([[1.0, np.nan], [3.0, 4.0]], np.float32))
    d = json.loads(run_cli("info", tmp_path / "p.npy", "--json").stdout)
    assert d["kind"] == "points" and d["stats"]["nonfinite"] == 1 and d["stats"]["max"] == 4.0
    r = run_cli("info", tmp_path / "x.npy")
    assert b"shape: [5, 1, 8, 8]" in r.stdout


def test_info_npz_kinds_and_errors(tmp_path):
    np.savez(tmp_path / "s.npz", mu=np.zeros(3), sigma=np.eye(3), n=np.array(10))
    d = json.loads(run_cli("info", tmp_path / "s.npz", "--json").stdout)
    assert d["kind"] == "FID statistics" and d["n"] == 10
    np.savez(tmp_path / "g.npz", weights=np.ones(2) / 2, means=np.zeros((2, 3)), covs=np.stack([np.eye(3)] * 2))
    d = json.loads(run_cli("info", tmp_path / "g.npz", "--json").stdout)
    assert d["kind"] == "Gaussian mixture" and d["components"] == 2 and d["dim"] == 3
    np.savez(tmp_path / "o.npz", a=np.array([object()], dtype=object))
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    for f in ("o.npz", "bad.safetensors", "missing.npy"):
        r = run_cli("info", tmp_path / f)
        assert r.returncode == 2 and len(r.stderr.decode().strip().splitlines()) == 1, f


def test_real_pipe_between_processes(tmp_path):
    """schedule -o - | (betas as a file) ; noise -o - | info -: bytes really cross OS pipes."""
    x = np.ones((4, 1, 8, 8), np.float32) * 0.5
    np.save(tmp_path / "x.npy", x)
    cmd = (
        f"{sys.executable} -m ddpmctl noise {tmp_path / 'x.npy'} --t 500 -o - | "
        f"{sys.executable} -m ddpmctl info - --json"
    )
    r = subprocess.run(cmd, shell=True, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["shape"] == [4, 1, 8, 8] and d["file"] == "-"
    assert d["stats"]["std"] > 0.1  # really noised
