"""Training: objectives (targets, weights, time sampling), the optimizer and schedules, the data
stream, checkpoints, exact resume, YAML configs, and the `train` command end to end on tiny nets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import run_cli

from ddpmctl import checkpoint as ckpt
from ddpmctl import diffusion
from ddpmctl.errors import InputError, RunError
from ddpmctl.objectives import Objective, error_scale, loss_weight, sample_times
from ddpmctl.schedules import DiscreteProcess, make_process
from ddpmctl.train import (
    AdamW,
    IndexStream,
    Muon,
    TrainConfig,
    TrainData,
    config_to_yaml,
    default_warmup,
    ema_decay,
    lr_at,
    newton_schulz,
    open_data,
    resolve_config,
    train,
)

PROCESSES = {
    "ddpm": lambda: make_process(None, "cosine", 200),
    "vp": lambda: make_process("vp"),
    "subvp": lambda: make_process("subvp"),
    "ve": lambda: make_process("ve"),
    "edm": lambda: make_process("edm"),
}
# every process with every parameterisation it takes (edm's needs the edm process's sigma_data)
COMBOS = [(p, pr) for p in PROCESSES for pr in diffusion.PREDICTIONS if pr != "edm" or p == "edm"]
TINY_MLP = {"hidden": 32, "blocks": 1, "emb_dim": 16}
TINY_UNET = {"base": 8, "mults": [1, 2], "attn": [8]}


def _points(tmp_path, n=256, name="pts.npy", seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[3.0, 1.0], [-2.0, 4.0]])
    pts = centers[rng.integers(0, 2, n)] + 0.1 * rng.standard_normal((n, 2))
    path = tmp_path / name
    np.save(path, pts.astype(np.float32))
    return path, pts


def _images(tmp_path, n=32, size=16, channels=1, name="img.npy", dtype=np.float32):
    rng = np.random.default_rng(1)
    imgs = rng.uniform(0, 1, (n, channels, size, size))
    imgs[:, :, : size // 2] *= 0.2  # some structure: dark top half
    if dtype == np.uint8:
        imgs = (imgs * 255).astype(np.uint8)
    path = tmp_path / name
    np.save(path, imgs.astype(dtype))
    return path


# ------------------------------------------------------------------------------------------
# objectives


@pytest.mark.parametrize("proc, prediction", COMBOS)
def test_targets_convert_back_to_the_same_eps(proc, prediction):
    process = PROCESSES[proc]()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(64, 3, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = sample_times(process, 64, g)
    x_t, c_noise, target, weight = Objective(process, prediction).inputs(x0, t, eps)
    alpha, sigma = diffusion.marginal(process, t)
    eps_back, x0_back = diffusion.to_eps_x0(target, x_t, alpha, sigma, prediction, process.sigma_data)
    assert torch.allclose(eps_back, eps, atol=1e-9, rtol=1e-9)
    # x0 = (x_t - sigma eps) / alpha loses digits where alpha is tiny (the end of the cosine schedule)
    assert torch.allclose(x0_back, x0, atol=1e-6, rtol=1e-6)
    # float32 (what training uses): the same eps
    x_t, _, target, _ = Objective(process, prediction).inputs(x0.float(), t, eps.float())
    eps_back, _ = diffusion.to_eps_x0(target.double(), x_t.double(), alpha, sigma, prediction, process.sigma_data)
    assert torch.allclose(eps_back, eps, atol=1e-4, rtol=1e-4)
    assert torch.allclose(c_noise.double(), process.c_noise(t), rtol=1e-6, atol=1e-5)
    assert torch.isfinite(weight).all() and (weight > 0).all()


@pytest.mark.parametrize("proc, prediction", COMBOS)
def test_min_snr_weight_is_min_snr_gamma_on_the_x0_error(proc, prediction):
    """Whatever the parameterisation, the weighted L2 loss equals min(SNR, gamma) |x0_hat - x0|^2
    (Hang et al. 2023), and without min-SNR eps/x0/v get weight 1 and score sigma^2 (= the eps loss)."""
    process = PROCESSES[proc]()
    g = torch.Generator().manual_seed(1)
    x0 = (torch.rand(200, 4, generator=g, dtype=torch.float64) * 2 - 1)
    eps = torch.randn(200, 4, generator=g, dtype=torch.float64)
    t = sample_times(process, 200, g)
    alpha, sigma = diffusion.marginal(process, t)
    snr = (alpha / sigma) ** 2
    for gamma in (None, 5.0):
        obj = Objective(process, prediction, "l2", gamma)
        x_t, _, target, weight = obj.inputs(x0, t, eps)
        out = target + 0.1 * torch.randn(target.shape, generator=g, dtype=torch.float64)  # an imperfect net
        loss = obj.per_sample(out.double(), target.double(), weight.double()).double()
        eps_hat, x0_hat = diffusion.to_eps_x0(out, x_t, alpha, sigma, prediction, process.sigma_data)
        eps_err = (eps_hat - eps).square().mean(1)
        x0_err = (x0_hat - x0).square().mean(1)
        if gamma is None:
            expected = eps_err if prediction == "score" else (out - target).square().mean(1)
        else:
            expected = torch.clamp(snr, max=gamma) * x0_err
            assert torch.allclose(expected, torch.clamp(snr, max=gamma) / snr * eps_err, rtol=1e-5)
        assert torch.allclose(loss, expected, rtol=1e-4, atol=1e-10), (prediction, gamma)
    # L1: the weights are the square roots, so the score L1 loss is the eps L1 loss
    w1 = loss_weight(process, t, "score", "l1")
    assert torch.allclose(w1, sigma, rtol=1e-12)
    assert torch.allclose(error_scale(process, t, "x0"), snr)


def test_sample_times_discrete_grid_and_continuous_interval():
    g = torch.Generator().manual_seed(0)
    p = make_process(None, "linear", 50)
    t = sample_times(p, 20000, g)
    idx = t * 50
    assert torch.allclose(idx, idx.round(), atol=1e-9) and idx.min() == 1 and idx.max() == 50
    counts = torch.bincount(idx.round().long(), minlength=51)[1:]
    assert counts.min() > 250 and counts.max() < 550  # uniform over the 50 steps (mean 400)
    for proc in ("vp", "ve"):
        p = make_process(proc)
        t = sample_times(p, 20000, g)
        assert t.min() >= p.t_min and t.max() <= 1.0
        assert abs(t.mean().item() - (p.t_min + 1) / 2) < 0.01


def test_loss_decreases_on_a_tiny_problem(tmp_path):
    path, _ = _points(tmp_path)
    cfg = TrainConfig(steps=150, batch=64, lr=3e-3, net=dict(TINY_MLP), log_every=1, save_every=0, sde="vp")
    r = train(cfg, path, tmp_path / "ck", handle_signals=False)
    losses = [m["loss"] for m in r.metrics]
    assert len(losses) == 150
    first, last = np.mean(losses[:10]), np.mean(losses[-30:])
    assert first > 0.8  # the nets start at output 0: loss = E|eps|^2 = 1
    assert last < 0.6 * first, (first, last)


# ------------------------------------------------------------------------------------------
# optimizer, schedules, data stream


def test_adamw_matches_the_published_update():
    """Loshchilov & Hutter 2019, Algorithm 2 as torch.optim.AdamW implements it, in float64 numpy
    (torch.optim itself is not used: it imports torch._dynamo, seconds of start-up)."""
    rng = np.random.default_rng(0)
    p0 = [rng.standard_normal((5, 3)), rng.standard_normal(7)]
    ps = [torch.nn.Parameter(torch.tensor(p, dtype=torch.float64)) for p in p0]
    lr, b1, b2, wd, eps = 0.01, 0.8, 0.99, 0.1, 1e-8
    ours = AdamW(ps, lr=lr, betas=(b1, b2), weight_decay=wd, eps=eps)
    ref = [p.copy() for p in p0]
    m = [np.zeros_like(p) for p in p0]
    v = [np.zeros_like(p) for p in p0]
    for n in range(1, 26):
        grads = [rng.standard_normal(p.shape) for p in p0]
        for p, g in zip(ps, grads):
            p.grad = torch.tensor(g)
        ours.step()
        for i, g in enumerate(grads):
            ref[i] = ref[i] * (1 - lr * wd)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1**n), v[i] / (1 - b2**n)
            ref[i] = ref[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    for p, r in zip(ps, ref):
        assert np.allclose(p.detach().numpy(), r, atol=1e-12, rtol=1e-10)
    st = ours.state_tensors()
    other = AdamW([torch.nn.Parameter(p.detach().clone()) for p in ps])
    other.load_state_tensors(st, "x")
    assert other.step_count == 25 and torch.equal(other.exp_avg_sq[1], ours.exp_avg_sq[1])
    with pytest.raises(InputError):
        AdamW([torch.nn.Parameter(torch.zeros(2))]).load_state_tensors(st, "x")


@pytest.mark.parametrize("shape", [(8, 8), (6, 20), (30, 5), (64, 576)])
def test_newton_schulz_orthogonalises(shape):
    """NS5 maps G = U S V^T to about U V^T: U^T NS(G) V is diagonal, entries in (0.6, 1.25)
    (the quintic's coefficients trade exactness for speed, Jordan et al. 2024)."""
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g[:, 0] *= 50  # an ill-conditioned matrix
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    d = u.T @ newton_schulz(g) @ vh.T
    diag = torch.diagonal(d)
    assert (diag > 0.6).all() and (diag < 1.25).all(), diag
    assert (d - torch.diag(diag)).abs().max() < 1e-6


def test_muon_update_by_hand_and_state_round_trip():
    """Muon on the hidden weight matrices (Nesterov momentum, orthogonalised, RMS-matched to
    AdamW by 0.2 sqrt(max(out, in)), decoupled weight decay); AdamW on the first / last layers,
    biases and vectors."""
    torch.manual_seed(0)
    net = torch.nn.ModuleDict({"in_conv": torch.nn.Conv2d(2, 4, 3), "hidden": torch.nn.Conv2d(4, 6, 3)}).double()
    lr, wd, mu = 0.01, 0.1, 0.9
    opt = Muon(net.parameters(), [net["hidden"].weight], lr=lr, weight_decay=wd, momentum=mu)
    assert opt.muon == [False, False, True, False]  # in_conv.weight, in_conv.bias, hidden.weight, hidden.bias
    w0 = net["hidden"].weight.detach().clone()
    adam_ref = AdamW([torch.nn.Parameter(p.detach().clone()) for n, p in net.named_parameters()
                      if n != "hidden.weight"], lr=lr, weight_decay=wd)
    buf = torch.zeros_like(w0)
    ref = w0.clone()
    for _ in range(3):
        grads = [torch.randn_like(p) for p in net.parameters()]
        for p, g in zip(net.parameters(), grads):
            p.grad = g.clone()
        for p, g in zip(adam_ref.params, [g for i, g in enumerate(grads) if i != 2]):
            p.grad = g.clone()
        opt.step()
        adam_ref.step()
        g = grads[2]
        buf = mu * buf + (1 - mu) * g
        u = newton_schulz(((1 - mu) * g + mu * buf).reshape(6, -1))
        ref = ref * (1 - lr * wd) - lr * 0.2 * math.sqrt(36) * u.reshape(ref.shape)
        assert torch.equal(net["hidden"].weight.grad, g)  # the gradient is left in place
    torch.testing.assert_close(net["hidden"].weight.detach(), ref)
    rest = [p for n, p in net.named_parameters() if n != "hidden.weight"]
    for p, r in zip(rest, adam_ref.params):
        torch.testing.assert_close(p.detach(), r.detach())
    st = opt.state_tensors()
    assert set(k for k in st if k.endswith("momentum")) == {"2.momentum"}
    other = Muon(net.parameters(), [net["hidden"].weight], momentum=mu)
    other.load_state_tensors(st, "x")
    assert torch.equal(other.buf[2], opt.buf[2]) and other.step_count == 3
    with pytest.raises(InputError, match="does not fit"):
        AdamW(net.parameters()).load_state_tensors(st, "x")  # an AdamW run cannot resume a Muon state
    with pytest.raises(InputError, match="does not fit"):
        other.load_state_tensors(AdamW(net.parameters()).state_tensors(), "x")


def test_lr_warmup_cosine_and_ema_decay():
    cfg = TrainConfig(lr=1e-3, lr_schedule="cosine", lr_min=1e-5)
    assert lr_at(0, cfg, 100, 10) == pytest.approx(1e-4)
    assert lr_at(9, cfg, 100, 10) == pytest.approx(1e-3)
    assert lr_at(10, cfg, 100, 10) == pytest.approx(1e-3)
    assert lr_at(55, cfg, 100, 10) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)
    assert lr_at(100, cfg, 100, 10) == pytest.approx(1e-5)
    assert lr_at(50, TrainConfig(lr=1e-3), 100, 0) == 1e-3
    # with a time limit the decay follows whichever is further along: steps or time
    assert lr_at(20, cfg, 100, 10, time_fraction=0.5) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)
    assert lr_at(55, cfg, 100, 10, time_fraction=0.1) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)
    assert lr_at(20, cfg, 100, 10, time_fraction=2.0) == pytest.approx(1e-5)
    assert lr_at(5, cfg, 100, 10, time_fraction=0.9) == pytest.approx(6e-4)  # warm-up is by steps
    lin = TrainConfig(lr=1e-3, lr_schedule="linear", lr_min=1e-5)
    assert lr_at(10, lin, 100, 10) == pytest.approx(1e-3)
    assert lr_at(40, lin, 100, 10) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 2 / 3)
    assert lr_at(100, lin, 100, 10) == pytest.approx(1e-5)
    assert lr_at(20, lin, 100, 10, time_fraction=0.75) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.25)
    assert default_warmup(1000) == 50 and default_warmup(10**6) == 5000 and default_warmup(10) == 0
    cfg = TrainConfig(ema=0.999)
    assert ema_decay(1, cfg) == pytest.approx(2 / 11) and ema_decay(10**6, cfg) == 0.999
    assert ema_decay(1, TrainConfig(ema=0.9, ema_warmup=False)) == 0.9


def test_index_stream_is_epoch_permutations_and_stateless():
    s = IndexStream(10, seed=3)
    batches = [s.batch(k, 4) for k in range(5)]  # 20 positions = 2 epochs
    stream = np.concatenate(batches)
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:])
    assert np.array_equal(IndexStream(10, seed=3).batch(3, 4), batches[3])  # depends on the step only
    assert not np.array_equal(IndexStream(10, seed=4).batch(0, 4), batches[0])


def test_open_data_keeps_the_memory_map_and_converts_batches(tmp_path):
    p = _images(tmp_path, n=8, size=8, dtype=np.uint8)
    raw = np.load(p)
    d = open_data(p)
    assert isinstance(d.array, np.memmap) and d.kind == "images" and d.shape == (1, 8, 8)
    x = d.batch(np.array([3, 1]))
    assert torch.allclose(x, torch.from_numpy(raw[[3, 1]].astype(np.float32) / 255 * 2 - 1))
    np.save(tmp_path / "hw.npy", np.full((4, 8, 8), 0.5, np.float32))  # (N, H, W): one channel
    d = open_data(tmp_path / "hw.npy")
    assert d.shape == (1, 8, 8) and torch.all(d.batch(np.array([0])) == 0)
    path, pts = _points(tmp_path, name="p.npy")
    d = open_data(path)
    assert isinstance(d.array, np.memmap)
    z = d.normalization.to_model(torch.from_numpy(pts))
    assert abs(z.mean().item()) < 1e-5 and abs(z.std(unbiased=False).item() - 1) < 1e-5
    assert open_data(path, "none").normalization.as_dict() == {"scale": 1.0, "shift": 0.0}


# ------------------------------------------------------------------------------------------
# exact resume (Python API)


@pytest.mark.parametrize("kind", ["mlp", "unet", "unet-muon"])
def test_resume_is_exact(tmp_path, kind):
    """A run stopped after 7 of 12 steps and resumed ends with the same raw and EMA weights and
    optimizer moments as an uninterrupted run (dropout, flips, cosine LR and weight decay on)."""
    if kind == "mlp":
        data, net = _points(tmp_path)[0], dict(TINY_MLP, dropout=0.1)
    else:
        data, net = _images(tmp_path), dict(TINY_UNET, dropout=0.1)
    cfg = TrainConfig(steps=12, batch=8, lr=1e-3, net=net, hflip=True, lr_schedule="cosine", warmup=3,
                      weight_decay=0.01, log_every=1, save_every=5, sde="vp" if kind == "mlp" else "ddpm",
                      optimizer="muon" if kind == "unet-muon" else "adamw")
    full = train(cfg, data, tmp_path / "a", handle_signals=False)
    part = train(cfg, data, tmp_path / "b", [lambda info: info["step"] == 7], handle_signals=False)
    assert part.stopped and part.step == 7
    assert ckpt.load_state(tmp_path / "b")["step"] == 7
    rest = train(cfg, data, tmp_path / "b", resume=tmp_path / "b", handle_signals=False)
    assert rest.step == 12
    sa, sb = ckpt.load_state(tmp_path / "a"), ckpt.load_state(tmp_path / "b")
    for part_name in ("model", "ema", "optimizer"):
        assert sa[part_name].keys() == sb[part_name].keys()
        for k in sa[part_name]:
            assert torch.equal(sa[part_name][k], sb[part_name][k]), (part_name, k)  # bit for bit
    assert [m["loss"] for m in full.metrics][7:] == [m["loss"] for m in rest.metrics]
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == list(range(1, 13))


def test_resume_refuses_a_different_model(tmp_path):
    data, _ = _points(tmp_path)
    cfg = TrainConfig(steps=3, batch=8, net=dict(TINY_MLP), log_every=1)
    train(cfg, data, tmp_path / "a", handle_signals=False)
    other = TrainConfig(steps=6, batch=8, net=dict(TINY_MLP, hidden=16), log_every=1)
    with pytest.raises(InputError, match="differs"):
        train(other, data, tmp_path / "a", resume=tmp_path / "a", handle_signals=False)
    with pytest.raises(InputError, match="already at step 3"):
        train(cfg, data, tmp_path / "a", resume=tmp_path / "a", handle_signals=False)
    muon = TrainConfig(steps=6, batch=8, net=dict(TINY_MLP), log_every=1, optimizer="muon")
    with pytest.raises(InputError, match="trained with --optimizer adamw"):
        train(muon, data, tmp_path / "a", resume=tmp_path / "a", handle_signals=False)
    with pytest.raises(InputError, match="already holds a checkpoint"):
        train(cfg, data, tmp_path / "a", handle_signals=False)


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    path, _ = _points(tmp_path)
    good = open_data(path)

    class Poisoned(TrainData):
        calls = 0

        def batch(self, indices):
            Poisoned.calls += 1
            x = super().batch(indices)
            return x * float("nan") if Poisoned.calls > 6 else x

    data = Poisoned(good.array, good.kind, good.shape, good.normalization, good.name)
    cfg = TrainConfig(steps=20, batch=8, net=dict(TINY_MLP), log_every=10, save_every=4)
    with pytest.raises(RunError, match="non-finite loss.*step 4"):
        train(cfg, data, tmp_path / "ck", handle_signals=False)
    state = ckpt.load_state(tmp_path / "ck")
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert ckpt.load_model(tmp_path / "ck").meta["step"] == 4


# ------------------------------------------------------------------------------------------
# checkpoints


def test_checkpoint_metadata_and_load_errors(tmp_path):
    data, pts = _points(tmp_path)
    cfg = TrainConfig(steps=4, batch=8, net=dict(TINY_MLP), sde="ve", prediction="score", log_every=2)
    train(cfg, data, tmp_path / "ck", handle_signals=False)
    m = ckpt.load_model(tmp_path / "ck")
    assert m.process.kind == "ve" and m.prediction == "score" and m.data_kind == "points" and m.data_shape == (2,)
    assert m.meta["step"] == 4 and m.meta["ema"] is True and m.meta["train"]["steps"] == 4
    assert m.normalization.scale == pytest.approx(1 / pts.astype(np.float32).astype(np.float64).std(), rel=1e-4)
    assert not m.net.training and m.denoiser().clip is None
    pred = m.denoiser()(torch.zeros(3, 2), 0.5)
    assert pred.eps.shape == (3, 2) and torch.isfinite(pred.x0).all()
    # the EMA weights are in model.safetensors, the raw ones in state.safetensors
    state = ckpt.load_state(tmp_path / "ck")
    tensors, _ = ckpt.read_tensors(tmp_path / "ck" / "model.safetensors")
    assert all(torch.equal(tensors[k], state["ema"][k]) for k in tensors)
    assert any(not torch.equal(state["ema"][k], state["model"][k]) for k in tensors)
    # broken files: one-line InputErrors
    raw = (tmp_path / "ck" / "model.safetensors").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(raw[: len(raw) // 2])
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    (tmp_path / "empty").mkdir()
    for bad, msg in (("trunc.safetensors", "not a readable"), ("foreign.safetensors", "not a ddpmctl checkpoint"),
                     ("empty", "holds no model.safetensors"), ("nope.safetensors", "no such file")):
        with pytest.raises(InputError, match=msg) as e:
            ckpt.load_model(tmp_path / bad)
        assert "\n" not in str(e.value)
    meta = json.loads(ckpt.read_tensors(tmp_path / "ck" / "model.safetensors")[1]["ddpmctl"])
    meta["net"]["hidden"] = 64  # weights no longer fit the recorded network
    ckpt.save_model(tmp_path / "mismatch.safetensors", tensors, meta)
    with pytest.raises(InputError, match="do not match|expects"):
        ckpt.load_model(tmp_path / "mismatch.safetensors")


# ------------------------------------------------------------------------------------------
# the command


def test_cli_points_end_to_end_and_python_sampling(tmp_path):
    data, pts = _points(tmp_path)
    out = tmp_path / "ck"
    r = run_cli("train", data, "--steps", "30", "--batch", "32", "--base", "32", "--blocks", "1", "--sde", "vp",
                "--log-every", "10", "--lr", "2e-3", "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["step"] == 30 and res["params"] > 0 and math.isfinite(res["loss"])
    files = ["config.yaml", "metrics.jsonl", "model.safetensors", "state.safetensors"]
    assert sorted(p.name for p in out.iterdir()) == files
    recs = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in recs] == [10, 20, 30]
    assert set(recs[0]) >= {"step", "loss", "lr", "grad_norm", "images_per_s"}
    import yaml

    eff = yaml.safe_load((out / "config.yaml").read_text())
    assert eff["steps"] == 30 and eff["sde"] == "vp" and eff["net"]["hidden"] == 32 and eff["warmup"] == 2
    from ddpmctl.sampling import generate

    m = ckpt.load_model(out)
    samples, info = generate(m, "ddim", 16, 10, 0, 16, "cpu")
    assert samples.shape == (16, 2) and np.isfinite(samples).all() and info["nfe"] == 10


def test_cli_images_end_to_end_uint8_folder_and_sample_grid(tmp_path):
    data = _images(tmp_path, n=16, size=8, dtype=np.uint8)
    out = tmp_path / "ck"
    r = run_cli("train", data, "--steps", "4", "--batch", "4", "--base", "8", "--mults", "1,2", "--attn", "none",
                "--schedule", "cosine", "--T", "100", "--prediction", "v", "--loss", "l1", "--min-snr", "5",
                "--hflip", "--sample-every", "4", "--log-every", "2", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "trained 4 of 4 steps" in r.stdout.decode()
    assert (out / "samples_0000004.png").exists()
    m = ckpt.load_model(out)
    assert isinstance(m.process, DiscreteProcess) and m.process.T == 100 and m.prediction == "v"
    assert m.data_kind == "images" and m.data_shape == (1, 8, 8) and m.denoiser().clip == (-1.0, 1.0)
    assert m.meta["train"]["loss"] == "l1" and m.meta["train"]["min_snr"] == 5.0 and m.meta["net"]["attn"] == []


def test_yaml_config_flags_override_and_unknown_keys(tmp_path):
    data, _ = _points(tmp_path)
    cfg = tmp_path / "train.yaml"
    cfg.write_text("steps: 7\nbatch: 4\nlr: 1.0e-3\nsde: subvp\nprediction: x0\nlog_every: 1\n"
                   "net:\n  hidden: 16\n  blocks: 1\n")
    out = tmp_path / "ck"
    r = run_cli("train", data, "--config", cfg, "--steps", "3", "-o", out, "--quiet")
    assert r.returncode == 0, r.stderr
    import yaml

    eff = yaml.safe_load((out / "config.yaml").read_text())
    assert eff["steps"] == 3 and eff["batch"] == 4 and eff["lr"] == 1e-3 and eff["sde"] == "subvp"
    assert eff["net"]["hidden"] == 16 and eff["net"]["blocks"] == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    assert ckpt.load_model(out).prediction == "x0"
    # the saved config.yaml is itself a valid --config
    r = run_cli("train", data, "--config", out / "config.yaml", "--steps", "2", "-o", tmp_path / "ck2", "--quiet")
    assert r.returncode == 0, r.stderr


def _bad_cases(tmp_path):
    data, _ = _points(tmp_path)
    img = _images(tmp_path, n=4, size=16)
    np.save(tmp_path / "flat.npy", np.zeros(10, np.float32))
    np.save(tmp_path / "five.npy", np.zeros((2, 1, 1, 4, 4), np.float32))
    np.save(tmp_path / "img18.npy", np.random.rand(4, 1, 18, 18).astype(np.float32))
    nan = np.random.rand(20, 2).astype(np.float32)
    nan[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "range.npy", np.full((4, 1, 8, 8), 3.0, np.float32))
    (tmp_path / "ch.yaml").write_text("net:\n  in_channels: 3\n")
    (tmp_path / "unknown.yaml").write_text("steps: 3\nstepz: 4\n")
    (tmp_path / "badtype.yaml").write_text("steps: many\n")
    (tmp_path / "broken.yaml").write_text("steps: [1\n")
    return [
        (["flat.npy"], "flat.npy"),
        (["five.npy"], "five.npy"),
        (["nan.npy"], "NaN"),
        (["range.npy"], "[0, 1]"),
        (["missing.npy"], "missing.npy"),
        ([img, "--config", "ch.yaml"], "channel"),
        (["img18.npy", "--mults", "1,2,2"], "divisible"),
        ([img, "--attn", "5"], "attn"),
        ([data, "--mults", "1,2"], "--mults"),
        ([data, "--steps", "0"], "--steps"),
        ([data, "--steps", "-3"], "--steps"),
        ([data, "--batch", "0"], "--batch"),
        ([data, "--steps", "3", "--epochs", "1"], "--epochs"),
        ([data, "--config", "unknown.yaml"], "stepz"),
        ([data, "--config", "badtype.yaml"], "steps"),
        ([data, "--config", "broken.yaml"], "YAML"),
        ([data, "--config", "nope.yaml"], "nope.yaml"),
        ([data, "--sde", "vpp"], "vpp"),
        ([data, "--prediction", "noise"], "noise"),
        ([data, "--loss", "l3"], "l3"),
        ([data, "--schedule", "nope.npy"], "nope.npy"),
        ([data, "--ema", "1.5"], "--ema"),
        ([data, "--min-snr", "-1"], "--min-snr"),
        ([data, "--bogus-option"], "bogus"),
        ([data, "--time-limit", "0"], "--time-limit"),
        ([data, "--time-limit", "ten minutes"], "--time-limit"),
        ([data, "--time-limit", "-5m"], "--time-limit"),
    ]


def test_bad_input_exits_2_with_one_line_and_leaves_nothing(tmp_path):
    for args, needle in _bad_cases(tmp_path):
        out = tmp_path / "out"
        r = run_cli("train", *args, "-o", out, cwd=tmp_path)
        lines = r.stderr.decode().strip().splitlines()
        assert r.returncode == 2, (args, r.stderr)
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in lines[0], (args, lines)
        assert not out.exists(), args
    # an existing checkpoint is not overwritten without --force
    data, _ = _points(tmp_path)
    out = tmp_path / "ck"
    assert run_cli("train", data, "--steps", "2", "--batch", "4", "--base", "8", "-o", out, "-q").returncode == 0
    before = (out / "model.safetensors").read_bytes()
    r = run_cli("train", data, "--steps", "2", "--batch", "4", "-o", out)
    assert r.returncode == 2 and b"--resume" in r.stderr and (out / "model.safetensors").read_bytes() == before
    r = run_cli("train", data, "--steps", "3", "--batch", "4", "--base", "8", "-o", out, "-q", "--force")
    assert r.returncode == 0
    assert ckpt.load_model(out).meta["step"] == 3


def test_time_limit_stops_saves_and_decays_the_lr(tmp_path):
    from ddpmctl.cli.train import parse_duration

    assert [parse_duration(t) for t in ("690", "90s", "12m", "1.5h")] == [690, 90, 720, 5400]
    data, _ = _points(tmp_path)
    out = tmp_path / "ck"
    r = run_cli("train", data, "--steps", "1000000", "--batch", "8", "--base", "16", "--lr", "1e-3",
                "--lr-schedule", "cosine", "--warmup", "0", "--log-every", "5", "--time-limit", "3s", "-o", out)
    assert r.returncode == 0, r.stderr
    assert b"time limit reached" in r.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    step = ckpt.load_model(out).meta["step"]
    assert 5 <= step < 1000000 and records[-1]["step"] == step
    assert records[-1]["elapsed_s"] >= 3.0 and records[-1]["elapsed_s"] < 3.0 + 5 * 60
    lrs = [rec["lr"] for rec in records]
    assert lrs[0] > 0.9e-3 and lrs[-1] < 0.05e-3 and all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert TrainConfig.from_dict(training_config(out)).time_limit == 3.0


def training_config(out):
    import yaml

    return yaml.safe_load((out / "config.yaml").read_text())


def test_nonfinite_loss_from_the_cli_exits_1(tmp_path):
    np.save(tmp_path / "huge.npy", (np.random.rand(16, 2) * 1e30).astype(np.float32))
    r = run_cli("train", tmp_path / "huge.npy", "--normalize", "none", "--steps", "5", "--batch", "4",
                "--base", "8", "-o", tmp_path / "ck")
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "non-finite loss" in lines[0]
    assert not (tmp_path / "ck" / "model.safetensors").exists()


def test_epochs_dry_run_and_help(tmp_path):
    from ddpmctl.cli.train import DEFAULT_MLP_PARAMS, DEFAULT_UNET_PARAMS
    from ddpmctl.nets import build_net, count_params, default_net_config

    unet = count_params(build_net(default_net_config("images", (3, 32, 32), "sinusoidal")))
    mlp = count_params(build_net(default_net_config("points", (2,), "sinusoidal")))
    assert DEFAULT_UNET_PARAMS == f"{unet:,}" and DEFAULT_MLP_PARAMS == f"{mlp:,}"
    r = run_cli("train", "--help")
    assert r.returncode == 0 and f"{unet:,}".encode() in r.stdout and b"Example:" in r.stdout
    img = _images(tmp_path, n=4, size=16)
    r = run_cli("train", img, "--dry-run", "--base", "8", "--mults", "1,2", "--json")
    d = json.loads(r.stdout)
    net = build_net(d["net"])
    assert d["params"] == count_params(net) and d["gflop_per_sample"] > 0 and d["net"]["base"] == 8
    r = run_cli("train", img, "--dry-run")
    assert r.returncode == 0 and b"parameters:" in r.stdout and b"GFLOP per image" in r.stdout
    data, _ = _points(tmp_path, n=40)
    r = run_cli("train", data, "--epochs", "2", "--batch", "16", "--base", "8", "-o", tmp_path / "ck", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["step"] == 5  # ceil(2 * 40 / 16)


@pytest.mark.parametrize("cfg", [dict(type="unet", in_channels=1, image_size=[8, 8], **TINY_UNET),
                                 dict(type="mlp", dim=2, **TINY_MLP)])
def test_muon_leaves_the_first_and_last_layers_and_vectors_to_adamw(cfg):
    """The networks name Muon's matrices (``muon_parameters``): the hidden layers' weights, by name here."""
    from ddpmctl.nets import build_net

    net = build_net(cfg)
    opt = Muon(net.parameters(), net.muon_parameters())
    names = [n for n, p in net.named_parameters()]
    muon = {n for n, m in zip(names, opt.muon) if m}
    first_last = ("in_conv.", "out_conv.") if cfg["type"] == "unet" else ("in_fc.", "out_fc.")
    assert not any(n.startswith(first_last + ("time_embed.",)) for n in muon)
    assert all(p.ndim >= 2 for n, p in net.named_parameters() if n in muon)
    hidden = [n for n, p in net.named_parameters() if p.ndim >= 2 and not n.startswith(first_last + ("time_embed.",))]
    assert hidden and set(hidden) == muon
    assert any(n.startswith(first_last[0]) for n in names) and any(n.startswith(first_last[1]) for n in names)


def _same_weights(a, b, atol=0.0):
    sa, sb = ckpt.load_model(a).net.state_dict(), ckpt.load_model(b).net.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k], sb[k]) if atol == 0 else torch.allclose(sa[k], sb[k], atol=atol, rtol=0) for k in sa)


def test_snapshots_keep_the_ema_model_at_fractions_of_the_run(tmp_path):
    """--snapshot F keeps the EMA model at F of the run: with a constant lr and no warm-up, the
    snapshot at 25% of 20 steps is exactly the model of a 5-step run. A resumed run writes the
    snapshots it has not reached yet, identical to an uninterrupted run's; a new run over the folder
    drops the old run's snapshots."""
    data, _ = _points(tmp_path)
    base = dict(batch=8, lr=1e-3, net=dict(TINY_MLP), warmup=0, lr_schedule="constant", log_every=1, sde="vp", ema=0.9)
    # steps 5 and 10 are no logging steps (every 7): a snapshot makes its own
    train(TrainConfig(steps=20, snapshots=[0.5, 0.25], **dict(base, log_every=7)), data, tmp_path / "a",
          handle_signals=False)
    train(TrainConfig(steps=5, **base), data, tmp_path / "s", handle_signals=False)
    snaps = ["snapshot-25.safetensors", "snapshot-50.safetensors"]
    assert sorted(p.name for p in (tmp_path / "a").glob("snapshot-*")) == snaps
    assert ckpt.load_model(tmp_path / "a" / "snapshot-25.safetensors").meta["step"] == 5
    assert ckpt.load_model(tmp_path / "a" / "snapshot-50.safetensors").meta["step"] == 10
    assert _same_weights(tmp_path / "a" / "snapshot-25.safetensors", tmp_path / "s")
    assert not _same_weights(tmp_path / "a" / "snapshot-50.safetensors", tmp_path / "s", atol=1e-6)

    cfg = TrainConfig(steps=20, snapshots=[0.25, 0.75], **base)
    train(cfg, data, tmp_path / "u", handle_signals=False)
    train(cfg, data, tmp_path / "b", [lambda info: info["step"] == 7], handle_signals=False)
    assert [p.name for p in (tmp_path / "b").glob("snapshot-*")] == ["snapshot-25.safetensors"]
    train(cfg, data, tmp_path / "b", resume=tmp_path / "b", handle_signals=False)
    for name in ("snapshot-25.safetensors", "snapshot-75.safetensors"):
        assert _same_weights(tmp_path / "u" / name, tmp_path / "b" / name), name

    train(TrainConfig(steps=4, **base), data, tmp_path / "a", overwrite=True, handle_signals=False)
    assert not list((tmp_path / "a").glob("snapshot-*"))

    for bad in ([1.0], [0], [-0.5], ["x"], [True]):
        with pytest.raises(InputError, match="--snapshot"):
            TrainConfig(steps=4, snapshots=bad).validate()
    with pytest.raises(InputError, match="snapshots: expected list"):
        TrainConfig.from_dict({"snapshots": 0.2})


def test_snapshot_flag_and_time_limit(tmp_path):
    """From the CLI, with a time limit: the snapshot comes at that fraction of the time (not of the
    huge --steps), and `sample` loads it; --snapshot 1.5 is refused with one line."""
    data, _ = _points(tmp_path)
    out = tmp_path / "ck"
    r = run_cli("train", data, "--steps", "1000000", "--batch", "8", "--base", "16", "--log-every", "2",
                "--time-limit", "3s", "--snapshot", "0.5", "--snapshot", "0.125", "-o", out)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for frac in (0.125, 0.5):
        step = ckpt.load_model(out / f"snapshot-{100 * frac:g}.safetensors").meta["step"]
        elapsed = next(rec["elapsed_s"] for rec in records if rec["step"] == step)
        before = [rec["elapsed_s"] for rec in records if rec["step"] < step]
        assert elapsed >= 3.0 * frac and (not before or before[-1] < 3.0 * frac), (frac, step)
    r = run_cli("sample", out / "snapshot-50.safetensors", "-n", "4", "--steps", "3", "-o", tmp_path / "s.npy")
    assert r.returncode == 0, r.stderr
    r = run_cli("train", data, "--steps", "5", "--snapshot", "1.5", "-o", tmp_path / "x")
    assert r.returncode == 2 and r.stderr.decode().strip().count("\n") == 0 and "--snapshot" in r.stderr.decode()
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------
# configuration precedence, resuming from Python, the networks' Muon split


def test_resolve_config_precedence(tmp_path):
    """defaults < the resumed run's config.yaml < the YAML file < explicit flags (None = not given)."""
    run = tmp_path / "run"
    run.mkdir()
    saved = TrainConfig(steps=50, batch=16, lr=1e-3, sde="vp", seed=3, clip=0.5)
    (run / "config.yaml").write_text(config_to_yaml(saved.to_dict()))
    (tmp_path / "f.yaml").write_text("batch: 32\nlr: 5.0e-4\nclip: 2.0\n")
    cfg = resolve_config(run, tmp_path / "f.yaml", {"lr": 1e-4, "seed": None, "ema": 0.99})
    assert (cfg.steps, cfg.sde, cfg.seed) == (50, "vp", 3)  # from the resumed config
    assert (cfg.batch, cfg.clip) == (32, 2.0)  # the file over the resumed config
    assert (cfg.lr, cfg.ema) == (1e-4, 0.99)  # flags over both
    assert cfg.log_every == TrainConfig().log_every and cfg.prediction == "eps"  # defaults
    assert resolve_config(None, None, None) == TrainConfig().validate()
    assert TrainConfig().prediction is None and resolve_config(None, None, {"sde": "edm"}).prediction == "edm"
    # epochs given later drops the recorded steps (and the other way round)
    by_epochs = resolve_config(run, None, {"epochs": 2.0})
    assert (by_epochs.steps, by_epochs.epochs) == (None, 2.0)
    (tmp_path / "e.yaml").write_text("epochs: 3\n")
    assert resolve_config(None, tmp_path / "e.yaml", {"steps": 7}).epochs is None
    with pytest.raises(InputError, match="--steps and --epochs"):
        resolve_config(run, tmp_path / "e.yaml", {})
    with pytest.raises(InputError, match="--lr: must be > 0"):
        resolve_config(run, None, {"lr": -1.0})
    with pytest.raises(InputError, match="no such checkpoint folder"):
        resolve_config(tmp_path / "nope")
    with pytest.raises(InputError, match="holds no config.yaml"):
        resolve_config(tmp_path)


def test_train_resume_true_reloads_the_runs_config(tmp_path):
    """train(..., resume=True) from Python takes the options, network and data path from the run's
    config.yaml: the continued run ends where an uninterrupted one does."""
    data, _ = _points(tmp_path)
    cfg = TrainConfig(steps=8, batch=8, lr=1e-3, net=dict(TINY_MLP), sde="vp", lr_schedule="cosine", warmup=2,
                      prediction="v", log_every=1, save_every=0)
    train(cfg, data, tmp_path / "a", handle_signals=False)
    part = train(cfg, data, tmp_path / "b", [lambda info: info["step"] == 3], handle_signals=False)
    assert part.stopped and part.step == 3
    rest = train(None, None, tmp_path / "b", resume=True, handle_signals=False)
    assert rest.step == 8
    sa, sb = ckpt.load_state(tmp_path / "a"), ckpt.load_state(tmp_path / "b")
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    assert ckpt.load_model(tmp_path / "b").prediction == "v"
    # a dict of options overrides the reloaded config: four more steps
    more = train({"steps": 12}, None, tmp_path / "b", resume=True, handle_signals=False)
    assert more.step == 12 and ckpt.load_model(tmp_path / "b").meta["train"]["sde"] == "vp"
    with pytest.raises(InputError, match="already at step 12"):
        train(None, None, tmp_path / "b", resume=True, handle_signals=False)


@pytest.mark.parametrize("cfg", [
    dict(type="unet", in_channels=3, image_size=[8, 8], base=8, mults=[1, 2], blocks=2, attn=[4], scale_shift=True),
    dict(type="unet", in_channels=1, image_size=[8, 8], base=8, mults=[1, 2, 2], attn=[], mid_attn=False, patch=2,
         self_cond=True),
    dict(type="mlp", dim=3, hidden=16, blocks=3, emb_dim=8),
])
def test_networks_name_the_matrices_muon_trains(cfg):
    """``muon_parameters()``: every weight matrix but those of the first / last layers and the time
    embedding; ``make_optimizer`` gives exactly those to Muon and the rest to AdamW."""
    from ddpmctl.nets import build_net
    from ddpmctl.train import make_optimizer

    net = build_net(cfg)
    edge = ("in_conv.", "out_conv.", "time_embed.") if cfg["type"] == "unet" else ("in_fc.", "out_fc.", "time_embed.")
    expected = {n for n, p in net.named_parameters() if p.ndim >= 2 and not n.startswith(edge)}
    names = {id(p): n for n, p in net.named_parameters()}
    chosen = [names[id(p)] for p in net.muon_parameters()]
    assert len(chosen) == len(set(chosen)) and set(chosen) == expected
    assert any(p.ndim == 4 for p in net.muon_parameters()) == (cfg["type"] == "unet")
    opt = make_optimizer(TrainConfig(optimizer="muon"), net)
    assert {n for (n, _), m in zip(net.named_parameters(), opt.muon) if m} == expected
    assert not hasattr(make_optimizer(TrainConfig(), net), "muon")
