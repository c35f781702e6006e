"""notebook.setup() in a real IPython shell: a CatdogError is one line, anything else a full traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import run_python

SHELL = r"""
import json, sys
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

shell = InteractiveShell.instance(colors="nocolor")
shell.run_cell("from catdog_lib import notebook\nnotebook.setup()")
results = {}
missing = sys.argv[1]
for name, code in (("catdog", f"from pathlib import Path\nfrom catdog_lib.data.layout import find_dataset\nfind_dataset(Path({missing!r}))"),
                   ("other", "1 / 0")):
    with capture_output() as captured:
        result = shell.run_cell(code)
    results[name] = {"out": captured.stdout + captured.stderr, "failed": not result.success}
print(json.dumps(results))
"""


def test_setup_shows_a_catdog_error_as_its_message_alone(tmp_path: Path):
    missing = tmp_path / "no-photos-here"
    result = run_python(SHELL, missing)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.strip().splitlines()[-1])

    catdog = shown["catdog"]
    assert catdog["failed"]  # still an error: "Run All" stops there
    lines = [line for line in catdog["out"].splitlines() if line.strip()]
    assert len(lines) == 1, catdog["out"]
    assert re.sub(r"\x1b\[[0-9;]*m", "", lines[0]).startswith(f"CatdogError: {missing}: no such folder")
    assert "Traceback" not in catdog["out"] and "layout.py" not in catdog["out"]

    other = shown["other"]  # bugs keep their traceback
    assert other["failed"] and "ZeroDivisionError" in other["out"] and "Traceback" in other["out"]


def test_setup_outside_ipython_does_nothing(tmp_path: Path):
    result = run_python("from catdog_lib import notebook; notebook.setup(); print('ok')")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_kaggle_credentials_present_sees_every_mechanism(tmp_path: Path):
    code = "from catdog_lib import notebook; print(notebook.kaggle_credentials_present())"
    home = tmp_path / "home"
    home.mkdir()
    base = {"HOME": str(home)}

    def present(**env: str) -> str:
        from conftest import subprocess_env

        environment = {k: v for k, v in subprocess_env(**base, **env).items()
                       if not (k.startswith("KAGGLE_") and k not in env)}
        return run_python(code, env=environment).stdout.strip()

    assert present() == "False"
    assert present(KAGGLE_API_TOKEN="abc") == "True"
    assert present(KAGGLE_USERNAME="student") == "False"
    assert present(KAGGLE_USERNAME="student", KAGGLE_KEY="0123") == "True"
    (home / ".kaggle").mkdir()
    (home / ".kaggle" / "access_token").write_text("abc")
    assert present() == "True"
