"""What the timed parts share: the photos they draw on (the tutorial's 80/20 split of the training set),
the batch of photos the profile times and extraction warms up on, and waiting for queued GPU work so
that a timing covers it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from catdog_lib.data.layout import find_dataset
from catdog_lib.data.split import Split, stratified_split

PROFILE_BATCH = 32


def split_photos(root: Path) -> Split:
    """The tutorial's stratified 80/20 split of the training photos."""
    return stratified_split(find_dataset(root).train())


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

