"""The benchmark command runs end to end on a tiny size and writes a valid report (benchmarks are not tests)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import bgmatting
from bgmatting import bench
from bgmatting.benchmarks.model import _count_flops_direct, count_flops
from bgmatting.benchmarks.scaling import scaling_table
from bgmatting.models import Generator, MattingModel


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
    step = report["model"]["train_step"]  # the default training mode's step: split by operator kind, fused Adam
    assert step["size"] == 32 and step["step_s"] > 0 and step["fused_step_s"] > 0
    assert set(step["split_s"]) == {"convolution", "batch_norm", "other", "optimizer"}
    assert step["split_s"]["convolution"] > 0 and step["split_s"]["optimizer"] > 0
    assert any(line.startswith("Where the step's time goes") for line in report["summary"]["lines"])
    # the 32 px batch-2 train case is not reused (scaling is batch 1), so both sizes are measured here
    assert [row["size"] for row in report["scaling"]["rows"]] == [16, 32]
    assert report["scaling"]["mode"] == "fp32"
    assert report["summary"]["lines"]
    markdown = markdown_path.read_text()
    assert "| kind | size | batch | mode |" in markdown and "### Scaling" in markdown


def test_data_and_metrics_suites_write_their_sections(tmp_path):
    json_path = tmp_path / "bench.json"
    status = bench.main([
        "--suite", "data,metrics", "--data-size", "64", "--data-workers", "0", "--data-samples", "2",
        "--metrics-repeats", "1", "--threads", "1", "--json", str(json_path), "--markdown", str(tmp_path / "bench.md"),
    ])
    assert status == 0
    report = json.loads(json_path.read_text())
    assert report["errors"] == {}
    loader = report["data"]["loaders"][0]
    assert loader["workers"] == 0 and loader["samples"] == 2 and loader["samples_per_s"] > 0
    assert set(report["metrics"]["metrics"]) == {f"{m}/{r}" for m in ("sad", "mse", "grad", "conn")
                                                 for r in ("trimap", "full_frame")}
    assert report["metrics"]["metrics"]["sad/trimap"]["value"] > 0


def test_video_suite_compares_modes_and_code_in_fresh_processes(tmp_path):
    """Refine vs crop mode, this code vs another checkout's (here: this one again, through --compare-src), each an
    infer run in its own process; stage times, peak memory, ratios and the alpha check are in the report."""
    json_path, markdown_path = tmp_path / "bench.json", tmp_path / "bench.md"
    source = Path(bgmatting.__file__).resolve().parents[1]
    status = bench.main([
        "--suite", "video", "--video-model", "tiny_refine", "--frame-sizes", "48x64", "--video-frames", "2",
        "--repeats", "1", "--threads", "1", "--compare-src", str(source),
        "--json", str(json_path), "--markdown", str(markdown_path),
    ])
    assert status == 0
    report = json.loads(json_path.read_text())
    assert report["errors"] == {}
    (size,) = report["video"]["sizes"]
    assert (size["height"], size["width"], size["frames"]) == (48, 64, 2)
    assert set(size["configs"]) == {"this/refine", "this/original", "compare/refine", "compare/original"}
    for config in size["configs"].values():
        assert config["frames"] == 2 and config["frames_per_s"] > 0 and config["peak_rss_mib"] > 0
        assert config["torch_threads"] == 1 and set(config["stages_s_per_frame"]) >= {"decode", "base", "encode"}
    assert size["configs"]["this/refine"]["stages_s_per_frame"]["refiner"] > 0
    assert size["configs"]["this/refine"]["threads"] and size["configs"]["this/refine"]["fast_inference"]
    assert set(size["ratios"]) == {"refine_vs_crop", "refine_vs_compare", "crop_vs_compare", "compare_refine_vs_crop"}
    assert size["alpha"]["network_max_abs_diff_vs_unoptimised"] < 1e-3
    assert size["alpha"]["network_max_abs_diff_vs_compare"] < 1e-3
    assert any(line.startswith("Video 64x48 end to end") for line in report["summary"]["lines"])
    assert "| this/refine |" in markdown_path.read_text()


def test_video_suite_refuses_a_folder_without_the_package(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--suite", "video", "--compare-src", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no bgmatting package in this folder" in capsys.readouterr().err


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


def test_refine_compile_and_precision_suites(tmp_path, monkeypatch):
    """The three suites of the refiner issue on tiny models and frames (torch.compile replaced by the eager
    module: the suite's bookkeeping is tested here, not inductor)."""
    monkeypatch.setattr(torch, "compile", lambda module, **options: module)
    checkpoint = tmp_path / "tiny.pt"
    torch.save(MattingModel(Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1)).checkpoint_state(), checkpoint)
    json_path, markdown_path = tmp_path / "bench.json", tmp_path / "bench.md"
    status = bench.main([
        "--suite", "refine,train_compile,precision", "--frame-sizes", "64x96,128x192", "--refine-model", "tiny_refine",
        "--plain-model", "tiny", "--estimate-native-above", "7000", "--compile-train", "tiny_refine:32",
        "--checkpoint", str(checkpoint), "--precision-sizes", "32", "--repeats", "1", "--threads", "1",
        "--json", str(json_path), "--markdown", str(markdown_path),
    ])
    assert status == 0
    report = json.loads(json_path.read_text())
    assert report["errors"] == {} and "peak" not in report  # ratios to peak need --suite peak,refine
    small, large = report["refine"]["frames"]
    assert (small["height"], small["width"], large["height"], large["width"]) == (64, 96, 128, 192)
    assert small["methods"]["native"]["note"] == "measured"
    assert large["methods"]["native"]["note"].startswith("estimated")  # 128 x 192 > 7000 pixels
    rate = small["methods"]["native"]["gflops_per_s"]
    assert large["methods"]["native"]["gflops_per_s"] == pytest.approx(rate)
    assert large["methods"]["native"]["gflop"] == pytest.approx(4 * small["methods"]["native"]["gflop"])
    for frame in (small, large):
        refine, original = frame["methods"]["refine"], frame["methods"]["original"]
        assert original["input"] == [512, 512] and refine["input"] == [frame["height"], frame["width"]]
        assert refine["base_input"] == [frame["height"], frame["width"]]  # frames below 512: base at full size
        assert refine["gflop"] > 0 and refine["gflops_per_s"] > 0 and "ratio_to_conv_peak" not in refine
        assert frame["speedup_vs_native"] == pytest.approx(frame["methods"]["native"]["seconds"] / refine["seconds"])
    (row,) = report["train_compile"]
    assert (row["model"], row["side"], row["batch"]) == ("tiny_refine", 32, 4) and row["alpha_max_abs_diff"] == 0.0
    precision = report["precision"]
    assert precision["trained"] and precision["model"] == str(checkpoint)
    assert {r["dtype"] for r in precision["rows"]} == {"bf16", "fp16"}
    assert set(precision["within"]) == {"bf16", "fp16"} and precision["tolerance"] == 1e-2
    lines = "\n".join(report["summary"]["lines"])
    assert "refine" in lines and "torch.compile" in lines and "precision=auto" in lines
    markdown = markdown_path.read_text()
    assert "### Per frame" in markdown and "### Training step: torch.compile" in markdown and "max Δα" in markdown
