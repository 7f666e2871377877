"""Progressive distillation (``ddpmctl distill``, Salimans & Ho 2022, Algorithm 2): the target's
closed form against the teacher's DDIM steps, the student against its teacher on real (tiny)
models, and the CLI from the teacher checkpoint to samples with the recorded NFE."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli

from ddpmctl import samplers as S
from ddpmctl.diffusion import Prediction
from ddpmctl.distill import distill_target, snr_weight, teacher_target
from ddpmctl.exact import ExactGMM
from ddpmctl.gmm import GaussianMixture
from ddpmctl.schedules import make_process

MIXTURE = GaussianMixture.random(3, 2, np.random.default_rng(0))


def _batch_on_grid(process, n_steps: int, b: int, seed: int = 0):
    """z_t (float64) and per-sample times (t, t', t'') of a student step on the n-step ddim grid."""
    times = S.plan(process, "ddim", n_steps).times
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n_steps // 2, (b,), generator=g)
    z = 1.5 * torch.randn(b, 2, generator=g, dtype=torch.float64)
    return z, (times[2 * i], times[2 * i + 1], times[2 * i + 2])


@pytest.mark.parametrize("process", [make_process("vp"), make_process("ddpm", "cosine", 100)], ids=["vp", "ddpm"])
def test_one_student_step_on_the_target_lands_where_two_teacher_steps_land(process):
    """A student whose x0 is x~ (Algorithm 2) takes one DDIM step t -> t'' to exactly where the
    exact mixture model's two DDIM steps t -> t' -> t'' go, each step taken alone as the ddim
    sampler takes it (one time, Python floats); and x~ is the convex combination of the teacher's
    two x0 predictions with weights sigma''(SNR''^1/2 - SNR'^1/2) and sigma''(SNR'^1/2 - SNR^1/2)."""
    teacher = ExactGMM(MIXTURE, process).denoiser(clip=False)
    z, (t, t1, t2) = _batch_on_grid(process, 16, 64)
    target = teacher_target(teacher, z, t, t1, t2)
    eps = (z - process.alpha(t)[:, None] * target) / process.sigma(t)[:, None]
    one = S.ddim_step(z, Prediction(eps=eps, x0=target), t, t2, process)
    for b in range(len(z)):
        tb, t1b, t2b = float(t[b]), float(t1[b]), float(t2[b])
        zb = z[b : b + 1]
        p0 = teacher(zb, tb)
        z1 = S.ddim_step(zb, p0, tb, t1b, process)
        p1 = teacher(z1, t1b)
        two = S.ddim_step(z1, p1, t1b, t2b, process)
        assert torch.allclose(one[b : b + 1], two, rtol=0, atol=1e-10), (b, one[b], two)
        snr = [float(process.alpha(v) / process.sigma(v)) if v > 0 else None for v in (tb, t1b, t2b)]
        s2 = float(process.sigma(t2b))
        if snr[2] is None:  # t'' = 0: x~ is the second x0 itself
            assert torch.allclose(target[b : b + 1], p1.x0, rtol=0, atol=1e-10)
            continue
        a, c = s2 * (snr[2] - snr[1]), s2 * (snr[1] - snr[0])
        assert a >= 0 and c >= 0
        assert torch.allclose(target[b : b + 1], (a * p1.x0 + c * p0.x0) / (a + c), rtol=0, atol=1e-10)


def test_distill_target_inverts_the_ddim_step_and_the_weight_is_truncated_snr():
    process = make_process("ddpm", "linear", 1000)
    z, (t, _, t2) = _batch_on_grid(process, 8, 32, seed=1)
    x0 = torch.randn_like(z)
    eps = (z - process.alpha(t)[:, None] * x0) / process.sigma(t)[:, None]
    z2 = S.ddim_step(z, Prediction(eps=eps, x0=x0), t, t2, process)
    assert torch.allclose(distill_target(process, z, z2, t, t2), x0, rtol=0, atol=1e-9)
    w = snr_weight(process, t)
    snr = (process.alpha(t) / process.sigma(t)) ** 2
    assert torch.allclose(w, torch.maximum(snr, torch.ones_like(snr)), rtol=1e-12, atol=0)
    assert (w > 1).any() and (w == 1).any()


# --------------------------------------------------------------------------------------------
# real models


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A small MLP on 2-d mixture points (vp, v-prediction, 300 updates: a few seconds) and its data."""
    from ddpmctl.train import TrainConfig, train

    d = tmp_path_factory.mktemp("distill")
    np.save(d / "g.npy", MIXTURE.sample(2000, np.random.default_rng(1))[0].astype(np.float32))
    cfg = TrainConfig(sde="vp", prediction="v", steps=300, batch=128, lr=2e-3, ema=0.99, log_every=100,
                      net={"hidden": 64, "blocks": 2, "emb_dim": 32}, device="cpu")  # fmt: skip
    train(cfg, d / "g.npy", d / "t", handle_signals=False)
    return d


def _paired_error(model, other, n: int = 400, **kw) -> float:
    """Mean distance between the deterministic DDIM samples of two models from the same noise."""
    from ddpmctl.sampling import generate

    x, _ = generate(model, n=n, seed=3, **kw)
    y, _ = generate(other[0], "ddim", n, other[1], seed=3)
    return float(np.linalg.norm(x - y, axis=1).mean())


def test_the_student_follows_its_teacher_far_closer_than_the_teacher_on_the_students_grid(teacher, tmp_path):
    """Two rounds, 8 -> 4 -> 2 steps: the 2-step student's samples land near the 8-step teacher's
    (the same noise), much nearer than the teacher's own DDIM on the student's 2-step grid; the
    loss of each round goes down."""
    from ddpmctl.checkpoint import load_model
    from ddpmctl.distill import DistillConfig, distill

    cfg = DistillConfig(from_steps=8, to_steps=2, steps_per_round=80, batch=128, lr=1e-3, log_every=10, device="cpu")
    result = distill(teacher / "t", teacher / "g.npy", tmp_path / "s", cfg)
    assert [r["steps"] for r in result.rounds] == [4, 2] and result.steps == 2
    t_model, s_model = load_model(teacher / "t"), load_model(tmp_path / "s")
    grid = S.plan(t_model.process, "ddim", 8).times
    assert s_model.meta["sampling"]["times"] == [float(v) for v in grid[::4]]
    student = _paired_error(s_model, (t_model, 8))
    t_model.meta = {"sampling": {"sampler": "ddim", "steps": 2, "times": s_model.meta["sampling"]["times"]}}
    on_grid = _paired_error(t_model, (load_model(teacher / "t"), 8))
    assert student < 0.35 * on_grid, (student, on_grid)
    records = [json.loads(line) for line in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    for r in (1, 2):
        losses = [rec["loss"] for rec in records if rec["round"] == r]
        assert len(losses) == 8 and losses[-1] < losses[0], losses


def test_cli_distils_writes_students_that_sample_with_their_recorded_nfe_and_resumes(teacher, tmp_path):
    out = tmp_path / "s"
    args = ["distill", teacher / "t", teacher / "g.npy", "--from-steps", 8, "--to-steps", 2,
            "--steps-per-round", 5, "--batch", 16, "--device", "cpu", "-o", out]  # fmt: skip
    r = run_cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert [x["steps"] for x in res["rounds"]] == [4, 2] and [x["updates"] for x in res["rounds"]] == [5, 5]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "model.safetensors", "student-4.safetensors"]
    for ckpt, nfe in ((out, 2), (out / "student-4.safetensors", 4)):
        r = run_cli("sample", ckpt, "-n", 8, "-o", tmp_path / "x.npy", "--json")
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert (info["sampler"], info["nfe"], info["steps"], info["spacing"]) == ("ddim", nfe, nfe, "recorded")
    r = run_cli("info", out, "--json")
    d = json.loads(r.stdout)["ddpmctl"]["distill"]
    assert (d["rounds"], d["steps"], d["from_steps"], d["updates"]) == (2, 2, 8, [5, 5])
    assert d["teacher"] == str((teacher / "t").resolve()) and d["guide"] is None
    assert (d["config"]["lr"], d["config"]["optimizer"]) == (2e-3, "adamw")  # the teacher's, from its config
    r = run_cli("sample", out, "--steps", 3, "-o", tmp_path / "y.npy")  # not the steps it was distilled for
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and b"distilled for 2 steps" in r.stderr
    r = run_cli("sample", out, "--sampler", "ode", "-n", 4, "-o", tmp_path / "z.npy", "--json")  # its own grid
    assert r.returncode == 0 and json.loads(r.stdout)["nfe"] == 20
    # the output holds a student: refused without --force; --resume runs the rounds after the last finished one
    r = run_cli(*args)
    assert r.returncode == 2 and b"--force" in r.stderr and len(r.stderr.splitlines()) == 1
    (out / "model.safetensors").unlink()
    r = run_cli(*args, "--resume", "--json")
    assert r.returncode == 0, r.stderr
    assert [x["round"] for x in json.loads(r.stdout)["rounds"]] == [2]
    assert json.loads(run_cli("info", out, "--json").stdout)["ddpmctl"]["distill"]["updates"] == [5, 5]


def test_an_image_model_on_a_discrete_process_distils_on_its_ddim_grid(tmp_path):
    """A tiny (untrained) U-Net on 8x8 images, ddpm with T = 50: one round 4 -> 2 on the
    integer steps of the ddim grid; the student samples images in [0, 1] with 2 NFE."""
    from ddpmctl.checkpoint import load_model, make_meta, save_model
    from ddpmctl.diffusion import IMAGE_NORMALIZATION
    from ddpmctl.nets import build_net, default_net_config

    torch.manual_seed(0)
    cfg = {**default_net_config("images", (1, 8, 8)), "base": 8, "mults": [1, 2], "groups": 4, "head_channels": 8}
    process = make_process("ddpm", "linear", 50)
    (tmp_path / "t").mkdir()
    save_model(tmp_path / "t" / "model.safetensors", build_net(cfg),
               make_meta(cfg, process, "eps", "images", (1, 8, 8), IMAGE_NORMALIZATION))  # fmt: skip
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32))
    r = run_cli("distill", tmp_path / "t", tmp_path / "x.npy", "--from-steps", 4, "--to-steps", 2,
                "--steps-per-round", 2, "--batch", 4, "--device", "cpu", "-o", tmp_path / "s", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    times = load_model(tmp_path / "s").meta["sampling"]["times"]
    assert times == [float(v) for v in S.plan(process, "ddim", 4).times[::2]] and times[0] == 1.0
    assert all(round(v * 50) == v * 50 for v in times)  # training steps i / T
    r = run_cli("sample", tmp_path / "s", "-n", 3, "-o", tmp_path / "x2.npy", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["nfe"] == 2
    x = np.load(tmp_path / "x2.npy")
    assert x.shape == (3, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    # restore takes the student like any other checkpoint (its methods on their own grids)
    r = run_cli("degrade", tmp_path / "x2.npy", "--task", "denoise", "--noise", "0.1", "-o", tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr
    r = run_cli("restore", tmp_path / "s", tmp_path / "y.npy", "--steps", 2, "-o", tmp_path / "r.npy", "--quiet")
    assert r.returncode == 0 and np.load(tmp_path / "r.npy").shape == (3, 1, 8, 8), r.stderr


def test_a_guided_teacher_is_distilled_in_round_one(teacher, tmp_path):
    """With --guide, round 1's targets are the autoguided DDIM's (Karras et al. 2024): the same run
    without the guide learns other targets; the student records the guide and needs none."""
    from ddpmctl.checkpoint import load_model, save_model

    model = load_model(teacher / "t")
    weak = {k: 0.8 * v for k, v in model.net.state_dict().items()}  # a weaker model of the same data
    save_model(tmp_path / "weak.safetensors", weak, model.meta)
    runs = {}
    for name, extra in (("guided", ["--guide", tmp_path / "weak.safetensors", "--guidance", 3]), ("plain", [])):
        r = run_cli("distill", teacher / "t", teacher / "g.npy", "--from-steps", 4, "--to-steps", 2, "--batch", 16,
                    "--steps-per-round", 2, "--device", "cpu", "-o", tmp_path / name, *extra)  # fmt: skip
        assert r.returncode == 0, r.stderr
        runs[name] = [json.loads(x)["loss"] for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert runs["guided"] != runs["plain"]
    d = load_model(tmp_path / "guided").meta["distill"]
    assert d["guide"] == str((tmp_path / "weak.safetensors").resolve()) and d["config"]["guidance"] == 3
    r = run_cli("sample", tmp_path / "guided", "-n", 4, "-o", tmp_path / "x.npy", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["nfe"] == 2 and "guidance" not in json.loads(r.stdout)
