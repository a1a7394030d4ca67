"""One capture's scene: a photograph wider than the frame by a margin on every side (so that a second shot from
another pose still sees the scene), and a subject of the photo set's kinds placed in the reference frame.

Scene ``index`` of ``seed`` draws the same random numbers at every frame size, so the 4:3 sizes show the same
capture at different scales (16:9 frames see the same subject over a wider view). The background is a graded
perspective view of a photograph of the photo set's pool (:data:`photos.BACKGROUND_PHOTOS`), defocused with
p = 0.5; the subject is rendered on a square canvas as tall as the frame (the photo set's people with their hair
families and wires, and every 8th a horse), standing on the bottom edge at a random horizontal position.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bgmatting.data.synthetic.photo_set import photos
from bgmatting.data.synthetic.photo_set.scenes import HORSE_EVERY, STYLES, horse_layers, person_layers
from bgmatting.data.synthetic.shapes import over

_SCENE_STREAM = 31
#: The world's margin on each side, as a share of the frame's longer side.
MARGIN = 0.1


@dataclass
class CaptureScene:
    """``world``: the clean scene, (H + 2 margin) x (W + 2 margin) x 3; the subject in the reference frame
    (H x W): premultiplied colour ``premult``, ``alpha``, and ``fill`` (its colour where alpha -> 0); all float32
    in [0, 1]. ``info``: a JSON-able description."""

    world: np.ndarray
    margin: int
    premult: np.ndarray
    alpha: np.ndarray
    fill: np.ndarray
    info: dict

    @property
    def shape(self) -> tuple[int, int]:
        return self.alpha.shape

    def in_world(self, array: np.ndarray) -> np.ndarray:
        """A reference-frame array (H x W (x C)) placed in a zero world-sized canvas."""
        m = self.margin
        out = np.zeros(self.world.shape[:2] + array.shape[2:], np.float32)
        out[m:m + array.shape[0], m:m + array.shape[1]] = array
        return out

    def reference_view(self, world: np.ndarray) -> np.ndarray:
        """The reference frame's crop of a world-sized array."""
        h, w = self.shape
        return world[self.margin:self.margin + h, self.margin:self.margin + w]


def _subject(rng: np.random.Generator, index: int, side: int, photo_name: str) -> tuple[list, dict]:
    """The photo set's subject for scene ``index`` on a ``side`` x ``side`` canvas: (layers, description)."""
    camouflage = bool(rng.random() < 0.2)
    cloth, cloth_name = photos.cloth_texture(rng, side, source=photo_name if camouflage else None)
    if index % HORSE_EVERY == HORSE_EVERY - 1:
        layers, info = horse_layers(rng, side)
    else:
        person = index - index // HORSE_EVERY
        layers, info = person_layers(rng, side, cloth, STYLES[person % len(STYLES)], wires=person % 3 == 1)
    return layers, dict(info, camouflage=camouflage, cloth_photo=cloth_name)


def render_capture_scene(seed: int, index: int, height: int, width: int) -> CaptureScene:
    """Scene ``index`` of the capture set with ``seed`` for a ``height`` x ``width`` frame (module docstring)."""
    rng = np.random.default_rng([seed, _SCENE_STREAM, index])
    margin = int(round(MARGIN * max(height, width)))
    world, photo_name = photos.photo_background(rng, height + 2 * margin, width + 2 * margin)
    side = min(height, width)
    layers, info = _subject(rng, index, side, photo_name)
    premult, alpha = over(layers)
    x0 = int(round(rng.uniform(0.1, 0.9) * (width - side)))
    y0 = height - side
    canvas = {"premult": np.zeros((height, width, 3), np.float32), "alpha": np.zeros((height, width), np.float32),
              "fill": np.zeros((height, width, 3), np.float32)}
    for key, part in (("premult", premult), ("alpha", np.clip(alpha, 0.0, 1.0)), ("fill", layers[0][1])):
        canvas[key][y0:y0 + side, x0:x0 + side] = part
    info.update(background_photo=photo_name, subject_x=x0 / max(width, 1))
    return CaptureScene(world.astype(np.float32), margin, canvas["premult"], canvas["alpha"], canvas["fill"], info)
