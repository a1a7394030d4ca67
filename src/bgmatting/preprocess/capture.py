"""Captures: input frames (an image, a folder of images, a video) and the captured background plates, at the
frames' size and aligned to them. Shared by inference (``python -m bgmatting.infer``) and real-capture
preparation (``python -m bgmatting.prepare_real``), so both read and align the same way.

Frames carry RGB pixels as read: uint8 from videos (kept small while buffered for motion cues), float32
[0, 1] from image files; :func:`bgmatting.io.to_float` turns either into float32 H x W x 3 in [0, 1].
Plates are float32 H x W x 3 in [0, 1]. Every error is a :class:`bgmatting.io.DataError` naming the file.

A folder in the public code's sample layout (``0001_img.png`` with ``0001_back.png`` and ``0001_masksDL.png``)
is recognised by name: its ``*_img`` files are the input frames, the plates and masks are never matted as
inputs. Two files of one stem (``a.png`` and ``a.jpg``) become frames ``a_png`` and ``a_jpg``.

Alignment of a plate to the frames (``ALIGNMENTS``): ``"auto"`` (the default, :data:`DEFAULT_ALIGNMENT`, for
inference and real-capture preparation alike) measures how far the plate in use is off for each frame
(:func:`bgmatting.preprocess.misalignment.measure_misalignment`, cheap) and aligns (AKAZE,
:func:`bgmatting.preprocess.align.align_background`) only when it is off by more than the tolerance: a registered
plate is used as captured, a fixed camera's plate is aligned once, a hand-held one whenever the camera moved.
``"once"`` aligns each plate to the first frame that uses it, ``"per_frame"`` (hand-held) to every frame,
``"none"`` only resizes it. With ``exposure="auto"`` each newly aligned (or first used) plate also gets a
per-channel gain/bias towards the frame where that measurably lowers their difference
(:func:`bgmatting.preprocess.misalignment.correct_exposure`). :class:`PlateRecord` says per frame what was done.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bgmatting.io import IMAGE_EXTENSIONS, DataError, check_video_size, list_images, read_image, to_float
from bgmatting.preprocess.align import AlignmentReport, AlignmentWarning, AlignOptions, align_background
from bgmatting.preprocess.misalignment import (
    GROSS_DIFFERENCE,
    MISALIGNMENT_TOLERANCE,
    ExposureCorrection,
    background_residual,
    correct_exposure,
    measure_misalignment,
    resize_matrix,
    tolerance_px,
)
from bgmatting.preprocess.motion import to_gray

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")

ALIGNMENTS = ("auto", "once", "per_frame", "none")
#: How plates are aligned unless asked otherwise, by inference and real-capture preparation alike.
DEFAULT_ALIGNMENT = "auto"
EXPOSURES = ("auto", "off")

#: Name suffixes of the public code's sample layout: ``0001_img.png`` with ``0001_back.png`` and ``0001_masksDL.png``.
ORIGINAL_IMAGE_SUFFIX = "_img"
ORIGINAL_BACKGROUND_SUFFIX = "_back"
ORIGINAL_SEGMENTATION_SUFFIX = "_masksDL"

#: A plate whose aspect ratio differs from the frames' by more than this is not stretched without alignment.
ASPECT_TOLERANCE = 0.02


def check_given(value: object, what: str) -> None:
    """A DataError naming ``what`` when ``value`` is an empty (or blank) path string, which ``Path`` would silently
    turn into the current folder."""
    if isinstance(value, str) and not value.strip():
        raise DataError(f"{what} {value!r}: an empty path; give a file or folder name (. for the current folder)")


def choose_alignment(*, handheld: bool = False, align_once: bool = False, no_align: bool = False) -> str:
    """The alignment a command's flags ask for (at most one set): per frame, once, none, else the default
    (automatic)."""
    if handheld + align_once + no_align > 1:
        raise ValueError("choose at most one of hand-held (per-frame), align-once and no-align")
    if handheld:
        return "per_frame"
    if no_align:
        return "none"
    return "once" if align_once else DEFAULT_ALIGNMENT


# ----------------------------------------------------------------------------------------------- input frames
@dataclass
class Frame:
    """One input frame: position in its sequence, a name for output files, RGB pixels, and its file if any."""

    index: int
    name: str
    image: np.ndarray  # H x W x 3 RGB, uint8 or float32 in [0, 1]
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


def is_video_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _check_selection(every: int, max_frames: int | None) -> None:
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")


def frame_names(paths: Sequence[Path]) -> list[str]:
    """Output names of image frames: the file's stem, or stem + "_" + extension where two files share a stem."""
    stems = Counter(p.stem for p in paths)
    return [p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix[1:].lower()}" for p in paths]


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, read from its header (Pillow) without decoding the pixels; a file Pillow
    cannot read is decoded (:func:`bgmatting.io.read_image`: a DataError naming it when it is broken)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
        return height, width
    except (OSError, ValueError, Image.DecompressionBombError):
        return read_image(path).shape[:2]


def check_rgb(image: np.ndarray, what: str) -> None:
    """A DataError naming ``what`` unless ``image`` is an H x W x 3 RGB array with pixels (H, W > 0)."""
    shape = np.shape(image)
    if len(shape) != 3 or shape[2] != 3:
        raise DataError(f"{what} must be H x W x 3 RGB, got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise DataError(f"{what} is empty: {shape[1]}x{shape[0]} pixels")


def _size_mismatch(what: str, size: tuple[int, int], first: str, first_size: tuple[int, int]) -> DataError:
    return DataError(f"{what} is {size[1]}x{size[0]} but {first} is {first_size[1]}x{first_size[0]}; the frames of "
                     "a sequence must all have one size")


class ImageFrames:
    """Frames from image files (one image, or a folder's images in sorted order), named by
    :func:`frame_names`. ``fps`` is None."""

    fps: float | None = None

    def __init__(self, paths: Sequence[Path], name: str) -> None:
        if not paths:
            raise DataError(f"{name}: no input images")
        self.paths = [Path(p) for p in paths]
        self.names = frame_names(self.paths)
        self.name = name

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        for index, (path, name) in enumerate(zip(self.paths, self.names)):
            yield Frame(index, name, read_image(path), path)

    def check_one_size(self) -> None:
        """A DataError naming the first file whose size differs from the first file's (frames of one clip); reads
        only the files' headers."""
        first = image_size(self.paths[0])
        for path in self.paths[1:]:
            size = image_size(path)
            if size != first:
                raise _size_mismatch(str(path), size, self.paths[0].name, first)


class ArrayFrames:
    """Frames given as pixels (H x W x 3 RGB arrays, uint8 or float in [0, 1]), named ``names`` (default
    ``image`` for one, ``image_0000`` ... for several). ``fps`` is None."""

    fps: float | None = None

    def __init__(self, images: Sequence[np.ndarray], names: Sequence[str] | None = None, name: str = "image") -> None:
        if not len(images):
            raise DataError(f"{name}: no input images")
        for k, image in enumerate(images):
            check_rgb(image, f"{name}: image {k}")
        self.images = list(images)
        default = [name] if len(images) == 1 else [f"{name}_{k:04d}" for k in range(len(images))]
        self.names = list(names) if names is not None else default
        self.name = name

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[Frame]:
        for index, (image, name) in enumerate(zip(self.images, self.names)):
            yield Frame(index, name, to_float(np.asarray(image), name))

    def check_one_size(self) -> None:
        """A DataError naming the first image whose size differs from the first's (frames of one clip)."""
        first = np.shape(self.images[0])[:2]
        for k, image in enumerate(self.images[1:], start=1):
            if np.shape(image)[:2] != first:
                raise _size_mismatch(f"{self.name}: image {k}", np.shape(image)[:2], "image 0", first)


def is_original_layout(folder: str | os.PathLike) -> bool:
    """The folder holds the public code's ``*_img`` inputs (with ``*_back`` plates, ``*_masksDL`` masks)."""
    return any(p.stem.endswith(ORIGINAL_IMAGE_SUFFIX) for p in list_images(folder))


def input_images(folder: str | os.PathLike) -> list[Path]:
    """A folder's input images, sorted: in the original layout only the ``*_img`` files (plates and masks are
    companions, other files are skipped with a warning); otherwise every image."""
    files = list_images(folder)
    if not is_original_layout(folder):
        return files
    inputs = [p for p in files if p.stem.endswith(ORIGINAL_IMAGE_SUFFIX)]
    companions = (ORIGINAL_BACKGROUND_SUFFIX, ORIGINAL_SEGMENTATION_SUFFIX)
    others = [p.name for p in files if p not in inputs and not p.stem.endswith(companions)]
    if others:
        warnings.warn(f"{folder}: original layout (*_img inputs): skipping {len(others)} other image(s), e.g. "
                      f"{others[0]}", stacklevel=2)
    return inputs


class VideoFrames:
    """Frames of a video file, decoded in order with OpenCV (RGB uint8), named ``00000``, ``00001`` ...

    ``every``: keep every N-th decoded frame; ``max_frames``: stop after that many kept frames. Frames are
    numbered (and named) by their position among the kept ones. ``frame_count_hint`` is the frame count the
    container declares (0: none); after a pass that read the video to its end, ``decoded`` is how many frames
    could really be decoded (fewer than declared in a truncated or damaged file), else None.
    """

    def __init__(self, path: str | os.PathLike, every: int = 1, max_frames: int | None = None) -> None:
        _check_selection(every, max_frames)
        self.path = Path(path)
        self.every, self.max_frames = every, max_frames
        if not self.path.is_file():
            raise DataError(f"{self.path}: video file does not exist")
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise DataError(f"{self.path}: cannot open video (unreadable or unsupported format)")
            check_video_size(capture, self.path)  # the declared frame size, before a frame is decoded
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 25.0
            self.frame_count_hint = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            ok, first = capture.read()
        finally:
            capture.release()
        if not ok or first is None:
            raise DataError(f"{self.path}: video has no readable frames")
        self.height, self.width = first.shape[:2]
        self.name = self.path.stem
        self.decoded: int | None = None

    def __len__(self) -> int:
        """The number of frames kept from the container's frame count (may be approximate for some formats)."""
        kept = -(-self.frame_count_hint // self.every)
        return min(kept, self.max_frames) if self.max_frames else kept

    def __iter__(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(self.path))
        index = decoded = 0
        try:
            while self.max_frames is None or index < self.max_frames:
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    self.decoded = decoded  # the end of what can be decoded
                    break
                decoded += 1
                if (decoded - 1) % self.every:
                    continue
                yield Frame(index, f"{index:05d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None)
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise DataError(f"{self.path}: video has no readable frames")


def open_input(path: str | os.PathLike, every: int = 1, max_frames: int | None = None) -> ImageFrames | VideoFrames:
    """An image file, a folder of images, or a video file; every ``every``-th frame, at most ``max_frames``."""
    _check_selection(every, max_frames)
    path = Path(path)
    if path.is_dir():
        return ImageFrames(input_images(path)[::every][:max_frames], str(path))
    if not path.exists():
        raise DataError(f"{path}: input does not exist")
    if is_video_file(path):
        return VideoFrames(path, every, max_frames)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageFrames([path], str(path))
    raise DataError(
        f"{path}: unknown input type; expected an image ({', '.join(IMAGE_EXTENSIONS)}), a folder of images, "
        f"or a video ({', '.join(VIDEO_EXTENSIONS)})"
    )


# ---------------------------------------------------------------------------------- per-frame companion files
def _companion_names(frame_name: str, suffix: str) -> list[str]:
    """Stems a frame's companion may have, in order: ``x_back`` (``suffix``) for ``x_img``, then the same stem."""
    if frame_name.endswith(ORIGINAL_IMAGE_SUFFIX):
        return [frame_name[: -len(ORIGINAL_IMAGE_SUFFIX)] + suffix, frame_name]
    return [frame_name]


class CompanionFiles:
    """Per-frame files in a folder (captured backgrounds or segmentations), matched to frames by name.

    A frame from ``x.<ext>`` takes ``x.<ext>`` of the folder; a frame from ``x_img`` takes the public code's
    ``x_back`` / ``x_masksDL`` (``suffix``) first, else ``x_img``; a frame never takes its own file (the folder may
    be the input folder). When no frame name matches any file and ``by_order`` is set (frames of a video), the
    i-th file in sorted order belongs to frame i.
    """

    def __init__(self, folder: str | os.PathLike, suffix: str, what: str, by_order: bool = False) -> None:
        self.folder = Path(folder)
        self.files = list_images(self.folder)
        self.by_stem = {p.stem: p for p in self.files}
        self.suffix = suffix
        self.what = what
        self.by_order = by_order
        self._use_order: bool | None = None

    def path_for(self, frame: Frame) -> Path:
        stem = frame.path.stem if frame.path is not None else frame.name
        own = frame.path.resolve() if frame.path is not None else None
        for name in _companion_names(stem, self.suffix):
            if name in self.by_stem and self.by_stem[name].resolve() != own:
                self._use_order = False
                return self.by_stem[name]
        if self.by_order and self._use_order is not False:
            self._use_order = True
            if frame.index < len(self.files):
                return self.files[frame.index]
            raise DataError(
                f"{self.folder}: has {len(self.files)} {self.what} files but the input has more frames "
                f"(frame {frame.index} needs one)"
            )
        expected = " or ".join(f"{n}.png" for n in _companion_names(stem, self.suffix))
        raise DataError(f"{self.folder}: no {self.what} for frame {frame.name!r} (expected {expected})")


# ------------------------------------------------------------------------------------------------- plates
class CapturedBackgrounds:
    """The captured background plate: one image for every frame (a clip), or a folder matched per frame."""

    def __init__(self, path: str | os.PathLike, by_order: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: captured background does not exist")
        self.single: np.ndarray | None = None
        self.folder: CompanionFiles | None = None
        if self.path.is_dir():
            self.folder = CompanionFiles(self.path, ORIGINAL_BACKGROUND_SUFFIX, "captured background", by_order)
        else:
            self.single = read_image(self.path)

    @classmethod
    def from_array(cls, plate: np.ndarray, name: str = "background") -> CapturedBackgrounds:
        """One plate given as pixels (H x W x 3 RGB, uint8 or float in [0, 1]); ``name`` stands for its file."""
        captured = cls.__new__(cls)
        captured.path, captured.folder = Path(name), None
        check_rgb(plate, f"{name}: a plate")
        captured.single = to_float(np.asarray(plate), name)
        return captured

    @property
    def is_single(self) -> bool:
        """One plate for every frame (a clip's plate), not a folder of plates."""
        return self.single is not None

    def for_frame(self, frame: Frame) -> tuple[np.ndarray, Path]:
        """(background H' x W' x 3 float32, its file) for ``frame``; sizes are reconciled by the caller."""
        if self.single is not None:
            return self.single, self.path
        path = self.folder.path_for(frame)
        return read_image(path), path


def same_aspect(plate_shape: tuple[int, int], shape: tuple[int, int], tolerance: float = ASPECT_TOLERANCE) -> bool:
    """The plate (H', W') and the frames (H, W) have one aspect ratio, within ``tolerance``."""
    (ph, pw), (h, w) = plate_shape, shape
    return abs((pw / ph) / (w / h) - 1.0) <= tolerance


def fit_plate(plate: np.ndarray, shape: tuple[int, int], path: str | os.PathLike,
              tolerance: float = ASPECT_TOLERANCE) -> np.ndarray:
    """A plate of another size than the frames (H, W) resized to them (area when shrinking, else bilinear),
    with a warning; a plate of another aspect ratio (beyond ``tolerance``) is a DataError naming ``path``."""
    h, w = shape
    ph, pw = plate.shape[:2]
    if (ph, pw) == (h, w):
        return plate
    if not same_aspect((ph, pw), (h, w), tolerance):
        raise DataError(f"{path}: background is {pw}x{ph} but the frames are {w}x{h} (other aspect ratio); "
                        "align it to the frames (not --no-align) or crop it to the frames' framing")
    warnings.warn(f"{path}: captured background is {pw}x{ph} but the frames are {w}x{h}; resizing it",
                  stacklevel=3)
    interp = cv2.INTER_AREA if ph > h else cv2.INTER_LINEAR
    return cv2.resize(plate, (w, h), interpolation=interp)


@dataclass
class PlateRecord:
    """What was done with the plate for one frame.

    ``action``: "none" (the plate as captured, resized), "aligned" (aligned to this frame), "reused" (the plate
    as aligned to an earlier frame), "fell_back" (alignment failed: the plate as captured, resized; ``note``
    says why). ``misalignment_px``: how far the plate would have been off without acting (None: not
    measurable, ``note`` says why); ``residual_px``: how far the plate is off after aligning; ``exposure``: the
    gain/bias applied to the plate, when the correction helped. Pixels are the frame's."""

    frame: str
    action: str
    misalignment_px: float | None = None
    residual_px: float | None = None
    exposure: dict | None = None
    note: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class _PlateState:
    """The plate in use for one captured plate file: pixels at the frame's size, plate px -> frame px, and
    whether its alignment failed."""

    plate: np.ndarray
    homography: np.ndarray
    fell_back: bool = False


def is_gray(image: np.ndarray, step: int = 7) -> bool:
    """True when an RGB image (H x W x 3) has three equal channels (a greyscale file read as RGB) and is not one
    flat colour (which says nothing about its kind)."""
    sample = np.asarray(image)[::step, ::step].astype(np.float32)
    level = (1.0 if np.asarray(image).dtype == np.uint8 else 1.0 / 255.0) + 1e-6
    return float(np.ptp(sample, axis=2).max(initial=0.0)) <= level and float(np.ptp(sample)) > level


def gray3(image: np.ndarray) -> np.ndarray:
    """An RGB image's BT.601 luma replicated into 3 channels, float32 H x W x 3 in [0, 1]."""
    gray = to_gray(image)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2), dtype=np.float32)


class BackgroundPlates:
    """The captured background for each frame, at the frame's size, aligned to it as ``alignment`` says
    (module docstring); ``options`` configure :func:`bgmatting.preprocess.align.align_background`. Aligned
    plates are aligned at their own size (the homography absorbs the scale); unaligned ones go through
    :func:`fit_plate`. ``exposure``: "auto" or "off" (module docstring). ``tolerance``: the misalignment,
    as a share of the frame's longest side, that counts as registered. ``records`` says per frame what was
    done (:class:`PlateRecord`), ``reports`` collects the alignment reports (without their masks).

    A greyscale image with a colour plate: the plate is converted to gray the same way (BT.601 luma, 3 equal
    channels), with a warning; a colour image with a greyscale plate is a DataError. A plate that still differs
    grossly from the frame outside the subject (median difference above ``GROSS_DIFFERENCE``) gets a warning.
    """

    def __init__(self, captured: CapturedBackgrounds, alignment: str = DEFAULT_ALIGNMENT,
                 options: AlignOptions | None = None, *, exposure: str = "auto",
                 tolerance: float = MISALIGNMENT_TOLERANCE) -> None:
        if alignment not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
        if exposure not in EXPOSURES:
            raise ValueError(f"unknown exposure correction {exposure!r}; choose one of {', '.join(EXPOSURES)}")
        self.captured = captured
        self.alignment = alignment
        self.options = options or AlignOptions()
        self.exposure = exposure
        self.tolerance = tolerance
        self._states: dict[Path, _PlateState] = {}
        self._warned: set[tuple[Path, str]] = set()
        self.reports: list[AlignmentReport] = []
        self.records: list[PlateRecord] = []

    def for_frame(self, frame: Frame, image: np.ndarray, subject_mask: np.ndarray | None = None) -> np.ndarray:
        """Background H x W x 3 float32 for ``frame`` (``image`` is its float RGB). ``subject_mask`` (H x W, e.g. a
        segmentation) keeps the subject out of the alignment, the measure and the exposure fit."""
        background, path = self.captured.for_frame(frame)
        background = self._matched_colour(background, image, path)
        state = self._states.get(path)
        homography = state.homography if state is not None else resize_matrix(background.shape[:2], image.shape[:2])
        misalignment = measure_misalignment(image, background, homography, subject_mask)
        tolerance = tolerance_px(image.shape[:2], self.tolerance)
        registered = misalignment.within(tolerance) and same_aspect(background.shape[:2], image.shape[:2])
        if state is not None and state.fell_back and misalignment.pixels is None:
            registered = True  # neither aligned nor measured (too little texture): not retried on every frame
        action = self._decide(state, registered)
        record = PlateRecord(frame.name, action, misalignment.pixels, note=misalignment.reason)
        if action == "reused":
            self.records.append(record)
            return state.plate
        if action == "none":
            state = _PlateState(fit_plate(background, image.shape[:2], path), homography)
            if self.alignment == "none" and (misalignment.pixels or 0.0) > 5 * tolerance:
                self._warn_once(path, "off", f"{path}: the plate looks {misalignment.pixels:.1f} px off the frames; "
                                "without --no-align it would be aligned")
        else:
            state = self._align(image, background, subject_mask, path, record)
        self._finish(state, image, subject_mask, path, record)
        self._states[path] = state
        self.records.append(record)
        return state.plate

    def _decide(self, state: _PlateState | None, registered: bool) -> str:
        """none / aligned (to be) / reused for this frame, as ``alignment`` says; ``registered``: the plate as it
        would be used is within the tolerance (and, unaligned, of the frame's aspect ratio)."""
        if self.alignment == "none":
            return "none"
        if self.alignment == "per_frame":
            return "aligned"
        if state is not None and (self.alignment == "once" or registered):
            return "reused"
        if self.alignment == "auto" and registered:
            return "none"
        return "aligned"

    def _align(self, image: np.ndarray, background: np.ndarray, subject_mask: np.ndarray | None, path: Path,
               record: PlateRecord) -> _PlateState:
        """Align the plate to this frame; the record gets the outcome (aligned or fell back) and the residual."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AlignmentWarning)  # reported below, once per reason
            aligned, report = align_background(image, background, subject_mask=subject_mask, options=self.options)
        report.valid_mask = None  # H x W per aligned frame: not kept for long clips
        self.reports.append(report)
        if report.fell_back:
            record.action, record.note = "fell_back", report.reason
            self._warn_once(path, f"fell back: {report.reason}", f"{path}: background alignment fell back to the "
                            f"unaligned background: {report.reason}", AlignmentWarning)
        else:
            residual = measure_misalignment(image, background, report.homography, subject_mask)
            record.residual_px = residual.pixels
        return _PlateState(aligned.astype(np.float32, copy=False), report.homography, report.fell_back)

    def _finish(self, state: _PlateState, image: np.ndarray, subject_mask: np.ndarray | None, path: Path,
                record: PlateRecord) -> None:
        """Exposure correction of a new plate (when it helps) and the gross-difference warning."""
        subject = None if subject_mask is None else np.asarray(subject_mask, np.float32) > 0.5
        if self.exposure == "auto":
            region = None if subject is None else ~subject
            state.plate, correction = correct_exposure(image, state.plate, region)
            if correction.applied:
                record.exposure = _exposure_summary(correction)
        residual = background_residual(image, state.plate, subject)
        if residual > GROSS_DIFFERENCE:
            self._warn_once(path, "gross", f"{path}: the frames and this plate differ grossly outside the subject "
                            f"(median difference {residual:.2f}); is it the plate of this scene and camera?")

    def _matched_colour(self, background: np.ndarray, image: np.ndarray, path: Path) -> np.ndarray:
        """The plate in the image's colour kind: gray when the image is greyscale (warned); an error the other
        way round."""
        image_gray, plate_gray = is_gray(image), is_gray(background)
        if image_gray and not plate_gray:
            self._warn_once(path, "gray", f"{path}: the frames are greyscale and the plate is colour; converting "
                            "the plate to gray (BT.601 luma) as well")
            return gray3(background)
        if plate_gray and not image_gray:
            raise DataError(f"{path}: the plate is greyscale but the frames are colour; give a colour plate "
                            "(or convert the frames to greyscale too)")
        return background

    def _warn_once(self, key: Path, kind: str, message: str, category: type[Warning] = UserWarning) -> None:
        if (key, kind) not in self._warned:
            self._warned.add((key, kind))
            warnings.warn(message, category, stacklevel=4)

    def summary(self) -> dict:
        """Counts of the actions and the largest misalignment seen, for a one-line report."""
        measured = [r.misalignment_px for r in self.records if r.misalignment_px is not None]
        return {"actions": dict(Counter(r.action for r in self.records)),
                "max_misalignment_px": max(measured) if measured else None,
                "exposure_corrected": sum(r.exposure is not None for r in self.records)}


def _exposure_summary(correction: ExposureCorrection) -> dict:
    return {"gain": list(correction.gain), "bias": list(correction.bias),
            "residual_before": correction.residual_before, "residual_after": correction.residual_after}


def resolve_alignment(frames: Iterable[Frame], count: int, captured: CapturedBackgrounds,
                      options: AlignOptions | None = None, checks: int = 24) -> str:
    """The concrete alignment ("none", "once" or "per_frame") that the automatic mode comes to on a clip of
    ``count`` frames, judged on up to ``checks`` frames spread over it: for callers that must know before they
    write anything (real-capture preparation lays out hand-held clips differently)."""
    step = max(1, -(-max(count, 1) // checks))
    plates = BackgroundPlates(captured, "auto", options, exposure="off")
    for frame in frames:
        if frame.index % step == 0:
            plates.for_frame(frame, to_float(frame.image, frame.path or captured.path))
    actions = [record.action for record in plates.records]
    if not actions:
        raise DataError(f"{captured.path}: no frames to align the plate to")
    if any(action in ("aligned", "fell_back") for action in actions[1:]):
        return "per_frame"
    return "none" if actions[0] == "none" else "once"
