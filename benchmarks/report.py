"""The report of a `make bench` run: the machine it ran on, each measure beside its goal (issue 21) and
whether it met it, and, when they ran, the course's, the profile's and the scale tables, as the markdown
that is printed and written into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from benchmarks.recipes import TUTORIAL_BATCH_SIZE
from benchmarks.scale import scale_estimate
from benchmarks.timing import PROFILE_BATCH
from catdog_lib.devices import ISA_CAP_ENV, cpu_class, cpu_model, describe_device, instruction_sets, pick_device
from catdog_lib.model.engine import ENGINES, INT8, engine_identity, engine_name

GB = 1e9
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


def format_memory(memory: dict[str, int]) -> str:
    """'1.45 GB (process RSS 1.30; with data workers, PSS 1.45)'."""
    return (f"{memory['bytes'] / GB:.2f} GB (process RSS {memory['process_rss_bytes'] / GB:.2f}; "
            f"with data workers, PSS {memory['tree_pss_bytes'] / GB:.2f})")


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
