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
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from bgmatting.inference.pipeline import MatteResult
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


@dataclass
class _Item:
    """A frame on its way through the filter: the caller's tag, its image (H x W x 3), alpha and premultiplied F."""

    tag: Any
    image: np.ndarray
    result: MatteResult
    alpha: np.ndarray
    premultiplied: np.ndarray


def _item(tag: Any, image: np.ndarray, result: MatteResult) -> _Item:
    return _Item(tag, image, result, result.alpha, result.foreground * result.alpha[:, :, None])


def _finished(item: _Item) -> tuple[Any, MatteResult]:
    """(tag, result with the smoothed alpha and the foreground that goes with it)."""
    alpha = np.clip(item.alpha, 0.0, 1.0).astype(np.float32)
    visible = alpha > CLEAR_ALPHA
    foreground = np.zeros_like(item.result.foreground)
    np.divide(item.premultiplied, alpha[:, :, None], out=foreground, where=visible[:, :, None])
    return item.tag, replace(item.result, alpha=alpha, foreground=np.clip(foreground, 0.0, 1.0))


def one_frame_delay(previous: _Item, current: _Item, following: _Item, threshold: float) -> None:
    """MODNet's OFD on ``current`` in place (module docstring)."""
    a0, a1, a2 = previous.alpha, current.alpha, following.alpha
    flicker = (np.abs(a0 - a2) <= threshold) & (np.abs(a1 - a0) > threshold) & (np.abs(a1 - a2) > threshold)
    if flicker.any():
        current.alpha = np.where(flicker, 0.5 * (a0 + a2), a1)
        current.premultiplied = np.where(flicker[:, :, None], 0.5 * (previous.premultiplied + following.premultiplied),
                                         current.premultiplied)


def static_mask(previous_image: np.ndarray, image: np.ndarray, level: float, blur: float) -> np.ndarray:
    """H x W bool: pixels whose blurred gray difference between the two frames is below ``level``."""
    difference = np.abs(to_gray(image) - to_gray(previous_image))
    if blur > 0:
        difference = cv2.GaussianBlur(difference, (0, 0), blur)
    return difference < level


class TemporalFilter:
    """Smooths a clip's results in order: :meth:`push` each frame's (tag, image, result) and get back those that
    are final, in order (one frame later with OFD); :meth:`flush` returns the rest at the end of the clip.
    ``image``: the frame, H x W x 3 float in [0, 1]; ``result``: its :class:`MatteResult`."""

    def __init__(self, options: TemporalOptions | None = None) -> None:
        self.options = options or TemporalOptions()
        self._waiting: deque[_Item] = deque()
        self._last: _Item | None = None  # the last emitted (smoothed) frame, the past of the moving average
        self._last_raw: _Item | None = None  # the same frame before the moving average: OFD's previous frame

    @property
    def delay(self) -> int:
        """Frames a result is held back."""
        return 1 if "ofd" in self.options.kind else 0

    def push(self, tag: Any, image: np.ndarray, result: MatteResult) -> list[tuple[Any, MatteResult]]:
        self._waiting.append(_item(tag, image, result))
        if self.options.kind == "none":
            return [self._emit(self._waiting.popleft())]
        ready = []
        while len(self._waiting) > self.delay:
            if self.delay and self._last is not None:  # the oldest waiting frame has both neighbours now
                one_frame_delay(self._last_raw, self._waiting[0], self._waiting[1], self.options.threshold)
            ready.append(self._emit(self._waiting.popleft()))
        return ready

    def flush(self) -> list[tuple[Any, MatteResult]]:
        out = [self._emit(item) for item in self._waiting]
        self._waiting.clear()
        return out

    def _emit(self, item: _Item) -> tuple[Any, MatteResult]:
        raw = _Item(item.tag, item.image, item.result, item.alpha, item.premultiplied)  # before the moving average
        if "static" in self.options.kind and self._last is not None and item.image.shape == self._last.image.shape:
            opts = self.options
            static = static_mask(self._last.image, item.image, opts.static_level, opts.static_blur)
            w = opts.static_weight
            item.alpha = np.where(static, w * self._last.alpha + (1 - w) * item.alpha, item.alpha)
            item.premultiplied = np.where(static[:, :, None],
                                          w * self._last.premultiplied + (1 - w) * item.premultiplied,
                                          item.premultiplied)
        self._last, self._last_raw = item, raw
        return _finished(item)
