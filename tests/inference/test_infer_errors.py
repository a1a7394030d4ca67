"""Bad ``python -m bgmatting.infer`` inputs, as a table: exit status 2, one line naming the file or value, no
traceback, nothing written outside the output folder, and an earlier complete run in that folder kept as it was.
The table also holds options that used to end in a traceback (precision, device, video codec and extension,
motion offsets, a sequence of two frame sizes). Also: a full disk, a read-only output folder, temporaries of
killed runs, non-finite network output."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from infer_helpers import save_checkpoint, tiny_generator

from bgmatting import infer
from bgmatting.io import read_alpha, read_image, write_image
from bgmatting.inference.sinks import SUMMARY_NAME


def _run(capsys, *args) -> tuple[int, str, str]:
    code = infer.main([str(a) for a in args] + ["--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _tree(folder: Path) -> dict[str, str]:
    """Relative path -> content hash of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path, capsys, photo_folder, tiny_checkpoint):
    """An output folder holding a complete earlier run, and the arguments that made it."""
    args = ["--input", photo_folder["images"], "--background", photo_folder["plates"], "--segmentation",
            photo_folder["masks"], "--checkpoint", tiny_checkpoint, "--size", 32, "--no-align"]
    code, out, err = _run(capsys, *args, "--output", tmp_path / "out")
    assert code == 0, err
    return {"args": args, "out": tmp_path / "out", "root": tmp_path}


def _replace(args: list, flag: str, value) -> list:
    args = list(args)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    return args


def _nan_checkpoint(path: Path) -> Path:
    """Finite weights so large that the network's output overflows to NaN."""
    generator = tiny_generator()
    state = {k: v * 1e30 if k.endswith("weight") and v.dim() == 4 else v for k, v in generator.state_dict().items()}
    generator.load_state_dict(state)
    return save_checkpoint(path, generator)


CASES = {  # name: (the arguments from the finished run's, the message)
    "batch size 0": (lambda a, r: _replace(a, "--batch-size", 0), "batch size must be a positive integer, got 0"),
    "negative batch size": (lambda a, r: _replace(a, "--batch-size", -3), "got -3"),
    "size 130 in original mode": (lambda a, r: _replace(a, "--size", 130),
                                  "positive multiple of 4 in original mode (the network side), got 130"),
    "size 0 in original mode": (lambda a, r: _replace(a, "--size", 0), "in original mode (the network side), got 0"),
    "negative size in full mode": (lambda a, r: _replace(a, "--size", -8) + ["--mode", "full"],
                                   "size must be 0 (native) or positive, got -8"),
    "missing checkpoint": (lambda a, r: _replace(a, "--checkpoint", r / "none.pt"),
                           "none.pt: checkpoint does not exist"),
    "random checkpoint": (lambda a, r: _replace(a, "--checkpoint", _random_file(r / "random.pt")), "random.pt"),
    "missing input": (lambda a, r: _replace(a, "--input", r / "nothing"), "nothing: input does not exist"),
    "missing plate": (lambda a, r: _replace(a, "--background", r / "no_plate.png"),
                      "no_plate.png: captured background does not exist"),
    "weights for the wrong segmenter": (lambda a, r: _without_segmentation(a) + ["--segmenter-weights", r / "w.pt"],
                                        "w.pt: segmenter weights are for the deeplabv3 segmenter"),
    "unreadable segmenter weights": (lambda a, r: _without_segmentation(a) + [
        "--segmenter", "deeplabv3", "--segmenter-weights", _random_file(r / "deeplab.pt")],
        "deeplab.pt: cannot be read as a weights-only PyTorch checkpoint"),
    "zero fps": (lambda a, r: a + ["--sequence", "--fps", 0], "fps must be positive, got 0"),
    "memory above the limit": (lambda a, r: _replace(a, "--size", 0) + ["--mode", "full", "--max-memory-gb", 5e-4],
                               "above the limit of 0.0 GiB (--max-memory-gb); use --size"),
    "non-finite network output": (lambda a, r: _replace(a, "--checkpoint", _nan_checkpoint(r / "nan.pt")),
                                  "chelsea.png: the network's output is not finite"),
    "unknown precision": (lambda a, r: a + ["--precision", "bogus"], "unknown precision 'bogus'; choose one of"),
    "unknown device": (lambda a, r: a + ["--device", "bogus"], "device 'bogus' is not a device; use auto, cpu"),
    "cuda without a GPU": (lambda a, r: a + ["--device", "cuda"],
                           "device 'cuda': no CUDA GPU is available on this machine"),
    "fp16 without a GPU": (lambda a, r: a + ["--precision", "fp16"], "precision fp16 needs a CUDA device"),
    "codec OpenCV cannot encode": (lambda a, r: a + ["--sequence", "--video-codec", "ZZZZ"],
                                   "OpenCV cannot encode video codec 'ZZZZ' into '.mp4' files here"),
    "codec of 7 characters": (lambda a, r: a + ["--video-codec", "TOOLONG"],
                              "video codec 'TOOLONG': a fourcc is 4 characters"),
    "not a video extension": (lambda a, r: a + ["--sequence", "--video-extension", ".txt"],
                              "video extension '.txt' is not a video container"),
    "zero motion offsets": (lambda a, r: a + ["--sequence", "--motion-offsets", "0,0"],
                            "motion offsets 0,0: must be non-zero, distinct integers"),
    "repeated motion offsets": (lambda a, r: a + ["--sequence", "--motion-offsets=-5,5,5,10"],
                                "motion offsets -5,5,5,10: must be non-zero, distinct"),
    "fewer offsets than motion frames": (
        lambda a, r: _replace(a, "--checkpoint", save_checkpoint(r / "motion.pt", tiny_generator(
            motion_uses_background_feature=False))) + ["--sequence", "--motion-offsets=-1,1"],
        "motion offsets -1,1: this checkpoint's network takes 4 motion frames; give 4 offsets"),
    "sequence of two frame sizes": (lambda a, r: _replace(a, "--input", _mixed_sizes(a, r)) + ["--sequence"],
                                    "rocket.png is 64x48 but chelsea.png is 128x96; the frames of a sequence"),
}
#: Cases that refuse a GPU option; they hold only on a machine without CUDA.
NO_GPU_CASES = {"cuda without a GPU", "fp16 without a GPU"}


def _random_file(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes())
    return path


def _mixed_sizes(args: list, root: Path) -> Path:
    """A copy of the input folder whose last frame is half the size of the others."""
    source, folder = Path(args[args.index("--input") + 1]), root / "mixed"
    for path in sorted(source.iterdir()):
        image = read_image(path)
        write_image(folder / path.name, cv2.resize(image, (64, 48)) if path.stem == "rocket" else image)
    return folder


def _without_segmentation(args: list) -> list:
    i = args.index("--segmentation")
    return args[:i] + args[i + 2:]


@pytest.mark.parametrize("case", [
    pytest.param(case, marks=pytest.mark.skipif(case in NO_GPU_CASES and torch.cuda.is_available(),
                                                reason="this machine has a CUDA GPU"))
    for case in sorted(CASES)])
def test_bad_input_exits_2_with_one_line_and_loses_nothing(case, finished, capsys):
    make_args, message = CASES[case]
    root, out = finished["root"], finished["out"]
    args = make_args(finished["args"], root)
    before_out, before_root = _tree(out), {p for p in _tree(root) if not p.startswith("out/")}
    code, stdout, stderr = _run(capsys, *args, "--output", out)
    assert code == 2, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len([line for line in lines if line.startswith("error:")]) == 1 and "Traceback" not in stderr
    assert message in stderr, stderr
    assert _tree(out) == before_out  # the earlier run is intact, and nothing of this one is left
    new_outside = {p for p in _tree(root) if not p.startswith("out/")} - before_root
    assert all(Path(p).name in {"random.pt", "deeplab.pt", "nan.pt", "motion.pt"} for p in new_outside), new_outside


def test_a_gpu_index_the_machine_does_not_have_is_refused(monkeypatch, tiny_checkpoint):
    """The CUDA branch of the device check without a GPU: a machine that reports one GPU."""
    from bgmatting.io import DataError
    from bgmatting.inference.job import InferenceJob, check_job

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    job = InferenceJob(input="photo.png", checkpoint=tiny_checkpoint, output="out", device="cuda:3")
    with pytest.raises(DataError, match=r"^device 'cuda:3': this machine has 1 CUDA GPU\(s\)$"):
        check_job(job)


def test_a_codec_opencv_cannot_encode_is_one_line_on_the_real_console(finished):
    """Through ``python -m``: OpenCV's and FFmpeg's own lines about the codec do not reach the console either."""
    args = [str(a) for a in finished["args"]] + ["--sequence", "--video-codec", "ZZZZ", "--no-progress"]
    result = subprocess.run([sys.executable, "-m", "bgmatting.infer", *args, "--output", str(finished["out"])],
                            capture_output=True, text=True, timeout=300, cwd=finished["root"])
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: OpenCV cannot encode video codec 'ZZZZ' into '.mp4' files here; try --video-codec MJPG with "
        "--video-extension .avi"], result.stderr


def test_output_path_that_is_a_file(tmp_path, capsys, finished):
    (tmp_path / "file.txt").write_text("not a folder")
    code, _, stderr = _run(capsys, *finished["args"], "--output", tmp_path / "file.txt")
    assert code == 2 and "file.txt: the output path is a file, not a folder" in stderr
    assert (tmp_path / "file.txt").read_text() == "not a folder"


def test_stale_temporaries_are_removed_at_start(capsys, finished):
    out = finished["out"]
    (out / ".staging-deadbeef.tmp" / "alpha").mkdir(parents=True)
    (out / ".staging-deadbeef.tmp" / "alpha" / "x.png").write_bytes(b"partial")
    (out / "alpha" / ".chelsea.png.0a1b2c3d.tmp").write_bytes(b"partial")
    (out / ".clip_composite.mp4.1234abcd.tmp.mp4").write_bytes(b"partial")
    code, _, stderr = _run(capsys, *finished["args"], "--output", out)
    assert code == 0, stderr
    assert not [p for p in out.rglob(".*")]


# ------------------------------------------------------------------------------- full disk and read-only folder
def _mount_tmpfs(path: Path, size: str, readonly: bool = False) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if readonly else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return result.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 24 KiB file system (tmpfs; needs the right to mount, else the test is skipped)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "24k"):
        pytest.skip("cannot mount a small tmpfs here (needs root / CAP_SYS_ADMIN)")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_full_disk_is_one_clear_line_and_leaves_no_partial_file(capsys, finished, small_disk):
    code, _, stderr = _run(capsys, *finished["args"], "--size", 64, "--output", small_disk / "out")
    assert code == 2 and "no space left on device writing " in stderr and str(small_disk) in stderr, stderr
    assert "Traceback" not in stderr
    assert not [p for p in small_disk.rglob("*") if p.is_file()]  # no .png.tmp, no partial PNG


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this process cannot write into: chmod for other users, a read-only tmpfs for root."""
    folder = tmp_path / "readonly"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not _mount_tmpfs(folder, "64k", readonly=True):
        pytest.skip("cannot make a read-only folder here as root without mounting")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_read_only_output_folder(capsys, finished, read_only_folder):
    code, _, stderr = _run(capsys, *finished["args"], "--output", read_only_folder)
    assert code == 2 and "the output folder is not writable" in stderr and str(read_only_folder) in stderr, stderr


def test_a_working_run_after_the_bad_ones_replaces_the_earlier_results(capsys, finished, tiny_motion_checkpoint):
    out = finished["out"]
    before = read_alpha(out / "alpha" / "chelsea.png")
    args = _replace(finished["args"], "--checkpoint", tiny_motion_checkpoint)
    code, _, stderr = _run(capsys, *args, "--output", out)
    assert code == 0, stderr
    assert not np.array_equal(read_alpha(out / "alpha" / "chelsea.png"), before)
    assert (out / SUMMARY_NAME).exists() and not list(out.rglob(".*"))


def test_the_memory_estimate_refuses_a_huge_frame_before_the_network_runs():
    from bgmatting.inference.pipeline import NETWORK_BYTES_PER_PIXEL, Matter, MemoryLimitError

    matter = Matter(tiny_generator(), mode="full", size=0, device="cpu", precision="fp32")
    a, b = NETWORK_BYTES_PER_PIXEL
    huge = np.broadcast_to(np.zeros(3, np.float32), (4000, 6000, 3))  # 6000 x 4000 without the memory
    need = matter.memory_estimate(4000, 6000)
    assert need >= (a * 8 + b) * 4000 * 6000  # ngf 8
    matter.memory_limit = need // 4
    advice = r"6000x4000 in full mode needs about .* use --size (\d+) .* or --mode original"
    with pytest.raises(MemoryLimitError, match=advice):
        matter.matte_batch([huge], [huge], [np.zeros((4000, 6000), np.float32)])
    side = matter.memory_estimate(4000, 6000, size=3000)
    assert side < need  # a smaller processing size needs less
