"""Procedural matting subjects: foreground colour F and alpha with the hard cases of real mattes.

A subject is built from layers (back to front), each an alpha map and a colour field, composited with
the "over" operator in premultiplied form:
* an opaque body (person-like head and torso, a furry animal-like blob, or a smooth object), drawn
  4x supersampled with anti-aliased polygons so its edge is fractional;
* hair or fur: thousands of thin curved strands drawn 4x supersampled at 1 canvas pixel (a quarter of
  an output pixel) and area-downsampled, so strand pixels have fractional alpha;
* semi-transparent parts: a veil (alpha 0.2-0.7 with smooth variation) or a glass pane with a highlight;
* optionally a directional motion blur of alpha and premultiplied colour (soft, smeared edges).

Arrays: ``foreground`` H x W x 3 float32 in [0, 1], ``alpha`` H x W float32 in [0, 1]. Coordinates are
output-pixel (x, y), y pointing down.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .textures import colour_field, fractal_noise, random_colour

SUBJECT_KINDS = ("person", "furry", "object")
_SHIFT = 3  # fractional bits of the OpenCV drawing coordinates


@dataclass
class Subject:
    """A matting ground truth: foreground H x W x 3 and alpha H x W, float32 in [0, 1]."""

    foreground: np.ndarray
    alpha: np.ndarray
    info: dict = field(default_factory=dict)


class _Canvas:
    """Supersampled uint8 drawing surface; ``down`` area-averages it to an output-size float alpha."""

    def __init__(self, height: int, width: int, supersample: int) -> None:
        self.height, self.width, self.ss = height, width, supersample

    def new(self) -> np.ndarray:
        return np.zeros((self.height * self.ss, self.width * self.ss), np.uint8)

    def points(self, xy: np.ndarray) -> np.ndarray:
        """Output-pixel coordinates (..., 2) -> fixed-point canvas coordinates for OpenCV drawing."""
        return np.round(np.asarray(xy, np.float64) * self.ss * (1 << _SHIFT)).astype(np.int32)

    def down(self, canvas: np.ndarray) -> np.ndarray:
        small = cv2.resize(canvas.astype(np.float32), (self.width, self.height), interpolation=cv2.INTER_AREA)
        return np.clip(small / 255.0, 0.0, 1.0)

    def fill_polygon(self, canvas: np.ndarray, xy: np.ndarray, value: int = 255) -> None:
        cv2.fillPoly(canvas, [self.points(xy).reshape(-1, 1, 2)], int(value), cv2.LINE_AA, _SHIFT)

    def fill_ellipse(self, canvas: np.ndarray, centre, axes, angle_deg: float, value: int = 255) -> None:
        c = tuple(int(v) for v in self.points(centre))
        a = tuple(max(1, int(v)) for v in self.points(axes))
        cv2.ellipse(canvas, c, a, float(angle_deg), 0, 360, int(value), -1, cv2.LINE_AA, _SHIFT)

    def polylines(self, canvas: np.ndarray, curves: np.ndarray, value: int, thickness: int) -> None:
        if len(curves) == 0:
            return
        pts = self.points(curves)
        cv2.polylines(canvas, list(pts), False, int(value), int(thickness), cv2.LINE_AA, _SHIFT)


def smooth_closed(xy: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Chaikin corner cutting of a closed polygon (N x 2) -> a smooth closed curve."""
    for _ in range(iterations):
        nxt = np.roll(xy, -1, axis=0)
        xy = np.stack([0.75 * xy + 0.25 * nxt, 0.25 * xy + 0.75 * nxt], axis=1).reshape(-1, 2)
    return xy


def radial_blob(rng: np.random.Generator, centre, radius: float, n: int = 64, roughness: float = 0.25,
                aspect: float = 1.0) -> np.ndarray:
    """A random star-shaped closed curve (n x 2): r(theta) = radius * (1 + sum of low harmonics)."""
    theta = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 6):
        r += roughness / k * rng.normal() * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = radius * np.clip(r, 0.4, 1.8)
    return np.stack([centre[0] + r * np.cos(theta) * aspect, centre[1] + r * np.sin(theta)], axis=1)


def grow_strands(rng: np.random.Generator, roots: np.ndarray, directions: np.ndarray, lengths: np.ndarray, *,
                 segments: int = 12, curl: float = 0.05, jitter: float = 0.06, gravity: float = 0.0) -> np.ndarray:
    """Curved strands as polylines N x (segments+1) x 2, grown from ``roots`` (N x 2) along ``directions``
    (N angles, radians) with per-strand constant curl, random wiggle and a pull towards +y (gravity)."""
    n = len(roots)
    theta = directions.astype(np.float64).copy()
    curls = rng.normal(0.0, curl, n)
    step = (lengths / segments)[:, None]
    pts = np.empty((n, segments + 1, 2))
    pts[:, 0] = roots
    for k in range(segments):
        theta += curls + rng.normal(0.0, jitter, n) + gravity * np.sin(np.pi / 2 - theta)
        pts[:, k + 1] = pts[:, k] + step * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return pts


def draw_strands(canvas: _Canvas, curves: np.ndarray, rng: np.random.Generator,
                 opacities=(1.0, 0.8, 0.55)) -> np.ndarray:
    """Rasterise strands in a few opacity groups (1 or 2 canvas pixels thick) -> alpha H x W."""
    groups = rng.integers(0, len(opacities), len(curves))
    thick = rng.random(len(curves)) < 0.25
    coverage = np.ones((canvas.height, canvas.width), np.float32)
    for g, opacity in enumerate(opacities):
        for thickness, sel in ((1, ~thick), (2, thick)):
            chosen = curves[(groups == g) & sel]
            if len(chosen) == 0:
                continue
            c = canvas.new()
            canvas.polylines(c, chosen, int(round(255 * opacity)), thickness)
            coverage *= 1.0 - canvas.down(c)
    return 1.0 - coverage


def ellipse_points(centre, axes, angle_deg: float, thetas: np.ndarray) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    x = axes[0] * np.cos(thetas)
    y = axes[1] * np.sin(thetas)
    return np.stack([centre[0] + x * np.cos(a) - y * np.sin(a), centre[1] + x * np.sin(a) + y * np.cos(a)], axis=1)


def _outward_angles(centre, points: np.ndarray) -> np.ndarray:
    d = points - np.asarray(centre)
    return np.arctan2(d[:, 1], d[:, 0])


# --------------------------------------------------------------------------------------------- bodies
def _person_body(rng, canvas: _Canvas, height: int, width: int, scale: float, centre_x: float,
                 head_y: float | None = None):
    """Head + neck + shoulders/torso down past the bottom edge. Returns (alpha, head geometry).

    The head centre is at ``head_y`` if given, else at a portrait framing's height above the bottom edge."""
    m = min(height, width) * scale
    ax = m * rng.uniform(0.11, 0.15)
    ay = ax * rng.uniform(1.15, 1.35)
    hx = centre_x
    hy = height - m * rng.uniform(0.62, 0.78) if head_y is None else head_y
    tilt = rng.normal(0.0, 8.0)
    c = canvas.new()
    canvas.fill_ellipse(c, (hx, hy), (ax, ay), tilt)
    shoulder_w = ax * rng.uniform(2.3, 3.4)
    neck_w = ax * rng.uniform(0.45, 0.6)
    neck_y = hy + ay * 0.8
    shoulder_y = hy + ay * rng.uniform(1.45, 1.8)
    bottom = height + m * 0.6  # well past the edge so warps never uncover the bottom
    torso = np.array([
        [hx - neck_w, neck_y], [hx - neck_w, shoulder_y - ay * 0.3],
        [hx - shoulder_w * 0.8, shoulder_y - ay * 0.05], [hx - shoulder_w, shoulder_y + ay * 0.4],
        [hx - shoulder_w * rng.uniform(1.0, 1.15), bottom], [hx + shoulder_w * rng.uniform(1.0, 1.15), bottom],
        [hx + shoulder_w, shoulder_y + ay * 0.4], [hx + shoulder_w * 0.8, shoulder_y - ay * 0.05],
        [hx + neck_w, shoulder_y - ay * 0.3], [hx + neck_w, neck_y],
    ])
    canvas.fill_polygon(c, smooth_closed(torso, 3))
    return canvas.down(c), dict(centre=(hx, hy), axes=(ax, ay), tilt=tilt, shoulder_y=shoulder_y,
                                shoulder_w=shoulder_w)


def _hair(rng, canvas: _Canvas, head: dict) -> tuple[np.ndarray, np.ndarray]:
    """Hair cap + strands on a person's head. Returns (cap alpha, strand alpha)."""
    (hx, hy), (ax, ay), tilt = head["centre"], head["axes"], head["tilt"]
    style = rng.choice(["long", "short", "curly", "flyaway"], p=[0.4, 0.25, 0.2, 0.15])
    cap = canvas.new()
    # Cap: the part of a slightly larger ellipse above a chord (how far down it reaches varies).
    grow = rng.uniform(1.05, 1.2)
    low = rng.uniform(-0.15, 0.6)  # radians from the horizontal: > 0 leaves more of the face free
    arc = np.linspace(np.pi + low, 2 * np.pi - low, 40)
    upper = ellipse_points((hx, hy), (ax * grow, ay * grow), tilt, arc)
    if style != "flyaway":
        canvas.fill_polygon(cap, smooth_closed(upper, 2))
    # Strand roots spread over the top of the head.
    density = {"long": 3.0, "short": 2.0, "curly": 2.2, "flyaway": 0.5}[style]
    n = int(density * 4.0 * (ax + ay) * rng.uniform(0.8, 1.3)) + 40
    t = rng.uniform(np.pi * 0.95, np.pi * 2.05, n)
    roots = ellipse_points((hx, hy), (ax * rng.uniform(0.85, 1.0), ay * rng.uniform(0.85, 1.0)), tilt, t)
    out = _outward_angles((hx, hy), roots)
    if style == "long":
        lengths = ay * rng.uniform(0.8, 2.6, n)
        curves = grow_strands(rng, roots, out + rng.normal(0, 0.25, n), lengths, segments=16,
                              curl=0.02, jitter=0.04, gravity=0.22)
    elif style == "short":
        lengths = ay * rng.uniform(0.15, 0.5, n)
        curves = grow_strands(rng, roots, out + rng.normal(0, 0.35, n), lengths, segments=8,
                              curl=0.05, jitter=0.08, gravity=0.05)
    elif style == "curly":
        lengths = ay * rng.uniform(0.3, 0.9, n)
        curves = grow_strands(rng, roots, out + rng.normal(0, 0.4, n), lengths, segments=20,
                              curl=0.35, jitter=0.15, gravity=0.02)
    else:  # a few long flyaway strands over a mostly bald/neat head
        lengths = ay * rng.uniform(0.3, 1.4, n)
        curves = grow_strands(rng, roots, out + rng.normal(0, 0.3, n), lengths, segments=14,
                              curl=0.04, jitter=0.05, gravity=0.05)
    return canvas.down(cap), draw_strands(canvas, curves, rng)


def _furry_body(rng, canvas: _Canvas, height: int, width: int, scale: float, centre):
    """An animal-like blob with short fur strands all around its outline. Returns (body, fur)."""
    m = min(height, width) * scale
    radius = m * rng.uniform(0.22, 0.32)
    outline = smooth_closed(radial_blob(rng, centre, radius, n=32, roughness=0.35,
                                        aspect=rng.uniform(0.8, 1.4)), 2)
    c = canvas.new()
    canvas.fill_polygon(c, outline)
    n = int(len(outline) * rng.uniform(12, 22))
    idx = rng.integers(0, len(outline), n)
    nxt = (idx + 1) % len(outline)
    w = rng.random(n)[:, None]
    roots = outline[idx] * (1 - w) + outline[nxt] * w
    tangent = outline[nxt] - outline[idx]
    normal = np.arctan2(-tangent[:, 0], tangent[:, 1])  # outward normal of the outline (angles increase)
    inward = rng.uniform(0.0, 0.05 * radius, n)[:, None]
    roots = roots - inward * np.stack([np.cos(normal), np.sin(normal)], axis=1)
    lengths = radius * rng.uniform(0.06, 0.3, n)
    curves = grow_strands(rng, roots, normal + rng.normal(0, 0.35, n), lengths, segments=6,
                          curl=0.08, jitter=0.1, gravity=0.04)
    return canvas.down(c), draw_strands(canvas, curves, rng)


def _object_body(rng, canvas: _Canvas, height: int, width: int, scale: float, centre):
    m = min(height, width) * scale
    c = canvas.new()
    outline = smooth_closed(radial_blob(rng, centre, m * rng.uniform(0.2, 0.3), n=12, roughness=0.6,
                                        aspect=rng.uniform(0.6, 1.5)), 4)
    canvas.fill_polygon(c, outline)
    return canvas.down(c)


# ----------------------------------------------------------------------------------- semi-transparency
def _veil(rng, canvas: _Canvas, height: int, width: int, anchor, size: float):
    """A veil / thin fabric region overlapping ``anchor`` with alpha in ~[0.2, 0.7]. Returns (alpha, colour)."""
    c = canvas.new()
    size = size * rng.uniform(0.9, 1.5)
    centre = (anchor[0] + rng.normal(0, 0.6) * size, anchor[1] + rng.normal(0, 0.4) * size)
    canvas.fill_polygon(c, smooth_closed(radial_blob(rng, centre, size, n=16, roughness=0.5,
                                                     aspect=rng.uniform(0.7, 1.6)), 3))
    mask = cv2.GaussianBlur(canvas.down(c), (0, 0), max(0.5, 0.01 * size))
    level = rng.uniform(0.2, 0.7)
    variation = fractal_noise(rng, height, width, base_cells=4, octaves=3)
    alpha = mask * np.clip(level + (variation - 0.5) * 0.3, 0.2, 0.7)
    colour = colour_field(rng, height, width, base=random_colour(rng, value=(0.4, 1.0)))
    return alpha.astype(np.float32), colour


def _glass(rng, canvas: _Canvas, height: int, width: int, anchor, size: float):
    """A glass-like pane: low uniform alpha (0.2-0.45), a bright specular streak. Returns (alpha, colour)."""
    c = canvas.new()
    w, h = size * rng.uniform(0.8, 1.6), size * rng.uniform(1.0, 2.0)
    x0, y0 = anchor[0] + rng.normal(0, 0.5) * size - w / 2, anchor[1] + rng.normal(0, 0.3) * size - h / 2
    rect = np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]])
    canvas.fill_polygon(c, smooth_closed(rect, 2))
    pane = canvas.down(c)
    hl = canvas.new()
    t = rng.uniform(0.2, 0.7)
    streak = np.array([[x0 + t * w, y0], [x0 + (t + 0.08) * w, y0], [x0 + (t - 0.1) * w, y0 + h],
                       [x0 + (t - 0.18) * w, y0 + h]])
    canvas.fill_polygon(hl, streak)
    highlight = cv2.GaussianBlur(canvas.down(hl), (0, 0), max(0.7, 0.02 * size)) * pane
    level = rng.uniform(0.2, 0.45)
    alpha = np.clip(pane * level + highlight * 0.5, 0.0, 1.0)
    tint = np.clip(random_colour(rng, saturation=(0.0, 0.3), value=(0.6, 1.0)), 0, 1)
    colour = np.empty((height, width, 3), np.float32)
    colour[:] = tint
    weight = (highlight / np.maximum(alpha, 1e-3))[:, :, None]
    colour = colour * (1 - weight) + weight * 1.0
    return alpha.astype(np.float32), np.clip(colour, 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------------------ composing
def over(layers: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Composite (alpha H x W, colour H x W x 3) layers back to front -> (premultiplied colour, alpha)."""
    h, w = layers[0][0].shape
    premult = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    for a, colour in layers:
        premult = a[:, :, None] * colour + (1.0 - a[:, :, None]) * premult
        alpha = a + (1.0 - a) * alpha
    return premult, alpha


def motion_blur_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised anti-aliased line kernel of ``length`` pixels at ``angle_deg``."""
    size = int(np.ceil(length)) | 1
    size = max(size, 3)
    k = np.zeros((size * 8, size * 8), np.uint8)
    c = size * 4
    d = np.array([np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))]) * length * 4 / 2
    p0 = np.round((np.array([c, c]) - d) * 8).astype(int)
    p1 = np.round((np.array([c, c]) + d) * 8).astype(int)
    cv2.line(k, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 255, 8, cv2.LINE_AA, 3)
    kernel = cv2.resize(k.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return kernel / max(float(kernel.sum()), 1e-6)


def apply_motion_blur(premult: np.ndarray, alpha: np.ndarray, length: float, angle_deg: float):
    """Blur premultiplied colour and alpha together along a direction (physically consistent smear)."""
    if length < 1.0:
        return premult, alpha
    kernel = motion_blur_kernel(length, angle_deg)
    return (cv2.filter2D(premult, -1, kernel, borderType=cv2.BORDER_REFLECT),
            cv2.filter2D(alpha, -1, kernel, borderType=cv2.BORDER_REFLECT))


def unpremultiply(premult: np.ndarray, alpha: np.ndarray, fill: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """F = premult / alpha where alpha > 0, blending to ``fill`` (H x W x 3) where alpha -> 0."""
    f = (premult + eps * fill) / (alpha[:, :, None] + eps)
    return np.clip(f, 0.0, 1.0).astype(np.float32)


def _person_layers(rng, canvas: _Canvas, height: int, width: int, scale: float, centre_x: float,
                   head_y: float | None, body_colour: np.ndarray) -> tuple[list, tuple[float, float], float]:
    """A person's (alpha, colour) layers: body with a skin-coloured head, hair cap and strands; and the anchor
    and size of a veil or glass in front of it."""
    body, head = _person_body(rng, canvas, height, width, scale, centre_x, head_y)
    skin = colour_field(rng, height, width, base=random_colour(rng, (0.2, 0.6), (0.35, 0.9)))
    hx, hy = head["centre"]
    ax, ay = head["axes"]
    # Head region gets skin colour, the rest clothing (the body field).
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    head_w = np.clip(1.0 - (((xx - hx) / ax) ** 2 + ((yy - hy) / ay) ** 2 - 1.0) * 3.0, 0, 1)[:, :, None]
    layers = [(body, skin * head_w + body_colour * (1 - head_w))]
    cap, strands = _hair(rng, canvas, head)
    hair_colour = colour_field(rng, height, width, base=random_colour(rng, (0.1, 0.8), (0.05, 0.9)))
    layers += [(cap, hair_colour), (strands, hair_colour)]
    return layers, (hx, hy + ay), ax * 1.5


def render_subject(rng: np.random.Generator, height: int, width: int, *, kind: str | None = None,
                   scale: float = 1.0, centre: tuple[float, float] | None = None,
                   camouflage: np.ndarray | None = None, p_veil: float = 0.35, p_glass: float = 0.2,
                   p_motion_blur: float = 0.25, max_blur: float = 0.04, supersample: int = 4) -> Subject:
    """Render one subject: foreground H x W x 3 and alpha H x W, float32 in [0, 1].

    kind: "person" (head, hair strands, torso leaving the bottom edge), "furry" (blob with fur),
    "object" (smooth shape), or None for a random one. scale: subject size relative to min(H, W).
    centre: (x, y) of the subject (for a person: of the head); None places it at random (a person in
    portrait framing).
    camouflage: an H x W x 3 image whose colours the body copies (foreground close to that background).
    p_veil / p_glass / p_motion_blur: probabilities of a veil, a glass pane, a directional motion blur
    of up to ``max_blur`` * min(H, W) pixels.
    """
    if kind is None:
        kind = SUBJECT_KINDS[int(rng.choice(3, p=[0.55, 0.3, 0.15]))]
    if kind not in SUBJECT_KINDS:
        raise ValueError(f"unknown subject kind {kind!r}; expected one of {SUBJECT_KINDS}")
    canvas = _Canvas(height, width, supersample)
    m = min(height, width) * scale
    head_y = None if centre is None else centre[1]
    if centre is None:
        centre = (width / 2 + rng.normal(0, 0.08) * width, height / 2 + rng.normal(0, 0.06) * height)
    body_colour = colour_field(rng, height, width, source=camouflage)
    info: dict = {"kind": kind, "camouflage": camouflage is not None}
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    if kind == "person":
        person, anchor, size = _person_layers(rng, canvas, height, width, scale, centre[0], head_y, body_colour)
        layers += person
    elif kind == "furry":
        body, fur = _furry_body(rng, canvas, height, width, scale, centre)
        fur_colour = np.clip(body_colour * rng.uniform(0.8, 1.25), 0, 1)
        layers += [(body, body_colour), (fur, fur_colour)]
        anchor, size = centre, m * 0.2
    else:
        body = _object_body(rng, canvas, height, width, scale, centre)
        layers.append((body, body_colour))
        anchor, size = centre, m * 0.2
    if rng.random() < p_veil:
        layers.append(_veil(rng, canvas, height, width, anchor, size))
        info["veil"] = True
    if rng.random() < p_glass:
        layers.append(_glass(rng, canvas, height, width, anchor, size))
        info["glass"] = True
    premult, alpha = over(layers)
    if rng.random() < p_motion_blur:
        length = rng.uniform(0.3, 1.0) * max_blur * min(height, width)
        angle = rng.uniform(0, 180)
        premult, alpha = apply_motion_blur(premult, alpha, length, angle)
        info["motion_blur"] = [round(float(length), 3), round(float(angle), 2)]  # px, degrees
    alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    foreground = unpremultiply(premult, alpha, layers[0][1])
    return Subject(foreground, alpha, info)
