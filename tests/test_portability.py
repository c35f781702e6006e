"""The library on a machine without POSIX-only modules (as on Windows), emulated on Linux.

A ``sitecustomize`` put first on PYTHONPATH makes ``fcntl``, ``resource``, ``termios``, ``pwd``, ``grp``, ``tty``
and ``pty`` unimportable, removes the ``os`` functions Windows lacks before Python 3.13 (``fchmod``, ``pread``,
``pwrite``...) and makes ``spawn`` the start method of worker processes, as on Windows and macOS. It applies to
the worker processes too, since they inherit the environment.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO, make_dataset, public_env, run_unprivileged, subprocess_env

BLOCKED = ("fcntl", "resource", "termios", "pwd", "grp", "tty", "pty")
MISSING_ON_WINDOWS = ("fchmod", "fchown", "pread", "pwrite")

SITECUSTOMIZE = f"""
import multiprocessing, os, sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the portability test)", name=name)

sys.meta_path.insert(0, Blocker())
for name in {MISSING_ON_WINDOWS!r}:
    delattr(os, name)
os.cpu_count = lambda: 4  # so that `catdog train` starts decoding workers (none on 2 cores)
multiprocessing.set_start_method("spawn")
if "spawn_main" in " ".join(sys.orig_argv):  # a worker process: say that one ran
    with open(os.environ["SPAWNED_LOG"], "a") as log:
        log.write(f"{{os.getpid()}}\\n")
"""

# Import every module of the library, then run `catdog train` (python -m catdog_lib) in the same interpreter.
SCRIPT = """
import importlib, pkgutil, runpy, sys
import catdog_lib

for blocked in {blocked!r}:
    try:
        importlib.import_module(blocked)
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit(f"{{blocked}} was importable: the blocker does not work")
names = [m.name for m in pkgutil.walk_packages(catdog_lib.__path__, "catdog_lib.")]
for name in names:
    importlib.import_module(name)
print("imported", len(names), "modules")
sys.argv = ["catdog", *sys.argv[1:]]
runpy.run_module("catdog_lib", run_name="__main__")
"""


def _blocker(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "blocker").mkdir(exist_ok=True)
    (tmp_path / "blocker" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return subprocess_env(PYTHONPATH=f"{tmp_path / 'blocker'}:{REPO}", SPAWNED_LOG=str(tmp_path / "spawned.log"))


def test_library_imports_and_trains_without_posix_only_modules(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data" / "training_set" / "training_set", {"cats": 8, "dogs": 8}).parent.parent
    spawned = tmp_path / "spawned.log"
    env = {**_blocker(tmp_path), "CATDOG_CACHE_DIR": str(tmp_path / "cache")}
    args = ["train", "--data", data, "--out", tmp_path / "run", "--arch", "efficientnet_lite0", "--weights", "none",
            "--epochs", "1", "--quiet"]

    result = subprocess.run([sys.executable, "-c", SCRIPT.format(blocked=BLOCKED), *map(str, args)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    count = sum(1 for path in (REPO / "catdog_lib").rglob("*.py") if path != REPO / "catdog_lib" / "__init__.py")
    assert f"imported {count} modules" in result.stdout
    assert "best valid accuracy" in result.stdout
    assert (tmp_path / "run" / "best.pt").is_file()
    assert spawned.read_text().split(), "no decoding worker was spawned"


CLAIM = """
import sys
from catdog_lib.errors import CatdogError
from catdog_lib.train.runlock import claim_run_folder
try:
    lock = claim_run_folder(sys.argv[1], None, resume=False)
except CatdogError as error:
    print(error)
    raise SystemExit(2)
print("locked", flush=True)
sys.stdin.read()   # hold the run folder until stdin closes
"""


def test_one_run_at_a_time_without_fcntl(tmp_path: Path) -> None:
    """Without fcntl (filelock's lock file instead of flock) a second run on the folder is still refused."""
    out, env = tmp_path / "run", _blocker(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", CLAIM, str(out)], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        second = subprocess.run([sys.executable, "-c", CLAIM, str(out)], env=env, capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
        assert second.returncode == 2, second.stderr
        assert f"another `catdog train` (process {holder.pid}) is using this run folder" in second.stdout
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    again = subprocess.run([sys.executable, "-c", CLAIM, str(out)], env=env, capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
    assert again.stdout == "locked\n"   # released when the first one ended


def test_an_unwritable_out_is_one_clear_line(public_tmp: Path) -> None:
    locked = public_tmp / "locked"
    (locked / "old-run").mkdir(parents=True)
    (locked / "old-run" / ".catdog-run").write_text("")
    for folder in (locked / "old-run", locked):
        folder.chmod(0o555)
    env = public_env(public_tmp, PYTHONPATH=str(REPO))
    for out in (locked / "new-run", locked / "old-run"):
        result = run_unprivileged([sys.executable, "-c", CLAIM, str(out)], capture_output=True, text=True,
                                  env=env, timeout=60, stdin=subprocess.DEVNULL, cwd=public_tmp)
        assert result.returncode == 2 and result.stderr == ""
        assert result.stdout == f"cannot write to {out}: Permission denied. Choose a writable --out folder.\n"
