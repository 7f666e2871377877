"""SR3: image-conditional super-resolution (issue #18; Saharia et al. 2021, seed 001 slide "Conditional
DDPM for super-resolution"). The training condition is c = bicubic(A x0) with A the average pooling
of ``degrade --task sr``; the checkpoint records it; ``restore --method sr3`` samples with c from y.
The conditioning path is proven without training by a hand-made network that returns c as its x0."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ddpmctl import checkpoint as ckpt
from ddpmctl.conditions import parse_condition
from ddpmctl.diffusion import IMAGE_NORMALIZATION, Denoiser, edm_precond, marginal
from ddpmctl.errors import InputError
from ddpmctl.operators import degrade, make_operator
from ddpmctl.restore import restore
from ddpmctl.schedules import make_process

SHAPE = (1, 16, 16)
NET = {"base": 8, "mults": [1, 2]}


def _images(n: int, seed: int = 0, shape=SHAPE) -> np.ndarray:
    """Smooth random images in [0, 1] (blurred noise), all different."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.random((n, *shape)).astype(np.float32))
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False).numpy()


def _bicubic(y: torch.Tensor, size) -> torch.Tensor:
    """The test's own bicubic upsampling (align_corners=False)."""
    return F.interpolate(y, size=tuple(size), mode="bicubic", align_corners=False)


# ------------------------------------------------------------------------------------------
# training: the condition of every batch


def test_training_condition_is_bicubic_of_the_pooled_batch(tmp_path, monkeypatch):
    """Every step the net sees x_t (C channels) and image_cond = bicubic(avg_pool_4(x0)) of exactly
    the rows of that step's batch (model space), bit for bit."""
    from ddpmctl import nets
    from ddpmctl.train import IndexStream, TrainConfig, train

    data = _images(12)
    np.save(tmp_path / "d.npy", data)
    seen = []
    build = nets.build_net

    def spying_build(config):
        net = build(config)
        net.register_forward_pre_hook(
            lambda m, a, kw: seen.append((a[0].shape, kw["image_cond"].clone())), with_kwargs=True
        )
        return net

    monkeypatch.setattr(nets, "build_net", spying_build)
    cfg = TrainConfig(steps=4, batch=5, net=NET, ema=0.0, log_every=4, condition="sr:4", T=50)
    train(cfg, tmp_path / "d.npy", tmp_path / "ck", handle_signals=False)
    assert len(seen) == 4
    stream = IndexStream(len(data), 0)
    for step, (x_shape, cond) in enumerate(seen):
        x0 = torch.from_numpy(data[stream.batch(step, 5)]) * 2 - 1
        assert x_shape == (5, *SHAPE) and torch.equal(cond, _bicubic(F.avg_pool2d(x0, 4), SHAPE[1:]))


def test_flipped_and_noisy_conditions_follow_the_batch(tmp_path):
    """With --hflip the condition is that of the flipped image the loss sees; --condition-noise s adds
    N(0, (2 s)^2) (model space) to A x0 before upsampling, the same noise for the same (seed, step)."""
    from ddpmctl.objectives import Objective
    from ddpmctl.train import IndexStream, TrainConfig
    from ddpmctl.train.data import TrainData, attach_condition
    from ddpmctl.train.loop import draw_batch

    images = _images(64, seed=1)
    cpu = torch.device("cpu")

    def batch(cfg, step):
        cfg.validate()
        data = attach_condition(TrainData(images, "images", SHAPE, IMAGE_NORMALIZATION, "x"), cfg)
        objective, stream = Objective(make_process("ddpm", T=50)), IndexStream(len(images), 0)
        one = SimpleNamespace(rank=0, world=1)
        run = SimpleNamespace(cfg=cfg, data=data, step=step, dist=one, device=cpu, objective=objective, stream=stream)
        x0, _, _, _, kw = draw_batch(run, torch.Generator(), torch.Generator(), False)
        return x0, kw["image_cond"], run.stream.batch(step, cfg.batch)

    x0, c, idx = batch(TrainConfig(batch=32, hflip=True, condition="sr:4"), 3)
    plain = torch.from_numpy(images[idx]) * 2 - 1
    flipped = (x0 != plain).flatten(1).any(1)
    assert 4 < int(flipped.sum()) < 28 and torch.equal(x0[flipped], plain[flipped].flip(-1))
    assert torch.equal(c, _bicubic(F.avg_pool2d(x0, 4), SHAPE[1:]))

    noisy = TrainConfig(batch=32, condition="sr:4", condition_noise=0.1)
    x0, c, _ = batch(noisy, 5)
    rms = float((c - _bicubic(F.avg_pool2d(x0, 4), SHAPE[1:])).square().mean().sqrt())
    assert 0.6 * 0.2 < rms < 1.1 * 0.2  # bicubic weights between the low-res pixels shrink the noise a little
    assert torch.equal(batch(TrainConfig(batch=32, condition="sr:4", condition_noise=0.1), 5)[1], c)


# ------------------------------------------------------------------------------------------
# the network and the checkpoint


def test_sr3_model_trains_and_round_trips(tmp_path, cli):
    """A tiny SR3 run: the U-Net's input has in_ch + C channels, the checkpoint records 'sr:4' (and
    ``info`` shows it), loading rebuilds the same net, whose output depends on the condition; resuming
    with another condition is refused."""
    from ddpmctl.train import TrainConfig, train

    np.save(tmp_path / "d.npy", _images(8))
    cfg = TrainConfig(steps=3, batch=4, net=NET, condition="sr:4", T=50, log_every=1)
    train(cfg, tmp_path / "d.npy", tmp_path / "ck", handle_signals=False)
    model = ckpt.load_model(tmp_path / "ck")
    assert model.meta["condition"] == "sr:4" and model.condition == parse_condition("sr:4")
    assert model.net.cond_channels == 1 and model.net.in_conv.in_channels == 2
    state = ckpt.load_state(tmp_path / "ck")
    assert all(torch.equal(v, state["ema"][k]) for k, v in model.net.state_dict().items())
    x, c_noise = torch.randn(2, *SHAPE), torch.tensor([0.5, 20.0])
    with torch.no_grad():
        a = model.net(x, c_noise, image_cond=torch.zeros(2, *SHAPE))
        b = model.net(x, c_noise, image_cond=torch.ones(2, *SHAPE))
    assert a.shape == x.shape and not torch.allclose(a, b)

    r = cli("info", tmp_path / "ck")
    assert r.returncode == 0 and b"condition: sr:4" in r.stdout
    with pytest.raises(InputError, match="condition differs"):
        train(TrainConfig(steps=5, batch=4, net=NET, condition="sr:2", T=50), tmp_path / "d.npy", tmp_path / "ck",
              resume=tmp_path / "ck", handle_signals=False)  # fmt: skip


def test_sr3_resume_is_exact(tmp_path):
    """An SR3 run with flips and condition noise stopped after 2 of 5 steps and resumed ends bit for
    bit where an uninterrupted run ends (the condition's noise comes from the per-step generators)."""
    from ddpmctl.train import TrainConfig, train

    np.save(tmp_path / "d.npy", _images(8))
    cfg = TrainConfig(steps=5, batch=4, net=NET, condition="sr:4", condition_noise=0.05, hflip=True, T=50,
                      log_every=1, save_every=2)  # fmt: skip
    train(cfg, tmp_path / "d.npy", tmp_path / "a", handle_signals=False)
    part = train(cfg, tmp_path / "d.npy", tmp_path / "b", [lambda info: info["step"] == 2], handle_signals=False)
    assert part.stopped and part.step == 2
    train(cfg, tmp_path / "d.npy", tmp_path / "b", resume=tmp_path / "b", handle_signals=False)
    sa, sb = ckpt.load_state(tmp_path / "a"), ckpt.load_state(tmp_path / "b")
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])


# ------------------------------------------------------------------------------------------
# restoring: the real command line


def test_cli_restore_sr3_shapes_and_batch_independence(cli, tmp_path):
    """train --condition sr:4, degrade --task sr --scale 4, restore (sr3 is an SR3 checkpoint's
    default): the right shapes and NFE, the same images whatever --batch, with --samples K too."""
    r = cli("make-data", "triangles", "--n", "6", "--size", "16", "-o", tmp_path / "tri.npy")
    assert r.returncode == 0, r.stderr
    args = ["--steps", "2", "--batch", "3", "--base", "8", "--mults", "1,2", "--T", "50"]
    r = cli("train", tmp_path / "tri.npy", "--condition", "sr:4", *args, "-o", tmp_path / "ck")
    assert r.returncode == 0, r.stderr
    r = cli("degrade", tmp_path / "tri.npy", "--task", "sr", "--scale", "4", "-o", tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr

    def run(out, *extra):
        r = cli("restore", tmp_path / "ck", tmp_path / "y.npy", "--steps", "3", *extra, "--json", "-o", tmp_path / out)
        assert r.returncode == 0, r.stderr
        return np.load(tmp_path / out), json.loads(r.stdout)

    a, info = run("a.npy", "--batch", "4")
    b, _ = run("b.npy", "--method", "sr3", "--batch", "6")
    assert a.shape == (6, *SHAPE) and np.allclose(a, b, atol=1e-6)  # float rounding of other batch shapes
    assert info["method"] == "sr3" and info["condition"] == "sr:4" and info["nfe"] == 3
    assert info["sampler"] == "ode" and info["solver"] == "dpm++3m"
    m1, info = run("m1.npy", "--samples", "2", "--batch", "3", "--sampler", "ddim")
    m2, _ = run("m2.npy", "--samples", "2", "--batch", "4", "--sampler", "ddim")
    assert m1.shape == (6, *SHAPE) and np.allclose(m1, m2, atol=1e-6) and not np.allclose(m1, a, atol=1e-3)
    assert info["samples"] == 2 and info["sampler"] == "ddim"


# ------------------------------------------------------------------------------------------
# the conditioning path, exactly, without training


class Echo(torch.nn.Module):
    """An x0-predicting network that returns its condition image: x0(x_t, t) = c."""

    cond_channels = 1

    def forward(self, x, c_noise, image_cond=None):
        return image_cond


def _echo_model(prediction="x0", process=None):
    return ckpt.LoadedModel(
        net=Echo(), process=process or make_process("ddpm", T=50), prediction=prediction,
        normalization=IMAGE_NORMALIZATION, data_kind="images", data_shape=SHAPE, meta={"condition": "sr:4"},
    )  # fmt: skip


@pytest.mark.parametrize("sampler", ["ode", "ddpm"])
def test_restore_sr3_of_an_echo_model_is_the_bicubic_upsampling(sampler):
    """A model whose x0 is its condition restores every observation to bicubic(y) (clipped to
    [0, 1]): rows are not mixed up across batches or the K restorations of --samples."""
    x = _images(5, seed=3)
    op = make_operator("sr", SHAPE, 5, scale=4)
    y = degrade(x, op)
    want = np.clip((_bicubic(torch.from_numpy(y).double() * 2 - 1, SHAPE[1:]).numpy() + 1) / 2, 0, 1)
    for batch, samples in ((2, 1), (3, 2)):
        out, info = restore(_echo_model(), y, op, 0.0, "sr3", 6, batch=batch, samples=samples, sampler=sampler)
        np.testing.assert_allclose(out, want, atol=2e-6)
    assert info["nfe"] == 6 and not np.allclose(want, want[::-1])  # the images differ


def test_edm_preconditioning_scales_x_t_only():
    """Under EDM's preconditioning the network gets c_in x~ but the condition c as it is."""
    process = make_process("edm")
    seen = {}

    class Spy(Echo):
        def forward(self, x, c_noise, image_cond=None):
            seen.update(x=x, c=image_cond)
            return torch.zeros_like(x)

    den = Denoiser(Spy(), process, "edm").set_cond(torch.full((2, *SHAPE), 0.7))
    x, t = torch.randn(2, *SHAPE), torch.tensor([2.0, 30.0])
    den(x, t)
    alpha, sigma = marginal(process, t)
    c_in = edm_precond(sigma / alpha, process.sigma_data)[2].reshape(-1, 1, 1, 1)
    assert torch.equal(seen["c"], torch.full((2, *SHAPE), 0.7))
    torch.testing.assert_close(seen["x"], (x / alpha.reshape(-1, 1, 1, 1) * c_in).float())


# ------------------------------------------------------------------------------------------
# refusals (the command-line cases are in tests/test_bad_input.py)


def test_refusals():
    """Specs, conditional methods on unconditional models and the reverse, other tasks and scales."""
    for spec, words in (("sr", "factor >= 2"), ("sr:1", ">= 2"), ("sr:x", ">= 2"), ("blur:2", "unknown")):
        with pytest.raises(InputError, match=words):
            parse_condition(spec)
    assert parse_condition(" SR:4 ").spec == "sr:4"
    with pytest.raises(InputError, match="not divisible by 3"):
        parse_condition("sr:3").check("images", SHAPE)
    with pytest.raises(InputError, match="needs images"):
        parse_condition("sr:2").check("points", (2,))
    x = _images(2)
    sr4, sr2 = make_operator("sr", SHAPE, 2, scale=4), make_operator("sr", SHAPE, 2, scale=2)
    inpaint = make_operator("inpaint", SHAPE, 2, box=(4, 4, 8, 8))
    with pytest.raises(InputError, match="sr:4 observations.*sr x2"):
        restore(_echo_model(), degrade(x, sr2), sr2, 0.0, "sr3", 2)
    with pytest.raises(InputError, match="sr:4 observations.*inpaint"):
        restore(_echo_model(), degrade(x, inpaint), inpaint, 0.0, "sr3", 2)
    with pytest.raises(InputError, match="--method dps.*use --method sr3"):
        restore(_echo_model(), degrade(x, sr4), sr4, 0.0, "dps", 2)
    unconditional = ckpt.LoadedModel(Echo(), make_process("ddpm", T=50), "x0", IMAGE_NORMALIZATION, "images", SHAPE)
    with pytest.raises(InputError, match="not an SR3 model"):
        restore(unconditional, degrade(x, sr4), sr4, 0.0, "sr3", 2)
    from ddpmctl.sampling import generate

    with pytest.raises(InputError, match="restore CKPT y.npy --method sr3"):
        generate(_echo_model(), "ddim", 2, 2)
    with pytest.raises(InputError, match="image-conditional"):  # a command that gives no condition at all
        _echo_model().denoiser()(torch.zeros(1, *SHAPE), 0.5)
