"""Notebook 05's reliability diagram. The calibration code a student reads and edits (the bins, the expected
calibration error, the temperature fit) is written out in the notebook; this module only draws it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..errors import CatdogError

Bins = tuple[Sequence[int], Sequence[float], Sequence[float]]  # each bin's photo count, mean confidence, accuracy


def plot_reliability(diagrams: Mapping[str, Bins], low: float = 0.5) -> Figure:
    """One reliability diagram per entry (its title -> equal-width bins from ``low`` to 1): each bin's accuracy
    as a bar, its mean confidence as a dot (a calibrated model's dots sit on the bars' tops, on the diagonal),
    and how many photos it holds; empty bins stay blank."""
    if not diagrams or not 0 <= low < 1:
        raise CatdogError(f"plot_reliability needs at least one diagram and 0 <= low < 1 (got {len(diagrams)}, {low}).")
    fig = Figure(figsize=(4.2 * len(diagrams), 4.5), layout="constrained")
    for ax, (title, (count, confidence, accuracy)) in zip(fig.subplots(1, len(diagrams), squeeze=False)[0],
                                                          diagrams.items()):
        count, confidence, accuracy = (np.asarray(values, dtype=float) for values in (count, confidence, accuracy))
        edges = np.linspace(low, 1, len(count) + 1)
        full = count > 0
        ax.bar(edges[:-1][full], accuracy[full], width=edges[1] - edges[0], align="edge", color="tab:blue",
               edgecolor="black", label="accuracy of the bin (its photos above it)")
        ax.plot(confidence[full], confidence[full], "o", color="tab:red", label="mean confidence of the bin")
        ax.plot([low, 1], [low, 1], "--", color="gray", label="calibrated")
        for left, n, height in zip(edges[:-1][full], count[full], accuracy[full]):
            ax.text(left + (edges[1] - edges[0]) / 2, min(height, 1) + 0.02, f"{int(n)}", ha="center", fontsize=8)
        ax.set(xlim=(low, 1), ylim=(0, 1.1), xlabel="confidence (probability of the answer)", ylabel="accuracy",
               title=title)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8)
    return fig
