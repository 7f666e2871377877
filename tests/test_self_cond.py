"""Self-conditioning (net config ``self_cond: true``, Chen et al. 2022): the U-Net's extra input,
the denoiser's memory of its previous x0, the training pass that feeds the net its own estimate,
exact resume and per-sample seeds with a self-conditioned model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_cli
from test_nets import randomize_zero_init, unet_cfg

from ddpmctl import checkpoint as ckpt
from ddpmctl.diffusion import Denoiser
from ddpmctl.errors import InputError
from ddpmctl.nets import build_net, validate_net_config
from ddpmctl.objectives import Objective
from ddpmctl.sampling import generate
from ddpmctl.schedules import make_process
from ddpmctl.train import TrainConfig, train
from ddpmctl.train.loop import _self_cond_input


def _net(patch: int = 1):
    torch.manual_seed(0)
    return randomize_zero_init(build_net(unet_cfg(2, 8, 8, self_cond=True, patch=patch, attn=[])))


@pytest.mark.parametrize("patch", [1, 2])
def test_unet_takes_the_estimate_as_extra_channels(patch):
    net = _net(patch).eval()
    x, c = torch.randn(3, 2, 8, 8), torch.tensor([10.0, 500.0, 990.0])
    out_none = net(x, c)
    assert out_none.shape == x.shape  # the output keeps the data's channels
    torch.testing.assert_close(net(x, c, torch.zeros_like(x)), out_none)  # no estimate = zeros
    cond = torch.randn_like(x)
    out = net(x, c, cond)
    assert (out - out_none).abs().max() > 1e-3  # the estimate changes the output ...
    torch.testing.assert_close(net(x[1:], c[1:], cond[1:]), out[1:])  # ... per sample
    assert net.in_conv.in_channels == 2 * 2 * patch * patch
    # a net without the option takes no extra input and has half the first conv
    plain = build_net(unet_cfg(2, 8, 8, patch=patch))
    assert not plain.self_cond and plain.in_conv.in_channels == 2 * patch * patch


def test_mlp_has_no_self_cond_and_bad_values_are_refused():
    with pytest.raises(InputError, match="unknown key.*self_cond"):
        validate_net_config({"type": "mlp", "dim": 2, "self_cond": True})
    with pytest.raises(InputError, match="self_cond.*true or false"):
        validate_net_config(unet_cfg(1, 8, 8, self_cond="yes"))
    assert validate_net_config(unet_cfg(1, 8, 8))["self_cond"] is False


class Recorder(torch.nn.Module):
    """A 'network' that outputs c_noise-scaled x and records the estimate it was given."""

    self_cond = True

    def __init__(self):
        super().__init__()
        self.conds: list = []

    def forward(self, x, c_noise, cond=None):
        self.conds.append(None if cond is None else cond.clone())
        return 0.5 * x


def test_denoiser_feeds_back_its_previous_x0_and_resets():
    proc = make_process("ddpm", schedule="cosine", T=1000)
    net = Recorder()
    den = Denoiser(net, proc, "eps", clip=(-1.0, 1.0))
    x = torch.randn(4, 1, 4, 4) * 3
    p1 = den(x, 0.5)
    assert net.conds[0] is None  # first call: no estimate yet
    den(x, 0.4)
    torch.testing.assert_close(net.conds[1], p1.x0)  # the previous x0, clipped as returned
    assert p1.x0.abs().max() <= 1.0
    den(x[:2], 0.3)  # a batch of another shape does not get a stale estimate
    assert net.conds[2] is None
    den.reset()
    den(x[:2], 0.2)
    assert net.conds[3] is None
    # a network without self-conditioning is called with two arguments only
    plain = Denoiser(lambda x, c: 0.5 * x, proc, "eps")
    assert not plain.self_cond
    plain(x, 0.5)


def test_training_pass_feeds_the_nets_own_clipped_estimate():
    proc = make_process("ddpm", schedule="cosine", T=1000)
    objective = Objective(proc, "v")
    net = _net().train()
    x0 = torch.rand(6, 2, 8, 8) * 2 - 1
    t = proc.index_to_t(torch.tensor([0, 100, 300, 500, 800, 999]))
    x_t, c_noise, _, _ = objective.inputs(x0, t, torch.randn_like(x0))
    use = torch.tensor([True, False, True, True, False, True])
    cond = _self_cond_input(net, objective, x_t, c_noise, t, use, (-1.0, 1.0))
    assert not cond.requires_grad
    assert (cond[~use] == 0).all()
    with torch.no_grad():
        first = net(x_t, c_noise)
    expected = objective.x0_estimate(first, x_t, t, (-1.0, 1.0))
    torch.testing.assert_close(cond[use], expected[use])
    # the estimate is what a sampler's denoiser computes at the same (x_t, t) from the same net
    den = Denoiser(net, proc, "v", clip=(-1.0, 1.0))
    with torch.no_grad():
        torch.testing.assert_close(den(x_t, t).x0, expected, rtol=1e-5, atol=1e-5)
    assert (_self_cond_input(net, objective, x_t, c_noise, t, torch.zeros(6, dtype=torch.bool), None) == 0).all()


def _tiny_images(tmp_path, n=24):
    rng = np.random.default_rng(3)
    imgs = rng.uniform(0, 1, (n, 1, 8, 8)).astype(np.float32)
    imgs[:, :, :4] *= 0.2
    path = tmp_path / "img.npy"
    np.save(path, imgs)
    return path


def test_resume_is_exact_with_self_conditioning(tmp_path):
    data = _tiny_images(tmp_path)
    net = {"base": 8, "mults": [1, 2], "attn": [], "self_cond": True}
    cfg = TrainConfig(steps=10, batch=8, lr=1e-3, net=net, log_every=1, save_every=4, prediction="v")
    train(cfg, data, tmp_path / "a", handle_signals=False)
    part = train(cfg, data, tmp_path / "b", [lambda info: info["step"] == 6], handle_signals=False)
    assert part.stopped and part.step == 6
    train(cfg, data, tmp_path / "b", resume=tmp_path / "b", handle_signals=False)
    sa, sb = ckpt.load_state(tmp_path / "a"), ckpt.load_state(tmp_path / "b")
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    assert sa["meta"]["net"]["self_cond"] is True


def test_self_conditioned_checkpoint_samples_are_batch_independent(tmp_path):
    data = _tiny_images(tmp_path)
    net = {"base": 8, "mults": [1, 2], "attn": [], "self_cond": True}
    cfg = TrainConfig(steps=15, batch=8, lr=2e-3, net=net, log_every=5, prediction="v")
    train(cfg, data, tmp_path / "ck", handle_signals=False)
    outs = {}
    for b in (5, 2, 3):  # the CLI (one generate call per batch) and generate's own batches
        code = run_cli("sample", tmp_path / "ck", "-n", 5, "--batch", b, "--steps", 6, "--seed", 4,
                       "-o", tmp_path / f"s{b}.npy", "--quiet").returncode
        assert code == 0
        outs[b] = np.load(tmp_path / f"s{b}.npy")
    model = ckpt.load_model(tmp_path / "ck")
    for b in (2, 3):
        outs[f"g{b}"] = generate(model, "ode", n=5, steps=6, seed=4, batch=b)[0]
    # sample i is the same whatever the batch: the estimate never leaks from one batch to the next
    np.testing.assert_allclose(outs[2], outs[5], atol=1e-5)
    np.testing.assert_allclose(outs[3], outs[5], atol=1e-5)
    np.testing.assert_allclose(outs["g2"], outs[5], atol=1e-5)
    np.testing.assert_allclose(outs["g3"], outs[5], atol=1e-5)
    # and the trained net does use it: with its own estimate the prediction changes
    assert model.net.self_cond
    x, t = torch.randn(3, 1, 8, 8), torch.full((3,), 0.3, dtype=torch.float64)
    fresh = model.denoiser()(x, t).x0
    den = model.denoiser()
    den(x, 0.5)
    assert (den(x, t).x0 - fresh).abs().max() > 1e-4


def test_self_conditioned_restoration_is_batch_independent(tmp_path):
    from ddpmctl.operators import degrade, make_operator
    from ddpmctl.restore import restore

    data = _tiny_images(tmp_path)
    net = {"base": 8, "mults": [1, 2], "attn": [], "self_cond": True}
    train(TrainConfig(steps=10, batch=8, lr=2e-3, net=net, log_every=5, prediction="v"), data,
          tmp_path / "ck", handle_signals=False)
    model = ckpt.load_model(tmp_path / "ck")
    op = make_operator("inpaint", (1, 8, 8), 5, keep=0.5)
    y = degrade(np.load(data)[:5], op, 0.05)
    for method in ("ddnm", "dps"):
        a, _ = restore(model, y, op, 0.05, method, steps=8, seed=7)
        b, _ = restore(model, y, op, 0.05, method, steps=8, seed=7, batch=2)
        np.testing.assert_allclose(a, b, atol=1e-5, err_msg=method)
