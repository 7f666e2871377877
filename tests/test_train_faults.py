"""Faults during `train`, with real signals sent to a real `python -m ddpmctl train` process:
SIGINT saves a checkpoint and exits 130, a second SIGINT exits at once, SIGKILL at random moments
(also during saves) never leaves an unloadable checkpoint, and resuming after any of these ends
with the same weights as an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import torch
from conftest import run_cli

from ddpmctl import checkpoint as ckpt

NET = ["--base", "16", "--blocks", "1"]


def _points(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "pts.npy"
    np.save(path, (rng.standard_normal((64, 2)) * [2.0, 0.5]).astype(np.float32))
    return path


def _start(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "ddpmctl", "train", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(cond, proc, timeout=120.0):
    t0 = time.time()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"train exited early ({proc.returncode}): {proc.stderr.read().decode()}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the training process")
        time.sleep(0.02)


def _logged_steps(out) -> int:
    p = out / "metrics.jsonl"
    return len(p.read_text().splitlines()) if p.exists() else 0


def _assert_same_state(a, b):
    """Bit for bit: the weights, the EMA and the optimizer state of two checkpoints are equal."""
    sa, sb = ckpt.load_state(a), ckpt.load_state(b)
    assert sa["step"] == sb["step"]
    for part in ("model", "ema", "optimizer"):
        assert sa[part].keys() == sb[part].keys()
        for k in sa[part]:
            assert torch.equal(sa[part][k], sb[part][k]), (part, k)


def _assert_loadable(out):
    """Whatever is on disk is a complete checkpoint: both files load (or do not exist yet)."""
    if (out / ckpt.STATE_FILE).exists():
        state = ckpt.load_state(out)
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    if (out / ckpt.MODEL_FILE).exists():
        ckpt.load_model(out)


def test_sigint_saves_exits_130_and_resume_is_exact(tmp_path):
    data = _points(tmp_path)
    out = tmp_path / "run"
    proc = _start(data, *NET, "--steps", "100000", "--warmup", "2", "--batch", "8", "--log-every", "1",
                  "--save-every", "0", "-o", out, cwd=tmp_path)
    _wait_for(lambda: _logged_steps(out) >= 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "interrupted at step" in lines[0] and "--resume" in lines[0], lines
    k = ckpt.load_state(out)["step"]
    assert k >= 3 and ckpt.load_model(out).meta["step"] == k
    assert _logged_steps(out) == k
    # resume to k + 3 steps == an uninterrupted run of k + 3 steps
    r = run_cli("train", "--resume", out, "--steps", k + 3, "-q")
    assert r.returncode == 0, r.stderr
    ref = tmp_path / "ref"
    r = run_cli("train", data, *NET, "--steps", k + 3, "--warmup", "2", "--batch", "8", "--log-every", "1",
                "--save-every", "0", "-o", ref, "-q")
    assert r.returncode == 0, r.stderr
    _assert_same_state(out, ref)
    assert (out / "metrics.jsonl").read_text().count("\n") == k + 3


def test_second_sigint_exits_at_once_and_keeps_the_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "img.npy", rng.uniform(0, 1, (64, 1, 16, 16)).astype(np.float32))
    out = tmp_path / "run"
    # slow steps (a batch of 512 images): the second signal arrives while the step still runs
    proc = _start("img.npy", "--base", "8", "--mults", "1,2", "--batch", "512", "--steps", "100000",
                  "--log-every", "1", "--save-every", "1", "-o", out, cwd=tmp_path)
    _wait_for(lambda: _logged_steps(out) >= 2 and (out / ckpt.MODEL_FILE).exists(), proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    text = err.decode()
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    assert "interrupted again; exiting now" in text, text
    _assert_loadable(out)
    assert ckpt.load_state(out)["step"] >= 1


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    data = _points(tmp_path)
    total = 60
    opts = [*NET, "--warmup", "5", "--batch", "8", "--log-every", "1", "--lr-schedule", "cosine",
            "--dropout", "0.1"]
    out = tmp_path / "run"
    rnd = random.Random(1234)
    kills = 0
    first = True
    for _attempt in range(6):
        if not first and ckpt.load_state(out)["step"] >= total:
            break
        args = [data, *opts, "--steps", total, "--save-every", "1", "-o", out] if first else ["--resume", out]
        proc = _start(*args, cwd=tmp_path)
        if kills < 3:
            # let it save a few checkpoints, then kill it at a random moment (often inside a save)
            _wait_for(lambda: (out / ckpt.MODEL_FILE).exists() and _logged_steps(out) >= 1, proc)
            time.sleep(rnd.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            kills += 1
            _assert_loadable(out)
            first = False
            continue
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        break
    assert kills == 3
    state = ckpt.load_state(out)
    assert state["step"] == total
    ref = tmp_path / "ref"
    r = run_cli("train", data, *opts, "--steps", total, "--save-every", "0", "-o", ref, "-q")
    assert r.returncode == 0, r.stderr
    _assert_same_state(out, ref)
    assert not list(out.glob(".*ddpmctl-tmp-*"))  # stale temporary files were cleaned on resume


# Runs `ddpmctl train` with os.fsync patched: the BLOCK_AT-th fsync (each file a checkpoint save
# writes is fsynced once, just before its rename) first writes the file's name to MARK, then blocks,
# so a SIGKILL sent after MARK appears lands inside a save, between writing and renaming.
BLOCK_IN_SAVE = (
    "import os, sys, time\n"
    "_fsync, calls = os.fsync, [0]\n"
    "def blocking(fd):\n"
    "    calls[0] += 1\n"
    "    if calls[0] == int(os.environ['BLOCK_AT']):\n"
    "        with open(os.environ['MARK'], 'w') as f:\n"
    "            f.write(os.readlink(f'/proc/self/fd/{fd}'))\n"
    "        time.sleep(600)\n"
    "    _fsync(fd)\n"
    "os.fsync = blocking\n"
    "from ddpmctl.cli import main\n"
    "main(sys.argv[1:])\n"
)


def test_sigkill_inside_a_checkpoint_save_then_resume_equals_an_uninterrupted_run(tmp_path):
    """A kill that certainly lands inside a save (the state file, then the model file, of a later
    save) leaves the previous checkpoint loadable, and resuming still ends bit for bit where an
    uninterrupted run ends."""
    data = _points(tmp_path)
    total = 12
    opts = [*NET, "--warmup", "2", "--batch", "8", "--log-every", "1", "--dropout", "0.1"]
    ref = tmp_path / "ref"
    assert run_cli("train", data, *opts, "--steps", total, "--save-every", "0", "-o", ref, "-q").returncode == 0
    for block_at in (4, 5, 7):
        out, mark = tmp_path / f"run{block_at}", tmp_path / f"mark{block_at}"
        env = dict(os.environ, OMP_NUM_THREADS="1", BLOCK_AT=str(block_at), MARK=str(mark))
        args = [data, *opts, "--steps", total, "--save-every", "1", "-o", out]
        proc = subprocess.Popen([sys.executable, "-c", BLOCK_IN_SAVE, "train", *map(str, args)], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_for(lambda mark=mark: mark.exists() and mark.read_text(), proc)
        writing = os.path.basename(mark.read_text())
        assert writing.startswith((".state.safetensors.ddpmctl-tmp-", ".model.safetensors.ddpmctl-tmp-")), writing
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        _assert_loadable(out)
        assert ckpt.load_state(out)["step"] < total
        r = run_cli("train", "--resume", out, "-q")
        assert r.returncode == 0, r.stderr
        _assert_same_state(out, ref)
        assert not list(out.glob(".*ddpmctl-tmp-*"))


def test_sigterm_saves_and_exits_143(tmp_path):
    """SIGTERM (a scheduler's stop) is handled like Ctrl-C but exits with 128 + 15 = 143."""
    data = _points(tmp_path)
    out = tmp_path / "run"
    proc = _start(data, *NET, "--steps", "100000", "--batch", "8", "--log-every", "1", "--save-every", "0", "-o", out,
                  cwd=tmp_path)
    _wait_for(lambda: _logged_steps(out) >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "interrupted at step" in lines[0], lines
    assert ckpt.load_state(out)["step"] == _logged_steps(out) >= 3
