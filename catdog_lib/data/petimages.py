"""Which photos of Microsoft's PetImages zip the course uses: one rule for the whole-zip download (``download``)
and for the photos read out of the remote zip (``remote_zip``), so that both give the same photos.

PetImages ships no test split: in natural name order, every ``TEST_EVERY``-th usable photo of each class is held
out for the test set. The course uses the first ``COURSE_TRAIN_PER_CLASS`` and ``COURSE_TEST_PER_CLASS`` of them.
"""

from __future__ import annotations

TEST_EVERY = 5
COURSE_TRAIN_PER_CLASS = 1000  # the course-sized subset: as many photos as the Kaggle subset the course
COURSE_TEST_PER_CLASS = 500  # was written for (1000 + 1000 training, 500 + 500 test)
MAX_NAMED_SKIPS = 20  # unusable files named in the one line that reports them; the rest are counted


def split_of(index: int) -> str:
    """The split folder of a class's ``index``-th usable photo (counted from 1 in natural name order)."""
    return "test_set" if index % TEST_EVERY == 0 else "training_set"
