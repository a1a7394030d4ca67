"""Prepare a real capture for training: video (or frame folder) + background photo -> the clip layout.

    python -m bgmatting.data.prepare_real --video clip.mp4 --background plate.png --out DATA \\
        [--name NAME] [--handheld] [--segmenter background_difference|deeplabv3] [--every N] [--max-frames N] \\
        [--targets DIR] [--no-align] [--photometric] [--overwrite]

Writes ``DATA/clips/NAME/{frames,segmentation}/000000.png ...``, ``background.png`` and, with ``--handheld``,
``aligned_background/`` (the plate aligned to every frame with ``bgmatting.preprocess.align``); without it
the plate is aligned once, to the first frame (``--no-align``: only resized). Then adds the clip to
``DATA/manifest.json`` (layout and manifest: ``bgmatting.data.real``). Resumable: files already present are
kept (every file is written atomically, so a present file is complete); the manifest is written last.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from bgmatting.data.io import DataError, list_images, read_image, write_alpha, write_image
from bgmatting.data.real import MANIFEST_NAME, Clip, frame_name, upsert_clip

PathLike = str | os.PathLike


def _frame_count(source: Path) -> int | None:
    if source.is_dir():
        return len(list_images(source))
    cap = cv2.VideoCapture(str(source))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    return n if n > 0 else None


def iter_frames(source: PathLike, every: int = 1, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB float32 H x W x 3 frames in [0, 1] of a video file or an image folder (sorted by name):
    every ``every``-th frame, at most ``max_frames`` of them. Unreadable sources are DataErrors naming them."""
    source = Path(source)
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    kept = 0
    if source.is_dir():
        for j, path in enumerate(list_images(source)):
            if j % every:
                continue
            if max_frames is not None and kept >= max_frames:
                return
            kept += 1
            yield read_image(path)
        return
    if not source.is_file():
        raise DataError(f"{source}: video file or frame folder does not exist")
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        cap.release()
        raise DataError(f"{source}: cannot open as a video (unreadable file or unsupported codec)")
    try:
        j = 0
        while max_frames is None or kept < max_frames:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            if j % every == 0:
                kept += 1
                yield np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).astype(np.float32) / 255.0
            j += 1
    finally:
        cap.release()


def fit_plate(plate: np.ndarray, shape: tuple[int, int], plate_path: Path, tolerance: float = 0.02) -> np.ndarray:
    """Resize the plate to the frame size; an aspect ratio that differs by more than ``tolerance`` is an error."""
    h, w = shape
    ph, pw = plate.shape[:2]
    if (ph, pw) == (h, w):
        return plate
    if abs((pw / ph) / (w / h) - 1.0) > tolerance:
        raise DataError(f"{plate_path}: background is {pw}x{ph} but the frames are {w}x{h} (other aspect ratio); "
                        "use --handheld so it is aligned to every frame, or crop it to the frames' framing")
    interp = cv2.INTER_AREA if ph > h else cv2.INTER_LINEAR
    return cv2.resize(plate, (w, h), interpolation=interp)


def prepare_clip(video: PathLike, background: PathLike, out: PathLike, *, name: str | None = None,
                 handheld: bool = False, segmenter="background_difference", segmenter_options: dict | None = None,
                 every: int = 1, max_frames: int | None = None, align: bool = True,
                 align_options: dict | None = None, targets: PathLike | None = None, overwrite: bool = False,
                 progress: bool = True) -> Path:
    """Write one clip into ``out`` (see the module docstring) and add it to ``out/manifest.json``.

    video: video file or folder of frame images. background: the captured plate (image file).
    segmenter: a backend name of ``bgmatting.preprocess.segment.get_segmenter`` (built with
    ``segmenter_options``) or a ready ``Segmenter``. align_options go to ``align_background``.
    Returns the manifest path.
    """
    from bgmatting.preprocess.align import align_background

    video, background, out = Path(video), Path(background), Path(out)
    if not video.exists():
        raise DataError(f"{video}: video file or frame folder does not exist")
    if not background.is_file():
        raise DataError(f"{background}: background photo does not exist")
    if isinstance(segmenter, str):
        from bgmatting.preprocess.segment import SEGMENTERS

        if segmenter not in SEGMENTERS:  # fail before writing anything; the model itself is built when needed
            raise ValueError(f"unknown segmenter {segmenter!r}; available: {', '.join(sorted(SEGMENTERS))}")
    if targets is not None:
        targets = Path(targets).resolve()  # relative to the working directory, not to the manifest
        if not targets.is_dir():
            raise DataError(f"{targets}: target-background folder does not exist")
    plate = read_image(background)
    name = name or video.stem
    clip_dir = out / "clips" / name
    align_options = dict(align_options or {})
    seg_model = None

    def get_seg():
        nonlocal seg_model
        if seg_model is None:
            if isinstance(segmenter, str):
                from bgmatting.preprocess.segment import get_segmenter

                seg_model = get_segmenter(segmenter, **(segmenter_options or {}))
            else:
                seg_model = segmenter
        return seg_model

    def missing(path: Path) -> bool:
        return overwrite or not path.is_file()

    shape = None
    fixed_plate = None
    last_seg = None
    n = 0
    total = _frame_count(video)
    if total is not None:
        total = -(-total // every)
        total = min(total, max_frames) if max_frames else total
    bar = tqdm(total=total, desc=f"prepare {name}", unit="frame", disable=not progress)
    try:
        for k, frame in enumerate(iter_frames(video, every, max_frames)):
            if shape is None:
                shape = frame.shape[:2]
            elif frame.shape[:2] != shape:
                raise DataError(f"{video}: frame {k} is {frame.shape[1]}x{frame.shape[0]}, earlier frames are "
                                f"{shape[1]}x{shape[0]}")
            frame_path = clip_dir / "frames" / frame_name(k)
            if missing(frame_path):
                write_image(frame_path, frame)
            seg_path = clip_dir / "segmentation" / frame_name(k)
            if handheld:
                aligned_path = clip_dir / "aligned_background" / frame_name(k)
                if missing(aligned_path):
                    # The previous frame's segmentation keeps features on the (moving) subject out of the match.
                    options = align_options if last_seg is None else {"subject_mask": last_seg > 0.5, **align_options}
                    aligned, _ = align_background(frame, plate, **options)
                    write_image(aligned_path, aligned)
                    frame_background = aligned
                else:
                    frame_background = None  # read below only if a segmentation is still needed
            else:
                if fixed_plate is None:
                    plate_path = clip_dir / "background.png"
                    if missing(plate_path):
                        if align:
                            fixed, _ = align_background(frame, plate, **align_options)
                        else:
                            fixed = fit_plate(plate, shape, background)
                        write_image(plate_path, fixed)
                    fixed_plate = read_image(plate_path)
                    if fixed_plate.shape[:2] != shape:
                        raise DataError(f"{plate_path}: size {fixed_plate.shape[1]}x{fixed_plate.shape[0]} differs "
                                        f"from the frames ({shape[1]}x{shape[0]}); rerun with --overwrite")
                frame_background = fixed_plate
            if missing(seg_path):
                if frame_background is None:
                    frame_background = read_image(clip_dir / "aligned_background" / frame_name(k))
                last_seg = np.clip(get_seg()(frame, frame_background), 0.0, 1.0)
                write_alpha(seg_path, last_seg)
            elif handheld:
                last_seg = None  # only a freshly computed one (resumed runs align without it)
            n += 1
            bar.update(1)
    finally:
        bar.close()
    if n == 0:
        raise DataError(f"{video}: no frames could be read")
    if handheld:
        plate_path = clip_dir / "background.png"
        if missing(plate_path):
            write_image(plate_path, plate)  # the plate as captured (its size may differ from the frames')
    clip = Clip(name=name, path=clip_dir, n_frames=n, height=int(shape[0]), width=int(shape[1]), handheld=handheld,
                aligned_background="aligned_background" if handheld else None, source=str(video.resolve()))
    return upsert_clip(out / MANIFEST_NAME, clip, targets)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bgmatting.data.prepare_real",
                                     description="Prepare a real capture (video + background photo) for training.")
    parser.add_argument("--video", required=True, type=Path, help="video file (e.g. .mp4) or folder of frames")
    parser.add_argument("--background", required=True, type=Path, help="photo of the scene without the subject")
    parser.add_argument("--out", required=True, type=Path, help="dataset folder (clips/ and manifest.json)")
    parser.add_argument("--name", help="clip name (default: the video's file name without extension)")
    parser.add_argument("--handheld", action="store_true", help="align the background to every frame")
    parser.add_argument("--segmenter", default="background_difference",
                        help="background_difference (offline default) or deeplabv3")
    parser.add_argument("--segmenter-weights", type=Path, help="weights file for deeplabv3")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th frame (default 1)")
    parser.add_argument("--max-frames", type=int, help="stop after this many kept frames")
    parser.add_argument("--targets", type=Path, help="folder of target backgrounds for the manifest")
    parser.add_argument("--no-align", action="store_true", help="fixed camera: only resize the background")
    parser.add_argument("--photometric", action="store_true", help="also match the background's gain/bias")
    parser.add_argument("--overwrite", action="store_true", help="recompute files that already exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    options = {"weights_path": args.segmenter_weights} if args.segmenter_weights else {}
    try:
        from bgmatting.preprocess.segment import SegmenterWeightsError
    except ImportError:  # pragma: no cover
        SegmenterWeightsError = RuntimeError  # noqa: N806
    try:
        manifest = prepare_clip(args.video, args.background, args.out, name=args.name, handheld=args.handheld,
                                segmenter=args.segmenter, segmenter_options=options, every=args.every,
                                max_frames=args.max_frames, align=not args.no_align,
                                align_options={"photometric": args.photometric}, targets=args.targets,
                                overwrite=args.overwrite, progress=not args.quiet)
    except (DataError, SegmenterWeightsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
