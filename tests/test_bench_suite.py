"""The benchmark suite: figures are ratios against a baseline of the same run, written as JSON and Markdown."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import update_docs  # noqa: E402 - bench/ is a folder of scripts
from suite import BENCHMARKS, Benchmark, Figure, cross_figures, last_json, markdown, run_benchmark  # noqa: E402


def test_figures_are_ratios_with_goals():
    f = Figure("b", "masking / step", 0.5, "step", 50.0, "<= 0.02")
    assert f.ratio == 0.01 and f.met is True
    assert Figure("b", "x", 3.0, "y", 1.0, "<= 2.5").met is False
    assert Figure("b", "x", 1.0, "y", 2.0).met is None  # no goal: reported, not judged
    assert last_json('log {x}\n{\n  "a": {"b": 1}\n}\n') == {"a": {"b": 1}}


def test_markdown_lists_figures_and_what_did_not_run():
    result = {"date": "2026-11-25", "device_name": "CPU", "quick": True, "versions": {"torch": "2", "monai": "1"},
              "figures": [vars(Figure("b", "masking / step", 0.5, "step", 50.0, "<= 0.02"))], "not_run": {"ctfm": "exit 1: no CT"}}
    table = markdown(result)
    assert "| b | masking / step | 0.5 | step | 50 | 0.01 | <= 0.02 | yes |" in table and "| ctfm | not run: exit 1: no CT |" in table


def test_a_benchmark_stopped_at_its_timeout_keeps_what_it_reported(tmp_path):
    """A benchmark that prints its report as it goes (training_speed) keeps the variants measured when a long one is cut."""
    script = tmp_path / "bench_partial.py"
    script.write_text("import json, time\nprint(json.dumps({'variants': {'fp32': 1.0}}), flush=True)\ntime.sleep(30)\n")
    figures = lambda r: [Figure("partial", "fp32", r["variants"]["fp32"], "one", 1.0)]  # noqa: E731
    report, got, reason = run_benchmark(Benchmark("partial", str(script), [], [], figures), quick=False, device="cpu", timeout=3)
    assert reason is None and report["timed_out_after_s"] == 3 and got[0].value == 1.0
    silent = tmp_path / "bench_silent.py"
    silent.write_text("import time\ntime.sleep(30)\n")
    assert run_benchmark(Benchmark("silent", str(silent), [], [], figures), quick=False, device="cpu", timeout=2)[2] == "timed out after 2 s"


def test_gpu_arguments_and_host_only_benchmarks():
    by_name = {b.name: b for b in BENCHMARKS}
    assert by_name["training_speed"].args(False, "cuda") == ["--repeats", "3"] and by_name["training_speed"].args(False, "cpu") == []
    assert by_name["training_speed"].args(True, "cuda") == by_name["training_speed"].quick_args
    assert "cuda" not in by_name["ddp_scaling"].devices and by_name["tensorrt"].devices == ("cuda",)
    speed = {"gpu": "GPU", "batch": 4, "network": "net", "variants": {"amp": {"s_per_step": 0.2}}}
    store = {"cases": {"8": {"store": {"s_per_crop": 0.5}}, "16": {"store": {"s_per_crop": 0.01}}}, "roi": 96, "shape": [300, 512, 512]}
    (f,) = cross_figures({"training_speed": speed, "store_datapath": store})
    assert f.value == pytest.approx(0.04) and f.ratio == pytest.approx(0.2)  # the largest case count's crop time x batch / step
    assert cross_figures({"training_speed": {**speed, "gpu": None}, "store_datapath": store}) == []  # a CPU step is not the GPU question


@pytest.mark.slow
def test_one_command_writes_the_json_and_the_table(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "suite.py"), "--quick", "--device", "cpu", "--only", "anatomask_masking",
                          "--output", str(tmp_path)], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(next(tmp_path.glob("suite_*_cpu_quick.json")).read_text())
    assert result["versions"]["torch"] and result["device"] == "cpu" and not result["not_run"]
    figures = {f["figure"].split(" (")[0]: f for f in result["figures"]}
    numpy_loop = figures["mask generation"]
    assert numpy_loop["ratio"] == pytest.approx(numpy_loop["value"] / numpy_loop["baseline"], rel=1e-3)
    assert numpy_loop["ratio"] < 1  # the vectorized masking beats the per-sample loop, measured in this run
    assert (tmp_path / next(tmp_path.glob("*.json")).name.replace(".json", ".md")).read_text().count("| anatomask_masking |") == 2


def _result(device: str, quick: bool, figures: list[Figure]) -> dict:
    return {"date": "2026-11-25", "device": device, "device_name": device.upper(), "quick": quick, "versions": {"torch": "2", "monai": "1"},
            "figures": [vars(f) for f in figures], "not_run": {}}


def test_docs_blocks_take_the_named_benchmarks_from_the_newest_result_of_each_kind(tmp_path):
    old = _result("cpu", True, [Figure("ctfm", "old step", 9.0, "plain", 1.0), Figure("anatomask_masking", "masks", 3.0, "loop", 1.0)])
    new = _result("cpu", True, [Figure("ctfm", "step", 2.0, "plain", 1.0), Figure("medcontext_step", "other", 1.0, "x", 1.0)])
    gpu = _result("cuda", False, [Figure("ctfm", "gpu step", 0.5, "plain", 1.0)])
    for name, r in (("suite_2026-11-01_cpu_quick.json", old), ("suite_2026-11-25_cpu_quick.json", new), ("suite_2026-11-25_cuda.json", gpu)):
        (tmp_path / name).write_text(json.dumps(r))
    results = update_docs.latest_results(tmp_path)
    assert [p.name for p, _ in results] == ["suite_2026-11-25_cuda.json", "suite_2026-11-25_cpu_quick.json",
                                           "suite_2026-11-01_cpu_quick.json"]  # GPU full sizes first, newest first within a kind
    both = update_docs.update("<!-- bench: ctfm anatomask_masking -->\n<!-- /bench -->\n", results)
    assert "| anatomask_masking | masks | 3 |" in both and "old step" not in both  # a benchmark the newest run left out: its last figures
    text = "intro\n<!-- bench: ctfm -->\nhand-edited 1.0 s\n<!-- /bench -->\nend\n"
    out = update_docs.update(text, results)
    assert "hand-edited" not in out and "| ctfm | gpu step | 0.5 |" in out and "| ctfm | step | 2 |" in out
    assert "old step" not in out and "medcontext_step" not in out  # the newest result only, the named benchmark only
    assert out.index("suite_2026-11-25_cuda.json") < out.index("suite_2026-11-25_cpu_quick.json") and out.endswith("<!-- /bench -->\nend\n")
    assert update_docs.update(out, results) == out  # idempotent: --check passes right after an update


def test_every_docs_block_names_known_benchmarks_and_matches_the_committed_results():
    known = {b.name for b in BENCHMARKS}
    named = [n for path in update_docs.docs_files() for m in update_docs.BLOCK.finditer(path.read_text()) for n in m.group(2).split()]
    assert named and set(named) <= known, set(named) - known
    assert update_docs.main(["--check"]) == 0, "docs figures differ from bench/results: run python bench/update_docs.py"


def test_training_memory_counts_what_checkpointing_saves():
    """Activations counted on the meta device: exact on a small CPU run, and gradient checkpointing keeps fewer of them."""
    import torch
    from bench_training_memory import bundle_network, saved_activation_bytes

    x = torch.rand(1, 1, 64, 64, 64)
    on_cpu = saved_activation_bytes(bundle_network(12, False), x)
    assert saved_activation_bytes(bundle_network(12, False).to("meta"), x.to("meta")) == on_cpu > 0  # no arithmetic, same count
    assert saved_activation_bytes(bundle_network(12, True).to("meta"), x.to("meta")) < 0.7 * on_cpu
