"""Sampling runs image networks in channels_last on the CPU (ddpmctl.device.inference_layout,
docs/sample.md "Speed"): the same samples up to float32 rounding, the caller's layout given back."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ddpmctl import sampling
from ddpmctl.checkpoint import LoadedModel
from ddpmctl.device import inference_layout
from ddpmctl.diffusion import IMAGE_NORMALIZATION
from ddpmctl.nets import build_net, default_net_config
from ddpmctl.schedules import make_process

SHAPE = (3, 8, 8)


def small_model() -> LoadedModel:
    cfg = default_net_config("images", SHAPE, "sinusoidal")
    cfg.update(base=8, mults=[1, 2], attn=[], mid_attn=False, groups=4)
    torch.manual_seed(0)
    net = build_net(cfg).eval().requires_grad_(False)
    return LoadedModel(net, make_process("ddpm", "cosine", T=100), "eps", IMAGE_NORMALIZATION, "images", SHAPE)


def conv_weights(net: torch.nn.Module) -> list[torch.Tensor]:
    """The weights whose two layouts differ (more than one input channel, a kernel above 1x1)."""
    return [p for p in net.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1]


def test_samples_match_the_plain_layout_and_the_weights_come_back_unchanged(monkeypatch):
    model = small_model()
    before = [w.clone() for w in conv_weights(model.net)]
    seen = []
    model.net.register_forward_pre_hook(
        lambda m, args: seen.append(all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights(m)))
    )
    fast, info = sampling.generate(model, "ddpm", n=6, steps=8, seed=3, batch=4)
    assert seen and all(seen) and info["nfe"] == 8  # every evaluation ran in channels_last
    # the caller's layout and values are given back exactly
    assert all(w.is_contiguous() and torch.equal(w, b) for w, b in zip(conv_weights(model.net), before))
    seen.clear()
    monkeypatch.setattr(sampling, "inference_layout", lambda *a: contextlib.nullcontext())
    plain, _ = sampling.generate(model, "ddpm", n=6, steps=8, seed=3, batch=4)
    assert seen and not any(seen)
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-5)
    assert np.abs(fast - plain).max() < 1e-5 and fast.std() > 0.05  # not trivially equal: real samples


def test_a_channels_last_net_stays_channels_last_and_points_are_left_alone():
    model = small_model()
    model.net.to(memory_format=torch.channels_last)
    with inference_layout([model.net, None], "images", torch.device("cpu")):
        pass
    assert all(
        w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in conv_weights(model.net)
    )
    net = small_model().net
    with inference_layout([net], "points", torch.device("cpu")):
        assert all(w.is_contiguous() for w in conv_weights(net))


def test_the_layout_is_given_back_when_sampling_fails():
    net = small_model().net
    try:
        with inference_layout([net], "images", torch.device("cpu")):
            assert not conv_weights(net)[0].is_contiguous()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert all(w.is_contiguous() for w in conv_weights(net))


def test_restoration_runs_with_gradients_and_keeps_nchw():
    from ddpmctl.operators import degrade, make_operator
    from ddpmctl.restore import restore

    model = small_model()
    seen = []
    model.net.register_forward_pre_hook(
        lambda m, args: seen.append(any(not w.is_contiguous() for w in conv_weights(m)))
    )
    clean = np.random.default_rng(0).random((2, *SHAPE)).astype(np.float32)
    op = make_operator("inpaint", SHAPE)
    x = restore(model, degrade(clean, op, 0.0, seed=1), op, 0.0, "ddnm", steps=4, seed=0)[0]
    assert x.shape == clean.shape and seen and not any(seen)
