"""Checks that stop a training run with one clear line instead of training on garbage."""

from __future__ import annotations

import math

from ..errors import CatdogError


def check_finite(value: float, what: str) -> float:
    """``value`` if it is a finite number; else CatdogError: the run diverged (learning rate too high)."""
    if not math.isfinite(value):
        raise CatdogError(f"{what} became {value}: training diverged. Lower the learning rate "
                          "(--lr, or LEARNING_RATE in notebook 04; e.g. by 10x) and start a new run.")
    return value
