"""The committed notebooks' shape: clean, one literal parameters cell, a Colab badge, the lesson's code.

Executing them is nbval's job: `pytest --nbval-lax --nbval-current-env notebooks/`; what their edits do
is tested in tests/test_notebook_effects.py.
"""

from __future__ import annotations

import ast
import inspect
import re

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from catdog_lib import compare, evaluation, finetune, gradcam, training
from catdog_lib import notebook as course_notebook
from catdog_lib.classroom.runner import NOTEBOOK_DIR, NOTEBOOKS


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def code_cells(nb: nbformat.NotebookNode) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def parse(cell) -> ast.Module:
    """A code cell as Python (IPython magics turned into calls)."""
    return ast.parse(TransformerManager().transform_cell(cell.source))


def test_the_six_notebooks_in_order():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == list(NOTEBOOKS)


@pytest.fixture(params=NOTEBOOKS)
def notebook(request) -> tuple[str, nbformat.NotebookNode]:
    nb = read(request.param)
    nbformat.validate(nb)
    return request.param, nb


@pytest.fixture
def nb(notebook) -> nbformat.NotebookNode:
    return notebook[1]


def test_only_compared_cells_carry_outputs_and_the_others_say_why(nb):
    """Strict `pytest --nbval` compares the committed outputs (make notebook-outputs writes them): only
    printed text that does not depend on the data, the machine or the clock; every other cell is tagged."""
    for cell in code_cells(nb):
        tags = cell.metadata.get("tags", [])
        if cell.outputs:
            assert all(out.output_type == "stream" and out.name == "stdout" for out in cell.outputs), cell.source[:80]
            assert "nbval-ignore-output" not in tags and cell.execution_count is not None
        else:
            assert cell.execution_count is None, cell.source[:80]
        if "nbval-ignore-output" in tags:
            assert cell.metadata["catdog"]["nbval"].startswith("output not compared: "), cell.source[:80]


def test_runs_on_the_python3_kernel(nb):
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_colab_badge_first(notebook):
    name, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert f"({course_notebook.colab_url(name)})" in first.source and "colab-badge.svg" in first.source
    assert course_notebook.REPOSITORY.removeprefix("https://github.com/") in course_notebook.colab_url(name)


def test_install_cell_only_acts_on_colab(nb):
    install = code_cells(nb)[0]
    tree = parse(install)
    guarded = [node for node in tree.body if isinstance(node, ast.If)]
    assert guarded and ast.unparse(guarded[0].test) == "'google.colab' in sys.modules"
    assert not any(isinstance(node, ast.Expr) and "pip" in ast.unparse(node) for node in tree.body)


def test_install_cell_installs_the_release_from_the_repository(nb):
    """One pip install of the package at the release tag: no clone, no -e, no extras, no upgrades."""
    install = code_cells(nb)[0].source
    assert install == course_notebook.install_cell()
    requirement = f"{course_notebook.DISTRIBUTION} @ git+{course_notebook.REPOSITORY}@{course_notebook.RELEASE}"
    assert f'PACKAGE = "{requirement}"' in install
    assert '[sys.executable, "-m", "pip", "install", "--quiet", PACKAGE]' in install   # no -e, -U, --force
    for word in (" -e ", "--upgrade", " -U ", "clone", "[", "--force"):
        assert word not in requirement


def test_repository_url_is_the_packages_homepage():
    import tomllib

    project = tomllib.loads((NOTEBOOK_DIR.parent / "pyproject.toml").read_text())["project"]
    assert project["urls"]["Homepage"] == course_notebook.REPOSITORY
    assert project["name"] == course_notebook.DISTRIBUTION


def test_one_parameters_cell_of_literal_values(nb):
    tagged = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    cell = tagged[0]
    assert cell.cell_type == "code" and cell is code_cells(nb)[1]
    statements = ast.parse(cell.source).body
    assert statements
    for statement in statements:
        assert isinstance(statement, ast.Assign), ast.unparse(statement)
        assert [type(t) for t in statement.targets] == [ast.Name] and statement.targets[0].id.isupper()
        ast.literal_eval(statement.value)  # raises for anything but a literal
    assert "SEED" in {s.targets[0].id for s in statements}


def test_seeds_and_honours_fast_mode_after_the_parameters(nb):
    derived = code_cells(nb)[2].source
    assert "devices.set_seed(SEED)" in derived
    assert "config.fast_mode()" in derived
    assert "course.course_data_root(DATA_DIR)" in derived  # the data root is a parameter


def test_no_notebook_picks_its_own_backbone_but_04_and_02():
    """04 trains with its ARCH; 02 shows what a backbone expects (its exercise 4 changes ARCH); the others
    use 04's model or the default backbone."""
    for name in NOTEBOOKS:
        params = [cell for cell in read(name).cells if "parameters" in cell.metadata.get("tags", [])][0]
        assert ("ARCH =" in params.source) == (name in ("02_visualize_data.ipynb", "04_transfer_learning.ipynb")), name


@pytest.mark.parametrize("definition", [training.EarlyStopping, training.train_epoch, training.validate,
                                        finetune.StageNet])
def test_the_training_code_04_teaches_is_the_code_catdog_train_runs(definition):
    """d2l's rule: the code is shown where it is taught, and the library reuses that very code."""
    sources = [cell.source for cell in code_cells(read("04_transfer_learning.ipynb"))]
    assert inspect.getsource(definition).strip() in sources


def test_the_comparison_03_teaches_is_the_code_the_library_runs():
    """03 shows the paired comparison where it is first used; 05 reuses the library's copy."""
    sources = [cell.source for cell in code_cells(read("03_augmentation.ipynb"))]
    assert any(inspect.getsource(compare.paired).strip() in source for source in sources)
    assert "compare.paired(" in "\n".join(cell.source for cell in code_cells(read("05_evaluate.ipynb")))


@pytest.mark.parametrize("definition", [evaluation.evaluation_loop, evaluation.confusion_precision_recall,
                                        gradcam.grad_cam])
def test_the_evaluation_code_05_teaches_is_the_code_the_library_runs(definition):
    """05 runs its own copies (tests/test_notebook05_edits.py); `catdog evaluate` runs the library's, the same code."""
    sources = [cell.source for cell in code_cells(read("05_evaluate.ipynb"))]
    assert any(inspect.getsource(definition).strip() in source for source in sources)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_code_cells_a_student_can_read(name):
    """No code cell over 25 lines."""
    for cell in code_cells(read(name)):
        assert len(cell.source.splitlines()) <= 25, cell.source[:80]


def test_04_shows_the_lesson_as_code():
    source = "\n".join(cell.source for cell in code_cells(read("04_transfer_learning.ipynb")))
    for piece in ("vgg.classifier[3] = nn.Linear(4096, 512)", "vgg.classifier[6] = nn.Linear(512, 2)",
                  "torchvision.models.vgg16_bn(weights=None)", "parameter.requires_grad = False",
                  "nn.CrossEntropyLoss()", "torch.optim.Adam(model.head.parameters(), lr=LEARNING_RATE)",
                  "ReduceLROnPlateau(optimizer", "optimizer.zero_grad()", "loss.backward()", "optimizer.step()",
                  "scheduler.step(valid_loss)", "stopper.step(valid_loss)", "run.save_best(model, row)",
                  "run.writer.add_scalar(", "ImageFolder(", "Subset(", "transforms.train_transform(PREP, FLIP_P)"):
        assert piece in source, piece
    for pitfall in range(1, 6):  # each of the tutorial's mistakes, and fine-tuning's, taught in a box
        assert f"**Pitfall {pitfall} " in "\n".join(c.source for c in read("04_transfer_learning.ipynb").cells)


def test_checks_its_facts(nb):
    """Committed notebooks have no outputs to compare, so their cells assert what must hold."""
    asserting = [cell for cell in code_cells(nb)
                 if any(isinstance(node, ast.Assert) for node in ast.walk(parse(cell)))]
    assert len(asserting) >= 3


@pytest.mark.parametrize("name", ["05_evaluate.ipynb", "06_save_and_load.ipynb"])
def test_later_notebooks_train_if_needed(name):
    assert "course.ensure_course_checkpoint(DATA_ROOT)" in code_cells(read(name))[2].source


def test_training_notebook_starts_fresh_and_trains():
    source = "\n".join(cell.source for cell in code_cells(read("04_transfer_learning.ipynb")))
    assert "course.fresh_course_run(RUN_DIR)" in source and "train_epoch(model.head" in source
    assert 'device=summary_device' in source  # torchsummary defaults to CUDA


# --- the classroom kit: objectives, summary, exercises, worked solutions -----------------------------


def markdown_starting(nb: nbformat.NotebookNode, heading: str) -> list[int]:
    return [i for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown" and cell.source.startswith(heading)]


def numbered_items(text: str) -> list[int]:
    return [int(line.split(".")[0]) for line in text.splitlines() if re.match(r"\d+\. ", line)]


def test_learning_objectives_right_after_the_title_and_install_cells(nb):
    install = nb.cells.index(code_cells(nb)[0])
    assert markdown_starting(nb, "## Learning objectives") == [install + 1]
    bullets = [line for line in nb.cells[install + 1].source.splitlines() if line.startswith("- ")]
    assert 3 <= len(bullets) <= 5


def test_ends_with_summary_then_exercises(nb):
    (summary,) = markdown_starting(nb, "## Summary")
    (exercises,) = markdown_starting(nb, "## Exercises")
    assert summary < exercises
    text = nb.cells[exercises].source
    items = numbered_items(text)
    assert items == list(range(1, len(items) + 1)) and 3 <= len(items) <= 6
    assert "**Question.**" in text and "**Try it.**" in text  # questions and hands-on tasks
    after = nb.cells[exercises + 1:]
    assert all(cell.cell_type == "markdown" or "solution" in cell.metadata.get("tags", []) for cell in after)


def test_worked_solutions_are_tagged_and_name_their_exercise(nb):
    (exercises,) = markdown_starting(nb, "## Exercises")
    items = numbered_items(nb.cells[exercises].source)
    solutions = [cell for cell in code_cells(nb) if "solution" in cell.metadata.get("tags", [])]
    assert solutions
    for cell in solutions:
        match = re.match(r"# Exercise (\d+): \S", cell.source)
        assert match and int(match.group(1)) in items, cell.source[:80]
        assert nb.cells.index(cell) > exercises


def test_no_test_runner_markers_in_what_a_student_reads(nb):
    """Which outputs nbval compares is kept in metadata (tools/nbval_outputs.py), not in the cells' text."""
    for cell in nb.cells:
        text = cell.source.lower()
        assert "nbval" not in text and "papermill" not in text and "pytest" not in text, cell.source[:80]
