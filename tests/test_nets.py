"""Tests of the networks (ddpmctl.nets): shapes, conditioning, gradients, configs, checkpoints, FLOPs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ddpmctl.errors import InputError
from ddpmctl.nets import (
    MLP,
    UNet,
    build_net,
    count_flops,
    count_params,
    default_net_config,
    flop_counter,
    validate_net_config,
)
from ddpmctl.nets.embeddings import FourierEmbedding, SinusoidalEmbedding, TimeEmbedding

torch.set_num_threads(1)

TINY = {"base": 8, "mults": [1, 2], "blocks": 1, "groups": 4, "head_channels": 8}


def unet_cfg(c: int, h: int, w: int, **kw) -> dict:
    return {"type": "unet", "in_channels": c, "image_size": [h, w], **TINY, **kw}


def randomize_zero_init(net: nn.Module, seed: int = 0) -> nn.Module:
    """The last conv (and each block's second conv) start at zero, so the output is 0 and most
    gradients vanish at init; give those tensors small random values for the tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().max() == 0:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return net


def c_noise_for(embedding: str, b: int) -> torch.Tensor:
    # DDPM step indices for the sinusoidal embedding, continuous times for Fourier features
    return torch.linspace(0, 999, b) if embedding == "sinusoidal" else torch.linspace(0.01, 1.0, b)


# ------------------------------------------------------------------------------------------
# embeddings


def test_sinusoidal_embedding_matches_ddpm_formula():
    emb = SinusoidalEmbedding(8)
    c = torch.tensor([0.0, 1.0, 37.0, 999.0])
    half = 4
    freqs = torch.tensor([math.exp(-math.log(10000) * k / (half - 1)) for k in range(half)])
    expected = torch.cat([torch.sin(c[:, None] * freqs), torch.cos(c[:, None] * freqs)], dim=1)
    torch.testing.assert_close(emb(c), expected)
    assert emb(c)[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_fourier_embedding_formula_and_scale():
    torch.manual_seed(0)
    emb = FourierEmbedding(4096, scale=16.0)
    assert abs(emb.W.std().item() - 16.0) < 0.8  # W ~ N(0, 16^2)
    c = torch.tensor([0.0, 0.3])
    out = emb(c)
    arg = 2 * math.pi * c[:, None] * emb.W[None, :]
    torch.testing.assert_close(out, torch.cat([torch.sin(arg), torch.cos(arg)], dim=1))
    # W is a saved buffer (in state_dict) but not a trained parameter
    assert "W" in emb.state_dict() and len(list(emb.parameters())) == 0


def test_time_embedding_and_bad_kinds():
    te = TimeEmbedding("fourier", 16, 32)
    assert te(torch.rand(5)).shape == (5, 32)
    with pytest.raises(InputError, match="unknown embedding"):
        TimeEmbedding("learned", 16, 32)
    with pytest.raises(InputError, match="even"):
        SinusoidalEmbedding(7)
    with pytest.raises(InputError, match="scale"):
        FourierEmbedding(8, scale=-1.0)


# ------------------------------------------------------------------------------------------
# U-Net: shapes, conditioning, gradients


@pytest.mark.parametrize(
    "c,h,w,kw",
    [
        (1, 16, 16, {}),
        (3, 16, 16, {"embedding": "fourier", "attn": [16, 8]}),
        (1, 32, 32, {"attn": [16], "scale_shift": True}),
        (3, 32, 48, {"attn": [32], "embedding": "fourier", "mid_attn": False}),
        (1, 32, 32, {"patch": 2, "mults": [1, 2, 2], "attn": [4]}),
        (2, 16, 24, {"mults": [1, 1, 2], "blocks": 2, "dropout": 0.1}),
    ],
)
def test_unet_output_shape_and_conditioning(c, h, w, kw):
    cfg = unet_cfg(c, h, w, **kw)
    torch.manual_seed(0)
    net = randomize_zero_init(build_net(cfg)).eval()
    assert isinstance(net, UNet)
    x = torch.randn(3, c, h, w)
    cn = c_noise_for(cfg.get("embedding", "sinusoidal"), 3)
    with torch.no_grad():
        y = net(x, cn)
        # the same image at two noise levels gives two different outputs
        y2 = net(x[:1].expand(2, -1, -1, -1), cn[:2])
    assert y.shape == x.shape and y.dtype == torch.float32 and torch.isfinite(y).all()
    assert (y2[0] - y2[1]).abs().max() > 1e-4


def test_unet_starts_at_zero_output():
    # the last conv is zero-initialised: an untrained net predicts 0
    net = build_net(unet_cfg(1, 16, 16))
    assert torch.equal(net(torch.randn(2, 1, 16, 16), torch.tensor([3.0, 700.0])), torch.zeros(2, 1, 16, 16))


@pytest.mark.parametrize("kw", [{"attn": [16, 8], "scale_shift": True, "embedding": "fourier"}, {"patch": 2}])
def test_unet_gradients_reach_every_parameter(kw):
    torch.manual_seed(1)
    net = randomize_zero_init(build_net(unet_cfg(2, 16, 16, **kw)))
    x = torch.randn(4, 2, 16, 16)
    net(x, c_noise_for(kw.get("embedding", "sinusoidal"), 4)).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


def test_unet_channels_last_and_batch_independence():
    torch.manual_seed(2)
    net = randomize_zero_init(build_net(unet_cfg(3, 16, 16, attn=[8]))).eval()
    x, cn = torch.randn(4, 3, 16, 16), torch.tensor([0.0, 10.0, 500.0, 999.0])
    with torch.no_grad():
        y = net(x, cn)
        y_cl = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last), cn)
        y_one = torch.cat([net(x[i : i + 1], cn[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(y_cl, y, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y_one, y, rtol=1e-4, atol=1e-5)  # no mixing across the batch


def test_unet_bf16_autocast_runs():
    torch.manual_seed(3)
    net = randomize_zero_init(build_net(unet_cfg(1, 16, 16, attn=[8])))
    x = torch.randn(2, 1, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x, torch.tensor([1.0, 900.0]))
    assert y.shape == x.shape and torch.isfinite(y.float()).all()
    y.float().sum().backward()
    assert all(p.grad is not None for p in net.parameters())


# ------------------------------------------------------------------------------------------
# configs


@pytest.mark.parametrize(
    "cfg,data_shape,match",
    [
        (unet_cfg(1, 17, 16), None, "divisible"),
        (unet_cfg(1, 20, 20, patch=2, mults=[1, 2, 2]), None, "divisible"),
        (unet_cfg(1, 16, 16, width=3), None, "unknown key"),
        (unet_cfg(1, 16, 16), (3, 16, 16), "channel"),
        (unet_cfg(1, 16, 16), (1, 32, 32), "32x32"),
        (unet_cfg(1, 16, 16), (16,), "image data"),
        (unet_cfg(1, 16, 16, attn=[4]), None, "attn"),
        (unet_cfg(1, 16, 16, groups=3), None, "groups"),
        (unet_cfg(1, 16, 16, base=20, mults=[1, 5], groups=4, head_channels=30), None, "heads"),
        (unet_cfg(1, 16, 16, blocks=True), None, "integer"),
        (unet_cfg(1, 16, 16, mults=[]), None, "mults"),
        (unet_cfg(1, 16, 16, dropout=1.0), None, "dropout"),
        (unet_cfg(1, 16, 16, embedding="learned"), None, "embedding"),
        (unet_cfg(1, 16, 16, base=5, groups=1), None, "base"),
        ({"type": "unet", "image_size": [16, 16]}, None, "in_channels"),
        ({"type": "transformer", "in_channels": 1}, None, "type"),
        ({"type": "mlp", "dim": 2, "hidden": 0}, None, "hidden"),
        ({"type": "mlp", "dim": 2}, (3,), "dimension"),
        ({"type": "mlp", "dim": 2}, (1, 8, 8), "vector"),
        ([1, 2], None, "mapping"),
    ],
)
def test_invalid_configs_raise_input_error(cfg, data_shape, match):
    with pytest.raises(InputError, match=match):
        validate_net_config(cfg, data_shape)
    if data_shape is None:
        with pytest.raises(InputError):
            build_net(cfg)


def test_validate_fills_defaults_and_is_json():
    cfg = validate_net_config({"type": "unet", "in_channels": 3, "image_size": (32, 48)}, (3, 32, 48))
    assert cfg["image_size"] == [32, 48] and "base" in cfg and "fourier_scale" in cfg
    assert json.loads(json.dumps(cfg)) == cfg
    assert validate_net_config(cfg) == cfg  # idempotent


@pytest.mark.parametrize(
    "kind,shape,embedding",
    [
        ("images", (1, 32, 32), "sinusoidal"),
        ("images", (3, 32, 32), "fourier"),
        ("images", (1, 28, 28), "sinusoidal"),
        ("images", (3, 64, 48), "fourier"),
        ("images", (1, 15, 9), "sinusoidal"),
        ("points", (2,), "fourier"),
        ("points", (5,), "sinusoidal"),
    ],
)
def test_default_configs_build_and_run(kind, shape, embedding):
    cfg = default_net_config(kind, shape, embedding)
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["type"] == ("unet" if kind == "images" else "mlp") and cfg["embedding"] == embedding
    assert validate_net_config(cfg, shape) == cfg  # every size is written out
    net = randomize_zero_init(build_net(cfg))
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert net(x, c_noise_for(embedding, 2)).shape == x.shape


def test_default_image_net_size():
    cfg = default_net_config("images", (1, 32, 32), "sinusoidal")
    net = build_net(cfg)
    assert 0.5e6 <= count_params(net) <= 2.5e6
    assert not cfg["attn"] or max(cfg["attn"]) <= 8
    assert 1e7 < count_flops(net, (1, 32, 32)) < 1e9


def test_default_config_bad_input():
    with pytest.raises(InputError, match="data kind"):
        default_net_config("video", (1, 8, 8))
    with pytest.raises(InputError, match="C, H, W"):
        default_net_config("images", (32, 32))
    with pytest.raises(InputError, match="embedding"):
        default_net_config("points", (2,), "learned")


# ------------------------------------------------------------------------------------------
# checkpoints


@pytest.mark.parametrize(
    "cfg,shape",
    [
        (unet_cfg(3, 16, 16, embedding="fourier", attn=[8], scale_shift=True), (3, 16, 16)),
        ({"type": "mlp", "dim": 5, "hidden": 32, "blocks": 2, "emb_dim": 16, "embedding": "fourier"}, (5,)),
        ({"type": "mlp", "dim": 2, "hidden": 32, "blocks": 2, "emb_dim": 16}, (2,)),
    ],
)
def test_state_dict_round_trip_via_safetensors(tmp_path, cfg, shape):
    torch.manual_seed(4)
    net = randomize_zero_init(build_net(cfg)).eval()
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    torch.manual_seed(5)  # a different init, a different Fourier W
    other = build_net(cfg).eval()
    state = load_file(str(tmp_path / "w.safetensors"))
    if cfg.get("embedding") == "fourier":
        assert "time_embed.features.W" in state
        assert not torch.equal(other.time_embed.features.W, net.time_embed.features.W)
    other.load_state_dict(state, strict=True)
    x = torch.randn(3, *shape)
    cn = c_noise_for(cfg.get("embedding", "sinusoidal"), 3)
    with torch.no_grad():
        assert torch.equal(other(x, cn), net(x, cn))


# ------------------------------------------------------------------------------------------
# MLP and FLOP / parameter counts


@pytest.mark.parametrize("dim", [2, 5])
def test_mlp_shapes_conditioning_gradients(dim):
    torch.manual_seed(6)
    net = randomize_zero_init(build_net({"type": "mlp", "dim": dim, "hidden": 64, "blocks": 3, "emb_dim": 32}))
    assert isinstance(net, MLP)
    x = torch.randn(7, dim)
    y = net(x, torch.arange(7.0) * 100)
    assert y.shape == (7, dim)
    y.square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name
    with torch.no_grad():
        a, b = net(x[:1].expand(2, -1), torch.tensor([10.0, 900.0]))
    assert (a - b).abs().max() > 1e-4


def test_count_params_and_flops_of_tiny_mlp_by_hand():
    d, hid, emb, blocks = 3, 16, 8, 2
    net = build_net({"type": "mlp", "dim": d, "hidden": hid, "blocks": blocks, "emb_dim": emb})
    # Linear layers: time MLP emb->emb->emb; in d->hid; per block hid->hid, emb->hid, hid->hid; out hid->d
    linears = [(emb, emb), (emb, emb), (d, hid)] + [(hid, hid), (emb, hid), (hid, hid)] * blocks + [(hid, d)]
    flops = sum(2 * i * o for i, o in linears)
    params = sum(i * o + o for i, o in linears) + 2 * hid * (blocks + 1)  # + LayerNorm weights and biases
    assert count_params(net) == params
    assert count_flops(net, (d,)) == flops


def test_count_flops_of_unet_matches_a_hand_count():
    cfg = unet_cfg(1, 16, 16, attn=[8])
    net = build_net(cfg)
    counted = {"flops": 0}

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            counted["flops"] += 2 * module.in_channels * module.out_channels * k * output.shape[2] * output.shape[3]
        elif isinstance(module, nn.Linear):
            counted["flops"] += 2 * module.in_features * module.out_features

    def attn_hook(module, inputs, output):
        _, c, h, w = inputs[0].shape
        counted["flops"] += 2 * 2 * (h * w) ** 2 * c  # QK^T and (softmax) V, summed over heads

    handles = [m.register_forward_hook(attn_hook if type(m).__name__ == "Attention" else hook) for m in net.modules()]
    with torch.no_grad():
        net(torch.zeros(1, 1, 16, 16), torch.zeros(1))
    for h in handles:
        h.remove()
    assert counted["flops"] > 0
    assert count_flops(net, (1, 16, 16)) == counted["flops"]


def test_flop_counter_counts_training_step():
    net = randomize_zero_init(build_net(unet_cfg(1, 16, 16, attn=[8])))
    fwd = count_flops(net, (1, 16, 16))
    x = torch.randn(2, 1, 16, 16)
    with flop_counter() as counter:
        net(x, torch.zeros(2)).sum().backward()
    total = counter.get_total_flops()
    # backward costs about twice the forward (the first conv needs no input gradient)
    assert 2.5 * 2 * fwd < total <= 3 * 2 * fwd


def test_unet_traces_without_graph_breaks():
    # torch.compile(fullgraph=True) raises on any graph break; the eager backend skips code generation
    cfg = unet_cfg(1, 16, 16, attn=[4], patch=2, scale_shift=True, embedding="fourier")
    net = randomize_zero_init(build_net(cfg))
    compiled = torch.compile(net, fullgraph=True, backend="eager")
    x, cn = torch.randn(2, 1, 16, 16), torch.tensor([0.1, 0.9])
    y = compiled(x, cn)
    torch.testing.assert_close(y, net(x, cn))
    y.sum().backward()
