"""U-Net noise predictor for images (Ronneberger et al. 2015, as used by DDPM: Ho et al. 2020,
seeds 000 and 002: residual blocks with GroupNorm + Swish (SiLU), a time embedding added in
every residual block, self-attention at chosen resolutions, skip connections from the down path
to the up path).

Layout (L = len(mults) levels, level i works at (H/p) / 2^i x (W/p) / 2^i with ``base * mults[i]``
channels; p = ``patch``)::

    x (B, C, H, W) -> [pixel_unshuffle p] -> conv3x3 -> h
    down, level i:  blocks x (ResBlock [+ Attention]) ; Downsample (stride-2 conv3x3) unless last
    middle:         ResBlock [+ Attention] + ResBlock
    up, level i:    (blocks + 1) x (concat skip ; ResBlock [+ Attention]) ; Upsample (nearest 2x +
                    conv3x3) unless first
    GroupNorm - SiLU - conv3x3 (zero-initialised) -> [pixel_shuffle p] -> (B, C, H, W)

ResBlock(x, emb) = skip(x) + conv2(dropout(SiLU(GN(conv1(SiLU(GN(x))) + Linear(emb)))))
(``scale_shift``: ``GN(h) * (1 + scale) + shift`` instead of adding, Dhariwal & Nichol 2021),
conv2 zero-initialised so every block starts as the identity. Attention is multi-head
self-attention over the H*W positions (``torch.nn.functional.scaled_dot_product_attention``).

A ``patch`` of 2 folds each 2x2 pixel block into channels first (space-to-depth) and unfolds
at the end: the network then works at half the resolution with 4x the input channels, which is
several times cheaper per image on a CPU for small images.

``self_cond`` (self-conditioning, Chen et al. 2022): the net also takes an estimate of x0 (B, C,
H, W), concatenated to x as C more input channels (zeros when there is none); the output keeps C
channels. Training and the samplers' ``diffusion.Denoiser`` supply the estimate (docs/nets.md).

``cond_channels`` C' > 0 (an image-conditional network, SR3: Saharia et al. 2021; ``ddpmctl.conditions``):
the net also takes a condition image ``image_cond`` (B, C', H, W), concatenated to x_t as C' more
input channels, net(cat(x_t, c)) (zeros when there is none); the output keeps C channels.

``num_classes`` K > 0 (class-conditional): ``emb`` = SiLU(TimeEmbedding(c_noise) + ClassEmbedding(label)),
the label K (or None) being the null class of classifier-free guidance (``nets.embeddings``).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ddpmctl.nets.embeddings import ClassEmbedding, TimeEmbedding


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, dropout: float, scale_shift: bool):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.scale_shift = scale_shift
        self.emb = nn.Linear(emb_dim, 2 * cout if scale_shift else cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # emb is SiLU(time embedding), shared by every block
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb(emb)[:, :, None, None].to(h.dtype)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = torch.addcmul(shift, self.norm2(h), 1 + scale)
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """x + proj(MHSA(GN(x))) over the H*W positions; proj zero-initialised."""

    def __init__(self, channels: int, groups: int, head_channels: int):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, d)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """The blocks of one resolution on one path (ResBlocks, each optionally followed by attention)."""

    def __init__(self):
        super().__init__()
        self.res = nn.ModuleList()
        self.attn = nn.ModuleList()


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """The U-Net's hyper-parameters: the keys of a ``type: unet`` net config (docs/nets.md)."""

    in_channels: int
    image_size: list[int]
    base: int
    mults: list[int]
    blocks: int
    attn: list[int]
    mid_attn: bool
    head_channels: int
    dropout: float
    embedding: str
    fourier_scale: float
    groups: int
    scale_shift: bool
    patch: int
    self_cond: bool = False
    num_classes: int = 0
    cond_channels: int = 0
    type: str = "unet"


class UNet(nn.Module):
    """``UNet(UNetConfig(**config))``; ``forward(x (B, C, H, W), c_noise (B,)[, cond], class_labels=None,
    image_cond=None) -> (B, C, H, W)``; ``cond`` (B, C, H, W) is the self-conditioning estimate of x0 when
    ``self_cond``, ``class_labels`` (B,) int64 in [0, K] the classes when ``num_classes`` K > 0,
    ``image_cond`` (B, C', H, W) the condition image when ``cond_channels`` C' > 0 (module docstring).
    Build it with ``ddpmctl.nets.build_net(config)``, which validates the config first."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        c = config
        base, mults, blocks, groups, head_channels = c.base, c.mults, c.blocks, c.groups, c.head_channels
        self.patch = patch = c.patch
        self.self_cond = c.self_cond
        self.cond_channels = c.cond_channels
        emb_dim = 4 * base
        self.time_embed = TimeEmbedding(c.embedding, base, emb_dim, c.fourier_scale)
        c_in = c.in_channels * patch * patch
        cond_in = c.cond_channels * patch * patch
        self.in_conv = nn.Conv2d(c_in * (2 if c.self_cond else 1) + cond_in, base, 3, padding=1)

        res0 = min(c.image_size) // patch
        attn = {int(r) for r in c.attn}
        block = dict(emb_dim=emb_dim, groups=groups, dropout=c.dropout, scale_shift=c.scale_shift)

        ch = base
        skips = [ch]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, mult in enumerate(mults):
            level, out = Level(), base * mult
            for _ in range(blocks):
                level.res.append(ResBlock(ch, out, **block))
                level.attn.append(Attention(out, groups, head_channels) if res0 >> i in attn else nn.Identity())
                ch = out
                skips.append(ch)
            self.down.append(level)
            if i < len(mults) - 1:
                self.downsample.append(Downsample(ch))
                skips.append(ch)

        self.mid1 = ResBlock(ch, ch, **block)
        self.mid_attn = Attention(ch, groups, head_channels) if c.mid_attn else nn.Identity()
        self.mid2 = ResBlock(ch, ch, **block)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(mults))):
            level, out = Level(), base * mults[i]
            for _ in range(blocks + 1):
                level.res.append(ResBlock(ch + skips.pop(), out, **block))
                level.attn.append(Attention(out, groups, head_channels) if res0 >> i in attn else nn.Identity())
                ch = out
            self.up.append(level)
            if i > 0:
                self.upsample.append(Upsample(ch))

        self.out_norm = nn.GroupNorm(groups, ch)
        self.out_conv = _zero(nn.Conv2d(ch, c_in, 3, padding=1))
        self.num_classes = c.num_classes
        if c.num_classes > 0:  # last, so the other layers start as in the unconditional network
            self.class_embed = ClassEmbedding(c.num_classes, emb_dim)

    def muon_parameters(self) -> list[nn.Parameter]:
        """The weight matrices of the hidden layers, which ``--optimizer muon`` trains with Muon; the
        first and last convolutions, the time embedding, biases and norms stay with AdamW."""
        hidden = (self.down, self.downsample, self.mid1, self.mid_attn, self.mid2, self.up, self.upsample)
        return [p for m in hidden for p in m.parameters() if p.ndim >= 2]

    def forward(
        self,
        x: torch.Tensor,
        c_noise: torch.Tensor,
        cond: torch.Tensor | None = None,
        class_labels=None,
        image_cond=None,
    ) -> torch.Tensor:
        emb = self.time_embed(c_noise)
        if self.num_classes > 0:
            emb = emb + self.class_embed(class_labels, x.shape[0]).to(emb.dtype)
        emb = F.silu(emb)
        if self.self_cond:  # the previous estimate of x0 (zeros when there is none) as extra channels
            x = torch.cat([x, torch.zeros_like(x) if cond is None else cond.to(x.dtype)], dim=1)
        if self.cond_channels:  # SR3: the condition image c as extra channels (zeros when there is none)
            shape = (x.shape[0], self.cond_channels, *x.shape[2:])
            x = torch.cat([x, x.new_zeros(shape) if image_cond is None else image_cond.to(x.dtype)], dim=1)
        if self.patch > 1:
            x = F.pixel_unshuffle(x, self.patch)
        h = self.in_conv(x)
        hs = [h]
        for i, level in enumerate(self.down):
            for res, attn in zip(level.res, level.attn):
                h = attn(res(h, emb))
                hs.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, level in enumerate(self.up):
            for res, attn in zip(level.res, level.attn):
                h = attn(res(torch.cat([h, hs.pop()], dim=1), emb))
            if i < len(self.upsample):
                h = self.upsample[i](h)
        h = self.out_conv(F.silu(self.out_norm(h)))
        if self.patch > 1:
            h = F.pixel_shuffle(h, self.patch)
        return h
