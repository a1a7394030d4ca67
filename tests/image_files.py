"""Image files built byte by byte for the reader's tests: EXIF orientation tags in JPEG, PNG and WebP files, and
headers that declare more pixels than the file holds (decompression bombs)."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def exif_block(orientation: int) -> bytes:
    """A little-endian TIFF structure whose first IFD holds one entry: Orientation (SHORT) = ``orientation``."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def jpeg_with_orientation(bgr: np.ndarray, orientation: int) -> bytes:
    """``bgr`` as a (quality 100) JPEG with an APP1 Exif segment holding ``orientation``."""
    data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    payload = b"Exif\x00\x00" + exif_block(orientation)
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def png_with_orientation(bgr: np.ndarray, orientation: int) -> bytes:
    """``bgr`` as a PNG with an eXIf chunk holding ``orientation`` (after IHDR)."""
    data = cv2.imencode(".png", bgr)[1].tobytes()
    return data[:33] + _png_chunk(b"eXIf", exif_block(orientation)) + data[33:]


def webp_with_orientation(bgr: np.ndarray, orientation: int) -> bytes:
    """``bgr`` as a lossless WebP in the extended format (VP8X with the EXIF flag, VP8L, EXIF chunk)."""
    data = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    assert data[12:16] == b"VP8L", data[:16]
    height, width = bgr.shape[:2]
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    exif = exif_block(orientation)
    chunks = (b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0]) + canvas + data[12:]
              + b"EXIF" + struct.pack("<I", len(exif)) + exif + b"\x00" * (len(exif) & 1))
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def png_bomb_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` 8-bit RGB pixels and holds a few bytes of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _png_chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to declare ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def marked(height: int = 12, width: int = 20) -> np.ndarray:
    """BGR uint8 test card: a white 4 x 6 block in the top-left corner, a red one in the top-right, grey elsewhere
    (every orientation moves the blocks somewhere else)."""
    image = np.full((height, width, 3), 90, np.uint8)
    image[:4, :6] = 255
    image[:4, -6:] = (0, 0, 255)
    return image
