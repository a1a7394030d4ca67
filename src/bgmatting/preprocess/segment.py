"""Soft segmentation S of the subject: float32 H x W in [0, 1].

Backends (``get_segmenter(name, **kwargs)``):

* ``"background_difference"`` (offline default, no weights): robust colour difference between the image
  and the (aligned) captured background, a noise-floor or Otsu threshold, optional shadow suppression,
  morphological open/close, the largest connected components, small holes filled.
* ``"deeplabv3"``: torchvision DeepLabV3 (ResNet-101 by default), soft probability of the VOC "person"
  class (index 15), as the public code's DeepLab step. Weights come from torchvision's cache or
  ``weights_path``; nothing is downloaded unless ``download=True``.

Both finish, unless ``postprocess=False``, with the public test script's treatment of S
(``postprocess_segmentation``): values above 0.2 set to 1, erode (3x3 ellipse) x10, dilate (5x5 ellipse)
x5, Gaussian blur 31. The public code does this on a 512 x 512 crop around the subject; on a full frame the
iteration counts and blur size are scaled by ``segmentation_crop_scale`` (crop side / 512).
"""
from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from bgmatting.models.checkpoints import CheckpointError, read_weights_file
from bgmatting.preprocess.motion import to_gray
from bgmatting.runtime import resolve_device

REFERENCE_CROP_SIDE = 512  # the public code post-processes S on a 512 x 512 crop
VOC_PERSON_CLASS = 15


# ----------------------------------------------------------------------------------------------------
# Post-processing shared by all backends


def postprocess_segmentation(
    mask: np.ndarray,
    *,
    scale: float = 1.0,
    binarize_above: float | None = 0.2,
    erode_kernel: int = 3,
    erode_iterations: int = 10,
    dilate_kernel: int = 5,
    dilate_iterations: int = 5,
    blur_kernel: int = 31,
) -> np.ndarray:
    """The public code's test-time treatment of S: float32 H x W in [0, 1] -> float32 H x W in [0, 1].

    mask: H x W, uint8 (0..255), bool or float in [0, 1]. Values above ``binarize_above`` become 1 (others
    are kept), then erode (ellipse ``erode_kernel``) ``erode_iterations`` times, dilate (ellipse
    ``dilate_kernel``) ``dilate_iterations`` times and blur (Gaussian, ``blur_kernel``, sigma from the
    size as OpenCV does). ``scale`` multiplies the reach of erosion and dilation in pixels and the blur
    size (rounded, blur kept odd): 1 on a 512-pixel crop as in the public code (exactly its operations);
    ``segmentation_crop_scale(mask)`` on a full frame, e.g. 0.125 for a 64-pixel crop. The image border
    does not erode (OpenCV's default border for erosion).
    """
    s = _mask_to_float(mask)
    if s.ndim != 2:
        raise ValueError(f"segmentation must be H x W, got shape {s.shape}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    s = s.copy()
    if binarize_above is not None:
        s[s > binarize_above] = 1.0
    binary = bool(np.all((s == 0.0) | (s == 1.0)))  # a binary mask erodes and dilates exactly as uint8, 3x faster
    s = s.astype(np.uint8) if binary else s
    s = _morph_to_radius(cv2.erode, s, erode_kernel, round(erode_iterations * (erode_kernel // 2) * scale))
    s = _morph_to_radius(cv2.dilate, s, dilate_kernel, round(dilate_iterations * (dilate_kernel // 2) * scale))
    s = s.astype(np.float32) if binary else s
    blur = _scaled_odd(blur_kernel, scale)
    if blur > 1:
        s = cv2.GaussianBlur(s, (blur, blur), 0)
    return np.clip(s, 0.0, 1.0).astype(np.float32, copy=False)


def segmentation_crop_scale(mask: np.ndarray, threshold: float = 0.5,
                            reference_side: int = REFERENCE_CROP_SIDE) -> float:
    """Side of the public code's crop around the subject divided by 512 (the crop it post-processes on).

    The crop is 1.2 x the longer side of the subject's bounding box (``mask > threshold``), clipped to the
    frame; with no subject, the frame's longer side is used.
    """
    m = _mask_to_float(mask) > threshold
    h, w = m.shape
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if len(rows) == 0:
        side = max(h, w)
    else:
        box = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
        side = min(1.2 * box, max(h, w))
    return float(side) / reference_side


def _morph_to_radius(op, s: np.ndarray, kernel: int, radius: int) -> np.ndarray:
    """Apply ``op`` with the ellipse ``kernel`` until the total reach is ``radius`` px: radius // (kernel // 2)
    times, plus once with a smaller ellipse for the remainder. At scale 1 this is exactly the public
    code's iterations; at other scales erosion and dilation keep their balance (no net edge shift)."""
    step = max(kernel // 2, 1)
    times, remainder = divmod(int(radius), step)
    if times:
        s = op(s, _ellipse(kernel), iterations=times)
    if remainder:
        s = op(s, _ellipse(2 * remainder + 1))
    return s


def _scaled_odd(k: int, scale: float) -> int:
    if k <= 1:
        return k
    k = max(1, int(round(k * scale)))
    return k if k % 2 == 1 else k + 1


def _ellipse(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _mask_to_float(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.dtype == bool:
        return mask.astype(np.float32)
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) / 255.0
    return np.clip(mask.astype(np.float32, copy=False), 0.0, 1.0)


def _image_to_float(name: str, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be an H x W x 3 RGB array, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 or float in [0, 1], got dtype {image.dtype}")
    return np.clip(image.astype(np.float32, copy=False), 0.0, 1.0)


# ----------------------------------------------------------------------------------------------------
# Interface and registry


class Segmenter(ABC):
    """Soft subject segmentation: ``segment(image, background=None) -> float32 H x W in [0, 1]``.

    image, background: H x W x 3 RGB, uint8 or float in [0, 1]; background is the aligned captured plate
    (needed by backends that compare with it).
    """

    name: str = ""
    needs_background: bool = False
    runs_on_device: bool = False  # a network that takes ``device=`` (see get_segmenter)

    @abstractmethod
    def segment(self, image: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
        """Soft segmentation, float32 H x W in [0, 1]."""

    def __call__(self, image: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
        return self.segment(image, background)


SEGMENTERS: dict[str, Callable[..., Segmenter]] = {}


def register_segmenter(*names: str) -> Callable[[type[Segmenter]], type[Segmenter]]:
    """Class decorator adding a backend to the registry under ``names``."""

    def add(cls: type[Segmenter]) -> type[Segmenter]:
        for name in names:
            SEGMENTERS[name] = cls
        cls.name = names[0]
        return cls

    return add


def get_segmenter(name: str, *, device=None, **kwargs) -> Segmenter:
    """Build the backend registered as ``name`` with its keyword options. ``device`` (a torch device or its
    name) goes to backends that run a network and is ignored by the others."""
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}; available: {', '.join(sorted(SEGMENTERS))}")
    backend = SEGMENTERS[name]
    if device is not None and getattr(backend, "runs_on_device", False):
        kwargs["device"] = str(device)
    return backend(**kwargs)


# ----------------------------------------------------------------------------------------------------
# Background difference (no weights)


@register_segmenter("background_difference")
class BackgroundDifferenceSegmenter(Segmenter):
    """Subject = pixels that differ from the aligned captured background.

    Steps: light Gaussian blur of both images (``blur_sigma`` px); difference d = max over channels of
    |I - B| (with ``tolerance_px`` r > 0: the distance of I to the range of B within r px, max(0, I - max_r B,
    min_r B - I), so that B off by up to r px reads as no difference); shadow suppression (pixels darker than B
    by a factor in [shadow_min_ratio, 0.97] whose chromaticity, channel / channel mean, moved less than
    ``shadow_chroma_tolerance``, count as background); threshold ("noise": median + ``noise_sigmas`` robust
    sigmas of d; "otsu": Otsu's threshold; both clipped to [min_threshold, max_threshold]; or a number); open
    then close with ellipses (radii ``open_fraction`` / ``close_fraction`` of the shorter side); keep at most
    ``max_components`` components, each at least ``min_component_ratio`` of the largest; fill holes
    smaller than ``max_hole_ratio`` of the subject (None: all holes); then ``postprocess_segmentation``
    scaled to the subject's crop (or, with ``postprocess=False``, the binary mask as float).
    ``segment`` works on copies downscaled to ``work_side`` (longer side; None: full size) and resizes S
    back (bilinear); the post-process blurs far more than that resampling changes.
    """

    needs_background = True

    def __init__(
        self,
        *,
        threshold: str | float = "noise",
        min_threshold: float = 0.06,
        max_threshold: float = 0.2,
        noise_sigmas: float = 6.0,
        blur_sigma: float = 1.0,
        tolerance_px: int = 0,
        shadow_suppression: bool = True,
        shadow_min_ratio: float = 0.3,
        shadow_chroma_tolerance: float = 0.1,
        open_fraction: float = 0.003,
        close_fraction: float = 0.01,
        max_components: int = 1,
        min_component_ratio: float = 0.2,
        fill_holes: bool = True,
        max_hole_ratio: float | None = 0.05,
        postprocess: bool = True,
        work_side: int | None = 960,
    ) -> None:
        if isinstance(threshold, str) and threshold not in ("noise", "otsu"):
            raise ValueError(f"threshold must be 'noise', 'otsu' or a number in (0, 1), got {threshold!r}")
        self.threshold = threshold
        self.min_threshold = min_threshold
        self.max_threshold = max_threshold
        self.noise_sigmas = noise_sigmas
        self.blur_sigma = blur_sigma
        self.tolerance_px = int(tolerance_px)
        self.shadow_suppression = shadow_suppression
        self.shadow_min_ratio = shadow_min_ratio
        self.shadow_chroma_tolerance = shadow_chroma_tolerance
        self.open_fraction = open_fraction
        self.close_fraction = close_fraction
        self.max_components = max_components
        self.min_component_ratio = min_component_ratio
        self.fill_holes = fill_holes
        self.max_hole_ratio = max_hole_ratio
        self.postprocess = postprocess
        self.work_side = work_side

    def difference(self, image: np.ndarray, background: np.ndarray) -> np.ndarray:
        """Robust colour difference d, float32 H x W in [0, 1] (after blur and shadow suppression)."""
        _check_pair(image, background)
        image_f = _image_to_float("image", image)
        background_f = _image_to_float("background", background)
        if self.blur_sigma > 0:
            image_f = cv2.GaussianBlur(image_f, (0, 0), self.blur_sigma)
            background_f = cv2.GaussianBlur(background_f, (0, 0), self.blur_sigma)
        if self.tolerance_px > 0:
            disc = _ellipse(2 * self.tolerance_px + 1)
            above = image_f - cv2.dilate(background_f, disc, borderType=cv2.BORDER_REPLICATE)
            below = cv2.erode(background_f, disc, borderType=cv2.BORDER_REPLICATE) - image_f
            d = np.maximum(_channel_max(np.maximum(above, below)), 0.0)
        else:
            d = _channel_max(cv2.absdiff(image_f, background_f))
        if self.shadow_suppression:
            d[self._shadow(image_f, background_f)] = 0.0
        return d

    def _shadow(self, image: np.ndarray, background: np.ndarray) -> np.ndarray:
        """Pixels where I = k B with one k in [shadow_min_ratio, 0.97] for all channels (a cast shadow)."""
        eps = 1e-3
        luma_i, luma_b = to_gray(image), to_gray(background)
        ratio = (luma_i + eps) / (luma_b + eps)
        mean_i = cv2.transform(image, np.full((1, 3), 1.0 / 3.0)) + eps
        mean_b = cv2.transform(background, np.full((1, 3), 1.0 / 3.0)) + eps
        chroma_i = cv2.divide(image, cv2.merge([mean_i] * 3))
        chroma_b = cv2.divide(background, cv2.merge([mean_b] * 3))
        same_chroma = _channel_max(cv2.absdiff(chroma_i, chroma_b)) < self.shadow_chroma_tolerance
        return (ratio >= self.shadow_min_ratio) & (ratio <= 0.97) & same_chroma & (luma_b > 0.08)

    def pick_threshold(self, d: np.ndarray) -> float:
        """The decision threshold on d."""
        if not isinstance(self.threshold, str):
            return float(self.threshold)
        if self.threshold == "otsu":
            otsu, _ = cv2.threshold(np.round(d * 255).astype(np.uint8), 0, 255,
                                    cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            return float(np.clip(otsu / 255.0, self.min_threshold, self.max_threshold))
        sample = d[::4, ::4].ravel()
        median = float(np.median(sample))
        sigma = 1.4826 * float(np.median(np.abs(sample - median)))
        return float(np.clip(median + self.noise_sigmas * sigma, self.min_threshold, self.max_threshold))

    def binary_mask(self, image: np.ndarray, background: np.ndarray) -> np.ndarray:
        """The cleaned binary subject mask, bool H x W."""
        d = self.difference(image, background)
        mask = (d > self.pick_threshold(d)).astype(np.uint8)
        short = min(mask.shape)
        open_r = int(round(self.open_fraction * short))
        close_r = int(round(self.close_fraction * short))
        if open_r > 0:
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _ellipse(2 * open_r + 1))
        if close_r > 0:
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _ellipse(2 * close_r + 1))
        mask = keep_largest_components(mask > 0, self.max_components, self.min_component_ratio)
        if self.fill_holes:
            mask = fill_holes(mask, self.max_hole_ratio)
        return mask

    def segment(self, image: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
        if background is None:
            raise ValueError("the background_difference segmenter needs the (aligned) captured background")
        _check_pair(image, background)
        h, w = np.asarray(image).shape[:2]
        small_image, small_background = _shrink(image, self.work_side), _shrink(background, self.work_side)
        mask = self.binary_mask(small_image, small_background).astype(np.float32)
        if self.postprocess:
            mask = postprocess_segmentation(mask, scale=segmentation_crop_scale(mask))
        if mask.shape != (h, w):
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
            if not self.postprocess:
                mask = (mask > 0.5).astype(np.float32)
        return mask


def _check_pair(image: np.ndarray, background: np.ndarray) -> None:
    image_shape, background_shape = np.shape(image), np.shape(background)
    for name, shape in (("image", image_shape), ("background", background_shape)):
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"{name} must be an H x W x 3 RGB array, got shape {shape}")
    if image_shape != background_shape:
        raise ValueError(f"image {image_shape} and background {background_shape} differ in size; "
                         "align the background first (bgmatting.preprocess.align.align_background)")


def _channel_max(image: np.ndarray) -> np.ndarray:
    """Per-pixel maximum over the channels of an H x W x 3 array (OpenCV; much faster than numpy here)."""
    r, g, b = cv2.split(image)
    return cv2.max(cv2.max(r, g), b)


def _shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale (area) so the longer side is at most ``max_side``; unchanged when already small enough."""
    image = np.asarray(image)
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def keep_largest_components(mask: np.ndarray, max_components: int = 1, min_ratio: float = 0.0) -> np.ndarray:
    """Keep the ``max_components`` largest 8-connected components whose area is at least ``min_ratio`` of
    the largest one. mask: bool H x W -> bool H x W."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(areas)[::-1][:max(1, max_components)]
    chosen = [i + 1 for i in order if areas[i] >= min_ratio * areas[order[0]]]
    return np.isin(labels, chosen)


def fill_holes(mask: np.ndarray, max_hole_ratio: float | None = None) -> np.ndarray:
    """Fill background regions enclosed by the mask (not touching the image border).

    With ``max_hole_ratio`` only holes smaller than that share of the mask's area are filled (so the gap
    between an arm and the body, which is real background, stays open). bool H x W -> bool H x W.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    if count <= 1:
        return mask.copy()
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = np.setdiff1d(np.arange(1, count), border)
    if max_hole_ratio is not None:
        holes = holes[stats[holes, cv2.CC_STAT_AREA] < max_hole_ratio * mask.sum()]
    return mask | np.isin(labels, holes)


def background_difference_matte(
    image: np.ndarray,
    background: np.ndarray,
    *,
    low: float = 0.5,
    high: float = 2.0,
    **segmenter_options,
) -> np.ndarray:
    """A soft matte from the difference to the background: float32 H x W in [0, 1] (an evaluation baseline).

    alpha = clip((d - low * t) / ((high - low) * t), 0, 1) with d and t the background-difference
    segmenter's difference and threshold (``segmenter_options`` go to ``BackgroundDifferenceSegmenter``);
    outside the subject's cleaned mask dilated by its close radius alpha is 0, inside the mask eroded by
    that radius it is 1.
    """
    segmenter = BackgroundDifferenceSegmenter(**segmenter_options)
    d = segmenter.difference(image, background)
    t = segmenter.pick_threshold(d)
    alpha = np.clip((d - low * t) / ((high - low) * t), 0.0, 1.0)
    mask = segmenter.binary_mask(_shrink(image, segmenter.work_side), _shrink(background, segmenter.work_side))
    if mask.shape != d.shape:
        mask = cv2.resize(mask.astype(np.uint8), (d.shape[1], d.shape[0]), interpolation=cv2.INTER_NEAREST)
    mask = mask.astype(np.uint8)
    radius = max(1, int(round(segmenter.close_fraction * min(mask.shape))))
    kernel = _ellipse(2 * radius + 1)
    support = cv2.dilate(mask, kernel) > 0
    interior = cv2.erode(mask, kernel, borderType=cv2.BORDER_REPLICATE) > 0
    alpha = np.where(support, alpha, 0.0)
    alpha = np.where(interior, 1.0, alpha)
    return alpha.astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# DeepLabV3 (torchvision)


class SegmenterWeightsError(RuntimeError):
    """Segmentation weights are missing or unreadable (the message says where to put them)."""


_DEEPLAB_ARCHS = {
    "resnet101": ("deeplabv3_resnet101", "DeepLabV3_ResNet101_Weights"),
    "resnet50": ("deeplabv3_resnet50", "DeepLabV3_ResNet50_Weights"),
    "mobilenet_v3_large": ("deeplabv3_mobilenet_v3_large", "DeepLabV3_MobileNet_V3_Large_Weights"),
}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def deeplab_weights_url(arch: str = "resnet101") -> str:
    """torchvision's download URL of the COCO-with-VOC-labels weights for ``arch``."""
    import torchvision.models.segmentation as segmentation  # lazy: torchvision only for this backend

    _, weights_enum = _DEEPLAB_ARCHS[arch]
    return getattr(segmentation, weights_enum).COCO_WITH_VOC_LABELS_V1.url


def deeplab_cache_path(arch: str = "resnet101") -> Path:
    """Where torchvision keeps the downloaded weights: $TORCH_HOME/hub/checkpoints/<file name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(deeplab_weights_url(arch))


@register_segmenter("deeplabv3", "deeplabv3_resnet101")
class DeepLabSegmenter(Segmenter):
    """torchvision DeepLabV3, probability of the VOC person class (soft S).

    weights_path: a state dict file (torchvision's release, or ``model.state_dict()``; a "module." prefix
    and {"state_dict": ...} / {"model": ...} wrappers are accepted). Without it, torchvision's cache file
    (``deeplab_cache_path(arch)``) is used; if that is absent, ``download=True`` fetches it, otherwise
    ``SegmenterWeightsError`` says where to put the file. input_side: the longer side the image is resized
    to before the network (513 as in the public code; None keeps the size). device: "auto", "cpu", "cuda"...
    """

    runs_on_device = True

    def __init__(
        self,
        *,
        weights_path: str | os.PathLike | None = None,
        arch: str = "resnet101",
        download: bool = False,
        download_timeout_s: float = 60.0,
        input_side: int | None = 513,
        person_class: int = VOC_PERSON_CLASS,
        device: str = "auto",
        postprocess: bool = True,
    ) -> None:
        if arch not in _DEEPLAB_ARCHS:
            raise ValueError(f"unknown DeepLabV3 arch {arch!r}; choose one of {', '.join(_DEEPLAB_ARCHS)}")
        self.arch = arch
        self.input_side = input_side
        self.person_class = person_class
        self.postprocess = postprocess
        self.device = resolve_device(device)
        state = self._load_state(weights_path, download, download_timeout_s)
        self.model = self._build(state, weights_path)

    def _load_state(self, weights_path, download: bool, timeout_s: float) -> dict:
        if weights_path is not None:
            path = Path(weights_path)
            if not path.is_file():
                raise SegmenterWeightsError(f"{path}: DeepLabV3 weights file does not exist")
            return _read_state_dict(path)
        cache = deeplab_cache_path(self.arch)
        if cache.is_file():
            return _read_state_dict(cache)
        url = deeplab_weights_url(self.arch)
        help_text = (f"DeepLabV3-{self.arch} weights are not available offline: {cache} does not exist. "
                     f"Download {url} and put it at that path, or pass weights_path=<file> "
                     f"(e.g. segmenter.weights_path=... in the config), or use the weight-free "
                     f"'background_difference' segmenter")
        if not download:
            raise SegmenterWeightsError(help_text + "; download=True lets torchvision fetch it.")
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout_s)
        try:  # download only (hash-checked); reading is _read_state_dict's, weights-only (hub's load unpickles freely)
            cache.parent.mkdir(parents=True, exist_ok=True)
            hash_prefix = torch.hub.HASH_REGEX.search(cache.name)
            torch.hub.download_url_to_file(url, str(cache), hash_prefix.group(1) if hash_prefix else None,
                                           progress=False)
        except Exception as error:  # network errors come as URLError, OSError, socket.timeout, RuntimeError...
            raise SegmenterWeightsError(f"{help_text}; downloading it failed: {error}") from error
        finally:
            socket.setdefaulttimeout(previous)
        return _read_state_dict(cache)

    def _build(self, state: dict, source) -> torch.nn.Module:
        import torchvision.models.segmentation as segmentation  # lazy: torchvision only for this backend

        builder, _ = _DEEPLAB_ARCHS[self.arch]
        has_aux = any(k.startswith("aux_classifier.") for k in state)
        classifier = state.get("classifier.4.weight")
        num_classes = int(classifier.shape[0]) if classifier is not None else 21
        with torch.device("meta"):  # no random init of 61 M parameters: the state dict replaces them
            model = getattr(segmentation, builder)(weights=None, weights_backbone=None,
                                                   num_classes=num_classes, aux_loss=has_aux)
        try:
            model.load_state_dict(state, assign=True)
        except RuntimeError as error:
            name = source if source is not None else deeplab_cache_path(self.arch)
            first = str(error).strip().splitlines()
            raise SegmenterWeightsError(f"{name}: not a DeepLabV3-{self.arch} state dict "
                                        f"({' '.join(first[:3])[:400]})") from error
        if not 0 <= self.person_class < num_classes:
            raise ValueError(f"person_class {self.person_class} outside the model's {num_classes} classes")
        return model.eval().to(self.device)

    @torch.no_grad()
    def probability(self, image: np.ndarray) -> np.ndarray:
        """Soft person probability, float32 H x W in [0, 1], before post-processing."""
        image_f = _image_to_float("image", image)
        h, w = image_f.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(image_f.transpose(2, 0, 1)))[None].to(self.device)
        if self.input_side is not None and max(h, w) != self.input_side:
            s = self.input_side / max(h, w)
            size = (max(1, round(h * s)), max(1, round(w * s)))
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False,
                                                antialias=s < 1)
        mean = torch.tensor(_IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        logits = self.model((x - mean) / std)["out"]
        prob = torch.softmax(logits.float(), dim=1)[:, self.person_class:self.person_class + 1]
        if prob.shape[-2:] != (h, w):
            prob = torch.nn.functional.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
        return prob[0, 0].clamp(0, 1).cpu().numpy().astype(np.float32)

    def segment(self, image: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
        prob = self.probability(image)
        if not self.postprocess:
            return prob
        return postprocess_segmentation(prob, scale=segmentation_crop_scale(prob))


def _read_state_dict(path: Path) -> dict:
    try:
        state = read_weights_file(path)  # weights-only: pickled code is refused, never run
    except CheckpointError as error:  # truncated zip, pickle with code, not a torch file...
        raise SegmenterWeightsError(f"DeepLabV3 weights {error}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SegmenterWeightsError(f"{path}: expected a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}
