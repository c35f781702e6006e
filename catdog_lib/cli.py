"""The `catdog` command line: data download/check, train, evaluate, predict, export, demo, course.

Importing it, and `--help`, load no torch: commands import what they need when they run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .classroom.notebook import REPOSITORY
from .errors import CatdogError
from .train.parameters import MAX_SEED


class _Parser(argparse.ArgumentParser):
    """argparse that prints one line (not the whole usage) and exits 2 on a wrong argument."""

    def error(self, message: str) -> None:
        self.exit(2, f"catdog: error: {message} (see `{self.prog} --help`)\n")


def _existing_path(kind: str, file: bool = False):
    def check(value: str) -> Path:
        path = Path(value).expanduser()
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{kind} {value}: no such file or folder")
        if file and path.is_dir():
            raise argparse.ArgumentTypeError(f"{kind} {value}: is a folder; pass a file")
        return path
    return check


def _number(kind: type, low: float, high: float, hint: str):
    """An argparse type: a ``kind`` number with ``low < value <= high`` (``low <= value`` for ints)."""
    def check(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {value!r}") from None
        inside = (low <= number <= high) if kind is int else (low < number <= high)
        if not inside:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be {hint}, got {value}")
        return number
    return check


def _positive(kind: type):
    return _number(kind, 1 if kind is int else 0, math.inf, "positive")


# A learning rate above 0 and at most 1 (the tutorial's is 1e-3; far above 1 overflows at once); a seed
# every RNG accepts.
_learning_rate = _number(float, 0, 1, "positive and at most 1 (e.g. 1e-3)")
_seed = _number(int, 0, MAX_SEED, f"an integer from 0 to {MAX_SEED}")


RUN_SETTINGS = ("data", "out", "arch", "recipe", "epochs", "finetune_epochs", "batch_size", "lr", "seed", "weights")


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import data_root
    from .devices import describe_device, pick_device
    from .train.training import TrainConfig, train

    print(describe_device(pick_device(args.device)), flush=True)
    given = {name: getattr(args, name) for name in RUN_SETTINGS if getattr(args, name) is not None}
    if args.resume:
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise CatdogError(f"--resume continues a run with the settings it was started with; drop {flags}.")
        metrics = train(TrainConfig(data="", out=str(args.resume), device=args.device,
                                    progress=not args.quiet), resume=True)
        out = args.resume
    else:
        if args.out is None:
            raise CatdogError("train: --out RUN_DIR is required (or --resume RUN_DIR).")
        if "finetune_epochs" in given and given.get("recipe") != "finetune":
            raise CatdogError("--finetune-epochs counts the finetune recipe's second stage; add --recipe finetune "
                              "or drop it.")
        if given.get("weights") == "none":
            given["weights"] = None
        given.update(data=str(data_root(args.data).resolve()), out=str(args.out))
        metrics = train(TrainConfig(**given, device=args.device, progress=not args.quiet))
        out = args.out
    stages = metrics.get("stages")  # finetune: the head's epochs, then the fine-tuning's
    ran = (f"{stages['head']['epochs']} + {stages['finetune']['epochs']} fine-tuning epochs" if stages
           else f"{metrics['epochs_run']} epochs")
    print(f"best valid accuracy {metrics['best_valid_accuracy']:.4f} at epoch {metrics['best_epoch']} "
          f"({ran}, {metrics['elapsed_s']:.1f} s); wrote {Path(out) / 'best.pt'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .config import data_root
    from .infer.evaluation import evaluate_folder, load_model

    loaded = load_model(args.checkpoint, args.device)
    result = evaluate_folder(loaded, data_root(args.data), progress=not args.json, batch_size=args.batch_size,
                             tta=args.tta)
    if args.json:
        print(json.dumps(result.summary()))
    else:
        print(f"accuracy {result.accuracy:.4f} on {result.n} images, loss {result.loss:.4f}"
              + (" (test-time augmentation: plain + mirrored)" if result.tta else ""))
        for name, row in result.per_class.items():
            print(f"  {name}: precision {row['precision']:.4f} recall {row['recall']:.4f} n {row['n']}")
        if result.skipped:
            print(f"skipped {len(result.skipped)} unreadable file(s): {', '.join(result.skipped)}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .infer.evaluation import load_model, load_onnx, predict
    from .names import printable

    if args.model:
        model = load_onnx(args.model)
    else:
        model = load_model(args.checkpoint, args.device)
    rows = predict(model, args.images, batch_size=args.batch_size, tta=args.tta)
    if args.json:  # valid UTF-8 JSON whatever the names: bytes that are not UTF-8 become \udcXX escapes
        print(printable(json.dumps({"model": str(args.model or args.checkpoint), "classes": model.classes,
                                    "predictions": [row.as_dict() for row in rows if not row.error],
                                    "skipped": [row.as_dict() for row in rows if row.error]}, ensure_ascii=False)))
    for row in rows:  # one line per photo: tabs and line breaks inside names escaped
        path = printable(row.path, tsv=True)
        if row.error:
            print(f"{path}\tskipped: {printable(row.error, tsv=True)}", file=sys.stderr if args.json else sys.stdout)
        elif not args.json:
            print(f"{path}\t{printable(row.label, tsv=True)}\t{row.probability:.4f}")
    return 1 if any(row.error for row in rows) else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .infer.export import export_onnx

    out = export_onnx(args.checkpoint, args.out, force=args.force)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); "
          f"try it: catdog predict --model {out} PHOTO_OR_FOLDER")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .infer.demo import serve

    serve(args.checkpoint, host=args.host, port=args.port, device=args.device)
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from .config import data_root
    from .data.integrity import check_dataset

    report = check_dataset(data_root(args.root))
    print(report.format())
    return 1 if report.problems else 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from .config import data_root
    from .data.download import download_dataset

    root = download_dataset(args.source, data_root(args.dest))
    print(f"data ready in {root}; use it with --data {root} or CATDOG_DATA_DIR={root}")
    return 0


def _cmd_course(args: argparse.Namespace) -> int:
    from .classroom.runner import NOTEBOOKS, run_course
    from .config import notebook_dir

    notebooks = [notebook_dir(args.lang) / name for name in NOTEBOOKS]
    if args.student is not None:
        from .classroom.student import write_student_copy

        if args.fast or args.out:
            raise CatdogError("--student writes the student copy and runs nothing; drop --fast/--out.")
        written = write_student_copy(notebooks, args.student, args.student_repository, args.student_folder, args.lang)
        print(f"student copy: {len(written)} notebooks without solutions or outputs in {args.student}")
        return 0
    return run_course(fast=args.fast, out=args.out, notebooks=notebooks, fetch_data=not args.offline,
                      all_photos=args.all_photos)


# What `--help` shows; kept here, not imported, so that `--help` needs no torch (tests/test_cli.py checks
# these against backbones.ARCHS, backbones.DEFAULT_ARCH, training.TrainConfig and training.DEFAULT_LR).
ARCH_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v3_large", "resnet50",
              "vgg16_bn")
RECIPE_NAMES = ("features", "finetune", "whole")
LANGUAGE_NAMES = ("en", "ko")  # config.LANGUAGES
TRAIN_DEFAULTS = {"arch": "efficientnet_lite2", "recipe": "features", "epochs": 40, "finetune_epochs": 8,
                  "batch_size": 32, "seed": 42, "lr": {"features": 1e-3, "finetune": 1e-3, "whole": 1e-4}}


def _command(sub, name: str, summary: str, example: str) -> argparse.ArgumentParser:
    """A sub-command whose --help starts with a one-line description and ends with an example."""
    return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                          epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .data.download import DEFAULT_SOURCE, SOURCES

    defaults = TRAIN_DEFAULTS
    parser = _Parser(prog="catdog", description="Cats-vs-dogs transfer learning: the catdog course's CLI.",
                     epilog="example:\n  catdog course --fast", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"catdog {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = _command(sub, "train", "train a classifier; writes best.pt, last.pt, metrics.json, split.json",
                     "catdog train --data data/cat-and-dog --out runs/my-run --epochs 10")
    train.add_argument("--data", help="dataset root (default: $CATDOG_DATA_DIR, else data/cat-and-dog)")
    train.add_argument("--out", help="run folder to create (new or empty)")
    train.add_argument("--arch", choices=ARCH_NAMES, help=f"backbone (default {defaults['arch']})")
    train.add_argument("--recipe", choices=RECIPE_NAMES,
                       help="features: a new head on the frozen backbone (default); finetune: then its last "
                            "stage too, on cached stage inputs, kept only if no worse; whole: every layer on photos")
    train.add_argument("--epochs", type=_positive(int),
                       help=f"most epochs, early stopping may end sooner (default {defaults['epochs']}); with "
                            f"--recipe finetune, of its first stage (the head), then up to --finetune-epochs more")
    train.add_argument("--finetune-epochs", type=_positive(int),
                       help=f"--recipe finetune: most epochs of its second stage, the last stage and the head "
                            f"(default {defaults['finetune_epochs']})")
    train.add_argument("--batch-size", type=_positive(int), help=f"default {defaults['batch_size']}")
    train.add_argument("--lr", type=_learning_rate,
                       help=f"learning rate (default {defaults['lr']['features']} features and finetune's "
                            f"head stage, {defaults['lr']['whole']} whole)")
    train.add_argument("--seed", type=_seed, help=f"the head's initial weights and the photos' order, 0 to 2**32-1 (default "
                                                f"{defaults['seed']}); the train/valid split stays the tutorial's "
                                                f"(random_state 42)")
    train.add_argument("--weights", help="'default' (ImageNet; downloads for torchvision archs), "
                                         "a local .pth file, or 'none'")
    train.add_argument("--resume", type=_existing_path("run folder"), help="continue an interrupted run")
    train.set_defaults(func=_cmd_train)

    evaluate = _command(sub, "evaluate", "accuracy of a checkpoint on a test split or class folders",
                        "catdog evaluate --checkpoint runs/my-run/best.pt --data data/cat-and-dog --json")
    evaluate.add_argument("--checkpoint", type=_existing_path("checkpoint"), required=True)
    evaluate.add_argument("--data", type=_existing_path("data folder"), help="dataset root or class-folder root")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--batch-size", type=_positive(int), default=32, help="photos per forward pass (default 32)")
    evaluate.set_defaults(func=_cmd_evaluate)

    predict = _command(sub, "predict", "class and probability for each image (files or folders)",
                       "catdog predict --checkpoint runs/my-run/best.pt my-cat.jpg photos/")
    model = predict.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=_existing_path("checkpoint", file=True),
                       help="a best.pt from `catdog train`")
    model.add_argument("--model", type=_existing_path("ONNX model", file=True),
                       help="a model.onnx from `catdog export` (run by ONNX Runtime)")
    predict.add_argument("images", nargs="+", type=_existing_path("image"), help="image files and folders of them")
    predict.add_argument("--batch-size", type=_positive(int), default=32, help="photos per batch (default 32)")
    predict.add_argument("--json", action="store_true", help="print one JSON object")
    predict.set_defaults(func=_cmd_predict)

    export = _command(sub, "export", "write a checkpoint's model as ONNX, for use outside PyTorch",
                      "catdog export --checkpoint runs/my-run/best.pt --out model.onnx")
    export.add_argument("--checkpoint", type=_existing_path("checkpoint", file=True), required=True)
    export.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    export.add_argument("--force", action="store_true", help="replace --out if it exists")
    export.set_defaults(func=_cmd_export)

    demo = _command(sub, "demo", "a web page: drop a photo, see the label, probabilities and Grad-CAM",
                    "catdog demo --checkpoint runs/my-run/best.pt")
    demo.add_argument("--checkpoint", type=_existing_path("checkpoint", file=True), required=True)
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    demo.add_argument("--port", type=_positive(int), default=7860, help="default 7860")
    demo.set_defaults(func=_cmd_demo)

    for command in (train, evaluate, predict, demo):
        command.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    for command in (evaluate, predict):
        command.add_argument("--tta", action="store_true",
                             help="test-time augmentation: average the photo's and its mirror image's probabilities")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    data = _command(sub, "data", "get and check datasets", "catdog data download --source petimages")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    download = _command(data_sub, "download", "download a cats-vs-dogs dataset",
                        "catdog data download --source petimages --dest data/petimages")
    download.add_argument("--source", choices=list(SOURCES), default=DEFAULT_SOURCE,
                          help="; ".join(f"{name}: {source.what}" for name, source in SOURCES.items())
                          + f" (default {DEFAULT_SOURCE})")
    download.add_argument("--dest", help="where to put it (default: $CATDOG_DATA_DIR, else data/cat-and-dog)")
    download.set_defaults(func=_cmd_data_download)
    check = _command(data_sub, "check", "list unreadable, truncated, empty and duplicate images",
                     "catdog data check data/cat-and-dog")
    check.add_argument("root", nargs="?", help="dataset root (default: $CATDOG_DATA_DIR, else data/cat-and-dog)")
    check.set_defaults(func=_cmd_data_check)

    course = _command(sub, "course", "run all six notebooks in order into runs/<timestamp>/ (what `make run` does)",
                      "catdog course --fast")
    course.add_argument("--fast", action="store_true", help="small subset, few epochs (as CATDOG_FAST=1)")
    course.add_argument("--out", type=Path, help="output folder (default runs/<timestamp>)")
    course.add_argument("--all-photos", action="store_true",
                        help=f"when the course downloads its photos ({DEFAULT_SOURCE}), use all of them, "
                             "not the course-sized subset")
    course.add_argument("--offline", action="store_true",
                        help="never download photos; without any, run on synthetic data")
    course.add_argument("--lang", choices=LANGUAGE_NAMES, default="en",
                        help="the notebooks' language: en (notebooks/), or ko for the Korean edition (notebooks/ko/, "
                             "the same code); messages stay English")
    course.add_argument("--student", type=Path, nargs="?", const=Path("student"), metavar="OUT",
                        help="write the notebooks without solutions or outputs to OUT (default student/); run nothing")
    course.add_argument("--student-repository", default=REPOSITORY, metavar="URL",
                        help="the GitHub repository the student copy's badges and install cells open (default: this "
                             "course's)")
    course.add_argument("--student-folder", default="student", metavar="PATH",
                        help="the student copy's folder in that repository (default student)")
    course.set_defaults(func=_cmd_course)
    return parser


def _is_negative_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.startswith("-")


def negative_values(argv: Sequence[str]) -> list[str]:
    """``--lr -1e-3`` as ``--lr=-1e-3``: argparse takes a value starting with "-" for an option unless it looks like
    -2 or -0.5, and says "expected one argument"; joined, the option's own check says what is allowed."""
    args = list(argv)
    for i in range(len(args) - 1, 0, -1):
        option = args[i - 1]
        if option.startswith("--") and option != "--" and "=" not in option and _is_negative_number(args[i]):
            args[i - 1:i + 1] = [f"{option}={args[i]}"]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(negative_values(sys.argv[1:] if argv is None else argv))
    plain_format = warnings.formatwarning
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.formatwarning = lambda message, category, *rest: f"catdog: warning: {message}\n"
        try:
            return args.func(args)
        except CatdogError as error:
            print(f"catdog: error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("catdog: interrupted; `catdog train --resume RUN_DIR` continues a training run", file=sys.stderr)
            return 130
        finally:
            warnings.formatwarning = plain_format


if __name__ == "__main__":
    sys.exit(main())
