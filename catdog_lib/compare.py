"""Compare two models on the same photos, and summarize a number measured over several seeds.

Two classifiers scored on the same photos disagree on only some of them; those photos carry the whole
difference. :func:`paired` counts them (B right where A was wrong, and the reverse), tests whether the
split could be chance (exact McNemar: a fair coin for each changed photo), and gives a 95% paired
bootstrap interval of the accuracy difference. Notebook 03 shows :func:`paired`'s code; 04 and 05 reuse it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import binomtest

ALPHA = 0.05  # a difference is "shown" when McNemar's p is below this


@dataclass(frozen=True)
class Paired:
    """Two models' answers on the same ``n`` photos, and how sure we can be that they differ."""

    names: tuple[str, str]
    n: int
    accuracy: tuple[float, float]
    better: int  # photos B gets right and A gets wrong
    worse: int  # photos B gets wrong and A gets right
    p_value: float  # exact McNemar test (two-sided); 1.0 when no photo changed; a difference is shown below ALPHA
    interval: tuple[float, float]  # 95% paired bootstrap interval of accuracy B - A

    @property
    def difference(self) -> float:
        """Accuracy of B minus accuracy of A."""
        return self.accuracy[1] - self.accuracy[0]

    @property
    def shown(self) -> bool:
        """Whether the split of changed photos is too lopsided for chance (McNemar's p below ALPHA)."""
        return self.p_value < ALPHA

    def verdict(self) -> str:
        a, b = self.names
        if not self.shown:
            return f"no difference shown on these {self.n} photos"
        return f"{b} is {'better' if self.difference > 0 else 'worse'} than {a} on these {self.n} photos (p < {ALPHA})"

    def __str__(self) -> str:
        (a, b), (acc_a, acc_b), (low, high) = self.names, self.accuracy, self.interval
        return (f"{a} {acc_a:.3f} vs {b} {acc_b:.3f} on {self.n} photos: {b} right where {a} was wrong on "
                f"{self.better}, the reverse on {self.worse}\n"
                f"McNemar p = {self.p_value:.3g}; 95% bootstrap interval of {b} - {a}: {low:+.3f} to {high:+.3f}\n"
                f"{self.verdict()}")


def paired(labels: ArrayLike, predictions_a: ArrayLike, predictions_b: ArrayLike, names: tuple[str, str] = ("A", "B"),
           seed: int = 0, n_boot: int = 2000) -> Paired:
    """Compare two models' predictions on the same photos: changed photos, McNemar's p, bootstrap interval."""
    labels, a, b = (np.asarray(x).ravel() for x in (labels, predictions_a, predictions_b))
    if not len(labels) == len(a) == len(b) > 0:
        raise ValueError(f"need the same photos for both: {len(labels)} labels, {len(a)} and {len(b)} predictions")
    right_a, right_b = a == labels, b == labels
    better, worse = int((right_b & ~right_a).sum()), int((right_a & ~right_b).sum())
    changed = better + worse
    p_value = binomtest(better, changed, 0.5).pvalue if changed else 1.0  # each changed photo: a fair coin?
    gain = right_b.astype(float) - right_a.astype(float)  # +1, 0 or -1 per photo
    resampled = np.random.default_rng(seed).integers(0, len(gain), size=(n_boot, len(gain)))
    low, high = np.percentile(gain[resampled].mean(axis=1), [2.5, 97.5])  # the middle 95%
    return Paired(tuple(names), len(labels), (float(right_a.mean()), float(right_b.mean())),
                  better, worse, float(p_value), (float(low), float(high)))


def spread(values: Sequence[float]) -> str:
    """Mean ± standard deviation over seeds, with the range: ``0.951 ± 0.012 (sd over 3 seeds; 0.937-0.962)``."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        raise ValueError("no values to summarize")
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed: no spread measured)"
    return (f"{values.mean():.3f} ± {values.std(ddof=1):.3f} "
            f"(sd over {len(values)} seeds; {values.min():.3f}-{values.max():.3f})")
