"""Prepare a real capture for training: video (or frame folder) + background photo -> the clip layout.

Writes ``DATA/clips/NAME/{frames,segmentation}/000000.png ...``, ``background.png`` and, for hand-held clips
(``alignment="per_frame"``), ``aligned_background/`` (the plate aligned to every frame). Otherwise the plate
is aligned once, to the first frame (``alignment="once"``), or only resized (``"none"``). The default,
``"auto"`` (shared with inference), measures the plate's misalignment on frames spread over the clip and picks
one of the three (:func:`bgmatting.preprocess.capture.resolve_alignment`). Frames and plates are read and
aligned by :mod:`bgmatting.preprocess.capture`. Then
the clip is added to ``DATA/manifest.json`` (layout and manifest: :mod:`bgmatting.data.real`). Resumable:
files already present are kept (every file is written atomically, so a present file is complete); the
manifest is written last. Command line: ``python -m bgmatting.prepare_real``.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bgmatting.io import DataError, read_image, to_float, write_alpha, write_image
from bgmatting.data.real import MANIFEST_NAME, Clip, frame_name, upsert_clip
from bgmatting.preprocess.align import AlignOptions
from bgmatting.preprocess.capture import (
    DEFAULT_ALIGNMENT,
    BackgroundPlates,
    CapturedBackgrounds,
    Frame,
    ImageFrames,
    check_given,
    open_input,
    resolve_alignment,
)
from bgmatting.preprocess.segment import SEGMENTERS, Segmenter, SegmenterWeightsError, get_segmenter

PathLike = str | os.PathLike
PLATE_NAME = "background.png"
ALIGNED_FOLDER = "aligned_background"


class _ClipFiles:
    """Writes one clip's per-frame files, carrying what later frames need (frame size, the fixed plate, the
    last segmentation, which keeps the subject out of the next hand-held alignment)."""

    def __init__(self, clip_dir: Path, plates: BackgroundPlates, segmenter: Callable[[], Segmenter],
                 overwrite: bool) -> None:
        self.clip_dir = clip_dir
        self.plates = plates
        self.handheld = plates.alignment == "per_frame"
        self.segmenter = segmenter
        self.overwrite = overwrite
        self.shape: tuple[int, int] | None = None
        self.fixed_plate: np.ndarray | None = None
        self.last_segmentation: np.ndarray | None = None

    def missing(self, path: Path) -> bool:
        return self.overwrite or not path.is_file()

    def add(self, frame: Frame, source: Path) -> None:
        """Frame ``frame.index``'s image, plate (aligned, for hand-held clips) and segmentation."""
        k = frame.index
        image = to_float(frame.image, frame.path or source)
        self._check_size(k, image, source)
        frame_path = self.clip_dir / "frames" / frame_name(k)
        if self.missing(frame_path):
            write_image(frame_path, image)
        background = self._aligned_plate(frame, image) if self.handheld else self._fixed_plate(frame, image)
        segmentation_path = self.clip_dir / "segmentation" / frame_name(k)
        if self.missing(segmentation_path):
            if background is None:
                background = read_image(self.clip_dir / ALIGNED_FOLDER / frame_name(k))
            self.last_segmentation = np.clip(self.segmenter()(image, background), 0.0, 1.0)
            write_alpha(segmentation_path, self.last_segmentation)
        elif self.handheld:
            self.last_segmentation = None  # only a freshly computed one (resumed runs align without it)

    def _check_size(self, k: int, image: np.ndarray, source: Path) -> None:
        if self.shape is None:
            self.shape = image.shape[:2]
        elif image.shape[:2] != self.shape:
            raise DataError(f"{source}: frame {k} is {image.shape[1]}x{image.shape[0]}, earlier frames are "
                            f"{self.shape[1]}x{self.shape[0]}")

    def _aligned_plate(self, frame: Frame, image: np.ndarray) -> np.ndarray | None:
        """The plate aligned to this frame, written; None when it exists already (read only if needed)."""
        path = self.clip_dir / ALIGNED_FOLDER / frame_name(frame.index)
        if not self.missing(path):
            return None
        subject = None if self.last_segmentation is None else self.last_segmentation > 0.5
        aligned = self.plates.for_frame(frame, image, subject)
        write_image(path, aligned)
        return aligned

    def _fixed_plate(self, frame: Frame, image: np.ndarray) -> np.ndarray:
        """The clip's one plate at the frames' size (aligned to, or resized for, the first frame), as written."""
        if self.fixed_plate is None:
            path = self.clip_dir / PLATE_NAME
            if self.missing(path):
                write_image(path, self.plates.for_frame(frame, image))
            self.fixed_plate = read_image(path)
            if self.fixed_plate.shape[:2] != self.shape:
                raise DataError(f"{path}: size {self.fixed_plate.shape[1]}x{self.fixed_plate.shape[0]} differs "
                                f"from the frames ({self.shape[1]}x{self.shape[0]}); rerun with --overwrite")
        return self.fixed_plate


def check_clip_name(name: str) -> str:
    """``name`` when it is a plain folder name (the clip's folder stays inside ``out/clips``), else a DataError."""
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name or name != name.strip():
        raise DataError(f"clip name {name!r}: must be a plain folder name (no path separators, not '.' or '..', "
                        "no leading or trailing spaces)")
    return name


def _check_inputs(video: Path, background: Path, out: Path, segmenter, segmenter_options: dict | None,
                  targets: PathLike | None) -> Path | None:
    """Fail on bad inputs before anything is written; returns the resolved target-background folder."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: output exists and is not a folder")
    if not video.exists():
        raise DataError(f"{video}: video file or frame folder does not exist")
    if not background.exists():
        raise DataError(f"{background}: background photo does not exist")
    if isinstance(segmenter, str) and segmenter not in SEGMENTERS:  # the model itself is built when needed
        raise ValueError(f"unknown segmenter {segmenter!r}; available: {', '.join(sorted(SEGMENTERS))}")
    weights = (segmenter_options or {}).get("weights_path")
    if weights is not None and not Path(weights).is_file():
        raise SegmenterWeightsError(f"{weights}: segmentation weights file does not exist")
    if targets is None:
        return None
    targets = Path(targets).resolve()  # relative to the working directory, not to the manifest
    if not targets.is_dir():
        raise DataError(f"{targets}: target-background folder does not exist")
    return targets


def _lazy_segmenter(segmenter: str | Segmenter, options: dict | None) -> Callable[[], Segmenter]:
    """A function returning the segmenter, built on first use (a resumed run may need none)."""
    built: list[Segmenter] = []

    def get() -> Segmenter:
        if not built:
            built.append(get_segmenter(segmenter, **(options or {})) if isinstance(segmenter, str) else segmenter)
        return built[0]

    return get


def prepare_clip(video: PathLike, background: PathLike, out: PathLike, *, name: str | None = None,
                 alignment: str = DEFAULT_ALIGNMENT, segmenter: str | Segmenter = "background_difference",
                 segmenter_options: dict | None = None, every: int = 1, max_frames: int | None = None,
                 align_options: AlignOptions | None = None, targets: PathLike | None = None,
                 overwrite: bool = False, progress: bool = True) -> Path:
    """Write one clip into ``out`` (see the module docstring) and add it to ``out/manifest.json``.

    video: video file or folder of frame images. background: the captured plate (one image file).
    alignment: "auto" (decided on the clip), "once", "per_frame" (hand-held) or "none"
      (:mod:`bgmatting.preprocess.capture`).
    segmenter: a backend name of :func:`bgmatting.preprocess.segment.get_segmenter` (built with
    ``segmenter_options``) or a ready ``Segmenter``. every / max_frames: keep every N-th frame, at most that
    many. align_options configure the alignment. Returns the manifest path.
    """
    for what, value in (("video", video), ("background", background), ("output folder", out), ("targets", targets),
                        ("segmenter weights", (segmenter_options or {}).get("weights_path"))):
        check_given(value, what)
    video, background, out = Path(video), Path(background), Path(out)
    name = check_clip_name(video.stem if name is None else name)
    targets = _check_inputs(video, background, out, segmenter, segmenter_options, targets)
    frames = open_input(video, every, max_frames)
    if isinstance(frames, ImageFrames):
        frames.check_one_size()  # before anything is written, not at the first frame of another size
    captured = CapturedBackgrounds(background)
    if not captured.is_single:
        raise DataError(f"{background}: is a folder; a clip takes one background photo")
    if alignment == "auto":  # the clip's layout depends on it: decide before writing
        alignment = resolve_alignment(open_input(video, every, max_frames), len(frames), captured, align_options)
    plates = BackgroundPlates(captured, alignment, align_options, exposure="off")
    clip_dir = out / "clips" / name
    files = _ClipFiles(clip_dir, plates, _lazy_segmenter(segmenter, segmenter_options), overwrite)
    count = 0
    with tqdm(total=len(frames) or None, desc=f"prepare {name} ({alignment} alignment)", unit="frame",
              disable=not progress) as bar:
        for frame in frames:
            files.add(frame, video)
            count += 1
            bar.update(1)
    handheld = alignment == "per_frame"
    if handheld and files.missing(clip_dir / PLATE_NAME):
        write_image(clip_dir / PLATE_NAME, captured.single)  # as captured (its size may differ)
    clip = Clip(name=name, path=clip_dir, n_frames=count, height=int(files.shape[0]), width=int(files.shape[1]),
                handheld=handheld, aligned_background=ALIGNED_FOLDER if handheld else None,
                source=str(video.resolve()))
    return upsert_clip(out / MANIFEST_NAME, clip, targets)
