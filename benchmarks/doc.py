"""docs/BENCHMARKS.md: its intro (what each measure is, and the goals), and one section per machine,
headed by the machine's label; a run rewrites its own machine's section and keeps every other one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from catdog_lib.devices import ISA_CAP_ENV

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

MACHINE_HEADING = re.compile(r"^## .+ · \d+ cores · .+$", re.M)


def machine_label(machine: dict[str, Any]) -> str:
    """The heading a machine's section has in BENCHMARKS.md."""
    cpu_class = machine.get("cpu_class", "?")
    if machine.get("isa_cap"):
        cpu_class += f", emulated: {ISA_CAP_ENV}={machine['isa_cap']}"
    return f"{machine['cpu']} ({cpu_class}) · {machine['cores']} cores · {machine['device']}"


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
