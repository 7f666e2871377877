"""Class-conditional models and classifier-free guidance (issue #18), proven without training on
the exact model of a labelled Gaussian mixture (each component a class: ``make-data gmm --labels``),
then the networks, the training loop and the CLI on tiny data.

Convention (docs/sample.md): CFG scale s, eps = eps_uncond + s (eps_cond - eps_uncond); s = 1 is
the conditional model, s = 0 the unconditional one (Ho & Salimans' w = s - 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ddpmctl import checkpoint as ckpt
from ddpmctl import labels as lab
from ddpmctl.diffusion import Denoiser, marginal
from ddpmctl.errors import InputError
from ddpmctl.exact import ExactGMM, mixture_quality
from ddpmctl.gmm import GaussianMixture
from ddpmctl.nets import build_net, default_net_config, validate_net_config
from ddpmctl.sampling import DEFAULT_CFG, generate
from ddpmctl.schedules import make_process

N = 2000


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture.random(3, 2, np.random.default_rng(7))


class Recording(Denoiser):
    """A denoiser that keeps every call: (x, t, labels, eps, x0)."""

    calls: list

    def __call__(self, x, t):
        p = super().__call__(x, t)
        t = torch.as_tensor(t, dtype=torch.float64)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        self.calls.append((x.clone(), t.clone(), self.labels.clone(), p.eps.clone(), p.x0.clone()))
        return p


class RecordingGMM(ExactGMM):
    def denoiser(self, clip=None):
        self.recorder = Recording(self, self.process, "eps", conditioning="t")
        self.recorder.calls = []
        return self.recorder


# ------------------------------------------------------------------------------------------
# the exact class-conditional model


def test_exact_conditional_score_is_the_score_of_the_class_mixture(mixture):
    """Class c's score is that of its own components (weights renormalised), computed on its own;
    the null class K (and no labels) is the whole mixture's score."""
    process = make_process("vp")
    model = ExactGMM(mixture, process)
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    for t in (0.05, 0.4, 0.9):
        for c in range(3):
            own = ExactGMM(GaussianMixture(np.ones(1), mixture.means[c : c + 1], mixture.covs[c : c + 1]), process)
            got = model.score(x, t, torch.full((64,), c))
            assert torch.allclose(got, own.score(x, t), atol=1e-12)
        null = model.score(x, t, torch.full((64,), 3))
        assert torch.allclose(null, model.score(x, t), atol=1e-12)
    # two components in one class: their renormalised mixture
    grouped = ExactGMM(mixture, process, component_classes=[0, 0, 1])
    pair = GaussianMixture(mixture.weights[:2] / mixture.weights[:2].sum(), mixture.means[:2], mixture.covs[:2])
    labels = torch.tensor([0, 1] * 32)
    got = grouped.eps(x, 0.3, labels)
    assert torch.allclose(got[::2], ExactGMM(pair, process).eps(x[::2], 0.3), atol=1e-12)
    assert torch.allclose(got[1::2], model.eps(x[1::2], 0.3, torch.full((32,), 2)), atol=1e-12)
    assert grouped.num_classes == 2 and grouped.class_mixture([0, 0]).k == 2


GUIDED_SAMPLERS = [
    ("ddpm", "vp", {}),
    ("ddim", "ddpm", {"eta": 0.5}),
    ("sde", "vp", {}),
    ("pc", "ve", {}),
    ("ode", "vp", {"solver": "heun"}),
    ("ode", "ddpm", {"solver": "dpm++3m"}),
    ("edm", "vp", {}),
    ("euler-a", "vp", {}),
    ("dpm++2m-sde", "ve", {}),
]


@pytest.mark.parametrize("sampler, kind, kw", GUIDED_SAMPLERS, ids=[f"{s}-{k}" for s, k, _ in GUIDED_SAMPLERS])
def test_guided_eps_is_the_closed_form_at_every_call(mixture, sampler, kind, kw):
    """Every evaluation a sampler makes with --cfg s returns exactly eps_u + s (eps_c - eps_u), where
    eps_c is the exact eps of the row's class (its component, as a mixture of its own) and eps_u
    that of the whole mixture, both from the closed forms; x0 is the matching Tweedie estimate;
    the NFE doubles."""
    s = 2.5
    model = RecordingGMM(mixture, make_process(kind, T=200) if kind == "ddpm" else make_process(kind))
    labels = np.array([0, 1, 2, 2, 1, 0, 1, 2])
    _, info = generate(model, sampler, n=8, steps=6, seed=1, labels=labels, cfg=s, **kw)
    plain = generate(ExactGMM(mixture, model.process), sampler, n=8, steps=6, seed=1, **kw)[1]
    assert info["nfe"] == 2 * plain["nfe"] and info["cfg"] == s
    whole = ExactGMM(mixture, model.process)
    parts = [ExactGMM(model.class_mixture(c), model.process) for c in range(3)]
    calls = model.recorder.calls
    assert len(calls) == plain["nfe"]
    for x, t, row_labels, eps, x0 in calls:
        assert row_labels.tolist() == labels.tolist()
        eps_u = whole.eps(x, t)
        eps_c = torch.stack([parts[int(c)].eps(x[i : i + 1], t[i : i + 1])[0] for i, c in enumerate(row_labels)])
        assert torch.allclose(eps, eps_u + s * (eps_c - eps_u), rtol=1e-9, atol=1e-10)
        alpha, sigma = marginal(model.process, t)
        assert torch.allclose(alpha[:, None] * x0 + sigma[:, None] * eps, x, atol=1e-9)


CFG_SAMPLERS = [
    ("ode", "vp", {"solver": "dpm++2m"}, 30),
    ("ddpm", "vp", {}, 200),
    ("sde", "vp", {}, 300),
]


@pytest.mark.parametrize("sampler, kind, kw, steps", CFG_SAMPLERS, ids=[c[0] for c in CFG_SAMPLERS])
def test_no_guidance_samples_the_class_conditional_mixture(mixture, sampler, kind, kw, steps):
    """At the no-guidance scale s = 1 the samples of each class follow that class's exact
    distribution (moments and sliced W1 as for the unconditional mixture, test_samplers.py); at
    s = 0 (the unconditional branch alone, on the doubled batch) they follow the whole mixture."""
    model = ExactGMM(mixture, make_process(kind))
    labels = np.arange(N) % 3
    x, info = generate(model, sampler, n=N, steps=steps, batch=N, seed=0, labels=labels, cfg=1.0, **kw)
    assert info["cfg"] == 1.0
    for c in range(3):
        q = mixture_quality(x[labels == c], model.class_mixture(c))
        assert q["nonfinite"] == 0 and q["swd"] < 0.07, (c, q)  # exact samples: ~0.035 at this n
        assert q["mean_error"] < 0.15 and q["cov_error"] < 0.3, (c, q)
    q = mixture_quality(x, model.class_mixture(labels))  # all classes, in equal shares
    assert q["swd"] < 0.06 and q["weight_error"] < 0.04, q
    u, info0 = generate(model, sampler, n=N, steps=steps, batch=N, seed=0, labels=labels, cfg=0.0, **kw)
    assert info0["nfe"] == 2 * info["nfe"]
    q = mixture_quality(u, mixture)
    assert q["swd"] < 0.06 and q["weight_error"] < 0.04 and q["cov_error"] < 0.3, q


def test_guidance_favours_the_class_and_keeps_sample_i_whatever_the_batch(mixture):
    """s > 1 samples p(x | c) p(c | x)^(s - 1) (up to normalisation, Ho & Salimans 2022 sec. 3.2):
    the mixture's posterior p(c | x) of the requested class grows, so fewer samples look like
    another class; sample i with its class is the same in any batch."""
    model = ExactGMM(mixture, make_process("vp"))
    labels = np.arange(600) % 3
    plain, _ = generate(model, "ode", n=600, steps=12, seed=2, labels=labels, cfg=1.0)
    guided, _ = generate(model, "ode", n=600, steps=12, seed=2, labels=labels, cfg=2.0)
    split, _ = generate(model, "ode", n=600, steps=12, seed=2, labels=labels, cfg=2.0, batch=7)
    assert np.allclose(guided, split, atol=1e-9)

    def posterior(x):  # p(c | x) of the requested class, and the share of samples another class explains better
        r = model.responsibilities(torch.from_numpy(x).double(), 0.0).numpy()
        return r[np.arange(len(x)), labels].mean(), np.mean(r.argmax(1) != labels)

    (p_plain, wrong_plain), (p_guided, wrong_guided) = posterior(plain), posterior(guided)
    assert p_plain < 0.97 and p_guided > 0.99 and wrong_guided < 0.5 * wrong_plain, (p_plain, p_guided)


def test_class_checks(mixture):
    from test_restore import GaussianImages  # an unconditional exact model of images

    model = ExactGMM(mixture, make_process("vp"))
    for labels, cfg, words in (
        ([0, 1, 3], None, "no class 3"),
        ([0, -1, 1], None, "negative"),
        ([0.0, 1.5, 1.0], None, "not an integer"),
        ([0, 1], None, "2 class labels for 3 samples"),
        (None, 2.0, "--cfg: needs --class"),
        ([0, 1, 2], -1.0, "--cfg"),
        ([0, 1, 2], float("inf"), "--cfg"),
    ):
        with pytest.raises(InputError, match=words):
            generate(model, "ode", n=3, labels=labels, cfg=cfg)
    with pytest.raises(InputError, match="--cfg: not with --guide"):
        generate(model, "ode", n=3, labels=[0, 1, 2], cfg=2.0, guide=model)
    # autoguidance alone works with classes: the guide gets them too (a model guiding itself is unchanged)
    plain, _ = generate(model, "ode", n=6, steps=5, labels=[0, 1, 2] * 2, cfg=1.0)
    selfg, info = generate(model, "ode", n=6, steps=5, labels=[0, 1, 2] * 2, guide=ExactGMM(mixture, model.process))
    assert np.allclose(plain, selfg, atol=1e-9) and info["nfe"] == 10
    with pytest.raises(InputError, match="not class-conditional"):
        generate(GaussianImages(make_process("vp")), "ddim", n=2, labels=[0, 0])
    with pytest.raises(ValueError, match="not class-conditional"):
        GaussianImages(make_process("vp")).denoiser().set_labels([0, 1])


# ------------------------------------------------------------------------------------------
# labels: files and choices


def test_label_files_and_choices(tmp_path):
    data = tmp_path / "d.npy"
    np.save(data, np.zeros((4, 2), np.float32))
    assert lab.find_labels(data) is None
    np.save(tmp_path / "d.labels.npy", np.array([1.0, 0.0, 2.0, 1.0]))  # whole floats are integers
    assert lab.find_labels(data) == str(tmp_path / "d.labels.npy")
    labels = lab.read_labels(lab.find_labels(data), 4)
    assert labels.dtype == np.int64 and labels.tolist() == [1, 0, 2, 1]
    assert lab.class_names(labels, None) == ["0", "1", "2"]
    lab.write_names(lab.names_path(tmp_path / "d.labels.npy"), ["x", "y", "z", "w"])
    names = lab.read_names(tmp_path / "d.classes.txt")
    assert names == ["x", "y", "z", "w"] and lab.class_names(labels, names) == names
    with pytest.raises(InputError, match="label 2 has no name"):
        lab.class_names(labels, ["x", "y"])
    assert lab.sample_labels(names, "z", None, None, 3).tolist() == [2, 2, 2]
    assert lab.sample_labels(names, None, "w,0", None, 5).tolist() == [3, 0, 3, 0, 3]
    assert lab.sample_labels(names, None, None, 2, 0).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert lab.sample_labels(names, None, None, None, 5) is None
    with pytest.raises(InputError, match="--classes: not with --class"):
        lab.sample_labels(names, "x", "y", None, 2)


# ------------------------------------------------------------------------------------------
# networks


@pytest.mark.parametrize("kind, shape, extra", [("images", (1, 8, 8), {"base": 8, "mults": [1, 2]}),
                                                ("points", (2,), {"hidden": 16, "emb_dim": 8})])  # fmt: skip
def test_conditional_net_starts_as_the_unconditional_one(kind, shape, extra):
    """An unconditional config is unchanged (no num_classes key; the same weights from the same
    seed); a conditional one has the same weights plus a zero (K + 1)-row class table, so it draws
    no extra random numbers and starts out equal to the unconditional net whatever the class;
    once the table is trained, the class changes the output and no label is the null class K."""
    cfg = validate_net_config({**default_net_config(kind, shape), **extra}, shape)
    assert "num_classes" not in cfg and validate_net_config({**cfg, "num_classes": 0}) == cfg
    torch.manual_seed(0)
    plain = build_net(cfg)
    after_plain = torch.rand(1)
    torch.manual_seed(0)
    cond = build_net({**cfg, "num_classes": 3})
    assert torch.equal(torch.rand(1), after_plain)  # the same random numbers were drawn
    ps, cs = plain.state_dict(), cond.state_dict()
    assert set(cs) - set(ps) == {"class_embed.weight"} and all(torch.equal(ps[k], cs[k]) for k in ps)
    assert cs["class_embed.weight"].shape[0] == 4 and not cs["class_embed.weight"].any()
    x, c = torch.randn(4, *shape), torch.tensor([3.0, 10.0, 50.0, 99.0])
    with torch.no_grad():
        for p in plain.parameters():  # move every zero-initialised output layer off zero
            p.add_(0.01 * torch.randn_like(p))
        cond.load_state_dict({**plain.state_dict(), "class_embed.weight": torch.zeros_like(cs["class_embed.weight"])})
        out = plain(x, c)
        assert torch.allclose(cond(x, c, class_labels=torch.tensor([0, 1, 2, 3])), out, atol=1e-6)
        cond.class_embed.weight.normal_()
        a, b = cond(x, c, class_labels=torch.tensor([0, 0, 0, 0])), cond(x, c, class_labels=torch.tensor([1, 1, 1, 1]))
        assert not torch.allclose(a, b)
        assert torch.equal(cond(x, c), cond(x, c, class_labels=torch.tensor([3, 3, 3, 3])))
    with pytest.raises(InputError, match="num_classes"):
        validate_net_config({**cfg, "num_classes": -1})


# ------------------------------------------------------------------------------------------
# training


def _labelled_points(tmp_path, n=128):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    pts = np.array([[3.0, 0.0], [-2.0, 2.0], [0.0, -3.0]])[labels] + 0.1 * rng.standard_normal((n, 2))
    np.save(tmp_path / "p.npy", pts.astype(np.float32))
    np.save(tmp_path / "p.labels.npy", labels)
    lab.write_names(tmp_path / "p.classes.txt", ["east", "north", "south"])
    return tmp_path / "p.npy", labels


def test_training_feeds_the_batch_labels_with_label_dropout(tmp_path, monkeypatch):
    """The net sees the labels of exactly the rows of each step's batch, each replaced by the null
    class K with probability --label-dropout; the checkpoint records K and the class names."""
    from ddpmctl import nets
    from ddpmctl.train import IndexStream, TrainConfig, train

    data, labels = _labelled_points(tmp_path)
    seen = []
    build = nets.build_net

    def spying_build(config):
        net = build(config)
        net.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["class_labels"].clone()), with_kwargs=True)
        return net

    monkeypatch.setattr(nets, "build_net", spying_build)
    cfg = TrainConfig(steps=20, batch=32, net={"hidden": 16, "blocks": 1, "emb_dim": 8}, ema=0.0, log_every=20,
                      labels=str(tmp_path / "p.labels.npy"), label_dropout=0.3)  # fmt: skip
    train(cfg, data, tmp_path / "ck", handle_signals=False)
    assert len(seen) == 20
    stream = IndexStream(len(labels), 0)
    dropped = 0
    for step, fed in enumerate(seen):
        want = torch.from_numpy(labels[stream.batch(step, 32)])
        kept = fed != 3
        assert torch.equal(fed[kept], want[kept])
        dropped += int((~kept).sum())
    assert 0.2 < dropped / (20 * 32) < 0.4
    model = ckpt.load_model(tmp_path / "ck")
    assert model.num_classes == 3 and model.class_names == ["east", "north", "south"]
    assert model.meta["train"]["labels"] == str((tmp_path / "p.labels.npy").resolve())


def test_conditional_resume_is_exact(tmp_path):
    """A labelled run stopped after 4 of 9 steps and resumed ends bit for bit where an
    uninterrupted run ends (label dropout draws from the per-step generators)."""
    from ddpmctl.train import TrainConfig, train

    data, _ = _labelled_points(tmp_path)
    cfg = TrainConfig(steps=9, batch=16, net={"hidden": 16, "blocks": 1, "emb_dim": 8, "dropout": 0.1},
                      labels=str(tmp_path / "p.labels.npy"), label_dropout=0.5, log_every=1, save_every=3)  # fmt: skip
    train(cfg, data, tmp_path / "a", handle_signals=False)
    part = train(cfg, data, tmp_path / "b", [lambda info: info["step"] == 4], handle_signals=False)
    assert part.stopped and part.step == 4
    train(cfg, data, tmp_path / "b", resume=tmp_path / "b", handle_signals=False)
    sa, sb = ckpt.load_state(tmp_path / "a"), ckpt.load_state(tmp_path / "b")
    for name in ("model", "ema", "optimizer"):
        assert sa[name].keys() == sb[name].keys()
        assert all(torch.equal(sa[name][k], sb[name][k]) for k in sa[name]), name
    assert "class_embed.weight" in sa["model"] and sa["model"]["class_embed.weight"].any()


# ------------------------------------------------------------------------------------------
# the command line, end to end on tiny data


def test_cli_conditional_train_sample_resume(cli, tmp_path):
    r = cli("make-data", "shapes", "--n", "24", "--size", "8", "--labels", "-o", tmp_path / "s.npy")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s.classes.txt").read_text().split() == ["triangle", "square", "disc", "ellipse"]
    args = ["--batch", "4", "--base", "8", "--mults", "1,2", "--T", "50", "--save-every", "2", "--log-every", "1"]
    r = cli("train", tmp_path / "s.npy", "--steps", "3", *args, "-o", tmp_path / "ck")
    assert r.returncode == 0, r.stderr
    assert b"s.labels.npy" in r.stderr and b"--no-labels" in r.stderr  # picked up, and said so
    meta = ckpt.read_meta(tmp_path / "ck")
    assert meta["net"]["num_classes"] == 4 and meta["classes"] == ["triangle", "square", "disc", "ellipse"]

    a = tmp_path / "a.npy"
    r = cli("sample", tmp_path / "ck", "--class", "1", "--cfg", "2", "-n", "3", "--steps", "4", "-o", a, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["nfe"] == 8 and info["cfg"] == 2.0 and info["classes"] == ["square"]
    assert np.load(tmp_path / "a.npy").shape == (3, 1, 8, 8)
    assert np.load(tmp_path / "a.labels.npy").tolist() == [1, 1, 1] and info["labels"] == str(tmp_path / "a.labels.npy")
    r = cli("sample", tmp_path / "ck", "--per-class", "2", "--steps", "4", "-o", tmp_path / "b.npy")
    assert r.returncode == 0, r.stderr
    assert b"NFE 8" in r.stdout and b"4 classes" in r.stdout and b"CFG scale 2" in r.stdout  # the default scale
    assert np.load(tmp_path / "b.npy").shape == (8, 1, 8, 8)
    assert np.load(tmp_path / "b.labels.npy").tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # more samples than the preview keeps in memory (64): every label is written, every class named
    r = cli("sample", tmp_path / "ck", "--per-class", "17", "--steps", "1", "-o", tmp_path / "m.npy", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["shape"][0] == 68 and info["classes"] == ["triangle", "square", "disc", "ellipse"]
    assert np.load(tmp_path / "m.labels.npy").tolist() == np.repeat(np.arange(4), 17).tolist()
    r = cli("sample", tmp_path / "ck", "--classes", "disc,0", "-n", "3", "--steps", "2", "-o", tmp_path / "c.png")
    assert r.returncode == 0 and (tmp_path / "c.png").exists() and not (tmp_path / "c.labels.npy").exists()
    r = cli("sample", tmp_path / "ck", "-n", "2", "--steps", "2", "-o", tmp_path / "u.npy")  # unconditional
    assert r.returncode == 0 and not (tmp_path / "u.labels.npy").exists()

    # resume: 3 steps + 2 more equal 5 steps at once
    r = cli("train", tmp_path / "s.npy", "--steps", "5", *args, "-o", tmp_path / "full")
    assert r.returncode == 0, r.stderr
    r = cli("train", "--resume", tmp_path / "ck", "--steps", "5")
    assert r.returncode == 0, r.stderr
    sa, sb = ckpt.load_state(tmp_path / "full"), ckpt.load_state(tmp_path / "ck")
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    r = cli("train", "--resume", tmp_path / "ck", "--steps", "6", "--no-labels")
    assert r.returncode == 2 and b"--no-labels" in r.stderr

    r = cli("train", tmp_path / "s.npy", "--steps", "1", "--no-labels", *args, "-o", tmp_path / "unc")
    assert r.returncode == 0 and b"labels" not in r.stderr
    assert "num_classes" not in ckpt.read_meta(tmp_path / "unc")["net"]


def test_default_cfg_is_the_measured_scale_and_none_with_autoguidance(mixture):
    """Classes without --cfg: DEFAULT_CFG (2, measured in docs/conditional.md; 2 NFE per step),
    bit for bit the run with cfg=2; with a guide, no CFG (one guidance at a time: 1)."""
    model = ExactGMM(mixture, make_process("vp"))
    labels = np.arange(8) % 3
    x, info = generate(model, "ode", n=8, steps=5, seed=0, labels=labels)
    assert DEFAULT_CFG == 2.0 and info["cfg"] == 2.0 and info["nfe"] == 10
    y, _ = generate(model, "ode", n=8, steps=5, seed=0, labels=labels, cfg=2.0)
    assert np.array_equal(x, y)
    guide = ExactGMM(mixture, make_process("vp"))
    _, info = generate(model, "ode", n=8, steps=5, seed=0, labels=labels, guide=guide, guidance=2.0)
    assert info["cfg"] == 1.0 and info["nfe"] == 10  # the guide's 5, not CFG's
