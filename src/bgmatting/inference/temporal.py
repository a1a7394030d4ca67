"""Temporal smoothing of a clip's alpha (and foreground), frame by frame as the frames stream past.

Filters (``TEMPORAL_FILTERS``), all on float arrays in [0, 1]:

* ``"ofd"``: MODNet's one-frame delay. Where frames t-1 and t+1 agree (|a[t-1] - a[t+1]| <= ``threshold``) and
  frame t differs from both by more than ``threshold``, frame t takes the mean of its neighbours. A frame is
  emitted once its successor is known (one frame of latency); the first and last frames are kept.
* ``"static"``: where the image did not change since the previous frame (the blurred gray difference is below
  ``static_level``), alpha is an exponential moving average, ``a'[t] = w a'[t-1] + (1 - w) a[t]`` with
  ``w = static_weight``; elsewhere it is the frame's own.
* ``"ofd+static"``: both, OFD first.

The foreground follows alpha in premultiplied form (a F is smoothed with the same weights; F = aF / a where
a > 0.01, else 0), so the composite a F + (1 - a) B stays consistent with the smoothed alpha.

Alpha is zero outside the subject (the pipeline keeps its largest component), so every step works inside the
bounding box of the non-zero alpha of the frames involved (outside it the result is zero either way); a frame
the filter leaves unchanged is passed on as it came.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from bgmatting.inference.pipeline import Matte
from bgmatting.inference.postprocess import CLEAR_ALPHA
from bgmatting.preprocess.motion import to_gray

TEMPORAL_FILTERS = ("none", "ofd", "static", "ofd+static")
#: The default for clips, chosen from the measurement on 8 synthetic clips (scripts/measure_temporal.py, README:
#: Matting): the lowest dtSSD, moving and static clips alike, with SAD unchanged (within 0.05 %) for the network.
DEFAULT_TEMPORAL = "ofd+static"


@dataclass(frozen=True)
class TemporalOptions:
    """``kind``: one of ``TEMPORAL_FILTERS``; ``threshold``: OFD's alpha difference; ``static_level``: the
    blurred gray frame difference below which a pixel is static; ``static_weight``: the moving average's
    weight of the past; ``static_blur``: sigma (px) of the blur of the frame difference."""

    kind: str = DEFAULT_TEMPORAL
    threshold: float = 0.1
    static_level: float = 0.02
    static_weight: float = 0.5
    static_blur: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in TEMPORAL_FILTERS:
            raise ValueError(f"unknown temporal filter {self.kind!r}; choose one of {', '.join(TEMPORAL_FILTERS)}")
        if not 0.0 <= self.static_weight < 1.0:
            raise ValueError(f"static_weight must be in [0, 1), got {self.static_weight}")


Box = tuple[slice, slice]


def support(alpha: np.ndarray) -> Box | None:
    """The bounding box (rows, columns) of the non-zero pixels of ``alpha`` (H x W float32 in [0, 1]), None when
    there are none."""
    rows = np.flatnonzero(cv2.reduce(alpha, 1, cv2.REDUCE_MAX)[:, 0] > 0)
    if rows.size == 0:
        return None
    columns = np.flatnonzero(cv2.reduce(alpha[rows[0]:rows[-1] + 1], 0, cv2.REDUCE_MAX)[0] > 0)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(columns[0]), int(columns[-1]) + 1)


def _union(*boxes: Box | None) -> Box | None:
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return (slice(min(b[0].start for b in boxes), max(b[0].stop for b in boxes)),
            slice(min(b[1].start for b in boxes), max(b[1].stop for b in boxes)))


@dataclass
class _Item:
    """A frame on its way through the filter: the caller's tag, its image (H x W x 3), its result, alpha and
    premultiplied F (H x W x 3), both zero outside ``box`` (None: alpha is zero everywhere). ``changed``: alpha and
    premultiplied are the filter's own arrays, no longer the result's."""

    tag: Any
    image: np.ndarray
    result: Matte
    alpha: np.ndarray
    premultiplied: np.ndarray
    box: Box | None
    changed: bool = False

    def own(self, box: Box) -> None:
        """Give the item arrays of its own (zero outside ``box``, which must hold its current box) to write into."""
        alpha = np.zeros(self.alpha.shape, np.float32)  # np.zeros: pages outside the box are never touched
        premultiplied = np.zeros(self.premultiplied.shape, np.float32)
        if self.box is not None:
            alpha[self.box], premultiplied[self.box] = self.alpha[self.box], self.premultiplied[self.box]
        self.alpha, self.premultiplied, self.box, self.changed = alpha, premultiplied, box, True


def _item(tag: Any, image: np.ndarray, result: Matte) -> _Item:
    box = support(result.alpha)
    premultiplied = np.zeros(result.foreground.shape, np.float32)  # untouched pages outside the box cost nothing
    if box is not None:
        np.multiply(result.foreground[box], result.alpha[box][:, :, None], out=premultiplied[box])
    return _Item(tag, image, result, result.alpha, premultiplied, box)


def _finished(item: _Item) -> tuple[Any, Matte]:
    """(tag, result with the smoothed alpha and the foreground that goes with it); the result itself when the
    filter changed nothing."""
    if not item.changed:
        return item.tag, item.result
    alpha = item.alpha
    foreground = np.zeros(item.result.foreground.shape, np.float32)
    if item.box is not None:
        box = item.box
        np.clip(alpha[box], 0.0, 1.0, out=alpha[box])
        visible = alpha[box] > CLEAR_ALPHA
        np.divide(item.premultiplied[box], alpha[box][:, :, None], out=foreground[box], where=visible[:, :, None])
        np.clip(foreground[box], 0.0, 1.0, out=foreground[box])
    return item.tag, replace(item.result, alpha=alpha, foreground=foreground)


def one_frame_delay(previous: _Item, current: _Item, following: _Item, threshold: float) -> None:
    """MODNet's OFD on ``current`` in place (module docstring), within the frames' boxes (all zero elsewhere)."""
    box = _union(previous.box, current.box, following.box)
    if box is None:
        return
    a0, a1, a2 = previous.alpha[box], current.alpha[box], following.alpha[box]
    flicker = (np.abs(a0 - a2) <= threshold) & (np.abs(a1 - a0) > threshold) & (np.abs(a1 - a2) > threshold)
    if flicker.any():
        current.own(box)
        current.alpha[box] = np.where(flicker, 0.5 * (a0 + a2), a1)
        current.premultiplied[box] = np.where(
            flicker[:, :, None], 0.5 * (previous.premultiplied[box] + following.premultiplied[box]),
            current.premultiplied[box])


def static_mask(previous_image: np.ndarray, image: np.ndarray, level: float, blur: float) -> np.ndarray:
    """H x W bool: pixels whose blurred gray difference between the two frames is below ``level``."""
    difference = np.abs(to_gray(image) - to_gray(previous_image))
    if blur > 0:
        difference = cv2.GaussianBlur(difference, (0, 0), blur)
    return difference < level


def _static_in(previous_image: np.ndarray, image: np.ndarray, box: Box, level: float, blur: float) -> np.ndarray:
    """:func:`static_mask` inside ``box`` only: computed on the box grown by the blur's reach, so the values in the
    box are the whole frame's."""
    reach = int(np.ceil(4 * blur)) + 1 if blur > 0 else 0
    height, width = image.shape[:2]
    grown = (slice(max(0, box[0].start - reach), min(height, box[0].stop + reach)),
             slice(max(0, box[1].start - reach), min(width, box[1].stop + reach)))
    static = static_mask(previous_image[grown], image[grown], level, blur)
    return static[box[0].start - grown[0].start:box[0].stop - grown[0].start,
                  box[1].start - grown[1].start:box[1].stop - grown[1].start]


class TemporalFilter:
    """Smooths a clip's results in order: :meth:`push` each frame's (tag, image, result) and get back those that
    are final, in order (one frame later with OFD); :meth:`flush` returns the rest at the end of the clip.
    ``image``: the frame, H x W x 3 float in [0, 1]; ``result``: its :class:`Matte`."""

    def __init__(self, options: TemporalOptions | None = None) -> None:
        self.options = options or TemporalOptions()
        self._waiting: deque[_Item] = deque()
        self._last: _Item | None = None  # the last emitted (smoothed) frame, the past of the moving average
        self._last_raw: _Item | None = None  # the same frame before the moving average: OFD's previous frame

    @property
    def delay(self) -> int:
        """Frames a result is held back."""
        return 1 if "ofd" in self.options.kind else 0

    def push(self, tag: Any, image: np.ndarray, result: Matte) -> list[tuple[Any, Matte]]:
        if self.options.kind == "none":
            return [(tag, result)]
        self._waiting.append(_item(tag, image, result))
        ready = []
        while len(self._waiting) > self.delay:
            if self.delay and self._last is not None:  # the oldest waiting frame has both neighbours now
                one_frame_delay(self._last_raw, self._waiting[0], self._waiting[1], self.options.threshold)
            ready.append(self._emit(self._waiting.popleft()))
        return ready

    def flush(self) -> list[tuple[Any, Matte]]:
        out = [self._emit(item) for item in self._waiting]
        self._waiting.clear()
        return out

    def _emit(self, item: _Item) -> tuple[Any, Matte]:
        raw = replace(item)  # before the moving average: OFD's previous frame (arrays shared, never written)
        last, opts = self._last, self.options
        if "static" in opts.kind and last is not None and item.image.shape == last.image.shape:
            box = _union(last.box, item.box)
            static = None if box is None else _static_in(last.image, item.image, box, opts.static_level,
                                                         opts.static_blur)
            if static is not None and static.any():
                w = opts.static_weight
                item.own(box)
                for past, present, where in ((last.alpha, item.alpha, static),
                                             (last.premultiplied, item.premultiplied, static[:, :, None])):
                    blended = cv2.addWeighted(past[box], w, present[box], 1.0 - w, 0.0)
                    np.copyto(present[box], blended.reshape(present[box].shape), where=where)
        self._last, self._last_raw = item, raw
        return _finished(item)
