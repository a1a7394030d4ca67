"""One held-out scene: a subject over a photographic background, rendered once at a master size.

Scene ``index`` of ``seed`` is a pure function of the two. Every 8th scene (index % 8 == 7) is
scikit-image's horse with a mane and tail; the others are people, with the hair style cycling through the
strand families (wisps, ringlets, curtain, flyaways, spirals) so that every family is present in any 5
consecutive people, plus extra flyaways (p = 0.5); every 3rd person wears wires. The body's colour is an LFW face
photo on the head and a photograph on the clothes; with p = 0.2 the clothes are another view of the
background's photograph (camouflage: colours close to the background, B' is the cue).

``Scene.at(size)`` area-resizes the premultiplied colour and alpha together (the same scene at any scale)
and unpremultiplies: F H x W x 3, alpha H x W and the clean background H x W x 3, float32 in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bgmatting.data.compositing import resize
from bgmatting.data.synthetic.shapes import over, unpremultiply

from . import figures, photos, strands

_SCENE_STREAM = 21
HORSE_EVERY = 8
STYLES = tuple(strands.HAIR_STYLES)


@dataclass
class Scene:
    """Premultiplied colour and alpha of the subject, its colour fill where alpha -> 0, the clean background
    (all float32 in [0, 1], size x size (x 3)) and a JSON-able description."""

    premult: np.ndarray
    alpha: np.ndarray
    fill: np.ndarray
    background: np.ndarray
    info: dict

    def at(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(F size x size x 3, alpha size x size, clean background size x size x 3) at another scale."""
        alpha = np.clip(resize(self.alpha, size, size), 0.0, 1.0)
        premult = resize(self.premult, size, size)
        foreground = unpremultiply(premult, alpha, resize(self.fill, size, size))
        return foreground, alpha.astype(np.float32), np.clip(resize(self.background, size, size), 0.0, 1.0)


def render_scene(seed: int, index: int, size: int) -> Scene:
    """Scene ``index`` of the set with ``seed``, rendered at size x size pixels."""
    rng = np.random.default_rng([seed, _SCENE_STREAM, index])
    background, photo_name = photos.photo_background(rng, size)
    camouflage = bool(rng.random() < 0.2)
    cloth, cloth_name = photos.cloth_texture(rng, size, source=photo_name if camouflage else None)
    if index % HORSE_EVERY == HORSE_EVERY - 1:
        layers, info = horse_layers(rng, size)
    else:
        person = index - index // HORSE_EVERY  # people before this one
        layers, info = person_layers(rng, size, cloth, STYLES[person % len(STYLES)], wires=person % 3 == 1)
    premult, alpha = over(layers)
    info.update(background_photo=photo_name, cloth_photo=cloth_name, camouflage=camouflage)
    return Scene(premult, np.clip(alpha, 0.0, 1.0).astype(np.float32), layers[0][1], background, info)


def _hair_cap(rng: np.random.Generator, head: figures.Head, size: int, style: str) -> np.ndarray:
    """The hair mass on the head: inside a grown head, above a hairline v < v0 + c (u / a)^2 b that runs lower
    at the sides; a soft (1-3 px at 512) edge. Flyaway styles get a thin cap or none."""
    x, y = figures.grid(size)
    if style == "flyaways" and rng.random() < 0.5:
        return np.zeros((size, size), np.float32)
    grow = rng.uniform(1.01, 1.04) if style == "flyaways" else rng.uniform(1.04, 1.15)
    u, v = head.local(x, y)
    sides = rng.uniform(1.2, 2.2) if style == "curtain" else rng.uniform(0.3, 1.4)
    line = head.b * (-rng.uniform(0.05, 0.45) + sides * (u / head.a) ** 2)
    d = np.maximum(figures.head_distance(x, y, head, grow), figures.distance(v - line))
    return figures.coverage(d, rng.uniform(1.0, 3.0) * size / 512)


def person_layers(rng: np.random.Generator, size: int, cloth: np.ndarray, style: str, wires: bool):
    """Layers (alpha, colour) back to front: body (skin on head and neck, cloth elsewhere), hair cap, hair
    strands of ``style`` (+ flyaways with p = 0.5), and ``wires`` (black, gray or white)."""
    fig = figures.person(rng, size, arms=bool(rng.random() < 0.4))
    head = fig.head
    box = (head.x - 1.05 * head.a, head.y - 1.05 * head.b, head.x + 1.05 * head.a, head.y + 1.05 * head.b)
    skin_weight = figures.coverage(fig.skin, 2.0)[:, :, None]
    body_colour = photos.skin_texture(rng, size, box) * skin_weight + cloth * (1.0 - skin_weight)
    hair = photos.hair_texture(rng, size)
    hair_strands = strands.HAIR_STYLES[style](rng, head, size)
    if style != "flyaways" and rng.random() < 0.5:
        hair_strands.extend(strands.flyaways(rng, head, size, count=(2, 6)))
    layers = [(figures.coverage(fig.body), body_colour), (_hair_cap(rng, head, size, style), hair),
              (strands.rasterise(hair_strands, size), hair)]
    if wires:
        colour = np.full((size, size, 3), rng.choice([0.05, 0.5, 0.95]), np.float32)
        layers.append((strands.rasterise(strands.wires(rng, head, size), size), colour))
    return layers, {"subject": "person", "hair": style, "arms": fig.arms, "strands": len(hair_strands),
                    "wires": wires}


def horse_layers(rng: np.random.Generator, size: int):
    """Layers: the horse silhouette in a coat colour (a hair colour with a fur photo's texture), then its
    mane (wisps on the upward edges of the front half) and tail strands in a darker shade."""
    d, box = figures.horse(rng, size)
    body = figures.coverage(d)
    coat = photos.hair_texture(rng, size)
    points, normals = figures.contour(body)
    width = box["x1"] - box["x0"]
    front = (points[:, 0] - box["x0"]) / width
    front = front if box["head_right"] else 1.0 - front
    keep = front > 0.55
    hair = strands.mane(rng, points[keep], normals[keep], size)
    tail_x = box["x0"] + width * (0.1 if box["head_right"] else 0.9)
    hair.extend(strands.tail(rng, np.array([tail_x, box["y0"] + 0.33 * (box["y1"] - box["y0"])]), size))
    layers = [(body, coat), (strands.rasterise(hair, size), np.clip(coat * 0.8, 0.0, 1.0))]
    return layers, {"subject": "horse", "hair": "mane_tail", "arms": False, "strands": len(hair), "wires": False}
