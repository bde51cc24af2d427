"""Which denoising steps compute in full.

TaylorSeer's official schedule (`cal_type` / `force_scheduler` in Shenyi-Z/TaylorSeer): a
step is full while `n < warmup` ("first_enhance"), then whenever the skip counter reaches
`interval - 1`, which in closed form is `(n - warmup + 1) % interval == 0`.
"""

from __future__ import annotations


def taylorseer_is_full(n: int, interval: int, warmup: int) -> bool:
    """Official TaylorSeer schedule: full iff `n < warmup` or `(n - warmup + 1) % interval == 0`."""
    return n < warmup or (n - warmup + 1) % interval == 0


def taylorseer_full_steps(num_steps: int, interval: int, warmup: int) -> list[int]:
    """All full steps of a run of `num_steps` steps."""
    return [n for n in range(num_steps) if taylorseer_is_full(n, interval, warmup)]


def taylorseer_derivatives_enabled(n: int, warmup: int) -> bool:
    """Official rule for updating finite differences at a full step: only when `n > warmup - 2`.

    With FLUX's warm-up 3 this discards the step-0 → step-1 difference (as the official `derivative_approximation` does).
    """
    return n > warmup - 2
