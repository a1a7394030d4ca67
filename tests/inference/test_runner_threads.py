"""matte_sequence with its reader and writer threads: the same files, written in the same order, as the plain
(single-threaded) run; an error on either thread stops the run with that error and leaves nothing behind."""
from __future__ import annotations

import hashlib

import pytest
import torch
from infer_helpers import refining_model

from bgmatting.io import DataError
from bgmatting.inference import Matter, ResultWriter, TargetBackgrounds, matte_sequence
from bgmatting.inference.temporal import TemporalOptions
from bgmatting.preprocess.capture import BackgroundPlates, CapturedBackgrounds, VideoFrames
from bgmatting.preprocess.segment import get_segmenter


class RecordingWriter(ResultWriter):
    """A ResultWriter that records the order of its writes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.order: list[str] = []

    def write(self, name, alpha, foreground, composite) -> None:
        self.order.append(name)
        super().write(name, alpha, foreground, composite)


def _run(clip: dict, folder, threads: bool, writer_class=RecordingWriter, batch_size: int = 2,
         frames=lambda frames: frames) -> RecordingWriter:
    matter = Matter(refining_model(refine_mode="sampling", refine_pixels=16 * 8), mode="refine", precision="fp32",
                    device="cpu", segmenter=get_segmenter("background_difference", postprocess=False))
    plates = BackgroundPlates(CapturedBackgrounds(clip["plate"]), "auto")
    writer = writer_class(folder, pngs=True, video=(10.0, "clip"), video_extension=".avi", fourcc="MJPG")
    matte_sequence(matter, frames(VideoFrames(clip["video"])), plates, TargetBackgrounds(), writer, clip=True,
                   temporal=TemporalOptions("ofd+static"), batch_size=batch_size, progress=False, threads=threads)
    return writer


def _digests(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "summary.json"}


def test_threaded_run_writes_the_same_files_in_the_same_order(synthetic_clip, tmp_path):
    torch_threads = torch.get_num_threads()
    plain = _run(synthetic_clip, tmp_path / "plain", threads=False)
    threaded = _run(synthetic_clip, tmp_path / "threaded", threads=True)
    assert torch.get_num_threads() == torch_threads  # the network's threads are given back
    assert threaded.order == plain.order == [f"{i:05d}" for i in range(synthetic_clip["count"])]
    plain_files, threaded_files = _digests(tmp_path / "plain"), _digests(tmp_path / "threaded")
    assert len(plain_files) == 3 * synthetic_clip["count"] + 2  # alpha, foreground, composite PNGs; two videos
    assert threaded_files == plain_files


class FailingWriter(RecordingWriter):
    """Fails on its third frame, as a full disk would."""

    def write(self, name, alpha, foreground, composite) -> None:
        if len(self.order) == 2:
            raise DataError(f"{name}: no space left on the device")
        super().write(name, alpha, foreground, composite)


@pytest.mark.parametrize("threads", [False, True])
def test_an_error_on_the_writer_thread_stops_the_run_and_leaves_nothing(synthetic_clip, tmp_path, threads):
    with pytest.raises(DataError, match="00002: no space left"):
        _run(synthetic_clip, tmp_path / "out", threads, FailingWriter, batch_size=1)
    assert not any((tmp_path / "out").iterdir())  # the staging folder is gone, no output was moved in


def _broken_after(count: int):
    """A frame source that fails (as a truncated video does) after ``count`` frames."""
    def frames(source):
        for frame in source:
            if frame.index == count:
                raise DataError(f"clip.avi: frame {count} cannot be decoded")
            yield frame
    return frames


@pytest.mark.parametrize("threads", [False, True])
def test_an_error_on_the_reader_thread_stops_the_run(synthetic_clip, tmp_path, threads):
    with pytest.raises(DataError, match="frame 5 cannot be decoded"):
        _run(synthetic_clip, tmp_path / "out", threads, frames=_broken_after(5))
    assert not any((tmp_path / "out").iterdir())
