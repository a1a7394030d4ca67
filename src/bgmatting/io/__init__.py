"""Image file I/O: the only place where uint8/uint16 files become float arrays (and back).

Conventions: RGB, float32 in [0, 1], H x W x 3 for images and H x W for alpha / segmentation.
OpenCV reads BGR; the conversion happens here, once. Every error names the file.

Conversions (documented, not errors):
* 16-bit PNG/TIFF -> divided by 65535.
* grayscale image where RGB is expected -> replicated to 3 channels.
* RGBA image where RGB is expected -> alpha channel dropped (``read_image``); use ``read_rgba`` to keep it.
* alpha stored as 3 identical channels -> one channel; 3 *different* channels -> error.
* trimaps: 0/128/255, class indices 0/1/2 or float 0/0.5/1 -> 0/128/255; anything else -> error
  (:func:`read_trimap`).
* EXIF orientation (JPEG, PNG, WebP; TIFF's own tag through OpenCV) -> pixels turned upright.

Limits (refused with a DataError naming the file, its size and the limit, before any pixel is decoded): images
of more than :func:`max_image_pixels` pixels (width x height; default :data:`DEFAULT_MAX_PIXELS`, set by the
``max_pixels`` argument, :func:`image_pixel_limit` or ``$BGMATTING_MAX_IMAGE_PIXELS``); files that are not
PNG, JPEG, BMP, TIFF or WebP. :func:`check_video_size` applies the same limit to a video's declared frame size.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bgmatting.io.image_header import apply_orientation, read_header

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """Bad input data. The message always names the offending file or folder."""


#: Environment variable that sets the largest image (width x height, in pixels) the readers decode.
MAX_PIXELS_VARIABLE = "BGMATTING_MAX_IMAGE_PIXELS"
#: The pixel limit when neither an argument, :func:`image_pixel_limit` nor the variable sets one: 100 megapixels
#: (e.g. 12 240 x 8 160), 1.2 GB as float32 RGB.
DEFAULT_MAX_PIXELS = 100_000_000
_PIXEL_LIMIT: ContextVar[int | None] = ContextVar("bgmatting_max_image_pixels", default=None)
_LIMIT_HINT: ContextVar[str | None] = ContextVar("bgmatting_max_image_pixels_hint", default=None)
_FORMATS = "PNG, JPEG, BMP, TIFF or WebP"


def max_image_pixels(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` when given, else the innermost :func:`image_pixel_limit`, else
    ``$BGMATTING_MAX_IMAGE_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`. A DataError names a value that is not a
    positive integer."""
    if max_pixels is None:
        max_pixels = _PIXEL_LIMIT.get()
    if max_pixels is None:
        text = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
        if not text:
            return DEFAULT_MAX_PIXELS
        if not (text.isdigit() and int(text) >= 1):
            raise DataError(f"{MAX_PIXELS_VARIABLE}: the image pixel limit must be a positive integer, got {text!r}")
        return int(text)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise DataError(f"max_pixels: the image pixel limit must be a positive integer, got {max_pixels!r}")
    return int(max_pixels)


@contextlib.contextmanager
def image_pixel_limit(max_pixels: int, hint: str | None = None) -> Iterator[int]:
    """Within the block (this thread or task; threads it starts do not inherit it), readers use ``max_pixels`` as
    their limit unless a call passes its own; a refusal then ends with ``hint`` (e.g. which option set the limit)
    instead of the generic one. Yields the limit."""
    token = _PIXEL_LIMIT.set(max_image_pixels(max_pixels))
    hint_token = _LIMIT_HINT.set(hint)
    try:
        yield _PIXEL_LIMIT.get()
    finally:
        _PIXEL_LIMIT.reset(token)
        _LIMIT_HINT.reset(hint_token)


def pixel_limit_for_memory(max_memory_bytes: float, channels: int = 4) -> int:
    """The pixel limit a memory budget allows: decoding to float32 takes pixels x ``channels`` x 4 bytes, so at
    most ``max_memory_bytes // (4 * channels)`` pixels, and never more than :func:`max_image_pixels`."""
    if not max_memory_bytes > 0 or channels < 1:
        raise DataError(f"memory budget must be positive, got {max_memory_bytes} bytes for {channels} channel(s)")
    return max(1, min(int(max_memory_bytes // (4 * channels)), max_image_pixels()))


def check_image_size(width: int, height: int, source: str | os.PathLike, what: str = "image",
                     max_pixels: int | None = None) -> None:
    """A DataError naming ``source``, its size and the limit when ``width`` x ``height`` is above
    :func:`max_image_pixels`."""
    limit = max_image_pixels(max_pixels)
    if width * height > limit:
        hint = (_LIMIT_HINT.get() if max_pixels is None else None) or f"raise it with {MAX_PIXELS_VARIABLE}=N or max_pixels=N"
        raise DataError(f"{source}: {what} is {width}x{height} ({width * height:,} pixels), above the limit of "
                        f"{limit:,} pixels ({hint})")


def check_video_size(capture: cv2.VideoCapture, source: str | os.PathLike, max_pixels: int | None = None) -> None:
    """For an opened ``cv2.VideoCapture``, before its first frame is read: its declared frame size within
    :func:`max_image_pixels` (:func:`check_image_size`)."""
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    check_image_size(width, height, source, "video frame", max_pixels)


def decode_image(data: bytes | np.ndarray, source: str | os.PathLike = "image",
                 max_pixels: int | None = None) -> np.ndarray:
    """An image file's bytes -> its pixels, upright (EXIF orientation applied), in the stored type and OpenCV's
    channel order (H x W, H x W x 3 BGR or H x W x 4 BGRA; uint8, uint16 or float). The size in the header is
    checked against :func:`max_image_pixels` before anything is decoded; errors are DataErrors naming ``source``."""
    data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if data.size == 0:
        raise DataError(f"{source}: file is empty")
    header = read_header(data)
    if header is None:
        raise DataError(f"{source}: cannot decode image (unreadable, truncated or not a {_FORMATS} file)")
    check_image_size(header.width, header.height, source, max_pixels=max_pixels)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{source}: cannot decode image (unreadable, truncated or not an image)")
    return apply_orientation(img, header.orientation)


def _read_raw(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file does not exist")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected an image file")
    return decode_image(np.fromfile(str(path), dtype=np.uint8), path, max_pixels)


def to_float(img: np.ndarray, source: str | os.PathLike = "image") -> np.ndarray:
    """uint8 / uint16 / float pixels -> float32 in [0, 1] (the inverse of :func:`to_uint8` up to rounding).

    uint8 is divided by 255 and uint16 by 65535 (in float32); float values must lie in [0, 1] (a DataError
    naming ``source`` otherwise). The one integer -> float rule of the project.
    """
    if img.dtype == np.uint8:
        return np.divide(img, np.float32(255.0), dtype=np.float32)  # one pass, same values as astype / 255
    if img.dtype == np.uint16:
        return np.divide(img, np.float32(65535.0), dtype=np.float32)
    if img.dtype in (np.float32, np.float64):
        f = img.astype(np.float32)
        if not np.isfinite(f).all():  # nanmin / nanmax below would pass a partly NaN image
            raise DataError(f"{source}: float image holds NaN or infinite values")
        lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-6 or hi > 1.0 + 1e-6:
            raise DataError(f"{source}: float image values must lie in [0, 1], found [{lo:g}, {hi:g}]")
        return np.clip(f, 0.0, 1.0)
    raise DataError(f"{source}: unsupported pixel type {img.dtype}")


def read_rgba(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read an image as float32 H x W x 4 in [0, 1]; images without alpha get an opaque channel."""
    img = _read_raw(path, max_pixels)
    f = to_float(img, path)
    if f.ndim == 2:
        f = np.repeat(f[:, :, None], 3, axis=2)
    if f.shape[2] == 3:
        rgb = f[:, :, ::-1]
        return np.ascontiguousarray(np.concatenate([rgb, np.ones_like(rgb[:, :, :1])], axis=2))
    if f.shape[2] == 4:
        return np.ascontiguousarray(np.concatenate([f[:, :, 2::-1], f[:, :, 3:4]], axis=2))
    raise DataError(f"{path}: unsupported channel count {f.shape[2]}")


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read an RGB image as float32 H x W x 3 in [0, 1] (grayscale replicated, RGBA's alpha dropped), upright
    (EXIF orientation applied); images above :func:`max_image_pixels` are refused before they are decoded."""
    return _rgb(_read_raw(path, max_pixels), path)


def image_from_bytes(data: bytes, source: str, max_pixels: int | None = None) -> np.ndarray:
    """:func:`read_image` of an image file's bytes (e.g. an upload): float32 RGB H x W x 3 in [0, 1]; DataErrors
    name ``source``."""
    return _rgb(decode_image(data, source, max_pixels), source)


def _rgb(img: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Decoded pixels (:func:`decode_image`) -> float32 RGB H x W x 3 in [0, 1]."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        code = cv2.COLOR_GRAY2RGB
    elif img.shape[2] == 3:
        code = cv2.COLOR_BGR2RGB
    elif img.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB
    else:
        raise DataError(f"{path}: unsupported channel count {img.shape[2]}")
    if img.dtype in (np.uint8, np.uint16, np.float32):
        return to_float(cv2.cvtColor(img, code), path)  # channel order fixed before the float conversion
    f = to_float(img, path)
    if f.ndim == 2:
        return np.ascontiguousarray(np.repeat(f[:, :, None], 3, axis=2))
    return np.ascontiguousarray(f[:, :, 2::-1])


def _one_channel(img: np.ndarray, path: str | os.PathLike, what: str) -> np.ndarray:
    """H x W pixels of a single-channel file, as stored: a 3-channel file only when its channels are identical;
    an RGBA file's alpha plane when its colour planes are constant, otherwise its (identical) colour planes."""
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return img[:, :, 0]
    colour = img[:, :, :3]
    if img.shape[2] == 4 and np.ptp(colour) == 0:
        return np.ascontiguousarray(img[:, :, 3])
    if np.array_equal(colour[:, :, 0], colour[:, :, 1]) and np.array_equal(colour[:, :, 0], colour[:, :, 2]):
        return np.ascontiguousarray(colour[:, :, 0])
    raise DataError(f"{path}: {what} must be single-channel, got {img.shape[2]} channels with different content")


def read_alpha(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read a single-channel matte (alpha or soft segmentation) as float32 H x W in [0, 1] (channels: see
    :func:`_one_channel`)."""
    return to_float(_one_channel(_read_raw(path, max_pixels), path, "alpha"), path)


#: Trimap values as stored -> 0 / 128 / 255 (background / unknown / foreground), per encoding.
TRIMAP_ENCODINGS = {
    "uint8 0/128/255": (np.uint8, (0, 128, 255)),
    "uint8 class index 0/1/2": (np.uint8, (0, 1, 2)),
    "float 0/0.5/1": (np.floating, (0.0, 0.5, 1.0)),
}


def read_trimap(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read a trimap as uint8 H x W with values 0 / 128 / 255 (background / unknown / foreground).

    Recognised encodings (:data:`TRIMAP_ENCODINGS`): 8-bit 0/128/255 (Adobe, Deep Image Matting), 8-bit class
    indices 0/1/2, and float files (TIFF) with 0/0.5/1. Any other value set (e.g. a JPEG's or a bilinearly
    resized trimap's in-between values, a 16-bit file) is a DataError naming the file and the values found.
    """
    raw = _one_channel(_read_raw(path, max_pixels), path, "trimap")
    values = np.unique(raw)
    for kind, levels in TRIMAP_ENCODINGS.values():
        if np.issubdtype(raw.dtype, kind) and np.isin(values, levels).all():
            trimap = np.zeros(raw.shape, np.uint8)
            trimap[raw == levels[1]] = 128
            trimap[raw == levels[2]] = 255
            return trimap
    shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if len(values) > 8 else "")
    raise DataError(f"{path}: not a trimap: {raw.dtype} values {shown}; expected one of "
                    f"{'; '.join(TRIMAP_ENCODINGS)} (resize trimaps with nearest-neighbour interpolation and "
                    "store them losslessly, e.g. as PNG)")


#: Temporaries of :func:`atomic_path` are named ``.<final name>.<random>.tmp`` next to the final path
#: (``.<final name>.<owner>.<random>.tmp`` with an ``owner`` tag; ``.tmp<extension>`` with ``keep_extension``).
TEMP_SUFFIX = ".tmp"


def temporary_prefix(path: str | os.PathLike, owner: str | None = None) -> str:
    """Name prefix of :func:`atomic_path`'s temporaries for ``path`` (and ``owner``), e.g. to find stale ones."""
    name = Path(path).name
    return f".{name}." if owner is None else f".{name}.{owner}."


def _new_temporary(folder: Path, prefix: str, suffix: str, directory: bool) -> Path:
    """Create a new empty file (or folder) ``<prefix><random><suffix>`` in ``folder`` with the permissions a
    plain write gets (0o666 / 0o777 less the umask; ``tempfile`` would make it private to the user)."""
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            if directory:
                tmp.mkdir()
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: no free temporary name {prefix}*{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False, *, directory: bool = False,
                keep_extension: bool = False, owner: str | None = None) -> Iterator[Path]:
    """The one way files are written: yields a temporary path in ``path``'s folder (created if needed); when
    the block ends without an exception the temporary file is renamed over ``path`` (after an fsync when
    asked), otherwise it is deleted. Readers never see a partial file.

    ``directory``: the temporary is an (empty, created) folder, renamed into place as a whole; the rename
    fails with OSError when ``path`` is a non-empty folder. ``keep_extension``: the temporary ends with
    ``path``'s extension too (for writers that pick the format from the name, e.g. video encoders).
    ``owner``: a tag in the temporary's name (e.g. host and process) so that stale ones can be recognised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path.parent, temporary_prefix(path, owner),
                         TEMP_SUFFIX + (path.suffix if keep_extension else ""), directory)
    try:
        yield tmp
        if fsync and not directory:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically (see :func:`atomic_path`); returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    return value


def json_text(value: Any) -> str:
    """``value`` as indented JSON text: NaN and infinities become null, numpy scalars plain numbers, anything else
    JSON lacks (paths, devices ...) its ``str``."""
    return json.dumps(_json_safe(value), indent=2, default=str) + "\n"


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Write :func:`json_text` of ``value`` atomically; returns the path."""
    return write_text(path, json_text(value))


def _encode(path: Path, arr: np.ndarray) -> None:
    ok, buf = cv2.imencode(path.suffix or ".png", arr)
    if not ok:
        raise DataError(f"{path}: cannot encode image with extension {path.suffix!r}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())  # a Python write: a full disk raises OSError with errno ENOSPC


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8 (rounded, clipped); uint8 unchanged."""
    if arr.dtype == np.uint8:
        return arr
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write float [0,1] (or uint8) H x W x 3 RGB, H x W x 4 RGBA, or H x W gray; atomically (temp + rename)."""
    path = Path(path)
    arr = to_uint8(image)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    elif arr.ndim != 2:
        raise ValueError(f"{path}: cannot write array of shape {arr.shape}")
    _encode(path, np.ascontiguousarray(arr))


def _jpeg_params(quality: int) -> tuple[int, ...]:
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    return (cv2.IMWRITE_JPEG_QUALITY, int(quality))


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """An RGB image (H x W x 3, float [0, 1] or uint8) as the bytes of a baseline JPEG file at ``quality``
    (1..100; OpenCV's libjpeg with 4:2:0 chroma subsampling, as phones store photos)."""
    arr = to_uint8(np.asarray(image))
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"a JPEG image must be H x W x 3 RGB, got shape {arr.shape}")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(arr[:, :, ::-1]), list(_jpeg_params(quality)))
    if not ok:
        raise ValueError(f"cannot encode a {arr.shape[1]}x{arr.shape[0]} image as JPEG")
    return buf.tobytes()


def write_jpeg(path: str | os.PathLike, image: np.ndarray, quality: int) -> Path:
    """Write an RGB image (H x W x 3, float [0, 1] or uint8) as a JPEG file at ``quality``, atomically; the
    bytes are exactly :func:`encode_jpeg`'s. Returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_jpeg(image, quality))
    return path


def write_alpha(path: str | os.PathLike, alpha: np.ndarray) -> None:
    """Write a float [0,1] H x W matte (or uint8 trimap) as an 8-bit single-channel image."""
    alpha = np.asarray(alpha)
    if alpha.ndim == 3 and alpha.shape[2] == 1:
        alpha = alpha[:, :, 0]
    if alpha.ndim != 2:
        raise ValueError(f"{path}: alpha must be H x W, got shape {alpha.shape}")
    write_image(path, alpha)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files of a folder; a missing or image-less folder is a DataError naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"{folder}: folder contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files
