"""The benchmarks' helpers: tables, machine info, goals, time-to-target, peak memory, the report file.

Nothing here is timed: `make bench` measures, these tests only check the bookkeeping around it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catdog_lib.data.images import load_rgb
from catdog_lib.devices import cpu_class, cpu_model, instruction_sets

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # benchmarks/ is a package of the checkout, not installed (`python -m pytest` finds it)
    sys.path.append(str(REPO))

from benchmarks import bench, course, doc, memory, recipes, report, scale  # noqa: E402


def fake_results(quick: bool = False, profile: bool = False) -> dict:
    """Results shaped as main() builds them, with made-up numbers."""
    peak = {"process_rss_bytes": 1_500_000_000, "tree_pss_bytes": 2_000_000_000, "bytes": 2_000_000_000}
    history = [{"epoch": 1, "valid_accuracy": 0.97, "seconds": 1.0}, {"epoch": 2, "valid_accuracy": 0.98, "seconds": 1.0}]
    results = {
        "date": "2026-01-02", "quick": quick,
        "machine": {"cpu": "Test CPU", "cores": 2, "torch_threads": 2, "torch": "2.x", "device": "cpu",
                    "engine": "openvino:fp32"},
        "tutorial": {"seconds_per_photo": 0.25, "photos_per_epoch": 2000, "memory": peak},
        "extraction": {"arch": "efficientnet_lite2", "engine": "openvino:fp32", "images_per_s": 70.0,
                       "forwards_per_s": 140.0},
        "recipe": {"cold_s": 25.0, "warm_s": 20.0, "valid_accuracy": 0.99, "best_epoch": 2, "test_accuracy": 0.985,
                   "test_n": 1000, "test_s": 12.0, "history": history, "memory": peak},
        "time_to_target": {"tutorial_s": 1000.0, "ours_s": 40.0, "ratio": 25.0},
    }
    if profile:
        results["profile"] = {"arch": "efficientnet_lite2", "rows": [
            {"stage": "JPEG decode + resize", "variant": "JPEG draft mode", "images_per_s": 120.0, "ours": True},
            {"stage": "backbone forward", "variant": "openvino fp32", "images_per_s": 150.0, "ours": True,
             "min_cosine": 0.99999971}]}
    return results


def test_markdown_table_pads_columns():
    table = report.markdown_table(["Name", "Value"], [["a", "1"], ["longer name", 22]]).splitlines()
    assert table[0] == "| Name        | Value |"
    assert table[1] == "|-------------|-------|"
    assert table[3] == "| longer name | 22    |"
    assert len({len(line) for line in table}) == 1


def test_cpu_model_reads_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nflags\t: avx\n")
    assert cpu_model(cpuinfo) == "Example CPU @ 2.0GHz"
    assert cpu_model(tmp_path / "missing")  # falls back to something printable


def test_instruction_sets_and_cpu_class_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: AVX2 laptop\nflags\t\t: fpu sse4_2 avx avx2 fma\n")
    assert instruction_sets(cpuinfo) == ["AVX2"] and cpu_class(["AVX2"]) == "AVX2"
    cpuinfo.write_text("flags\t: avx2 avx512f avx512_vnni avx512_bf16\nflags\t: other cpu\n")
    assert instruction_sets(cpuinfo) == ["AVX2", "AVX-512", "VNNI", "BF16"]
    assert cpu_class(instruction_sets(cpuinfo)) == "AVX512-BF16"
    assert cpu_class(["AVX2", "AVX-512", "AMX"]) == "AMX" and cpu_class([]) == "no AVX2"
    assert instruction_sets(tmp_path / "missing") == []


def test_an_emulated_cpu_says_so_in_its_heading():
    machine = {"cpu": "Xeon", "cpu_class": "AVX2", "cores": 2, "device": "cpu", "isa_cap": "AVX2"}
    assert doc.machine_label(machine) == "Xeon (AVX2, emulated: ONEDNN_MAX_CPU_ISA=AVX2) · 2 cores · cpu"
    assert doc.MACHINE_HEADING.match("## " + doc.machine_label(machine))


def test_machine_info_has_the_table_fields():
    info = report.machine_info()
    assert set(info) == {"cpu", "cores", "torch_threads", "torch", "device", "isa", "cpu_class", "engine", "isa_cap",
                         "gpu"}
    assert (info["gpu"] is None) == (info["device"] == "cpu")
    assert info["cores"] >= 1 and info["torch_threads"] >= 1
    assert doc.machine_label(info).startswith(info["cpu"])


def test_process_rss_is_that_of_a_python_with_torch():
    assert memory.process_rss_bytes() > 50_000_000


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")
def test_peak_memory_counts_live_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; data = b\"x\" * 100_000_000; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while memory._pss_bytes(child.pid) < 100_000_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert child.pid in memory._descendants(os.getpid())
        with memory.PeakMemory(interval=0.01) as peak:
            pass
        assert peak.peak_bytes >= memory._pss_bytes(os.getpid()) + 100_000_000
    finally:
        child.kill()
        child.wait()


def test_format_memory():
    text = report.format_memory({"process_rss_bytes": 1.3e9, "tree_pss_bytes": 1.45e9, "bytes": 1.45e9})
    assert text == "1.45 GB (process RSS 1.30; with data workers, PSS 1.45)"


def test_time_to_target():
    assert recipes.tutorial_time_to_target(0.25, 2000) == pytest.approx(1000.0)
    history = [{"valid_accuracy": 0.96, "seconds": 2.0}, {"valid_accuracy": 0.975, "seconds": 3.0},
               {"valid_accuracy": 0.99, "seconds": 5.0}]
    # wall 30 s = 20 s set-up and extraction + 10 s of epochs; the target is first met after epoch 2
    assert recipes.ours_time_to_target(30.0, history) == pytest.approx(25.0)
    assert recipes.ours_time_to_target(30.0, history[:1]) is None


def test_goal_marks():
    assert report.goal_mark("cold_s", 35.0) == ("<= 35 s", "yes")
    assert report.goal_mark("warm_s", 3.5) == ("<= 3 s", "no")
    assert report.goal_mark("ratio", None) == (">= 30x", "n/a")
    assert report.goal_mark("accuracy_kept", -0.001) == ("within 0.1 point of float32", "yes")
    assert report.goal_mark("accuracy_kept", -0.002)[1] == "no"
    assert report.goal_mark("memory_bytes", 1.5e9) == ("<= 1.5 GB", "yes")
    assert report.goal_mark("backbone_images_per_s", 119.0) == (">= 120 images/s", "no")
    assert report.goal_mark("no such goal", 1.0) == ("", "")


def test_report_shows_every_row_and_goal():
    text = report.report(fake_results())
    assert "| Test CPU" in text and "Measured 2026-01-02." in text
    assert "0.250 s" in text and "140.0 images/s through the backbone (70.0 photos/s x 2 views)" in text
    assert "feature extraction (efficientnet_lite2 on openvino:fp32, decode included)" in text
    assert "25.0x" in text and "2.00 GB (process RSS 1.50; with data workers, PSS 2.00)" in text
    met = [line.rstrip(" |").rsplit("|", 1)[1].strip() for line in text.splitlines() if line.startswith("| Ours")]
    assert "no" in met and "yes" in met  # warm 20 s misses its goal, cold 25 s meets it
    assert "Where the time goes" not in text
    assert "finetune recipe" not in text  # not run, no rows
    assert "vs float32" not in text  # float32 engine: no int8 accuracy row
    results = fake_results()
    results["recipe"].update(engine="openvino:int8/1a2b3c4d", test_answers=[0, 1, 1, 0])
    results["float32"] = {"cold_s": 40.0, "valid_accuracy": 0.99, "test_accuracy": 0.986, "test_n": 4,
                          "test_answers": [0, 1, 0, 0]}
    (row,) = [line for line in report.report(results).splitlines() if "vs float32" in line]
    assert "valid 99.00% vs 99.00%, test 98.50% vs 98.60%; 1 of 4 test answers differ" in row
    assert row.rstrip(" |").endswith("yes")  # 0.1 point lower on test: still kept
    results = fake_results()
    results["finetune"] = {"cold_s": 110.0, "stages": {"finetune": {"epochs": 5}}, "kept": "finetune",
                           "head_valid": [0.995, 0.0193], "valid": [0.9975, 0.011], "test_accuracy": 0.992, "test_n": 1000}
    rows = [line for line in report.report(results).splitlines() if "finetune recipe" in line]
    assert "110.0 s = 4.4x the default's" in rows[0] and rows[0].rstrip(" |").endswith("no")  # 4.4x > 4x
    assert "head stage 99.50% / 0.0193 -> kept (finetune) 99.75% / 0.0110" in rows[1] and "99.20%" in rows[2]
    profiled = report.report(fake_results(quick=True, profile=True))
    assert "quick mode" in profiled and "| JPEG decode + resize | JPEG draft mode | 120.0" in profiled
    assert "| backbone forward     | openvino fp32   | 150.0    | yes            | 1.000000" in profiled


def test_update_doc_replaces_the_machine_section_and_keeps_the_rest(tmp_path):
    path = tmp_path / "docs" / "BENCHMARKS.md"
    doc.update_doc(path, "CPU A · 2 cores · cpu", "first A")
    assert path.read_text().startswith(doc.INTRO.splitlines()[0])
    doc.update_doc(path, "CPU B · 8 cores · cpu", "only B")
    doc.update_doc(path, "CPU A · 2 cores · cpu", "second A")
    text = path.read_text()
    assert "first A" not in text and text.count("## CPU A") == 1 and "second A" in text
    assert text.index("## CPU A") < text.index("## CPU B") and "only B" in text
    assert text.endswith("only B\n")


def test_update_doc_refreshes_the_intro_and_keeps_hand_written_sections(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    analysis = "## Where the cold run's time goes\n\nHand-written analysis.\n"
    path.write_text("# Benchmarks\n\nAn old, drifted intro.\n\n## CPU A · 2 cores · cpu\n\nold A\n\n" + analysis)
    doc.update_doc(path, "CPU A · 2 cores · cpu", "new A")
    text = path.read_text()
    assert text.startswith(doc.INTRO.rstrip() + "\n\n## CPU A")
    assert "drifted" not in text and "old A" not in text and "new A" in text
    assert text.endswith(analysis)
    doc.update_doc(path, "CPU B · 8 cores · cuda", "only B")  # a new machine goes before the analysis
    text = path.read_text()
    assert text.index("new A") < text.index("## CPU B") < text.index("only B") < text.index(analysis)
    assert text.endswith(analysis)
    doc.update_doc(path, "CPU B · 8 cores · cuda", "only B")
    assert path.read_text() == text  # idempotent


def test_missing_data_dir_is_a_clear_exit(monkeypatch, tmp_path):
    monkeypatch.delenv("CATDOG_DATA_DIR", raising=False)
    with pytest.raises(SystemExit, match="set CATDOG_DATA_DIR"):
        bench.data_root_or_exit()
    monkeypatch.setenv("CATDOG_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit, match="no such folder"):
        bench.data_root_or_exit()


def test_quick_mode_shortens_the_parts(monkeypatch):
    monkeypatch.setenv("BENCH_QUICK", "1")
    quick = bench.parse_args([])
    assert quick.quick and quick.tutorial_batches == 5 and quick.extract_images == 64
    monkeypatch.delenv("BENCH_QUICK")
    full = bench.parse_args(["--tutorial-batches", "10"])
    assert not full.quick and full.tutorial_batches == 10 and full.extract_images == 256


def test_scale_report_extrapolates_to_petimages():
    peak = {"process_rss_bytes": 1.0e9, "tree_pss_bytes": 1.2e9, "bytes": 1.2e9}
    rows = [{"photos": 2000, "cold_s": 30.0, "forwards_per_s": 120.0, "feature_bytes": 18e6, "memory": peak},
            {"photos": 10000, "cold_s": 140.0, "forwards_per_s": 128.6, "feature_bytes": 90e6, "memory": peak}]
    estimate = scale.scale_estimate(rows)
    assert estimate == {"photos": 25000, "seconds": pytest.approx(350.0), "feature_bytes": pytest.approx(225e6)}
    text = report.report({**fake_results(), "scale": {"rows": rows, "estimate": estimate}})
    assert "| 10,000 | 140.0 s  | 128.6                         | 1.20 GB     | 90 MB         |" in text
    assert "(25,000 photos): about 6 min cold, a feature cache of about 225 MB" in text


def test_scaled_pool_files_are_distinct_and_balanced(tmp_path):
    from conftest import make_dataset
    from catdog_lib.files import file_digest

    source = make_dataset(tmp_path / "source", {"cats": 3, "dogs": 3}, size=(40, 40))
    pool = scale.make_scaled_pool(source, tmp_path / "pool", 14)
    assert [name for _, name in pool[:4]] == ["cats", "dogs", "cats", "dogs"]
    assert len({file_digest(path) for path, _ in pool}) == 14
    assert load_rgb(pool[-1][0]).size == (24, 24)  # third round: 8 px cropped off every side of 40


def test_profile_is_on_by_default_and_scale_is_an_option():
    args = bench.parse_args([])
    assert args.profile and args.course and not args.scale and args.scale_sizes == [2000, 5000, 10000]
    args = bench.parse_args(["--no-profile", "--scale", "--scale-sizes", "20,40"])
    assert not args.profile and args.scale and args.scale_sizes == [20, 40]


def test_course_rows_give_each_notebook_and_the_goals():
    ok = {"fast": False, "ok": True, "failure": "", "wall_s": 170.2, "notebooks_s": 158.0,
          "notebooks": {"01_download_data.ipynb": 8.0, "03_augmentation.ipynb": 65.0, "04_transfer_learning.ipynb": 85.0}}
    failed = {**ok, "fast": True, "ok": False, "failure": "04_transfer_learning.ipynb: cell 12 raised"}
    assert report.course_rows([ok, failed]) == [
        ["Course: `make run` (full)", "158 s of notebooks (01 8, 03 65, 04 85); 170 s wall", "<= 150 s", "no"],
        ["Course: `make run` (full): each notebook's Run all", "5 s over in all",  # 03: 65 > 60; 04: 85 <= 120
         "each <= 60 s (04 <= 120 s in full)", "no"],
        ["Course: `CATDOG_FAST=1 make run`",
         "158 s of notebooks (01 8, 03 65, 04 85); 170 s wall; FAILED (04_transfer_learning.ipynb: cell 12 raised)",
         "<= 60 s", "n/a"],
        ["Course: `CATDOG_FAST=1 make run`: each notebook's Run all", "30 s over in all",  # fast: 04 <= 60 s too
         "each <= 60 s (04 <= 120 s in full)", "n/a"]]
    assert "| Course: `make run` (full)" in report.report({**fake_results(), "course": [ok, failed]})


def test_course_notebooks_reads_the_runners_summary(tmp_path):
    import nbformat

    from catdog_lib.classroom.runner import run_course

    notebook = tmp_path / "99_tiny.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")]), notebook)
    assert run_course(fast=True, out=tmp_path / "out", notebooks=[notebook],
                      course_run=tmp_path / "runs" / "course") == 0
    seconds = course.course_notebooks((tmp_path / "out" / "summary.txt").read_text())
    assert list(seconds) == ["99_tiny.ipynb"] and seconds["99_tiny.ipynb"] > 0


def _machine_table(text: str) -> dict[str, str]:
    return {cells[0]: cells[1] for cells in ([cell.strip() for cell in line.strip("|").split("|")]
                                             for line in text.split("\n\n")[1].splitlines()[2:])}


def test_the_machine_table_names_the_gpu_or_its_absence_and_the_photos(real_data_root):
    results = fake_results()
    assert _machine_table(report.report(results))["GPU"] == "no GPU on this machine"
    results["machine"]["gpu"] = "device: cuda (NVIDIA H200, compute capability 9.0); precision: float16"
    results["photos"] = bench.photos_used(real_data_root)
    table = _machine_table(report.report(results))
    assert table["GPU"] == f"{results['machine']['gpu']}: the recipes and the course ran on it"
    assert table["Photos"] == "2,000 train; 1,000 test (cat-and-dog)"
