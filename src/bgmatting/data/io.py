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
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """Bad input data. The message always names the offending file or folder."""


def _read_raw(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file does not exist")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected an image file")
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise DataError(f"{path}: file is empty")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{path}: cannot decode image (unreadable, truncated or not an image)")
    return img


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
        lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-6 or hi > 1.0 + 1e-6:
            raise DataError(f"{source}: float image values must lie in [0, 1], found [{lo:g}, {hi:g}]")
        return np.clip(f, 0.0, 1.0)
    raise DataError(f"{source}: unsupported pixel type {img.dtype}")


def read_rgba(path: str | os.PathLike) -> np.ndarray:
    """Read an image as float32 H x W x 4 in [0, 1]; images without alpha get an opaque channel."""
    img = _read_raw(path)
    f = to_float(img, path)
    if f.ndim == 2:
        f = np.repeat(f[:, :, None], 3, axis=2)
    if f.shape[2] == 3:
        rgb = f[:, :, ::-1]
        return np.ascontiguousarray(np.concatenate([rgb, np.ones_like(rgb[:, :, :1])], axis=2))
    if f.shape[2] == 4:
        return np.ascontiguousarray(np.concatenate([f[:, :, 2::-1], f[:, :, 3:4]], axis=2))
    raise DataError(f"{path}: unsupported channel count {f.shape[2]}")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB image as float32 H x W x 3 in [0, 1] (grayscale replicated, RGBA's alpha dropped)."""
    img = _read_raw(path)
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


def read_alpha(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel matte (alpha or soft segmentation) as float32 H x W in [0, 1] (channels: see
    :func:`_one_channel`)."""
    return to_float(_one_channel(_read_raw(path), path, "alpha"), path)


#: Trimap values as stored -> 0 / 128 / 255 (background / unknown / foreground), per encoding.
TRIMAP_ENCODINGS = {
    "uint8 0/128/255": (np.uint8, (0, 128, 255)),
    "uint8 class index 0/1/2": (np.uint8, (0, 1, 2)),
    "float 0/0.5/1": (np.floating, (0.0, 0.5, 1.0)),
}


def read_trimap(path: str | os.PathLike) -> np.ndarray:
    """Read a trimap as uint8 H x W with values 0 / 128 / 255 (background / unknown / foreground).

    Recognised encodings (:data:`TRIMAP_ENCODINGS`): 8-bit 0/128/255 (Adobe, Deep Image Matting), 8-bit class
    indices 0/1/2, and float files (TIFF) with 0/0.5/1. Any other value set (e.g. a JPEG's or a bilinearly
    resized trimap's in-between values, a 16-bit file) is a DataError naming the file and the values found.
    """
    raw = _one_channel(_read_raw(path), path, "trimap")
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
