"""Prepare a real capture (video or frame folder + background photo) for training.

    python -m bgmatting.prepare_real --video clip.mp4 --background plate.png --out DATA \\
        [--name NAME] [--handheld | --no-align] [--segmenter background_difference|deeplabv3] [--every N]
        [--max-frames N] [--targets DIR] [--photometric] [--overwrite]

A thin command over :func:`bgmatting.data.clip_preparation.prepare_clip` (layout and resume rules there). Bad
input: one line naming the file on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bgmatting.cli import report
from bgmatting.io import DataError
from bgmatting.data.clip_preparation import prepare_clip
from bgmatting.preprocess.align import AlignOptions
from bgmatting.preprocess.capture import choose_alignment
from bgmatting.preprocess.segment import SEGMENTERS, SegmenterWeightsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bgmatting.prepare_real",
                                     description="Prepare a real capture (video + background photo) for training.")
    parser.add_argument("--video", required=True, help="video file (e.g. .mp4) or folder of frames")
    parser.add_argument("--background", required=True, help="photo of the scene without the subject")
    parser.add_argument("--out", required=True, help="dataset folder (clips/ and manifest.json)")
    parser.add_argument("--name", help="clip name (default: the video's file name without extension)")
    align = parser.add_mutually_exclusive_group()
    align.add_argument("--handheld", action="store_true", help="align the background to every frame")
    align.add_argument("--no-align", action="store_true", help="fixed, registered camera: only resize the background")
    parser.add_argument("--segmenter", default="background_difference",
                        help=f"one of {', '.join(sorted(SEGMENTERS))} (default background_difference, offline)")
    parser.add_argument("--segmenter-weights", help="weights file for deeplabv3")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th frame (default 1)")
    parser.add_argument("--max-frames", type=int, help="stop after this many kept frames")
    parser.add_argument("--targets", help="folder of target backgrounds for the manifest")
    parser.add_argument("--photometric", action="store_true", help="also match the background's gain/bias")
    parser.add_argument("--overwrite", action="store_true", help="recompute files that already exist")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (there is none when stderr is not a terminal)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = {"weights_path": args.segmenter_weights} if args.segmenter_weights is not None else {}
    try:
        manifest = prepare_clip(args.video, args.background, args.out, name=args.name,
                                alignment=choose_alignment(handheld=args.handheld, no_align=args.no_align),
                                segmenter=args.segmenter, segmenter_options=options, every=args.every,
                                max_frames=args.max_frames, align_options=AlignOptions(photometric=args.photometric),
                                targets=args.targets, overwrite=args.overwrite,
                                progress=not args.quiet and sys.stderr.isatty())
    except (DataError, SegmenterWeightsError, ValueError) as error:
        return report("prepare_real", error)
    except OSError as error:  # e.g. a read-only or full output folder
        return report("prepare_real", f"cannot write into {args.out}: {error.strerror or error}")
    print(f"wrote {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
