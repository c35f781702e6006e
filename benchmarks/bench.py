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

Run from the checkout as ``python -m benchmarks.bench`` (``make bench``); this module only reads the
options and runs the parts, each kept in the module named for what it measures (see ``benchmarks/__init__.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.course import course_part
from benchmarks.doc import machine_label, update_doc
from benchmarks.memory import in_child
from benchmarks.profiling import profile_part
from benchmarks.recipes import (
    TARGET_ACCURACY,
    TUTORIAL_BATCH_SIZE,
    WARMUP_BATCHES,
    extraction_part,
    finetune_part,
    float32_part,
    ours_time_to_target,
    recipe_part,
    tutorial_part,
    tutorial_time_to_target,
)
from benchmarks.report import machine_info, report
from benchmarks.scale import SCALE_SIZES, make_scaled_pool, scale_estimate, scale_part
from catdog_lib.config import DATA_ENV, REPO_ROOT
from catdog_lib.data.layout import find_dataset
from catdog_lib.devices import ISA_CAP_ENV
from catdog_lib.errors import CatdogError


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
