"""Matte your own photos and videos: ``python -m bgmatting.infer``.

    python -m bgmatting.infer --input clip.mp4 --background plate.png --checkpoint ckpt.pt --output out/
        [--target-background beach.jpg | --target-color 120,255,155] [--mode original|full|refine] [--size 512]
        [--refine-mode sampling|thresholding|full] [--refine-pixels 80000] [--downsample-ratio R]
        [--handheld | --align-once | --no-align] [--no-exposure] [--temporal ofd|static|ofd+static|none]
        [--segmenter background_difference|deeplabv3 [--segmenter-weights W]] [--segmentation DIR]
        [--batch-size N] [--device auto] [--precision auto] [--max-memory-gb G] [--png-sequences]

Inputs: an image, a folder of images (each its own still, or ``--sequence`` for consecutive video frames; a
folder in the original release's layout, ``0001_img.png`` + ``0001_back.png`` (+ ``0001_masksDL.png``), needs
no ``--background``), or a video file; a captured background image (or a folder with one per input image,
matched by name). The plate is aligned to the frames as needed, as real-capture preparation does
(:mod:`bgmatting.preprocess.capture`): its misalignment is measured per frame and it is aligned when it is off.
Outputs in ``--output`` (see :mod:`bgmatting.inference.sinks`): alpha/, foreground/ (RGBA), composite/ PNGs
per frame, for videos an encoded composite and alpha video, and summary.json (frames/s, what was done with the
plate per frame, a video's declared and decoded frame counts) when complete; what needs the user's attention (a
video that decoded fewer frames than it declares) is a ``warning:`` line on stderr. A thin layer over
:func:`bgmatting.inference.job.run_job`; bad input: one line on stderr naming the file or value, exit status 2
(checked before anything is written; a second run into an output folder that a run is writing is refused too).
"""
from __future__ import annotations

import argparse
import sys

from bgmatting.io import DataError
from bgmatting.inference.job import InferenceJob, plate_lines, run_job
from bgmatting.inference.pipeline import MATTING_MODES, MemoryLimitError
from bgmatting.models import NonFiniteOutputError
from bgmatting.inference.sinks import DEFAULT_FOURCC
from bgmatting.inference.sources import GREEN_SCREEN, parse_colour
from bgmatting.inference.temporal import DEFAULT_TEMPORAL, TEMPORAL_FILTERS
from bgmatting.models import CheckpointError
from bgmatting.models.refiner import REFINE_MODES
from bgmatting.preprocess.capture import choose_alignment
from bgmatting.preprocess.motion import DEFAULT_OFFSETS
from bgmatting.preprocess.segment import SEGMENTERS, SegmenterWeightsError

USER_ERRORS = (DataError, CheckpointError, SegmenterWeightsError, MemoryLimitError, NonFiniteOutputError)


def _offsets(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"offsets must be comma-separated integers, got {text!r}") from error


def _colour(text: str) -> tuple[int, int, int]:
    try:
        return parse_colour(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _ratio(text: str) -> float:
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 < ratio <= 1.0:
        raise argparse.ArgumentTypeError(f"downsample ratio must be a number in (0, 1], got {text!r}")
    return ratio


def _pixels(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"refine pixels must be an integer >= 0, got {text!r}")
    return int(text)


def _essential_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to matte (the common options)")
    g.add_argument("--input", required=True, help="image, folder of images, or video file")
    g.add_argument("--background", help="captured background image (or folder, one per image); not needed for a "
                                        "folder in the original layout (0001_img.png + 0001_back.png)")
    g.add_argument("--checkpoint", default=None,
                   help="our checkpoint or an original-release state dict (default: the starter weights the package "
                        "ships, minutes of CPU training: docs/MODEL_CARD.md)")
    g.add_argument("--output", required=True, help="output folder")
    target = g.add_mutually_exclusive_group()
    target.add_argument("--target-background", help="image, folder of images, or video to composite over")
    target.add_argument("--target-color", type=_colour, help=f"R,G,B 0..255 (default {GREEN_SCREEN})")


def _input_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input")
    g.add_argument("--sequence", action="store_true", help="an input folder holds consecutive video frames")
    g.add_argument("--fps", type=float, default=25.0, help="frame rate of the video written for --sequence")
    g.add_argument("--segmentation", help="folder of precomputed (raw) soft segmentations, matched by name")
    g.add_argument("--segmenter", choices=sorted(SEGMENTERS),
                   help="soft segmentation backend when --segmentation is not given (default background_difference)")
    g.add_argument("--segmenter-weights", help="weights file of the deeplabv3 segmenter (offline use)")
    g.add_argument("--motion-offsets", type=_offsets, default=DEFAULT_OFFSETS,
                   help="video motion-cue frame offsets: non-zero, distinct, one per motion frame of the network "
                        "(default -40,-20,20,40; write --motion-offsets=-2,-1,1,2)")


def _plate_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("plate (the captured background)")
    align = g.add_mutually_exclusive_group()
    align.add_argument("--handheld", action="store_true", help="align the background to every frame (AKAZE)")
    align.add_argument("--align-once", action="store_true", help="align the background once, to the first frame")
    align.add_argument("--no-align", action="store_true", help="background already registered: only resize it")
    g.add_argument("--no-exposure", action="store_true",
                   help="never correct the plate's exposure (default: a gain/bias where it measurably helps)")


def _model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--mode", choices=MATTING_MODES, default=None,
                   help="original: crop around the subject, network at SIZE x SIZE; full: whole frame; refine: "
                        "whole frame at native resolution, base downsampled + refiner (a checkpoint with a refiner). "
                        "Default: refine for a checkpoint with a refiner, else original (measured: docs/CAPTURES.md)")
    g.add_argument("--size", type=int, default=512,
                   help="original: network side (512); full: long side of the processing size (0: native)")
    g.add_argument("--refine-mode", choices=REFINE_MODES, default="sampling",
                   help="refine mode: which 4x4 patches the refiner re-predicts (default sampling: the highest errors)")
    g.add_argument("--refine-pixels", type=_pixels, default=80_000,
                   help="refine mode sampling: full-resolution pixels refined per frame (default 80000, BGMv2's HD)")
    g.add_argument("--downsample-ratio", type=_ratio, default=None,
                   help="refine mode: base resolution / frame resolution (default: automatic, base long side 512)")
    g.add_argument("--temporal", choices=TEMPORAL_FILTERS, default=DEFAULT_TEMPORAL,
                   help=f"temporal smoothing of a clip's alpha (default {DEFAULT_TEMPORAL}; docs/INFERENCE.md)")
    g.add_argument("--no-largest-component", action="store_true", help="keep every component of alpha")


def _output_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--png-sequences", action="store_true", help="videos: also write per-frame PNGs")
    g.add_argument("--video-codec", default=DEFAULT_FOURCC,
                   help="OpenCV fourcc (4 characters) of the encoded videos; tried before the run starts")
    g.add_argument("--video-extension", default=".mp4", help="container of the encoded videos (.mp4, .avi)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def _speed_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speed and memory")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    g.add_argument("--precision", default="auto", help="auto, fp32, fp32_cl, bf16, fp16 (CUDA)")
    g.add_argument("--batch-size", type=int, default=1, help="frames per network call")
    g.add_argument("--max-memory-gb", type=float,
                   help="refuse frames whose estimated memory (decoding included) is above this (default: 75%% of "
                        "the device's memory)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bgmatting.infer",
        usage="python -m bgmatting.infer --input PHOTO_OR_VIDEO --background PLATE --output DIR [--checkpoint CKPT] "
              "[options]",
        description="Matte photos and videos with a Background Matting generator: alpha, foreground, composites. "
                    "By default the plate is aligned to the frames where it is measurably off and its exposure "
                    "corrected where that helps.",
    )
    for add in (_essential_options, _input_options, _plate_options, _model_options, _output_options, _speed_options):
        add(p)
    return p


def job_from_args(args: argparse.Namespace) -> InferenceJob:
    return InferenceJob(
        input=args.input, background=args.background, checkpoint=args.checkpoint, output=args.output,
        target_background=args.target_background, target_color=args.target_color, mode=args.mode, size=args.size,
        refine_mode=args.refine_mode, refine_pixels=args.refine_pixels, downsample_ratio=args.downsample_ratio,
        alignment=choose_alignment(handheld=args.handheld, align_once=args.align_once, no_align=args.no_align),
        exposure="off" if args.no_exposure else "auto", segmenter=args.segmenter,
        segmenter_weights=args.segmenter_weights, segmentation=args.segmentation, sequence=args.sequence,
        fps=args.fps, motion_offsets=args.motion_offsets, temporal=args.temporal, png_sequences=args.png_sequences,
        video_codec=args.video_codec, video_extension=args.video_extension,
        largest_component=not args.no_largest_component, batch_size=args.batch_size, device=args.device,
        precision=args.precision, max_memory_gb=args.max_memory_gb, progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run_job(job_from_args(args))
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for note in summary["notes"]:
        print(note)
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"plate ({summary['alignment']} alignment):")
    print("\n".join(plate_lines(summary["plates"])))
    print(
        f"{summary['frames']} frames in {summary['seconds']:.2f} s: {summary['frames_per_second']:.2f} frames/s "
        f"({summary['mode']} mode, {summary['precision']} on {summary['device']}); outputs in {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
