"""`make bench`: the tutorial's recipe against this project's default recipe, on the same photos.

Each part runs in its own spawned process, so its peak memory is its own:

1. tutorial: VGG16_bn with frozen features and the tutorial's head, batch 4, plain PIL decoding,
   no workers, a full forward every step; seconds per training photo over a fixed number of batches;
2. extraction: images/s of this project's default backbone through ``compute_features``, decode included,
   on the inference engine the library picks (``catdog_lib/model/engine.py``);
3. recipe: ``catdog train`` defaults run in full with a cold cache (features and exported backbone), then
   a warm one; the best checkpoint evaluated on the test split; where the backbone ran in int8, the same
   run again in float32 (``CATDOG_ENGINE=openvino``), its accuracy reference;
4. course (``--no-course`` skips it): ``make run`` (all six notebooks through ``catdog course``) and its
   fast mode, each from a cold cache: seconds per notebook;
5. profile (``--no-profile`` skips it): decode variants, and the backbone's forward pass on each engine
   and precision, side by side on a batch of 32 (images/s and agreement with PyTorch float32);
6. scale (``--scale``): the default recipe on 2k, 5k and 10k distinct photos made from the shared ones.

Prints a markdown table, writes ``runs/bench.json`` and a section of ``docs/BENCHMARKS.md`` per machine.
``--avx2`` plays a CPU without AVX-512 on one that has it: oneDNN (inside PyTorch and OpenVINO) and ATen
capped at AVX2, its own section (OpenVINO's few kernels outside oneDNN are not capped).
``--quick`` (or BENCH_QUICK=1) shortens parts 1, 2 and 5 and runs only the fast course, to prove the script
works; part 3 always runs in full.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision import transforms as T

from catdog_lib import engine
from catdog_lib.model.backbones import DEFAULT_ARCH, create_model, get_arch
from catdog_lib.config import CACHE_ENV, DATA_ENV, REPO_ROOT, RUNS_ENV
from catdog_lib.data.datasets import SkippedFiles
from catdog_lib.devices import ISA_CAP_ENV, cpu_class, cpu_model, describe_device, instruction_sets, pick_device, set_seed
from catdog_lib.model.engine import ENGINE_ENV, ENGINES, INT8, backbone_runner, engine_identity, engine_name
from catdog_lib.errors import CatdogError
from catdog_lib.infer.evaluation import evaluate_folder, load_model
from catdog_lib.model.features import calibration_photos, compute_features, training_views
from catdog_lib.data.images import load_rgb
from catdog_lib.data.layout import find_dataset
from catdog_lib.data.split import Split, stratified_split
from catdog_lib.train.training import TrainConfig, train
from catdog_lib.data.transforms import eval_transform, train_transform

TARGET_ACCURACY = 0.975
TUTORIAL_EPOCHS_TO_TARGET = 2  # the tutorial's log first passes 97.5% valid accuracy after its 2nd epoch
TUTORIAL_BATCH_SIZE = 4
WARMUP_BATCHES = 2
PROFILE_BATCH = 32
GB = 1e9
SCALE_SIZES = (2000, 5000, 10000)
PETIMAGES_PHOTOS = 25000  # the full Microsoft PetImages set, for the scale extrapolation
GOALS = {  # name: (description, test)
    "cold_s": ("<= 35 s", lambda value: value <= 35),
    "warm_s": ("<= 3 s", lambda value: value <= 3),
    "backbone_images_per_s": (">= 120 images/s", lambda value: value >= 120),
    "ratio": (">= 30x", lambda value: value >= 30),
    "memory_bytes": ("<= 1.5 GB", lambda value: value <= 1.5 * GB),
    "course_fast_s": ("<= 60 s", lambda value: value <= 60),
    "course_full_s": ("<= 150 s", lambda value: value <= 150),
    "notebook_s": ("each <= 60 s (04 <= 120 s in full)", lambda value: value <= 0),  # value: seconds over
    "accuracy_kept": ("within 0.1 point of float32", lambda value: round(value, 9) >= -0.001),
    "finetune_ratio": ("<= 4x the default's cold run", lambda value: value <= 4),
}
INTRO = """# Benchmarks

`make bench` (`benchmarks/bench.py`) times the tutorial's recipe and this project's default recipe on
the same photos (`$CATDOG_DATA_DIR`: 2,000 training photos split 1,600 train / 400 valid, 1,000 test).

- **Tutorial**: VGG16_bn with frozen features and the tutorial's head, batch size 4, plain PIL decoding,
  `num_workers=0`, Adam (lr 1e-4), a full forward through the backbone every step. A fixed number of
  training batches is timed (after two warm-up batches); its time to 97.5% valid accuracy is estimated as
  seconds per photo x 1,600 training photos x 2 epochs, the epoch where its log first passes 97.5%
  (its validation photos are not counted).
- **Ours**: `catdog train` with its defaults (EfficientNet-Lite2 features computed once per photo and view
  on the inference engine the library picks, cached, then the head trained on them), run in full with a
  cold cache (no features, no exported or quantized backbone) and again with a warm one, then evaluated
  on the test split. Its time to 97.5% is the cold run's set-up and feature extraction plus head training
  up to the first epoch at or above 97.5% valid accuracy. Where the backbone ran in int8 (CPUs with VNNI or
  AMX), the same run in float32 is the accuracy reference: valid and test accuracy, and how many test
  photos the two answer differently.
- **Extraction**: images/s through the default backbone, JPEG decoding included. Each photo is decoded
  once and goes through the backbone twice (plain and flipped view), so photos/s is half of that.
- **Peak memory**: each part runs in its own process; its peak RSS (`getrusage`), and the peak of its
  memory together with its data-loading worker (PSS, sampled every second). The goal applies to the larger.
- **Profile**: decoding, and the backbone's forward pass on each engine and precision installed, timed
  side by side in one process on the same batch of 32 photos, with the lowest cosine similarity of a
  photo's features to PyTorch float32's (float32 engines are used at >= 0.999; int8 is judged by how
  its features classify, above).
- **Machine**: the CPU's instruction sets and its class (AVX2, AVX-512, AVX512-BF16, AMX) head each
  section; figures are quoted per class. `make bench ARGS=--avx2` caps oneDNN and ATen at AVX2
  (`ONEDNN_MAX_CPU_ISA=AVX2`, `ATEN_CPU_CAPABILITY=avx2`) to play a laptop without AVX-512; its section
  says "emulated".
- **Course**: `make run` (`catdog course`: the six notebooks in order, each in a fresh kernel) and its
  fast mode, each from a cold feature cache and an empty runs folder; the seconds of each notebook as
  the course's summary gives them (kernel start included), and their sum (`--no-course` skips it).

Goals (issue 21, set for a 2-core CPU without AVX-512): the default recipe at most 35 s cold and 3 s warm
for 2,000 photos; extraction at least 120 images/s; time to 97.5% valid accuracy at least 30x shorter
than the tutorial's; peak memory at most 1.5 GB; an int8 backbone's accuracy within 0.1 point of
float32's on the valid and test splits; the course at most 150 s of notebooks in full and 60 s in fast
mode, each notebook at most 60 s (04 at most 120 s in full). These are goals, not gates: each run
records whether it met them. `make bench` rewrites the section of the machine it runs on; `make bench ARGS=--scale` adds
how the time grows with 2k, 5k and 10k photos.
"""


# ---------------------------------------------------------------- report helpers (tests/test_bench.py)

def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table with columns padded to equal width."""
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """CPU, core and thread counts, torch version and the device the recipes run on."""
    device = pick_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    isa = instruction_sets()
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "isa_cap": os.environ.get(ISA_CAP_ENV, ""),
            "torch": str(torch.__version__), "device": name, "isa": isa, "cpu_class": cpu_class(isa),
            "engine": engine_identity(device) if engine_name(device) != INT8 else ENGINES[INT8].identity,
            "gpu": describe_device(device) if device.type == "cuda" else None}


def machine_label(machine: dict[str, Any]) -> str:
    """The heading a machine's section has in BENCHMARKS.md."""
    cpu_class = machine.get("cpu_class", "?")
    if machine.get("isa_cap"):
        cpu_class += f", emulated: {ISA_CAP_ENV}={machine['isa_cap']}"
    return f"{machine['cpu']} ({cpu_class}) · {machine['cores']} cores · {machine['device']}"


def process_rss_bytes() -> int:
    """Peak resident bytes of this process alone (getrusage; KiB on Linux, bytes on macOS)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _descendants(pid: int) -> list[int]:
    """Live child processes of ``pid``, recursively (Linux /proc)."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in map(int, children.read_text().split()):
                found += [child, *_descendants(child)]
    return found


def _pss_bytes(pid: int) -> int:
    """Proportional set size of ``pid``: its resident memory, pages shared with others counted pro rata."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Samples the PSS of this process plus its data workers every ``interval`` seconds; keeps the peak.

    getrusage's RUSAGE_CHILDREN cannot give this: it only sees finished children, and a process
    inherits its parent's value. Forked workers share pages with their parent; PSS counts them once.
    """

    def __init__(self, interval: float = 1.0):  # reading PSS walks page tables: ~10-30 ms per GB
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        """Add one reading of the process tree's PSS."""
        pid = os.getpid()
        self.peak_bytes = max(self.peak_bytes, sum(map(_pss_bytes, [pid, *_descendants(pid)])))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def format_memory(memory: dict[str, int]) -> str:
    """'1.45 GB (process RSS 1.30; with data workers, PSS 1.45)'."""
    return (f"{memory['bytes'] / GB:.2f} GB (process RSS {memory['process_rss_bytes'] / GB:.2f}; "
            f"with data workers, PSS {memory['tree_pss_bytes'] / GB:.2f})")


def tutorial_time_to_target(seconds_per_photo: float, photos_per_epoch: int) -> float:
    """The tutorial's time to 97.5% valid accuracy: every training photo, for its 2 epochs."""
    return seconds_per_photo * photos_per_epoch * TUTORIAL_EPOCHS_TO_TARGET


def ours_time_to_target(wall_s: float, history: list[dict], target: float = TARGET_ACCURACY) -> float | None:
    """Wall time of a run up to the end of its first epoch with valid accuracy >= ``target``.

    Set-up and feature extraction are the run's wall time less all epochs; None if never reached.
    """
    setup_s = wall_s - sum(row["seconds"] for row in history)
    elapsed = setup_s
    for row in history:
        elapsed += row["seconds"]
        if row["valid_accuracy"] >= target:
            return elapsed
    return None


def goal_mark(name: str, value: float | None) -> tuple[str, str]:
    """(goal, "yes"/"no"/"n/a") for a measured value; no goal gives ("", "")."""
    if name not in GOALS:
        return "", ""
    description, met = GOALS[name]
    return description, "n/a" if value is None else ("yes" if met(value) else "no")


def results_rows(results: dict[str, Any]) -> list[list[str]]:
    """The summary table's rows: measure, value, goal, met."""
    tut, ext, rec, ttt = results["tutorial"], results["extraction"], results["recipe"], results["time_to_target"]

    def row(label: str, text: str, goal: str = "", value: float | None = None) -> list[str]:
        return [label, text, *goal_mark(goal, value)]

    ratio = ttt["ratio"]
    return [
        row(f"Tutorial: seconds per training photo (VGG16_bn, batch {TUTORIAL_BATCH_SIZE})",
            f"{tut['seconds_per_photo']:.3f} s"),
        row(f"Ours: feature extraction ({ext['arch']} on {ext['engine']}, decode included)",
            f"{ext['forwards_per_s']:.1f} images/s through the backbone "
            f"({ext['images_per_s']:.1f} photos/s x 2 views)",
            "backbone_images_per_s", ext["forwards_per_s"]),
        row("Ours: default recipe, full run, cold cache", f"{rec['cold_s']:.1f} s", "cold_s", rec["cold_s"]),
        row("Ours: default recipe, full run, warm cache", f"{rec['warm_s']:.1f} s", "warm_s", rec["warm_s"]),
        row("Ours: best valid accuracy", f"{rec['valid_accuracy']:.2%} (epoch {rec['best_epoch']})"),
        row(f"Ours: test accuracy ({rec['test_n']} photos)",
            f"{rec['test_accuracy']:.2%} (evaluated in {rec['test_s']:.1f} s, cold cache)"),
        *int8_rows(results.get("float32"), rec),
        row("Tutorial: time to 97.5% valid (estimate)", f"{ttt['tutorial_s']:.0f} s"),
        row("Ours: time to 97.5% valid (cold cache)",
            "not reached" if ttt["ours_s"] is None else f"{ttt['ours_s']:.1f} s"),
        row("Time to 97.5% valid: tutorial / ours", "n/a" if ratio is None else f"{ratio:.1f}x", "ratio", ratio),
        *finetune_rows(results.get("finetune"), rec),
        row("Peak memory: tutorial", format_memory(tut["memory"])),
        row("Peak memory: ours (default recipe + evaluation)", format_memory(rec["memory"]),
            "memory_bytes", rec["memory"]["bytes"]),
    ]


def int8_rows(f32: dict[str, Any] | None, rec: dict[str, Any]) -> list[list[str]]:
    """The default recipe's accuracy on an int8 backbone against the same recipe in float32 (none without int8)."""
    if not f32:
        return []
    kept = min(rec["valid_accuracy"] - f32["valid_accuracy"], rec["test_accuracy"] - f32["test_accuracy"])
    differ = sum(a != b for a, b in zip(rec["test_answers"], f32["test_answers"]))
    return [[f"Ours: accuracy on {rec['engine']} vs float32 (same recipe, cold run {f32['cold_s']:.1f} s)",
             f"valid {rec['valid_accuracy']:.2%} vs {f32['valid_accuracy']:.2%}, test {rec['test_accuracy']:.2%} vs "
             f"{f32['test_accuracy']:.2%}; {differ} of {f32['test_n']} test answers differ",
             *goal_mark("accuracy_kept", kept)]]


def finetune_rows(fine: dict[str, Any] | None, rec: dict[str, Any]) -> list[list[str]]:
    """Rows for the finetune recipe beside the default one (none when it was not run)."""
    if not fine:
        return []
    ratio = fine["cold_s"] / rec["cold_s"]
    (head_acc, head_loss), (acc, loss) = fine["head_valid"], fine["valid"]
    return [[f"Ours: finetune recipe, full run, cold cache ({fine['stages']['finetune']['epochs']} fine-tuning epochs)",
             f"{fine['cold_s']:.1f} s = {ratio:.1f}x the default's", *goal_mark("finetune_ratio", ratio)],
            ["Ours: finetune recipe, valid accuracy / loss",
             f"head stage {head_acc:.2%} / {head_loss:.4f} -> kept ({fine['kept']}) {acc:.2%} / {loss:.4f}", "", ""],
            [f"Ours: finetune recipe, test accuracy ({fine['test_n']} photos)", f"{fine['test_accuracy']:.2%}", "", ""]]


def course_rows(courses: list[dict[str, Any]]) -> list[list[str]]:
    """Rows for each course run: its notebooks' seconds in total and one by one, against the goal."""
    rows = []
    for run in courses:
        label = "Course: `CATDOG_FAST=1 make run`" if run["fast"] else "Course: `make run` (full)"
        each = ", ".join(f"{name[:2]} {seconds:.0f}" for name, seconds in run["notebooks"].items())
        text = f"{run['notebooks_s']:.0f} s of notebooks ({each}); {run['wall_s']:.0f} s wall"
        if not run["ok"]:
            text += f"; FAILED ({run['failure']})"
        rows.append([label, text, *goal_mark("course_fast_s" if run["fast"] else "course_full_s",
                                             run["notebooks_s"] if run["ok"] else None)])
        over = sum(max(0.0, seconds - (120 if name.startswith("04") and not run["fast"] else 60))
                   for name, seconds in run["notebooks"].items())
        rows.append([f"{label}: each notebook's Run all", f"{over:.0f} s over in all",
                     *goal_mark("notebook_s", over if run["ok"] else None)])
    return rows


def machine_rows(machine: dict[str, Any]) -> list[list[str]]:
    """The machine table's rows."""
    return [["CPU", machine["cpu"]],
            ["Instruction sets", f"{machine.get('cpu_class', '?')}: {', '.join(machine.get('isa', [])) or 'none known'}"],
            ["Cores (os.cpu_count)", str(machine["cores"])],
            ["Torch threads", str(machine["torch_threads"])], ["torch", machine["torch"]],
            ["Device", f"{machine['device']} (frozen backbone on {machine['engine']})"],
            ["GPU", f"{machine['gpu']}: the recipes and the course ran on it" if machine.get("gpu")
             else "no GPU on this machine"]]


def profile_rows(profile: dict[str, Any]) -> list[list[str]]:
    """The profile table's rows: stage, variant, images/s, whether the default recipe uses it, agreement."""
    return [[row["stage"], row["variant"], f"{row['images_per_s']:.1f}", "yes" if row["ours"] else "",
             f"{row['min_cosine']:.6f}" if "min_cosine" in row else ""]
            for row in profile["rows"]]


def scale_rows(scale: dict[str, Any]) -> list[list[str]]:
    """The scale table's rows: photos, wall time, backbone images/s, peak memory, feature cache size."""
    return [[f"{row['photos']:,}", f"{row['cold_s']:.1f} s", f"{row['forwards_per_s']:.1f}",
             f"{row['memory']['bytes'] / GB:.2f} GB", f"{row['feature_bytes'] / 1e6:.0f} MB"]
            for row in scale["rows"]]


def scale_estimate(rows: list[dict[str, Any]], photos: int = PETIMAGES_PHOTOS) -> dict[str, float]:
    """Time and feature-cache size for ``photos`` photos, extrapolated from the largest measured size.

    Both grow linearly (each photo costs its forward passes, its head-training share and its vectors).
    """
    largest = max(rows, key=lambda row: row["photos"])
    factor = photos / largest["photos"]
    return {"photos": photos, "seconds": largest["cold_s"] * factor, "feature_bytes": largest["feature_bytes"] * factor}


def report(results: dict[str, Any]) -> str:
    """The markdown printed and written to BENCHMARKS.md: machine, results and (if run) profile tables."""
    machine = results["machine"]
    mode = " — **quick mode**: reduced, not representative" if results["quick"] else ""
    parts = [f"Measured {results['date']}{mode}.", "",
             markdown_table(["Machine", ""], machine_rows(machine)
                            + ([["Photos", results["photos"]]] if results.get("photos") else [])), "",
             markdown_table(["Measure", "Value", "Goal", "Met"],
                            results_rows(results) + course_rows(results.get("course", [])))]
    if results.get("profile"):
        parts += ["", f"Where the time goes ({results['profile']['arch']}, batch of {PROFILE_BATCH} photos, "
                      "variants side by side in one process):", "",
                  markdown_table(["Stage", "Variant", "Images/s", "Default recipe", "Min cosine vs fp32"],
                                 profile_rows(results["profile"]))]
    if results.get("scale"):
        estimate = scale_estimate(results["scale"]["rows"])
        parts += ["", "How the default recipe's cold run grows with the number of distinct photos "
                      "(re-encoded crops of the shared ones; 80/20 train/valid):", "",
                  markdown_table(["Photos", "Cold run", "Backbone passes/s (whole run)", "Peak memory", "Feature cache"],
                                 scale_rows(results["scale"])), "",
                  f"Expected for the full PetImages set ({estimate['photos']:,} photos): about "
                  f"{estimate['seconds'] / 60:.0f} min cold, a feature cache of about "
                  f"{estimate['feature_bytes'] / 1e6:.0f} MB, which training holds in memory."]
    return "\n".join(parts)


MACHINE_HEADING = re.compile(r"^## .+ · \d+ cores · .+$", re.M)


def update_doc(path: Path, heading: str, body: str) -> None:
    """Write ``body`` as the ``## heading`` machine section of ``path``, under the current INTRO.

    The intro (everything before the first ``## `` section) is always replaced by INTRO. The section
    of this machine is replaced, or added after the last machine section; other sections, machine
    ones and hand-written ones such as a closing analysis, are kept verbatim and in place.
    """
    text = path.read_text() if path.exists() else INTRO
    sections = re.split(r"(?m)^(?=## )", text)[1:]
    title = f"## {heading}\n"
    new = f"{title}\n{body.rstrip()}\n\n"
    if any(section.startswith(title) for section in sections):
        kept = [new if section.startswith(title) else section for section in sections]
    else:
        machines = [i for i, section in enumerate(sections) if MACHINE_HEADING.match(section)]
        at = machines[-1] + 1 if machines else 0
        kept = [*sections[:at], new, *sections[at:]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(INTRO.rstrip() + "\n\n" + "".join(section.rstrip() + "\n\n" for section in kept).rstrip() + "\n")


# ---------------------------------------------------------------- the measured parts (each in a child process)

def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a fresh spawned process; its result gains that process's peak memory."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_with_peak_memory, fn, *args).result()


def _with_peak_memory(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` plus the peak memory of the process that ran it (alone, and with its workers)."""
    with PeakMemory() as tree:
        result = fn(*args)
    own = process_rss_bytes()
    return {**result, "memory": {"process_rss_bytes": own, "tree_pss_bytes": tree.peak_bytes,
                                 "bytes": max(own, tree.peak_bytes)}}


def _split(root: Path) -> Split:
    """The tutorial's stratified 80/20 split of the training photos."""
    return stratified_split(find_dataset(root).train())


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tutorial_part(root: Path, batches: int) -> dict[str, Any]:
    """The tutorial's training loop, timed over ``batches`` batches after the warm-up ones."""
    set_seed(42)
    device = pick_device()
    split = _split(root)
    transform = T.Compose([T.Resize([224, 224]), T.RandomHorizontalFlip(0.3), T.ToTensor()])
    folder = datasets.ImageFolder(str(find_dataset(root).train_dir), transform)  # plain PIL, no draft mode
    index = {Path(path): i for i, (path, _) in enumerate(folder.samples)}
    train_set = Subset(folder, [index[Path(path)] for path, _ in split.train])
    loader = DataLoader(train_set, batch_size=TUTORIAL_BATCH_SIZE, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(42))
    model = create_model("vgg16_bn", len(split.classes), weights=None).to(device)  # compute as pretrained
    model.freeze_backbone()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    steps = iter(loader)
    for step in range(WARMUP_BATCHES + batches):
        if step == WARMUP_BATCHES:
            _sync(device)
            started = time.perf_counter()
        images, labels = next(steps)
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        loss.item()  # the tutorial's running loss; also waits for the GPU
    elapsed = time.perf_counter() - started
    photos = batches * TUTORIAL_BATCH_SIZE
    return {"batches": batches, "photos": photos, "seconds": elapsed, "seconds_per_photo": elapsed / photos,
            "photos_per_epoch": len(split.train)}


def extraction_part(root: Path, n_images: int) -> dict[str, Any]:
    """Images/s of the default backbone through ``compute_features`` (no feature cache), after a 1-batch warm-up."""
    device = pick_device()
    split = _split(root)
    prep = get_arch(DEFAULT_ARCH).prep
    backbone = create_model(DEFAULT_ARCH, len(split.classes)).backbone
    views = training_views(train_transform(prep))
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        started = time.perf_counter()
        runner = backbone_runner(backbone, f"{DEFAULT_ARCH}:default", device, cache_root=Path(tmp),
                                 calibration=lambda: calibration_photos(split.train, views, min_size=prep.image_size))
        export_s = time.perf_counter() - started
    run = dict(views=views, skipped=SkippedFiles(), min_size=prep.image_size, progress=False)
    compute_features(runner, split.valid[:PROFILE_BATCH], **run)  # warm-up on other photos
    started = time.perf_counter()
    features, kept = compute_features(runner, split.train[:n_images], **run)
    elapsed = time.perf_counter() - started
    rate = len(kept) / elapsed
    return {"arch": DEFAULT_ARCH, "engine": runner.identity, "export_s": export_s, "images": len(kept),
            "seconds": elapsed, "images_per_s": rate, "forwards_per_s": rate * len(views.names),
            "feature_dim": features.shape[-1]}


def recipe_part(root: Path) -> dict[str, Any]:
    """``catdog train`` defaults, cold then warm cache, and the cold run's best checkpoint on the test split."""
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")  # a fresh, empty feature cache
        runs = {}
        for name in ("cold", "warm"):
            started = time.perf_counter()
            metrics = train(TrainConfig(data=str(root), out=str(Path(tmp) / name), progress=False))
            runs[name] = (time.perf_counter() - started, metrics)
        started = time.perf_counter()
        test = evaluate_folder(load_model(Path(tmp) / "cold" / "best.pt"), root, progress=False)
        test_s = time.perf_counter() - started
        used = engine_identity(pick_device(), backbone=create_model(DEFAULT_ARCH, 2).backbone)
    cold_s, cold = runs["cold"]
    warm_s, warm = runs["warm"]
    return {"arch": cold["arch"], "cold_s": cold_s, "warm_s": warm_s, "epochs_run": cold["epochs_run"],
            "best_epoch": cold["best_epoch"], "valid_accuracy": cold["best_valid_accuracy"],
            "warm_valid_accuracy": warm["best_valid_accuracy"], "history": cold["history"],
            "test_accuracy": test.accuracy, "test_n": test.n, "test_s": test_s, "engine": used,
            "test_answers": test.predictions}


def float32_part(root: Path) -> dict[str, Any]:
    """The default recipe with the backbone in float32 (CATDOG_ENGINE=openvino): int8's accuracy reference."""
    os.environ[ENGINE_ENV] = "openvino"
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
        started = time.perf_counter()
        metrics = train(TrainConfig(data=str(root), out=str(Path(tmp) / "run"), progress=False))
        cold_s = time.perf_counter() - started
        test = evaluate_folder(load_model(Path(tmp) / "run" / "best.pt"), root, progress=False)
    return {"cold_s": cold_s, "valid_accuracy": metrics["best_valid_accuracy"], "test_accuracy": test.accuracy,
            "test_n": test.n, "test_answers": test.predictions}


def finetune_part(root: Path) -> dict[str, Any]:
    """``catdog train --recipe finetune`` from a cold cache: both stages, what was kept, and the test accuracy."""
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
        started = time.perf_counter()
        metrics = train(TrainConfig(data=str(root), out=str(Path(tmp) / "run"), recipe="finetune", progress=False))
        cold_s = time.perf_counter() - started
        test = evaluate_folder(load_model(Path(tmp) / "run" / "best.pt"), root, progress=False)
    head = min((row for row in metrics["history"] if row["stage"] == "head"),
               key=lambda row: (-row["valid_accuracy"], row["valid_loss"]))
    return {"cold_s": cold_s, "stages": metrics["stages"], "kept": metrics["kept"],
            "head_valid": [head["valid_accuracy"], head["valid_loss"]],
            "valid": [metrics["best_valid_accuracy"], metrics["best_valid_loss"]],
            "test_accuracy": test.accuracy, "test_n": test.n}


def course_notebooks(summary: str) -> dict[str, float]:
    """Seconds of each notebook that ran, from a course run's summary.txt (``catdog_lib.classroom.runner.run_course``)."""
    return {name: float(seconds) for name, seconds in re.findall(r"^ +(\S+\.ipynb) +([\d.]+) s +ok$", summary, re.M)}


def course_part(root: Path, fast: bool) -> dict[str, Any]:
    """``make run`` (``catdog course``), or its fast mode, from a cold feature cache and empty runs folder."""
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        env = {**os.environ, DATA_ENV: str(root), CACHE_ENV: f"{tmp}/cache", RUNS_ENV: f"{tmp}/runs"}
        command = [sys.executable, "-m", "catdog_lib", "course", "--offline", "--out", f"{tmp}/out"]
        started = time.perf_counter()
        done = subprocess.run(command + (["--fast"] if fast else []), env=env, cwd=tmp, capture_output=True, text=True)
        wall_s = time.perf_counter() - started
        summary = Path(tmp, "out", "summary.txt")
        text = summary.read_text() if summary.exists() else ""
    notebooks = course_notebooks(text)
    failure = (done.stdout + done.stderr).strip().splitlines()[-1:] if done.returncode else []
    return {"fast": fast, "ok": done.returncode == 0, "failure": " ".join(failure), "wall_s": wall_s,
            "notebooks": notebooks, "notebooks_s": sum(notebooks.values())}


def _rate(work: Callable[[], object], n_items: int, repeats: int) -> float:
    """Items/s of ``work`` (which handles ``n_items``): its fastest of ``repeats`` runs after a warm-up run."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return n_items / min(times)


def _forward_variants(backbone: nn.Module, device: torch.device, tmp: Path,
                      batch: torch.Tensor) -> dict[str, tuple[Callable, bool]]:
    """variant name: (images -> features, whether the default recipe uses it), for every engine and precision."""
    picked = engine_identity(device)
    reduced = torch.float16 if device.type == "cuda" else torch.bfloat16
    variants = {}
    for dtype in (torch.float32, reduced):
        for layout in (torch.contiguous_format, torch.channels_last):
            model = copy.deepcopy(backbone).to(memory_format=layout)

            def forward(images: torch.Tensor, model: nn.Module = model, dtype: torch.dtype = dtype,
                        layout: torch.memory_format = layout) -> torch.Tensor:
                with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    features = model(images.contiguous(memory_format=layout)).float()
                _sync(device)
                return features

            precision = "fp32" if dtype == torch.float32 else f"{str(dtype).removeprefix('torch.')} autocast"
            layout_name = "channels_last" if layout == torch.channels_last else "contiguous"
            identity = "torch:" + ("float32" if dtype == torch.float32 else str(dtype).removeprefix("torch."))
            variants[f"PyTorch {precision}, {layout_name}"] = (
                forward, identity == picked and layout == torch.channels_last)
    if device.type == "cpu":
        default = engine_name(device)
        for name, choice in ENGINES.items():
            if not choice.installed():
                continue
            os.environ[ENGINE_ENV] = name
            runner = backbone_runner(backbone, f"{DEFAULT_ARCH}:default", device, cache_root=tmp,
                                     calibration=lambda: batch.cpu())  # int8: calibrated on this batch
            variants[f"{choice.modules[0]} {choice.precision}"] = (runner, name == default)
            if name == "openvino" and {"BF16", "AMX"} & set(instruction_sets()):
                # bfloat16 inference hint: fast, but not exact enough for the library (no bf16 without them)
                bf16 = engine.OpenVINORunner(next(tmp.glob(f"openvino-*/{engine.MODEL_FILE}")))
                bf16.config["INFERENCE_PRECISION_HINT"] = "bf16"
                variants["openvino bf16 (not used: cosine < 0.999)"] = (bf16, False)
        os.environ.pop(ENGINE_ENV)
    return variants


def profile_part(root: Path, repeats: int) -> dict[str, Any]:
    """Images/s of decode+resize (draft or not), and of the backbone on each engine and precision, batch 32.

    The forward variants are timed in turns (one batch each per round, best round kept), so a change in
    the machine's load hits them alike; each is compared with PyTorch float32 on the same batch.
    """
    device = pick_device()
    prep = get_arch(DEFAULT_ARCH).prep
    paths = [path for path, _ in _split(root).train[:PROFILE_BATCH]]
    transform = eval_transform(prep)
    rows = []
    for variant, min_size in (("full decode (tutorial)", None), ("JPEG draft mode", prep.image_size)):
        rate = _rate(lambda: [transform(load_rgb(path, min_size)) for path in paths], len(paths), repeats)
        rows.append({"stage": "JPEG decode + resize", "variant": variant, "images_per_s": rate, "ours": bool(min_size)})
    batch = torch.stack([transform(load_rgb(path, prep.image_size)) for path in paths]).to(device)
    backbone = create_model(DEFAULT_ARCH, 2).backbone.eval().to(device)
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        variants = _forward_variants(backbone, device, Path(tmp), batch)
        reference = variants["PyTorch fp32, contiguous"][0](batch).cpu()
        best = dict.fromkeys(variants, float("inf"))
        cosine = {}
        for name, (forward, _) in variants.items():  # warm-up: compiles each engine for this shape
            features = forward(batch).cpu()
            cosine[name] = float(torch.nn.functional.cosine_similarity(features, reference, dim=1).min())
        for _ in range(repeats):
            for name, (forward, _) in variants.items():
                started = time.perf_counter()
                forward(batch)
                best[name] = min(best[name], time.perf_counter() - started)
    for name, (_, ours) in variants.items():
        rows.append({"stage": "backbone forward", "variant": name, "images_per_s": len(paths) / best[name],
                     "ours": ours, "min_cosine": cosine[name]})
    return {"arch": DEFAULT_ARCH, "batch": len(paths), "repeats": repeats, "rows": rows}


def make_scaled_pool(source: Path, dest: Path, photos: int) -> list[tuple[Path, str]]:
    """``photos`` distinct JPEGs made from the source's training photos, classes alternating: round k of
    the source re-encodes each photo with 4k pixels cropped off every side, so no two files share bytes."""
    folders = find_dataset(source).train()
    by_class = [[path for path, label in folders.samples if label == index] for index in range(len(folders.classes))]
    order = [(path, folders.classes[index]) for group in zip(*by_class) for index, path in enumerate(group)]
    dest.mkdir(parents=True, exist_ok=True)
    pool = []
    for i in range(photos):
        path, name = order[i % len(order)]
        margin = 4 * (i // len(order))
        with Image.open(path) as image:
            width, height = image.size
            crop = image.convert("RGB").crop((margin, margin, width - margin, height - margin))
        target = dest / f"{name}.{i}.jpg"
        crop.save(target, quality=90)
        pool.append((target, name))
    return pool


def scale_part(pool: list[tuple[Path, str]], photos: int) -> dict[str, Any]:
    """The default recipe, cold cache, on the first ``photos`` photos of the pool (as class folders)."""
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        data = Path(tmp) / "data"
        for path, name in pool[:photos]:
            (data / name).mkdir(parents=True, exist_ok=True)
            (data / name / path.name).symlink_to(path)
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
        started = time.perf_counter()
        metrics = train(TrainConfig(data=str(data), out=str(Path(tmp) / "run"), progress=False))
        cold_s = time.perf_counter() - started
        feature_bytes = sum(shard.stat().st_size for shard in (Path(tmp) / "cache" / "features").rglob("*.pt"))
    counts = metrics["counts"]
    views = len(training_views(train_transform(get_arch(DEFAULT_ARCH).prep)).names)  # plain and flipped
    forwards = views * sum(counts["train"].values()) + sum(counts["valid"].values())
    return {"photos": photos, "cold_s": cold_s, "forwards_per_s": forwards / cold_s, "feature_bytes": feature_bytes,
            "valid_accuracy": metrics["best_valid_accuracy"], "epochs_run": metrics["epochs_run"]}


# ---------------------------------------------------------------- main

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; BENCH_QUICK=1 turns on --quick."""
    quick_env = os.environ.get("BENCH_QUICK", "").strip().lower() in {"1", "true", "yes", "on"}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", default=quick_env,
                        help="fewer tutorial batches, extraction photos and profile repeats (also BENCH_QUICK=1)")
    parser.add_argument("--course", action=argparse.BooleanOptionalAction, default=True,
                        help="time the course from a cold cache: make run and its fast mode (quick: fast mode only; default on)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                        help="the 'where the time goes' table: decoding, each engine and precision (default on)")
    parser.add_argument("--scale", action="store_true",
                        help="also time the default recipe on 2k, 5k and 10k distinct photos (about 10 min on 2 cores)")
    parser.add_argument("--scale-sizes", type=lambda text: [int(n) for n in text.split(",")],
                        default=list(SCALE_SIZES), help="photo counts for --scale, comma-separated")
    parser.add_argument("--tutorial-batches", type=int, help="timed tutorial batches (default 25, quick 5)")
    parser.add_argument("--extract-images", type=int, help="photos for extraction throughput (default 256, quick 64)")
    parser.add_argument("--avx2", action="store_true",
                        help="play a CPU without AVX-512: oneDNN (PyTorch's, OpenVINO's) and ATen capped at AVX2")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "runs" / "bench.json", help="results file")
    parser.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "BENCHMARKS.md", help="markdown report")
    args = parser.parse_args(argv)
    args.tutorial_batches = args.tutorial_batches or (5 if args.quick else 25)
    args.extract_images = args.extract_images or (64 if args.quick else 256)
    return args


def data_root_or_exit() -> Path:
    """$CATDOG_DATA_DIR as a dataset root with a training split; exits with a clear message otherwise."""
    value = os.environ.get(DATA_ENV, "").strip()
    if not value:
        raise SystemExit(f"bench: set {DATA_ENV} to a cats-vs-dogs dataset root (training_set/ and test_set/), "
                         f"e.g. {DATA_ENV}=../shared/data/cat-and-dog make bench")
    try:
        layout = find_dataset(Path(value).expanduser())
        layout.train()
    except CatdogError as error:
        raise SystemExit(f"bench: {DATA_ENV}={value}: {error}") from None
    return layout.root


def photos_used(root: Path) -> str:
    """How many photos the parts draw on: the training split (80/20 train/valid) and the test split."""
    layout = find_dataset(root)
    parts = [("train", layout.train())] + ([("test", layout.test())] if layout.test_dir else [])
    return "; ".join(f"{sum(folders.counts().values()):,} {name}" for name, folders in parts) + f" ({root.name})"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.avx2:  # before any part starts: each runs in a new process, which reads these when it starts
        os.environ.update({ISA_CAP_ENV: "AVX2", "ATEN_CPU_CAPABILITY": "avx2"})
    root = data_root_or_exit()
    results: dict[str, Any] = {"date": datetime.date.today().isoformat(), "quick": args.quick,
                               "data": str(root), "machine": machine_info(), "photos": photos_used(root)}
    log(f"1/3 tutorial recipe: {args.tutorial_batches} batches of {TUTORIAL_BATCH_SIZE} (+{WARMUP_BATCHES} warm-up)")
    results["tutorial"] = tut = in_child(tutorial_part, root, args.tutorial_batches)
    log(f"2/3 feature extraction: {args.extract_images} photos, no cache")
    results["extraction"] = in_child(extraction_part, root, args.extract_images)
    log("3/3 default recipe in full: cold cache, warm cache, test evaluation")
    results["recipe"] = rec = in_child(recipe_part, root)
    tutorial_s = tutorial_time_to_target(tut["seconds_per_photo"], tut["photos_per_epoch"])
    if rec["engine"].startswith("openvino:int8"):
        log("the default recipe again with a float32 backbone: int8's accuracy reference")
        results["float32"] = in_child(float32_part, root)
    log("finetune recipe: cold cache, then the test photos")
    results["finetune"] = in_child(finetune_part, root)
    ours_s = ours_time_to_target(rec["cold_s"], rec["history"])
    results["time_to_target"] = {"target": TARGET_ACCURACY, "tutorial_s": tutorial_s, "ours_s": ours_s,
                                 "ratio": tutorial_s / ours_s if ours_s else None}
    if args.course:
        results["course"] = []
        for fast in (True,) if args.quick else (False, True):
            log(f"course: `{'CATDOG_FAST=1 ' if fast else ''}make run` from a cold cache")
            results["course"].append(in_child(course_part, root, fast))
    if args.profile:
        log("profile: decoding, and the forward pass on each engine and precision")
        results["profile"] = in_child(profile_part, root, 2 if args.quick else 5)
    if args.scale:
        with tempfile.TemporaryDirectory(prefix="catdog-bench-scale-") as tmp:
            log(f"scale: making {max(args.scale_sizes):,} distinct photos from the shared ones")
            pool = make_scaled_pool(root, Path(tmp), max(args.scale_sizes))
            rows = []
            for photos in args.scale_sizes:
                log(f"scale: default recipe on {photos:,} photos, cold cache")
                rows.append(in_child(scale_part, pool, photos))
        results["scale"] = {"rows": rows, "estimate": scale_estimate(rows)}
    text = report(results)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    update_doc(args.doc, machine_label(results["machine"]), text)
    log(f"wrote {args.json} and {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
