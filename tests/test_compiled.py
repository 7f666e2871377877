"""``sample --compile`` (ddpmctl.compiled): one static graph per run, padded batches, the network
given back. Most tests put a stand-in for torch.compile (fast, and they can count what was
compiled); one compiles a real network with inductor and compares its samples with eager ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_inference_layout import small_model

from ddpmctl import compiled, sampling
from ddpmctl.checkpoint import LoadedModel
from ddpmctl.diffusion import Normalization
from ddpmctl.errors import InputError
from ddpmctl.nets import build_net, default_net_config, validate_net_config
from ddpmctl.schedules import make_process


class StandIn:
    """torch.compile stand-in: records the modules it was asked for, returns them uncompiled."""

    def __init__(self) -> None:
        self.compiled: list = []

    def __call__(self, module, **kwargs):
        assert kwargs == {"dynamic": False}
        self.compiled.append(module)
        return module


@pytest.fixture
def stand_in(monkeypatch) -> StandIn:
    s = StandIn()
    monkeypatch.setattr(compiled.torch, "compile", s)
    return s


def rows_seen(fn):
    seen = []

    def wrapped(x, *args, **kwargs):
        seen.append((x.shape[0], [a.shape[0] for a in args], {k: v.shape[0] for k, v in kwargs.items()}))
        return fn(x, *args, **kwargs)

    return wrapped, seen


def test_fixed_rows_pads_short_batches_and_cuts_the_output():
    fn, seen = rows_seen(lambda x, c, labels=None: x * c[:, None] + labels[:, None])
    f = compiled.FixedRows(fn)
    x, c, labels = torch.randn(4, 3), torch.rand(4), torch.arange(4.0)
    assert torch.equal(f(x, c, labels=labels), x * c[:, None] + labels[:, None])
    out = f(x[:3], c[:3], labels=labels[:3])
    assert out.shape == (3, 3) and torch.equal(out, x[:3] * c[:3, None] + labels[:3, None])
    assert seen == [(4, [4], {"labels": 4})] * 2  # the network always sees the first call's rows
    assert f.rows == 4 and f.first_call_seconds is not None and f.first_call_seconds >= 0
    # more rows than the first call: called as they are; other arguments are not padded
    w = torch.ones(2)
    assert f(torch.ones(6, 3), torch.ones(6), labels=torch.zeros(6)).shape == (6, 3)
    g = compiled.FixedRows(lambda x, w: x + w.sum())
    g(torch.zeros(4, 2), w)
    assert torch.equal(g(torch.zeros(1, 2), w), torch.full((1, 2), 2.0))


def test_fixed_rows_passes_inference_tensors_inside_inference_mode():
    kinds = []
    f = compiled.FixedRows(lambda x, c: kinds.append((x.is_inference(), c.is_inference())) or x)
    x, c = torch.randn(2, 1), torch.rand(2)  # made outside inference mode, like a batch's first noise
    with torch.inference_mode():
        f(x, c)
        f(x[:1], c[:1])
    f(x, c)  # outside inference mode nothing is converted
    assert kinds == [(True, True), (True, True), (False, False)]


def test_generate_swaps_in_compiled_networks_and_gives_them_back(stand_in):
    model, guide = small_model(), small_model()
    net, guide_net = model.net, guide.net
    a, info = sampling.generate(model, "ddpm", n=5, steps=4, seed=2, batch=2, guide=guide, guidance=2.0, compile=True)
    assert [id(m) for m in stand_in.compiled] == [id(net), id(guide_net)]  # once each for the three batches
    assert model.net is net and guide.net is guide_net
    assert info["compile_seconds"] > 0 and info["nfe"] == 8
    b, info = sampling.generate(model, "ddpm", n=5, steps=4, seed=2, batch=2, guide=guide, guidance=2.0)
    assert "compile_seconds" not in info
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_a_streamed_run_compiles_once_for_all_its_batches(stand_in, tmp_path):
    model = small_model()
    head, info = sampling.generate_to_npy(
        model, "ddim", 5, 2, str(tmp_path / "s.npy"), keep=None, steps=3, seed=1, compile=True
    )
    assert len(stand_in.compiled) == 1 and info["compile_seconds"] > 0
    plain, _ = sampling.generate(model, "ddim", n=5, steps=3, seed=1, batch=2)
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), plain, rtol=0, atol=1e-6)


def test_compiled_networks_are_for_runs_without_gradients():
    model = small_model()
    run = sampling.Batches(
        model, model.denoiser(), [0], 1, torch.device("cpu"), torch.float32, 1.0, inference=False,
        compiled=compiled.CompiledNets(),
    )  # fmt: skip
    with pytest.raises(ValueError, match="without gradients"):
        sampling.drive(run, lambda *a: None, lambda *a: None)


def test_compile_needs_a_cpu_or_cuda_device():
    model = small_model()
    with pytest.raises(InputError, match="CPU or CUDA"):
        with compiled.compiled_denoiser(model.denoiser(), torch.device("meta"), compiled.CompiledNets()):
            pass


def test_inductor_compiles_one_graph_and_samples_like_eager(tmp_path, monkeypatch):
    """The real torch.compile (inductor; the CI machine has a C++ compiler): a points MLP, five
    samples in batches of two (the last padded), guided by itself, against eager sampling."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    cfg = validate_net_config({**default_net_config("points", (2,)), "hidden": 16, "blocks": 1, "emb_dim": 16}, (2,))
    torch.manual_seed(0)
    net = build_net(cfg).eval().requires_grad_(False)
    norm = Normalization(1.0, 0.0)
    model = LoadedModel(net, make_process("ddpm", "cosine", T=100), "eps", norm, "points", (2,))
    torch._dynamo.reset()
    counters.clear()
    fast, info = sampling.generate(model, "ddpm", n=5, steps=6, seed=4, batch=2, compile=True)
    assert counters["stats"]["unique_graphs"] == 1  # padding and inference tensors: no recompile
    assert info["compile_seconds"] > 0 and model.net is net
    plain, _ = sampling.generate(model, "ddpm", n=5, steps=6, seed=4, batch=2)
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-4)
    assert plain.std() > 0.1
    torch._dynamo.reset()


def test_cli_reports_the_compile(tmp_path, cli):
    """--compile through the command: the exact model of a mixture has no module to compile."""
    assert cli("make-data", "gmm", "--n", "20", "--components", "2", "-o", tmp_path / "mix.npy").returncode == 0
    out = cli("sample", tmp_path / "mix.npz", "-n", 8, "--steps", 4, "--compile", "--json", "-o", tmp_path / "s.npy")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["compile_seconds"] is None and result["nfe"] == 4
