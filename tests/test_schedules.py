"""Beta schedules and processes: closed forms, monotonicity, ranges, and the continuous-time core."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ddpmctl.errors import InputError
from ddpmctl.schedules import (
    SCHEDULES,
    VESDE,
    VPSDE,
    DiscreteProcess,
    SubVPSDE,
    get_betas,
    make_process,
    process_from_dict,
    summarize,
)


def test_linear_is_ddpm_definition():
    b = get_betas("linear", 1000)
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(np.diff(b), (0.02 - 1e-4) / 999, rtol=1e-9)


def test_cosine_matches_formula():
    T, s = 1000, 0.008
    b = get_betas("cosine", T)
    ab = np.cumprod(1 - b)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 10, 500, 900):
        # unclipped region: alpha_bar_t = f(t) / f(0)
        assert ab[t - 1] == pytest.approx(f(t) / f(0), rel=1e-9)
    assert b.max() <= 0.999


def test_quadratic_and_power_closed_forms():
    b = get_betas("quadratic", 11, beta_start=0.01, beta_end=0.04)
    np.testing.assert_allclose(np.sqrt(b), np.linspace(0.1, 0.2, 11))
    p = get_betas("power", 5, beta_start=0.0, beta_end=0.02, power=2.0) if False else get_betas("power", 5, power=2.0)
    u = np.linspace(0, 1, 5)
    np.testing.assert_allclose(p, 1e-4 + (0.02 - 1e-4) * u**2)


def test_wave_hits_endpoints_and_is_monotone():
    b = get_betas("wave", 1000, cycles=3, amplitude=1.0)
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    assert (np.diff(b) >= -1e-15).all()
    # it really ripples: not the linear schedule
    assert np.abs(b - get_betas("linear", 1000)).max() > 1e-4


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(SCHEDULES)), T=st.integers(1, 3000))
def test_every_schedule_valid(name, T):
    b = get_betas(name, T)
    assert b.shape == (T,) and b.dtype == np.float64
    assert ((b > 0) & (b < 1)).all()
    ab = np.cumprod(1 - b)
    np.testing.assert_allclose(DiscreteProcess(b).alpha_bar, ab)
    assert (np.diff(ab) < 0).all()
    if name != "cosine":  # cosine is increasing too, but capped
        assert (np.diff(b) >= -1e-15).all()


def test_schedule_file_and_errors(tmp_path):
    p = tmp_path / "b.npy"
    np.save(p, get_betas("cosine", 50))
    np.testing.assert_array_equal(get_betas(str(p)), get_betas("cosine", 50))
    np.save(p, np.array([0.1, 1.5]))
    with pytest.raises(InputError, match="must lie in"):
        get_betas(str(p))
    with pytest.raises(InputError, match="unknown schedule"):
        get_betas("nope")
    with pytest.raises(InputError, match="takes no option"):
        get_betas("cosine", 10, power=2)


def test_summary_warns_on_terminal_snr():
    assert summarize("linear", get_betas("linear", 1000)).warning is None
    assert "far from 0" in summarize("linear", get_betas("linear", 100)).warning


def test_discrete_process_on_grid_equals_alpha_bar():
    p = make_process(None, "cosine", 200)
    i = torch.arange(200)
    t = p.index_to_t(i)
    np.testing.assert_allclose(p.alpha(t).numpy() ** 2, p.alpha_bar, rtol=1e-12)
    np.testing.assert_allclose(p.sigma(t).numpy() ** 2, 1 - p.alpha_bar, rtol=1e-12)
    np.testing.assert_allclose(p.c_noise(t).numpy(), i.numpy(), atol=1e-9)
    assert p.alpha(0.0) == 1 and p.sigma(0.0) == 0


# a discrete process with t off its grid (kinks)
@pytest.mark.parametrize("proc", [VPSDE(), SubVPSDE(), VESDE(), make_process(None, "linear", 97), make_process("edm")])
def test_sde_coefficients_match_marginal(proc):
    """f = d log alpha/dt and g^2 = d sigma^2/dt - 2 f sigma^2 (moments of a linear SDE), checked
    by finite differences; and t_from_log_snr inverts log_snr."""
    t = torch.tensor([0.013, 0.2, 0.51, 0.77, 0.95], dtype=torch.float64)
    h = 1e-6
    dlog_a = (proc.log_alpha(t + h) - proc.log_alpha(t - h)) / (2 * h)
    ds2 = (proc.sigma(t + h) ** 2 - proc.sigma(t - h) ** 2) / (2 * h)
    np.testing.assert_allclose(proc.f(t), dlog_a, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(proc.g2(t), ds2 - 2 * proc.f(t) * proc.sigma(t) ** 2, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(proc.t_from_log_snr(proc.log_snr(t)), t, atol=1e-9)


def test_vp_closed_form_and_roundtrip():
    p = VPSDE(0.1, 20.0)
    t = torch.tensor([0.5], dtype=torch.float64)
    assert p.alpha(t).item() == pytest.approx(math.exp(-0.25 * 0.25 * 19.9 - 0.5 * 0.5 * 0.1))
    for q in [p, SubVPSDE(0.2, 10), VESDE(0.02, 30), make_process(None, "wave", 30), make_process("edm", p_std=0.9)]:
        r = process_from_dict(q.to_dict())
        assert type(r) is type(q)
        np.testing.assert_allclose(r.sigma(t), q.sigma(t))
    with pytest.raises(InputError):
        process_from_dict({"kind": "what"})


# ------------------------------------------------------------------------------------------
# discrete time belongs to the process: round_t, grid, training times, max_steps


def test_discrete_process_rounds_to_its_grid_and_has_T_steps():
    p = DiscreteProcess(get_betas("linear", 10))
    assert p.max_steps == 10
    t = torch.tensor([0.0, 0.04, 0.05 + 1e-12, 0.26, 0.3, 0.99, 1.0], dtype=torch.float64)
    assert p.round_t(t).tolist() == pytest.approx([0.0, 0.0, 0.1, 0.3, 0.3, 1.0, 1.0])
    assert p.round_t(t, up=True).tolist() == pytest.approx([0.0, 0.1, 0.1, 0.3, 0.3, 1.0, 1.0])  # 0.3 stays
    # a grid keeps its length: steps that would merge move to the next free step
    g = p.grid(torch.tensor([1.0, 0.6, 0.14, 0.12, 0.1], dtype=torch.float64))
    assert (g * 10).round().tolist() == [10, 6, 3, 2, 1]


@pytest.mark.parametrize("kind", ["vp", "subvp", "ve", "edm"])
def test_continuous_process_keeps_every_time(kind):
    p = make_process(kind)
    assert p.max_steps is None
    t = torch.tensor([0.0123456789, 0.5, 1.0], dtype=torch.float64)
    assert torch.equal(p.round_t(t), t) and torch.equal(p.round_t(t, up=True), t) and torch.equal(p.grid(t), t)


def test_training_times_discrete_grid_and_continuous_interval():
    g = torch.Generator().manual_seed(0)
    d = DiscreteProcess(get_betas("linear", 20))
    t = d.training_times(4000, g)
    assert t.dtype == torch.float64 and t.shape == (4000,)
    steps = (t * 20).round()
    assert torch.allclose(t * 20, steps) and set(steps.long().tolist()) == set(range(1, 21))  # every step, only steps
    c = make_process("vp")
    t = c.training_times(4000, torch.Generator().manual_seed(0))
    assert float(t.min()) >= c.t_min and float(t.max()) <= c.t_max
    assert len(set(t.tolist())) == 4000 and abs(float(t.mean()) - (c.t_min + c.t_max) / 2) < 0.02
    # objectives.sample_times is the process's method (training code calls it)
    from ddpmctl.objectives import sample_times

    assert torch.equal(
        sample_times(d, 50, torch.Generator().manual_seed(3)), d.training_times(50, torch.Generator().manual_seed(3))
    )
