"""pytest from the repository root: `pytest` runs tests/; `pytest --nbval` or `--nbval-lax` also runs the
six notebooks, in fast mode, on this environment's kernel, with the course's output sanitizers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SANITIZE = Path(__file__).parent / "notebooks" / "nbval-sanitize.cfg"


def pytest_configure(config: pytest.Config) -> None:
    option = config.option
    if not (getattr(option, "nbval", False) or getattr(option, "nbval_lax", False)):
        return
    if not option.nbval_kernel_name:
        option.nbval_current_env = True  # the kernel of the environment pytest runs in
    if not option.nbval_sanitize_with:
        option.nbval_sanitize_with = str(SANITIZE)
    os.environ.setdefault("CATDOG_FAST", "1")  # minutes, not an hour; CATDOG_FAST=0 runs the full course
