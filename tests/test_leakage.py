"""No photo scored as validation is ever trained on, whatever SEED a student sets in any notebook.

Notebook 01 splits the photos with its SEED and VALID_FRACTION and saves the split; notebooks 03 and 04 (their
worked solutions included, as in the teacher's copy) then run with another SEED each, on a small dataset the
test makes, and every training run's split.json is checked against the validation photos the notebook scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catdog_lib.errors import CatdogError
from catdog_lib.data.layout import find_dataset
from catdog_lib.data.split import Split, stratified_split
from catdog_lib.train.training import TrainConfig, train
from conftest import full_mode_course, make_dataset
from test_notebook_effects import run_notebook

SEED_01, SEED_04, SEED_03 = 3, 7, 7  # a student edits SEED in each notebook, differently
VALID_FRACTION = 0.3
DUMP = """import json
from pathlib import Path
Path({path!r}).write_text(json.dumps({{name: [str(Path(p).resolve()) for p, *_ in value] for name, value in {parts}.items()}}))"""


def paths(samples) -> set[str]:
    return {str(Path(path).resolve()) for path, *_ in samples}


def run_split(run: Path) -> Split:
    return Split.load(run / "split.json")


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Notebook 01 with SEED 3 and VALID_FRACTION 0.3, then 04 and 03 with SEED 7, solutions included; the
    exercises' runs go to folders the test reads instead of temporary ones."""
    base = tmp_path_factory.mktemp("leakage")
    with full_mode_course(base, 24) as data:
        run_notebook("01_download_data.ipynb", {"SEED": SEED_01, "VALID_FRACTION": VALID_FRACTION,
                                                 "DATA_DIR": str(data)})
        (base / "ex04").mkdir()
        run_notebook("04_transfer_learning.ipynb", {
            "EPOCHS": 2, "BATCH_SIZE": 8, "ARCH": "efficientnet_lite0", "PHOTOS_PER_CLASS": 10, "FINETUNE_EPOCHS": 1,
            "CURVE_SIZES": (4, 8), "CURVE_SEEDS": 2, "CURVE_EPOCHS": 1, "SCRATCH_SIZE": 32, "SEED": SEED_04,
            "COMPARE_SEEDS": 1, "COMPARE_EPOCHS": 1, "WHOLE_PER_CLASS": 3,
            "DATA_DIR": str(data)},
            {'tempfile.TemporaryDirectory(prefix="catdog-04-")': f"contextlib.nullcontext({str(base / 'ex04')!r})"},
            after=DUMP.format(path=str(base / "04.json"), parts='{"train": split.train, "valid": split.valid, '
                              '"curve_train": zip(batches.train.paths), "curve_valid": zip(batches.valid.paths), '
                              '"whole_train": whole_train}'))
        run_notebook("03_augmentation.ipynb", {"SEED": SEED_03, "PER_CLASS": 4, "SEEDS": 2, "EPOCHS": 2,
                                               "DATA_DIR": str(data)},
                     {'tempfile.TemporaryDirectory(prefix="catdog-03-")':
                      f"__import__('contextlib').nullcontext(f'{base}/ex03-{{flip_p}}')"},
                     after=DUMP.format(path=str(base / "03.json"), parts='{"valid": pool.valid}'))
    return {"base": base, "data": data, "01": Split.load(base / "runs" / "course-split.json"),
            "04": json.loads((base / "04.json").read_text()), "03": json.loads((base / "03.json").read_text())}


def test_01s_split_is_the_one_its_seed_made_and_another_seed_would_differ(course):
    saved = course["01"]
    assert (saved.seed, saved.valid_fraction) == (SEED_01, VALID_FRACTION)
    folders = find_dataset(course["data"]).train()
    for other in (42, SEED_04):  # a split made with the tutorial's or 04's seed would put 01's valid photos in training
        assert not paths(stratified_split(folders, VALID_FRACTION, other).train).isdisjoint(paths(saved.valid))


def test_04_scores_01s_validation_photos_and_trains_on_none_of_them(course):
    nb, valid = course["04"], paths(course["01"].valid)
    assert set(nb["valid"]) == valid and set(nb["curve_valid"]) == valid  # sections 6 and 10 score the same photos
    assert len(nb["train"]) == 2 * 10  # PHOTOS_PER_CLASS took effect
    assert len(nb["whole_train"]) == 2 * 3 and set(nb["whole_train"]) <= set(nb["train"])  # section 9's whole network
    for trained in (set(nb["train"]), set(nb["curve_train"]), set(nb["whole_train"])):
        assert trained and trained.isdisjoint(valid)


@pytest.mark.parametrize("run", ["runs/course", "ex04/run"])
def test_every_04_run_trains_on_01s_training_photos_only(course, run):
    """Section 6's run and exercise 2's (a solution cell: it runs in the teacher's notebook)."""
    split, valid = run_split(course["base"] / run), paths(course["01"].valid)
    assert paths(split.train) and paths(split.train).isdisjoint(valid)
    assert paths(split.valid) == valid


@pytest.mark.parametrize("flip", ["0.0", "0.3"])
def test_03s_runs_train_on_none_of_the_photos_it_scores(course, flip):
    """03's exercise 2 trains with training.train and scores its models on 01's validation photos."""
    split, scored = run_split(course["base"] / f"ex03-{flip}" / "run"), set(course["03"]["valid"])
    assert scored == paths(course["01"].valid)
    assert paths(split.train) and paths(split.train).isdisjoint(scored)


def test_another_seed_keeps_the_split(tiny_dataset: Path, tmp_path: Path):
    splits = []
    for seed in (1, 2):
        train(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / f"seed{seed}"), arch="efficientnet_lite0",
                          epochs=1, batch_size=4, seed=seed, progress=False))
        splits.append(json.loads((tmp_path / f"seed{seed}" / "split.json").read_text()))
    assert splits[0]["train"] == splits[1]["train"] and splits[0]["valid"] == splits[1]["valid"]
    assert splits[0]["seed"] == 42  # the split's own seed, the tutorial's random_state


def test_a_split_file_of_other_data_is_one_clear_line(tmp_path: Path):
    ours, theirs = make_dataset(tmp_path / "ours"), make_dataset(tmp_path / "theirs")
    stratified_split(find_dataset(theirs).train()).save(tmp_path / "theirs.json")
    with pytest.raises(CatdogError, match="this split is of") as error:
        train(TrainConfig(data=str(ours), out=str(tmp_path / "run"), split_file=str(tmp_path / "theirs.json"),
                          epochs=1, progress=False))
    assert "\n" not in str(error.value)
