"""TaylorSeer's factor update and forecast against closed forms (Shenyi-Z/TaylorSeer `taylor_utils`)."""

from fractions import Fraction

import pytest
import torch

import diffaccel
from diffaccel.forecast.schedules import taylorseer_full_steps
from tests.synthetic import Trajectory, run

GOLDEN_M2 = [
    1,
    5,
    11,
    17,
    23,
    29,
    35,
    41,
    89,
    Fraction(1231, 12),
    Fraction(352, 3),
    Fraction(533, 4),
    Fraction(451, 3),
    Fraction(2023, 12),
    239,
    265,
    293,
    323,
    355,
    389,
]


def _quadratic(n):
    return float(n * n + 3 * n + 1)


def test_golden_sequence_order2_official_flux_semantics():
    model = diffaccel.wrap(Trajectory(_quadratic), "taylorseer", interval=6, order=2, warmup=3, factor_dtype="float64")
    outs = [o[0, 0].item() for o in run(model, 20)]
    assert outs == pytest.approx([float(g) for g in GOLDEN_M2], rel=0, abs=1e-9)
    assert model.unit.calls == 5  # full at 0, 1, 2, 8, 14


def test_order1_errors_on_quadratic_match_spec():
    model = diffaccel.wrap(Trajectory(_quadratic), "taylorseer", interval=6, order=1, warmup=3, factor_dtype="float64")
    outs = [o[0, 0].item() for o in run(model, 8)]
    errors = [outs[n] - _quadratic(n) for n in range(3, 8)]
    assert errors == pytest.approx([-2, -6, -12, -20, -30], abs=1e-9)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("interval,warmup", [(6, 3), (4, 2), (5, 1), (3, 3)])
def test_linear_trajectories_are_forecast_exactly(order, interval, warmup):
    """Exact at every step once a first derivative exists, i.e. after the first full step at which
    derivatives are enabled and a previous full step is known (before it, m_eff = 0 is plain reuse)."""
    model = diffaccel.wrap(
        Trajectory(lambda n: 2.5 - 0.75 * n),
        "taylorseer",
        interval=interval,
        order=order,
        warmup=warmup,
        factor_dtype="float64",
    )
    outs = run(model, 30)
    full = taylorseer_full_steps(30, interval, warmup)
    first_with_derivative = next(n for n in full[1:] if n > warmup - 2)
    for n, out in enumerate(outs):
        if n in full or n > first_with_derivative:
            assert out[0, 0].item() == pytest.approx(2.5 - 0.75 * n, abs=1e-12), n
        else:
            assert out[0, 0].item() == 2.5 - 0.75 * max(f for f in full if f < n), n


@pytest.mark.parametrize("interval,k_values", [(6, (1, 2, 3, 4, 5)), (4, (1, 2, 3))])
def test_order2_quadratic_error_is_minus_c_k_N(interval, k_values):
    """Once three uniformly spaced full steps exist, the order-2 error at offset k is exactly -c·k·N."""
    c = 0.5
    model = diffaccel.wrap(
        Trajectory(lambda n: c * n * n - n + 4.0),
        "taylorseer",
        interval=interval,
        order=2,
        warmup=1,
        factor_dtype="float64",
    )
    outs = run(model, 4 * interval)
    last_full = 2 * interval  # full steps 0, N, 2N: three uniformly spaced
    for k in k_values:
        n = last_full + k
        truth = c * n * n - n + 4.0
        assert outs[n][0, 0].item() - truth == pytest.approx(-c * k * interval, abs=1e-9)


def test_order0_is_plain_reuse():
    model = diffaccel.wrap(Trajectory(_quadratic), "taylorseer", interval=4, order=0, warmup=1)
    outs = run(model, 8)
    for n in range(8):
        assert torch.equal(outs[n], outs[n - n % 4])


def test_factor_dtype_model_keeps_output_dtype():
    model = diffaccel.wrap(Trajectory(lambda n: float(n)), "taylorseer", interval=3, warmup=1, factor_dtype="model")
    outs = run(model, 3)
    assert outs[1].dtype == torch.float64 and outs[1][0, 0].item() == pytest.approx(0.0)
