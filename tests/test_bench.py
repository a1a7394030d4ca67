"""The benchmark command runs end to end on a tiny size and writes a valid report (benchmarks are not tests)."""
from __future__ import annotations

import json

import pytest
import torch

from bgmatting import bench
from bgmatting.benchmarks.model import _count_flops_direct, count_flops
from bgmatting.benchmarks.scaling import scaling_table


def test_bench_command_writes_json_and_markdown(tmp_path):
    # one thread: on a shared 2-core machine two OpenMP threads make tiny steps up to ~50x slower
    threads_before = torch.get_num_threads()
    json_path, markdown_path = tmp_path / "bench.json", tmp_path / "bench.md"
    status = bench.main([
        "--suite", "model,scaling", "--model-config", "tiny", "--sizes", "32", "--batches", "2",
        "--modes", "fp32,fp32_cl", "--repeats", "2", "--warmup", "1", "--scaling-sizes", "16,32",
        "--scaling-mode", "fp32", "--threads", "1", "--json", str(json_path), "--markdown", str(markdown_path),
    ])
    assert status == 0
    assert torch.get_num_threads() == threads_before  # the run restores the thread count
    report = json.loads(json_path.read_text())
    assert report["schema"] == "bgmatting-bench/1"
    assert report["errors"] == {}
    assert {"cpu", "torch", "torch_threads", "onednn_native_bf16"} <= set(report["environment"])
    cases = report["model"]["cases"]
    assert [(c["kind"], c["size"], c["batch"]) for c in cases] == [("train", 32, 2), ("infer", 32, 2)]
    for case in cases:
        assert case["flops"] > 0
        assert set(case["modes"]) == {"fp32", "fp32_cl"}
        baseline, channels_last = case["modes"]["fp32"], case["modes"]["fp32_cl"]
        assert baseline["speedup_vs_fp32"] == pytest.approx(1.0)
        assert baseline["alpha_max_abs_diff"] == 0.0
        assert channels_last["channels_last"] is True and baseline["channels_last"] is False
        for entry in (baseline, channels_last):
            assert entry["status"] == "ok"
            assert len(entry["times_s"]) == 2 and entry["median_s"] > 0
            assert entry["samples_per_s"] == pytest.approx(2 / entry["median_s"])
            assert entry["gflops_per_s"] == pytest.approx(case["flops"] / entry["median_s"] / 1e9)
            assert 0.0 <= entry["alpha_max_abs_diff"] < 1e-2
            assert entry["peak_memory_mib"] >= 0
    assert report["model"]["optimizer"]["parameters"] > 0
    # the 32 px batch-2 train case is not reused (scaling is batch 1), so both sizes are measured here
    assert [row["size"] for row in report["scaling"]["rows"]] == [16, 32]
    assert report["scaling"]["mode"] == "fp32"
    assert report["summary"]["lines"]
    markdown = markdown_path.read_text()
    assert "| kind | size | batch | mode |" in markdown and "### Scaling" in markdown


def test_data_metrics_and_video_suites_write_their_sections(tmp_path):
    json_path = tmp_path / "bench.json"
    status = bench.main([
        "--suite", "data,metrics,video", "--model-config", "tiny", "--data-size", "64", "--data-workers", "0",
        "--data-samples", "2", "--metrics-repeats", "1", "--video-frames", "1", "--threads", "1",
        "--json", str(json_path), "--markdown", str(tmp_path / "bench.md"),
    ])
    assert status == 0
    report = json.loads(json_path.read_text())
    assert report["errors"] == {}
    loader = report["data"]["loaders"][0]
    assert loader["workers"] == 0 and loader["samples"] == 2 and loader["samples_per_s"] > 0
    assert set(report["metrics"]["metrics"]) == {f"{m}/{r}" for m in ("sad", "mse", "grad", "conn")
                                                 for r in ("trimap", "full_frame")}
    assert report["metrics"]["metrics"]["sad/trimap"]["value"] > 0
    video = report["video"]
    assert (video["width"], video["height"], video["frames"]) == (1920, 1080, 1)
    assert video["stages_s"]["network"] > 0 and video["frames_per_s"] > 0
    assert sum(video["stages_s"].values()) == pytest.approx(video["seconds"], rel=1e-6)


def test_bench_rejects_unknown_suite_and_mode(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--suite", "nonsense"])
    with pytest.raises(SystemExit):
        bench.main(["--modes", "fp64"])
    assert "choose from" in capsys.readouterr().err


def test_scaling_exponent_is_one_for_linear_cost():
    table = scaling_table([{"size": s, "batch": 1, "median_s": 2e-6 * s * s} for s in (64, 128, 256)])
    assert table["exponent"] == pytest.approx(1.0)
    assert [row["relative_s_per_megapixel"] for row in table["rows"]] == pytest.approx([1.0, 1.0, 1.0])


def test_flop_count_scaled_from_reference_size_is_exact():
    assert count_flops("tiny", "train", 2, 36) == _count_flops_direct("tiny", "train", 2, 36)
