"""An image file's size and EXIF orientation from its header, without decoding a pixel.

:func:`read_header` recognises PNG, JPEG, BMP, TIFF (and BigTIFF) and WebP (lossy, lossless, extended) by their
signatures and returns their width, height and orientation; anything else is None. :mod:`bgmatting.io`
checks the size against its pixel limit before it decodes (a few hundred bytes can declare gigabytes of pixels)
and turns the pixels upright with :func:`apply_orientation`.

Orientation (EXIF tag 274, values 1..8) is read from JPEG (APP1 ``Exif``), PNG (``eXIf``) and WebP (``EXIF``);
OpenCV's TIFF reader applies a TIFF's own orientation tag itself, so TIFF headers report 1. A damaged or missing
EXIF block means orientation 1 (the pixels as stored).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

#: EXIF / TIFF tag numbers read here.
_WIDTH_TAG, _HEIGHT_TAG, _ORIENTATION_TAG = 256, 257, 274
#: JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not frames).
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageHeader:
    """``format`` (png, jpeg, bmp, tiff, webp), the stored ``width`` x ``height`` and the EXIF ``orientation`` (1..8;
    5..8 swap width and height when applied)."""

    format: str
    width: int
    height: int
    orientation: int = 1


def read_header(data: bytes | memoryview) -> ImageHeader | None:
    """The header of an image file's bytes; None when the format is not one of the module's, or its header is
    damaged or lacks a size."""
    view = memoryview(data).cast("B")
    start = bytes(view[:12])
    if start.startswith(_PNG_SIGNATURE):
        parser = _png
    elif start.startswith(b"\xff\xd8"):
        parser = _jpeg
    elif start.startswith(b"BM"):
        parser = _bmp
    elif start[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        parser = _tiff
    elif start[:4] == b"RIFF" and start[8:12] == b"WEBP":
        parser = _webp
    else:
        return None
    try:
        header = parser(view)
    except (struct.error, ValueError, KeyError):
        return None
    return header if header is not None and header.width > 0 and header.height > 0 else None


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """H x W [x C] pixels as stored -> upright, for EXIF orientation 1..8 (other values: unchanged)."""
    turned = {
        2: lambda p: p[:, ::-1],                      # mirrored left-right
        3: lambda p: p[::-1, ::-1],                   # rotated 180
        4: lambda p: p[::-1],                         # mirrored top-bottom
        5: lambda p: np.swapaxes(p, 0, 1),            # transposed
        6: lambda p: np.rot90(p, -1),                 # rotate 90 clockwise to view
        7: lambda p: np.rot90(p[::-1], 1),            # transverse
        8: lambda p: np.rot90(p, 1),                  # rotate 90 counter-clockwise to view
    }.get(orientation)
    return pixels if turned is None else np.ascontiguousarray(turned(pixels))


def _png(view: memoryview) -> ImageHeader:
    if bytes(view[12:16]) != b"IHDR":
        raise ValueError("PNG without IHDR")
    width, height = struct.unpack_from(">II", view, 16)
    orientation, pos = 1, 8
    while pos + 8 <= len(view):  # chunk headers only; eXIf may come before or after the image data
        length, kind = struct.unpack_from(">I4s", view, pos)
        if kind == b"eXIf":
            orientation = exif_orientation(view[pos + 8:pos + 8 + length])
            break
        if kind == b"IEND":
            break
        pos += 12 + length
    return ImageHeader("png", width, height, orientation)


def _jpeg(view: memoryview) -> ImageHeader | None:
    pos, size, orientation = 2, None, None
    while pos + 4 <= len(view) and size is None:
        if view[pos] != 0xFF:
            raise ValueError("JPEG marker expected")
        marker = view[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before them
            break
        (length,) = struct.unpack_from(">H", view, pos + 2)
        segment = view[pos + 4:pos + 2 + length]
        if marker == 0xE1 and orientation is None and bytes(segment[:6]) == b"Exif\x00\x00":
            orientation = exif_orientation(segment[6:])
        elif marker in _JPEG_FRAMES:
            height, width = struct.unpack_from(">HH", segment, 1)
            size = (width, height)
        pos += 2 + length
    return None if size is None else ImageHeader("jpeg", *size, orientation or 1)


def _bmp(view: memoryview) -> ImageHeader:
    (info_size,) = struct.unpack_from("<I", view, 14)
    if info_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack_from("<HH", view, 18)
    else:
        width, height = struct.unpack_from("<ii", view, 18)
    return ImageHeader("bmp", width, abs(height))  # a negative height stores rows top-down


def _tiff(view: memoryview) -> ImageHeader:
    tags = tiff_tags(view, {_WIDTH_TAG, _HEIGHT_TAG})
    return ImageHeader("tiff", tags[_WIDTH_TAG], tags[_HEIGHT_TAG])


def _webp(view: memoryview) -> ImageHeader | None:
    pos, size, orientation = 12, None, 1
    while pos + 8 <= len(view):
        kind, length = struct.unpack_from("<4sI", view, pos)
        body = view[pos + 8:pos + 8 + length]
        if kind == b"VP8X":  # extended format: the canvas size
            size = (1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little"))
        elif kind == b"VP8 " and size is None:  # lossy: frame tag (3 bytes), start code, 14-bit sizes
            if bytes(body[3:6]) != b"\x9d\x01\x2a":
                raise ValueError("VP8 start code expected")
            width, height = struct.unpack_from("<HH", body, 6)
            size = (width & 0x3FFF, height & 0x3FFF)
        elif kind == b"VP8L" and size is None:  # lossless: signature byte, then 14-bit sizes minus one
            if body[0] != 0x2F:
                raise ValueError("VP8L signature expected")
            bits = int.from_bytes(body[1:5], "little")
            size = (1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF))
        elif kind == b"EXIF":
            orientation = exif_orientation(body)
        pos += 8 + length + (length & 1)  # chunks are padded to even sizes
    return None if size is None else ImageHeader("webp", *size, orientation)


def exif_orientation(blob: bytes | memoryview) -> int:
    """The orientation (1..8) in an EXIF block (a TIFF structure, optionally after ``Exif\\0\\0``); 1 when the block
    has none or is damaged."""
    view = memoryview(blob).cast("B")
    if bytes(view[:6]) == b"Exif\x00\x00":
        view = view[6:]
    try:
        value = tiff_tags(view, {_ORIENTATION_TAG}).get(_ORIENTATION_TAG, 1)
    except (struct.error, ValueError, KeyError):
        return 1
    return value if 1 <= value <= 8 else 1


def tiff_tags(view: memoryview, wanted: set[int]) -> dict[int, int]:
    """The single integer values (SHORT, LONG, LONG8) of the ``wanted`` tags of a TIFF structure's first IFD;
    struct.error / ValueError / KeyError when it is damaged."""
    order = {b"II": "<", b"MM": ">"}[bytes(view[:2])]
    (version,) = struct.unpack_from(order + "H", view, 2)
    if version == 42:
        (first,) = struct.unpack_from(order + "I", view, 4)
        count_format, entry_size, value_offset = "H", 12, 8
    elif version == 43:  # BigTIFF: 8-byte offsets and counts
        (first,) = struct.unpack_from(order + "Q", view, 8)
        count_format, entry_size, value_offset = "Q", 20, 12
    else:
        raise ValueError(f"TIFF version {version}")
    (entries,) = struct.unpack_from(order + count_format, view, first)
    start = first + struct.calcsize(count_format)
    if start + entries * entry_size > len(view):
        raise ValueError("TIFF directory runs past the end of the file")
    found: dict[int, int] = {}
    value_formats = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8
    for index in range(entries):
        entry = start + index * entry_size
        tag, kind = struct.unpack_from(order + "HH", view, entry)
        if tag in wanted and kind in value_formats:
            (found[tag],) = struct.unpack_from(order + value_formats[kind], view, entry + value_offset)
    return found
