"""Networks: a U-Net for images, a residual MLP for vectors, and their time embeddings.

Every network is described by a plain JSON-able dict (stored in checkpoints) and built with
``build_net(config)``; ``net(x, c_noise)`` returns a tensor shaped like ``x``, where ``c_noise``
(float32, ``(B,)``) is ``process.c_noise(t)``.

    >>> cfg = default_net_config("images", (1, 32, 32), "sinusoidal")
    >>> net = build_net(cfg)
    >>> count_params(net), count_flops(net, (1, 32, 32))
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from ddpmctl.errors import InputError
from ddpmctl.labels import MAX_CLASSES  # class-conditional nets embed labels 0..K-1 and the null class K
from ddpmctl.nets.embeddings import EMBEDDINGS, FourierEmbedding, SinusoidalEmbedding, TimeEmbedding
from ddpmctl.nets.mlp import MLP
from ddpmctl.nets.unet import UNet, UNetConfig

__all__ = [
    "build_net",
    "default_net_config",
    "validate_net_config",
    "count_params",
    "count_flops",
    "flop_counter",
    "UNet",
    "MLP",
    "TimeEmbedding",
    "SinusoidalEmbedding",
    "FourierEmbedding",
    "NET_TYPES",
]

NET_TYPES = ("unet", "mlp")

# key -> (kind, default); default None = required. kinds: int, float, bool, str, ints (list of int).
_UNET_KEYS: dict[str, tuple[str, Any]] = {
    "type": ("str", None),
    "in_channels": ("int", None),
    "image_size": ("ints", None),
    "base": ("int", 32),
    "mults": ("ints", [1, 2, 2]),
    "blocks": ("int", 1),
    "attn": ("ints", []),
    "mid_attn": ("bool", True),
    "head_channels": ("int", 64),
    "dropout": ("float", 0.0),
    "embedding": ("str", "sinusoidal"),
    "fourier_scale": ("float", 16.0),
    "groups": ("int", 8),
    "scale_shift": ("bool", False),
    "patch": ("int", 1),
    "self_cond": ("bool", False),
    "num_classes": ("int", 0),
    "cond_channels": ("int", 0),
}
_MLP_KEYS: dict[str, tuple[str, Any]] = {
    "type": ("str", None),
    "dim": ("int", None),
    "hidden": ("int", 256),
    "blocks": ("int", 3),
    "emb_dim": ("int", 128),
    "dropout": ("float", 0.0),
    "embedding": ("str", "sinusoidal"),
    "fourier_scale": ("float", 16.0),
    "num_classes": ("int", 0),
}


def _fail(key: str, problem: str) -> None:
    raise InputError(f"net config: '{key}' {problem}")


def _check_value(key: str, kind: str, value: Any) -> Any:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, f"must be an integer, got {value!r}")
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            _fail(key, f"must be a number, got {value!r}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            _fail(key, f"must be true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            _fail(key, f"must be a string, got {value!r}")
        return value
    if kind == "ints":
        if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            _fail(key, f"must be a list of integers, got {value!r}")
        return [int(v) for v in value]
    raise AssertionError(kind)


def _complete(config: dict, schema: dict[str, tuple[str, Any]]) -> dict:
    unknown = sorted(set(config) - set(schema))
    if unknown:
        raise InputError(
            f"net config: unknown key(s) {', '.join(map(repr, unknown))} for type "
            f"'{config['type']}' (known: {', '.join(schema)})"
        )
    out = {}
    for key, (kind, default) in schema.items():
        if key not in config:
            if default is None:
                _fail(key, "is required")
            out[key] = copy.deepcopy(default)
        else:
            out[key] = _check_value(key, kind, config[key])
    return out


def _check_common(cfg: dict) -> None:
    if cfg["embedding"] not in EMBEDDINGS:
        _fail("embedding", f"must be one of {', '.join(EMBEDDINGS)}, got {cfg['embedding']!r}")
    if cfg["fourier_scale"] <= 0:
        _fail("fourier_scale", f"must be > 0, got {cfg['fourier_scale']}")
    if not 0.0 <= cfg["dropout"] < 1.0:
        _fail("dropout", f"must be in [0, 1), got {cfg['dropout']}")
    if not 0 <= cfg["num_classes"] <= MAX_CLASSES:
        _fail("num_classes", f"must be in [0, {MAX_CLASSES}] (0: unconditional), got {cfg['num_classes']}")


def _check_unet(cfg: dict) -> None:
    _check_common(cfg)
    for key in ("in_channels", "base", "blocks", "head_channels", "groups", "patch"):
        if cfg[key] < 1:
            _fail(key, f"must be >= 1, got {cfg[key]}")
    if cfg["cond_channels"] < 0:
        _fail("cond_channels", f"must be >= 0 (0: no image condition), got {cfg['cond_channels']}")
    if cfg["base"] < 4 or cfg["base"] % 2:
        _fail("base", f"must be even and >= 4 (it is also the embedding width), got {cfg['base']}")
    if len(cfg["image_size"]) != 2 or min(cfg["image_size"]) < 1:
        _fail("image_size", f"must be [H, W] with positive sizes, got {cfg['image_size']}")
    mults = cfg["mults"]
    if not mults or min(mults) < 1:
        _fail("mults", f"must be a non-empty list of positive integers, got {mults}")
    if len(mults) > 8:
        _fail("mults", f"at most 8 levels, got {len(mults)}")
    for width in [cfg["base"]] + [cfg["base"] * m for m in mults]:
        if width % cfg["groups"]:
            _fail("groups", f"= {cfg['groups']} must divide every channel width (base * mult), but not {width}")
    for width in [cfg["base"] * m for m in mults]:
        heads = max(1, width // cfg["head_channels"])
        if width % heads:
            _fail("head_channels", f"= {cfg['head_channels']} splits width {width} into {heads} heads unevenly")
    h, w = cfg["image_size"]
    factor = cfg["patch"] * 2 ** (len(mults) - 1)
    if h % factor or w % factor:
        _fail("image_size", f"{h}x{w} must be divisible by patch * 2^(levels - 1) = {factor}")
    res0 = min(h, w) // cfg["patch"]
    resolutions = [res0 >> i for i in range(len(mults))]
    bad = [r for r in cfg["attn"] if r not in resolutions]
    if bad:
        _fail(
            "attn",
            f"resolutions {bad} are not among the U-Net's resolutions {resolutions} "
            f"(the smaller side of each level's feature maps)",
        )


def _check_mlp(cfg: dict) -> None:
    _check_common(cfg)
    for key in ("dim", "hidden", "blocks"):
        if cfg[key] < 1:
            _fail(key, f"must be >= 1, got {cfg[key]}")
    if cfg["emb_dim"] < 4 or cfg["emb_dim"] % 2:
        _fail("emb_dim", f"must be even and >= 4, got {cfg['emb_dim']}")


def validate_net_config(config: dict, data_shape: tuple | list | None = None) -> dict:
    """Check a net config (and, given ``data_shape`` = (C, H, W) or (D,), that the data fits it);
    returns the completed config (defaults filled in, a new dict). InputError on any problem.
    ``num_classes`` and ``cond_channels`` are left out when 0 (unconditional), so such configs read as
    before they existed."""
    if not isinstance(config, dict):
        raise InputError(f"net config: must be a mapping, got {type(config).__name__}")
    kind = config.get("type")
    if kind not in NET_TYPES:
        raise InputError(f"net config: 'type' must be one of {', '.join(NET_TYPES)}, got {kind!r}")
    if kind == "unet":
        cfg = _complete(config, _UNET_KEYS)
        _check_unet(cfg)
    else:
        cfg = _complete(config, _MLP_KEYS)
        _check_mlp(cfg)
    for key in ("num_classes", "cond_channels"):
        if cfg.get(key) == 0:
            del cfg[key]
    if data_shape is not None:
        shape = tuple(int(s) for s in data_shape)
        if kind == "unet":
            if len(shape) != 3:
                raise InputError(f"net config: a U-Net needs image data (C, H, W), got data of shape {shape}")
            if shape[0] != cfg["in_channels"]:
                raise InputError(
                    f"net config: the data has {shape[0]} channel(s) but the net expects "
                    f"in_channels = {cfg['in_channels']}"
                )
            if list(shape[1:]) != cfg["image_size"]:
                raise InputError(
                    f"net config: the data is {shape[1]}x{shape[2]} but the net was built for "
                    f"image_size {cfg['image_size'][0]}x{cfg['image_size'][1]}"
                )
        else:
            if len(shape) != 1:
                raise InputError(f"net config: an MLP needs vector data (D,), got data of shape {shape}")
            if shape[0] != cfg["dim"]:
                raise InputError(
                    f"net config: the data has dimension {shape[0]} but the net expects dim = {cfg['dim']}"
                )
    return cfg


def build_net(config: dict) -> nn.Module:
    """The network a (validated) config describes, on the CPU, in float32, in train mode."""
    cfg = validate_net_config(config)
    return UNet(UNetConfig(**cfg)) if cfg["type"] == "unet" else MLP(**cfg)


def default_net_config(data_kind: str, data_shape: tuple | list, embedding: str = "sinusoidal") -> dict:
    """A good small network for the data: a U-Net for images (C, H, W), a residual MLP for
    points (D,). ``embedding``: ``sinusoidal`` (discrete DDPM steps) or ``fourier`` (continuous)."""
    if embedding not in EMBEDDINGS:
        raise InputError(f"unknown embedding '{embedding}' (choose from {', '.join(EMBEDDINGS)})")
    shape = tuple(int(s) for s in data_shape)
    if data_kind == "points":
        if len(shape) != 1 or shape[0] < 1:
            raise InputError(f"points must have shape (D,), got {shape}")
        cfg = {
            "type": "mlp",
            "dim": shape[0],
            "hidden": 256,
            "blocks": 3,
            "emb_dim": 128,
            "dropout": 0.0,
            "embedding": embedding,
            "fourier_scale": 16.0,
        }
    elif data_kind == "images":
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"images must have shape (C, H, W), got {shape}")
        cfg = _default_unet(shape, embedding)
    else:
        raise InputError(f"unknown data kind '{data_kind}' (images or points)")
    return validate_net_config(cfg, shape)


def _default_unet(shape: tuple[int, int, int], embedding: str) -> dict:
    """DDPM's layout at a CPU-friendly size: 32 channels at full resolution, 64 below, halving
    the resolution until the smaller side is 8 (or no longer even), at most 5 levels; one block
    per level; attention only in the middle block, when the lowest level is at most 16 pixels.
    For 32x32 images: levels 32, 16, 8; 1.06M parameters, 0.49 GFLOP per image."""
    c, h, w = shape
    levels = 1
    while levels < 5:
        factor = 2**levels
        if h % factor or w % factor or min(h, w) // (factor // 2) <= 8:
            break
        levels += 1
    lowest = min(h, w) >> (levels - 1)
    return {
        "type": "unet",
        "in_channels": c,
        "image_size": [h, w],
        "base": 32,
        "mults": [1, 2, 2, 2, 2][:levels],
        "blocks": 1,
        "attn": [],
        "mid_attn": lowest <= 16,
        "head_channels": 64,
        "dropout": 0.0,
        "embedding": embedding,
        "fourier_scale": 16.0,
        "groups": 8,
        "scale_shift": False,
        "patch": 1,
    }


def count_params(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def flop_counter():
    """``torch.utils.flop_counter.FlopCounterMode(display=False)`` that also counts the CPU
    kernels of ``scaled_dot_product_attention`` (forward and backward), which torch leaves out."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    mapping = {}
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None and hasattr(fc, "sdpa_flop_count"):
        mapping[fwd] = lambda q, k, v, *args, out_shape=None, **kwargs: fc.sdpa_flop_count(q, k, v)
    if bwd is not None and hasattr(fc, "sdpa_backward_flop_count"):
        mapping[bwd] = lambda g, q, k, v, *args, out_shape=None, **kwargs: fc.sdpa_backward_flop_count(g, q, k, v)
    return fc.FlopCounterMode(display=False, custom_mapping=mapping)


def count_flops(net: nn.Module, data_shape: tuple | list) -> int:
    """Forward FLOPs per sample (2 per multiply-add of matmuls, convolutions and attention, as
    ``torch.utils.flop_counter.FlopCounterMode`` counts them), measured on one zero input."""
    p = next(net.parameters())
    x = torch.zeros((1, *(int(s) for s in data_shape)), device=p.device, dtype=p.dtype)
    c = torch.zeros(1, device=p.device, dtype=torch.float32)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), flop_counter() as counter:
            net(x, c)
    finally:
        net.train(was_training)
    return int(counter.get_total_flops())
