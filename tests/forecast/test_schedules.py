"""The TaylorSeer schedule against an independent re-implementation of the official counter
(`cal_type` in Shenyi-Z/TaylorSeer) and its tables of full steps."""

import pytest

from diffaccel.forecast.schedules import taylorseer_full_steps


def official_counter_schedule(num_steps: int, interval: int, first_enhance: int) -> list[int]:
    """The official loop: full while in warm-up, else full when the skip counter reached N-1."""
    full, skipped = [], 0
    for n in range(num_steps):
        if n < first_enhance or skipped == interval - 1:
            full.append(n)
            skipped = 0
        else:
            skipped += 1
    return full


@pytest.mark.parametrize("interval,warmup", [(6, 3), (5, 3), (7, 3), (5, 1), (6, 1), (3, 2), (4, 2), (5, 2), (1, 1)])
def test_closed_form_matches_official_counter(interval, warmup):
    assert taylorseer_full_steps(50, interval, warmup) == official_counter_schedule(50, interval, warmup)


@pytest.mark.parametrize(
    "interval,warmup,expected",
    [
        (6, 3, [0, 1, 2, 8, 14, 20, 26, 32, 38, 44]),
        (7, 3, [0, 1, 2, 9, 16, 23, 30, 37, 44]),
        (5, 1, [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]),
        (6, 1, [0, 6, 12, 18, 24, 30, 36, 42, 48]),
    ],
)
def test_spec_tables(interval, warmup, expected):
    assert taylorseer_full_steps(50, interval, warmup) == expected


@pytest.mark.parametrize("interval,warmup,count", [(5, 3, 12), (3, 2, 18), (4, 2, 14), (5, 2, 11)])
def test_spec_counts(interval, warmup, count):
    assert len(taylorseer_full_steps(50, interval, warmup)) == count
