"""Fixtures for the inference and export tests: a tiny random generator saved as our checkpoint, a short
synthetic video clip (a moving disc over a photo), and real scikit-image photos with a synthetic subject."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from infer_helpers import disc_alpha, paste_subject, photo, save_checkpoint, tiny_generator

from bgmatting.io import write_image


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "tiny.pt", tiny_generator())


@pytest.fixture
def tiny_motion_checkpoint(tmp_path) -> Path:
    """A generator that really sees the motion cues (the paper's wiring)."""
    return save_checkpoint(tmp_path / "tiny_motion.pt", tiny_generator(motion_uses_background_feature=False))


@pytest.fixture
def synthetic_clip(tmp_path) -> dict:
    """8 frames 64 x 48 (W x H), MJPG .avi: a disc moving right over a photo; the plate as PNG."""
    height, width, count = 48, 64, 8
    plate = photo("astronaut", height, width)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    assert writer.isOpened()
    alphas = []
    for i in range(count):
        alpha = disc_alpha(height, width, (26.0, 14.0 + 4.0 * i), 10.0)
        frame = paste_subject(plate, alpha)
        writer.write(cv2.cvtColor((frame * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR))
        alphas.append(alpha)
    writer.release()
    write_image(tmp_path / "plate.png", plate)
    return {"video": video, "plate": tmp_path / "plate.png", "alphas": alphas, "size": (height, width), "count": count}


@pytest.fixture
def photo_folder(tmp_path) -> dict:
    """Three real photos (96 x 128) with a pasted subject: images/<name>.png, plates/<name>.png, masks/<name>.png."""
    height, width = 96, 128
    names = ["coffee", "chelsea", "rocket"]
    for k, name in enumerate(names):
        plate = photo(name, height, width)
        alpha = disc_alpha(height, width, (50.0 + 5 * k, 40.0 + 20 * k), 18.0 + 3 * k)
        write_image(tmp_path / "images" / f"{name}.png", paste_subject(plate, alpha))
        write_image(tmp_path / "plates" / f"{name}.png", plate)
        write_image(tmp_path / "masks" / f"{name}.png", (alpha > 0.5).astype(np.float32))
    return {
        "images": tmp_path / "images",
        "plates": tmp_path / "plates",
        "masks": tmp_path / "masks",
        "names": names,
        "size": (height, width),
    }
