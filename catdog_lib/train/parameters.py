"""What each setting a student types may be: the rules of the notebooks' parameters cells (checked by
``notebook.setup``) and of ``TrainConfig``'s fields, so that a wrong value is one line naming the setting,
the value and what is allowed, before anything runs.

Importing it loads no torch (the CLI imports ``MAX_SEED``); the backbones' names are looked up when checked.
"""

from __future__ import annotations

import math
import numbers
import os
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import CatdogError

MAX_SEED = 2**32 - 1  # the largest seed every random number generator accepts (NumPy's limit)


@dataclass(frozen=True)
class Rule:
    """A setting's allowed values: ``test`` says whether a value is one, ``words`` says which (a callable when
    the words need an import that loads torch)."""

    test: Callable[[object], bool]
    words: str | Callable[[], str]

    def allowed(self) -> str:
        return self.words if isinstance(self.words, str) else self.words()


def is_whole(value: object) -> bool:
    """An int (NumPy's too), not a bool: ``True`` is no count, and ``2.0`` or ``"2"`` no whole number."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def whole(low: int, high: int | None = None) -> Rule:
    """A whole number ``low <= value`` (``<= high``)."""
    words = f"a whole number from {low} to {high}" if high is not None else f"a whole number of at least {low}"
    return Rule(lambda v: is_whole(v) and low <= v and (high is None or v <= high), words)


def optional(rule: Rule, meaning: str) -> Rule:
    """None (``meaning``) or what ``rule`` allows."""
    return Rule(lambda v: v is None or rule.test(v), lambda: f"None ({meaning}) or {rule.allowed()}")


def is_path(value: object) -> bool:
    """A file or folder name: text or a ``pathlib.Path``, not empty."""
    return isinstance(value, (str, os.PathLike)) and bool(str(os.fspath(value)).strip())


def _arch_names() -> list[str]:
    from ..model.backbones import ARCHS  # loads torch: only when an ARCH is checked

    return list(ARCHS)


def _temperature_range(value: object) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) == 2 and all(is_number(t) for t in value)
            and 0 < value[0] < value[1] < math.inf)


COUNT = whole(1)
SEED = whole(0, MAX_SEED)
INDEX = whole(0)
PER_CLASS = optional(COUNT, "all the photos")
LEARNING_RATE = Rule(lambda v: is_number(v) and 0 < v < math.inf, "a positive number such as 1e-3")  # nan fails
PROBABILITY = Rule(lambda v: is_number(v) and 0 <= v <= 1, "a probability from 0 to 1, such as 0.3")
FRACTION = Rule(lambda v: is_number(v) and 0 < v < 1, "a share between 0 and 1 (neither 0 nor 1), such as 0.2")
SWITCH = Rule(lambda v: isinstance(v, bool), "True or False")
ARCH = Rule(lambda v: isinstance(v, str) and v in _arch_names(), lambda: "one of " + ", ".join(_arch_names()))
WEIGHTS = Rule(lambda v: v is None or is_path(v),
               '"default" (ImageNet), None (random weights) or the path of a weights file')

# Every name in the six notebooks' parameters cells (tests/test_parameters.py checks that none lacks a rule).
NOTEBOOK_RULES: dict[str, Rule] = {
    "SEED": SEED, "VALID_FRACTION": FRACTION, "FILES_SHOWN": INDEX, "RANDOM_SPLITS": COUNT, "BATCH_SIZE": COUNT,
    "GRID_ROWS": COUNT, "GRID_COLS": COUNT, "IMAGE_INDEX": INDEX, "ARCH": ARCH, "FLIP_P": PROBABILITY,
    "DRAWS": COUNT, "FLIP_TRIALS": COUNT, "VIEWS_SHOWN": COUNT, "EPOCHS_SHOWN": COUNT, "PER_CLASS": COUNT,
    "SEEDS": COUNT, "EPOCHS": COUNT, "LEARNING_RATE": LEARNING_RATE, "PATIENCE": INDEX, "FINETUNE_EPOCHS": COUNT,
    "WEIGHTS": WEIGHTS, "PHOTOS_PER_CLASS": PER_CLASS,
    "CURVE_SIZES": Rule(lambda v: isinstance(v, (tuple, list)) and bool(v) and all(COUNT.test(n) for n in v),
                        "a tuple of whole numbers of at least 1, such as (10, 25, 100)"),
    "CURVE_SEEDS": COUNT, "CURVE_EPOCHS": COUNT, "LR_FIND_STEPS": whole(2), "LR_SEEDS": COUNT, "LR_EPOCHS": COUNT,
    "COMPARE_SEEDS": COUNT, "COMPARE_EPOCHS": COUNT, "WHOLE_PER_CLASS": COUNT,
    "SCRATCH_SIZE": Rule(whole(32).test, "a whole number of at least 32 (the network halves it five times)"),
    "N_MISCLASSIFIED": COUNT, "N_GRADCAM": COUNT, "CALIBRATION_BINS": COUNT, "N_BOOTSTRAP": COUNT,
    "TEMPERATURE_RANGE": Rule(_temperature_range, "two positive numbers, the smaller first, such as (0.05, 20.0)"),
    "PHOTO_INDEX": INDEX,
    "PHOTO": Rule(lambda v: isinstance(v, (str, os.PathLike)),
                  'a file path or an http(s) URL in quotes, or "" for a test photo'),
    "N_COMPARE": COUNT, "N_SHOWN": COUNT, "REPEATS": COUNT, "FAST_REPEATS": COUNT,
    "DATA_DIR": Rule(lambda v: v is None or is_path(v),
                     'None (the course\'s data) or the path of a data folder in quotes, such as "data/cat-and-dog"'),
    "DRIVE": SWITCH,
}


def problem(rule: Rule, value: object) -> str | None:
    """What is wrong with ``value`` ("must be ..."), or None when ``rule`` allows it."""
    return None if rule.test(value) else f"must be {rule.allowed()}"


def shown(value: object) -> str:
    """``value`` as Python writes it, cut short when long."""
    return reprlib.repr(value)


def check_notebook_parameters(namespace: Mapping[str, object]) -> None:
    """Refuse, in one line, the first of the course's parameters in ``namespace`` (a notebook's variables)
    whose value its rule does not allow; names that are no course parameter are left alone."""
    for name, rule in NOTEBOOK_RULES.items():
        if name in namespace and (wrong := problem(rule, namespace[name])):
            raise CatdogError(f"{name} = {shown(namespace[name])} in the parameters cell: {wrong}; "
                              "edit the parameters cell and run it again.")
