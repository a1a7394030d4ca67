"""Matte your own photos and videos: ``python -m bgmatting.infer``.

    python -m bgmatting.infer --input clip.mp4 --background plate.png --checkpoint ckpt.pt --output out/
        [--target-background beach.jpg | --target-color 120,255,155] [--mode original|full|refine] [--size 512]
        [--refine-mode sampling|thresholding|full] [--refine-pixels 80000] [--downsample-ratio R]
        [--handheld | --align-once | --no-align] [--segmenter background_difference|deeplabv3] [--segmentation DIR]
        [--batch-size N] [--device auto] [--precision auto] [--png-sequences]

Inputs: an image, a folder of images (each its own still, or ``--sequence`` for consecutive video frames),
or a video file; a captured background image (or a folder with one per input image, matched by name),
aligned to the frames as real-capture preparation does (:mod:`bgmatting.preprocess.capture`: once per plate
by default, per frame with ``--handheld``, not at all with ``--no-align``).
Outputs in ``--output`` (see :mod:`bgmatting.inference.sinks`): alpha/, foreground/ (RGBA), composite/ PNGs
per frame, for videos an encoded composite and alpha video, and summary.json (frames/s) when complete.
A thin layer over :class:`bgmatting.inference.Matter` and :func:`bgmatting.inference.matte_sequence`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bgmatting.data.io import DataError
from bgmatting.inference.pipeline import MODES, Matter
from bgmatting.inference.runner import matte_sequence
from bgmatting.inference.sinks import DEFAULT_FOURCC, ResultWriter
from bgmatting.inference.sources import GREEN_SCREEN, Segmentations, TargetBackgrounds, parse_colour
from bgmatting.models import CheckpointError, load_generator, load_matting_model
from bgmatting.models.refiner import MODES as REFINE_MODES
from bgmatting.preprocess.capture import BackgroundPlates, CapturedBackgrounds, VideoFrames, choose_alignment, open_input
from bgmatting.preprocess.motion import DEFAULT_OFFSETS
from bgmatting.preprocess.segment import SEGMENTERS, SegmenterWeightsError, get_segmenter


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bgmatting.infer",
        description="Matte photos and videos with a Background Matting generator: alpha, foreground, composites.",
    )
    p.add_argument("--input", required=True, help="image, folder of images, or video file")
    p.add_argument("--background", required=True, help="captured background image (or folder, one per image)")
    p.add_argument("--checkpoint", required=True, help="our checkpoint or an original-release state dict")
    p.add_argument("--output", required=True, help="output folder")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-background", help="image, folder of images, or video to composite over")
    target.add_argument("--target-color", type=_colour, help=f"R,G,B 0..255 (default {GREEN_SCREEN})")
    p.add_argument("--mode", choices=MODES, default="original",
                   help="original: crop around the subject, network at SIZE x SIZE; full: whole frame; refine: "
                        "whole frame at native resolution, base downsampled + refiner (a checkpoint with a refiner)")
    p.add_argument("--refine-mode", choices=REFINE_MODES, default="sampling",
                   help="refine mode: which 4x4 patches the refiner re-predicts (default sampling: the highest errors)")
    p.add_argument("--refine-pixels", type=_pixels, default=80_000,
                   help="refine mode sampling: full-resolution pixels refined per frame (default 80000, BGMv2's HD)")
    p.add_argument("--downsample-ratio", type=_ratio, default=None,
                   help="refine mode: base resolution / frame resolution (default: automatic, base long side 512)")
    p.add_argument("--size", type=int, default=512,
                   help="original: network side (512); full: long side of the processing size (0: native)")
    align = p.add_mutually_exclusive_group()
    align.add_argument("--handheld", action="store_true", help="align the background to every frame (AKAZE)")
    align.add_argument("--align-once", action="store_true",
                       help="align the background once to the first frame (fixed camera; the default)")
    align.add_argument("--no-align", action="store_true", help="background already registered: only resize it")
    p.add_argument("--segmenter", choices=sorted(SEGMENTERS), default="background_difference",
                   help="soft segmentation backend when --segmentation is not given")
    p.add_argument("--segmentation", help="folder of precomputed (raw) soft segmentations, matched by name")
    p.add_argument("--sequence", action="store_true", help="an input folder holds consecutive video frames")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the video written for --sequence")
    p.add_argument("--motion-offsets", type=_offsets, default=DEFAULT_OFFSETS,
                   help="video motion-cue frame offsets (default -40,-20,20,40)")
    p.add_argument("--png-sequences", action="store_true", help="videos: also write per-frame PNGs")
    p.add_argument("--video-codec", default=DEFAULT_FOURCC, help="OpenCV fourcc of the encoded videos")
    p.add_argument("--video-extension", default=".mp4", help="container of the encoded videos (.mp4, .avi)")
    p.add_argument("--no-largest-component", action="store_true", help="keep every component of alpha")
    p.add_argument("--batch-size", type=int, default=1, help="frames per network call")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--precision", default="auto", help="auto, fp32, fp32_cl, bf16, fp16 (CUDA)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> dict:
    frames = open_input(args.input)
    is_video = isinstance(frames, VideoFrames)
    clip = is_video or args.sequence
    captured = CapturedBackgrounds(args.background, by_order=clip)
    segmentations = Segmentations(args.segmentation, by_order=clip) if args.segmentation else None
    targets = TargetBackgrounds(args.target_background, args.target_color)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: checkpoint does not exist")
    model = _refining_model(checkpoint, args) if args.mode == "refine" else load_generator(checkpoint)
    alignment = choose_alignment(handheld=args.handheld, align_once=args.align_once, no_align=args.no_align)
    matter = Matter(
        model,
        mode=args.mode,
        size=args.size,
        precision=args.precision,
        device=args.device,
        largest_component=not args.no_largest_component,
    )
    if segmentations is None:  # raw masks: the pipeline post-processes them on the network crop
        matter.segmenter = get_segmenter(args.segmenter, postprocess=False, device=matter.device)
    video = None
    if clip:
        video = (frames.fps if is_video else args.fps, Path(args.input).stem)
    writer = ResultWriter(
        args.output,
        pngs=not clip or args.png_sequences,
        video=video,
        video_extension=args.video_extension,
        fourcc=args.video_codec,
    )
    return matte_sequence(
        matter,
        frames,
        BackgroundPlates(captured, alignment),
        targets,
        writer,
        segmentations=segmentations,
        clip=clip,
        motion_offsets=args.motion_offsets,
        batch_size=args.batch_size,
        total=len(frames) or None,
        progress=not args.no_progress,
        source_name=str(args.input),
    )


def _refining_model(checkpoint: Path, args: argparse.Namespace):
    """The checkpoint's base + refiner, run with the command's refine options (the others as stored)."""
    model = load_matting_model(checkpoint)
    if model.refiner is None:
        raise CheckpointError(f"{checkpoint}: --mode refine needs a checkpoint with a refiner (trained with "
                              "model=quickstart_refine or model=paper_refine); this one holds a generator only")
    options = dict(model.refine_options, downsample_ratio=args.downsample_ratio, refine_mode=args.refine_mode,
                   refine_pixels=args.refine_pixels)
    return model.set_refine_options(**options)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except (DataError, CheckpointError, SegmenterWeightsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{summary['frames']} frames in {summary['seconds']:.2f} s: {summary['frames_per_second']:.2f} frames/s "
        f"({summary['mode']} mode, {summary['precision']} on {summary['device']}); outputs in {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
