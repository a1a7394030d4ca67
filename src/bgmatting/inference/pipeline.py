"""The per-frame matting pipeline: (I, B', S, M) arrays -> cleaned alpha and foreground at frame size.

Two modes:

* ``"original"`` (the public code's test pipeline): square crop around the segmentation +10%
  (:mod:`bgmatting.inference.crop`), resize to ``size x size`` (512), the original's segmentation
  post-process (binarise > 0.2, erode 3x3 x10, dilate 5x5 x5, blur 31; iterations and blur scaled by
  size / 512 for other sizes), network, F = I where alpha > 0.975,
  largest connected component of alpha > 0.05, F = 0 where alpha <= 0.01, uncrop into a zero frame.
* ``"full"``: the whole frame resized so its long side is ``size`` (0 or None: native), both sides
  multiples of 4; the same segmentation post-process, scaled to the subject's size at that resolution
  (:func:`bgmatting.preprocess.segment.segmentation_crop_scale`), and network; alpha and F upsampled bilinearly to the
  frame, then F = I (the full-resolution image) where alpha > 0.975, largest component, F = 0 where
  alpha <= 0.01.
* ``"refine"``: full mode at the frame's native resolution with a model that has a refiner
  (:class:`bgmatting.models.Refiner`): the base runs at the model's downsample ratio (automatic: long side
  512) and the refiner brings alpha and F back to the native frame, refining the patches its error map
  points at; set the ratio and the patch selection on the model (:meth:`MattingModel.set_refine_options`).

Arrays are numpy, RGB float32 in [0, 1]: image and background H x W x 3, segmentation H x W, motion cues
4 x H x W. Batches of frames run through the network together.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bgmatting.data.compositing import composite
from bgmatting.inference.crop import CropBox, crop_to_network, paste, processing_size, resize_to_box, subject_box
from bgmatting.inference.postprocess import foreground_cleanup, postprocess_matte
from bgmatting.inference.sources import resize_to
from bgmatting.models import MattingModel, NonFiniteOutputError
from bgmatting.preprocess.motion import image_motion_cues
from bgmatting.preprocess.segment import REFERENCE_CROP_SIDE, postprocess_segmentation, segmentation_crop_scale
from bgmatting.runtime import Precision, resolve_device, resolve_precision

MATTING_MODES = ("original", "full", "refine")

#: Segmentation level above which a pixel counts as subject for the crop box. The original takes any
#: non-zero pixel of its binary DeepLab mask; on soft masks we use the level its post-process binarises at.
CROP_THRESHOLD = 0.2

Segmenter = Callable[[np.ndarray, np.ndarray], np.ndarray]


#: Peak bytes per pixel of the network input in one forward pass, fp32 on the CPU, as ``a * ngf + b``:
#: measured with :class:`bgmatting.benchmarks.memory.PeakMemory` at 192..448 px (ngf 64: 3.5 kB/px; the
#: quickstart's ngf 16: 1.0-1.5 kB/px). bf16 needs less; the estimate stays on the safe side.
NETWORK_BYTES_PER_PIXEL = (55, 100)
#: Bytes per frame pixel of the float arrays the pipeline holds around the network (I, B', S, M, alpha, F,
#: the composite and their resized copies).
FRAME_BYTES_PER_PIXEL = 160


class MemoryLimitError(ValueError):
    """A frame would need more memory than the limit; the message says which option helps."""


@dataclass
class Matte:
    """One frame's matte at the frame's size: ``alpha`` H x W and ``foreground`` H x W x 3, float32 in [0, 1]
    (F is 0 where alpha <= 0.01). What made it: ``box``, the crop the network saw (the whole frame in full and
    refine mode), and ``segmentation`` (H x W), the soft segmentation used, before the post-process. Once a run
    has put it over its target: ``name``, the frame's output name, and ``composite`` (H x W x 3 in [0, 1])."""

    alpha: np.ndarray
    foreground: np.ndarray
    box: CropBox | None = None
    segmentation: np.ndarray | None = None
    name: str = ""
    composite: np.ndarray | None = None

    def rgba(self) -> np.ndarray:
        """H x W x 4: foreground colours with alpha as the 4th channel (what foreground/*.png holds)."""
        return np.dstack([self.foreground, self.alpha])

    def over(self, target: np.ndarray | Sequence[float]) -> np.ndarray:
        """alpha * F + (1 - alpha) * target; see :func:`composite_over`."""
        return composite_over(self.alpha, self.foreground, target)


def composite_over(alpha: np.ndarray, foreground: np.ndarray, target: np.ndarray | Sequence[float]) -> np.ndarray:
    """alpha * F + (1 - alpha) * B in float, clipped to [0, 1].

    ``alpha`` H x W, ``foreground`` H x W x 3; ``target`` is an RGB image (resized bilinearly to H x W when its
    size differs) or a colour (3 floats in [0, 1]). Returns float32 H x W x 3.
    """
    height, width = alpha.shape
    target = np.asarray(target, dtype=np.float32)
    if target.ndim == 1:
        target = np.broadcast_to(target, (height, width, 3))
    else:
        target = resize_to(target, height, width)
    out = composite(alpha, foreground, target)
    return np.clip(out, 0.0, 1.0, out=out)


@dataclass
class _Prepared:
    image: np.ndarray  # network-size crops, h x w x C
    background: np.ndarray
    segmentation: np.ndarray
    motion: np.ndarray | None  # K x h x w; None: the network does not read motion cues
    box: CropBox
    frame_segmentation: np.ndarray


class Matter:
    """Background matting of frames with a trained network, run through its :class:`bgmatting.models.MattingModel`.

    Args:
        model: a :class:`~bgmatting.models.MattingModel`, or a :class:`~bgmatting.models.Generator` (wrapped in
            one); put in eval mode, moved to ``device`` and set to ``precision``. Available as ``self.model``.
        mode: ``"original"`` or ``"full"`` (see the module docstring).
        size: network side in original mode (512 as the original); long side of the processing resolution
            in full mode (0 or None: the frame's own size rounded to multiples of 4); unused in refine mode.
        segmenter: ``(image, background) -> soft segmentation H x W in [0, 1]``, used for frames given no
            segmentation, e.g. ``get_segmenter(name, postprocess=False)``
            (:mod:`bgmatting.preprocess.segment`): the raw mask, since the pipeline applies the original's
            post-process itself, on the network-size crop (scaled by size / 512 in original mode, by the
            subject's crop size in full mode).
        precision: a :class:`Precision` or a name for :func:`resolve_precision` ("auto": fp32 + channels_last
            on CPUs without native bf16, bf16 autocast + channels_last with it, AMP on CUDA).
        device: torch device or "auto".
        largest_component: keep only the largest connected component of alpha (the original does).
        crop_threshold: segmentation level that counts as subject for the crop box.
        memory_limit: bytes a batch may need (:meth:`memory_estimate`); above it :meth:`matte_batch` refuses
            with a :class:`MemoryLimitError` before running the network. None: no limit.
        fast_inference: run the model's inference fast path (:meth:`MattingModel.set_fast_inference`: BatchNorm
            folded, the refiner on the selected patches only; the same matte within float rounding). False runs
            the unoptimised path, e.g. to compare against it.
    """

    def __init__(
        self,
        model: MattingModel | torch.nn.Module,
        *,
        mode: str = "original",
        size: int | None = 512,
        segmenter: Segmenter | None = None,
        precision: str | Precision = "auto",
        device: str | torch.device = "auto",
        largest_component: bool = True,
        crop_threshold: float = CROP_THRESHOLD,
        memory_limit: int | None = None,
        fast_inference: bool = True,
    ) -> None:
        if mode not in MATTING_MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MATTING_MODES)}")
        if mode == "original" and (not size or size % 4):
            raise ValueError(f"original mode needs a network size that is a positive multiple of 4, got {size}")
        if size is not None and size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.mode = mode
        self.size = size
        self.segmenter = segmenter
        self.largest_component = largest_component
        self.crop_threshold = crop_threshold
        self.memory_limit = memory_limit
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.precision = precision if isinstance(precision, Precision) else resolve_precision(self.device, precision)
        model = model if isinstance(model, MattingModel) else MattingModel(model)
        self.model = model.eval().to(self.device).set_precision(self.precision).set_fast_inference(fast_inference)
        if mode == "refine" and self.model.refiner is None:
            raise ValueError("refine mode needs a model with a refiner (a checkpoint trained with model=*_refine)")

    @property
    def uses_motion(self) -> bool:
        """False when the network cannot see the motion cues (the original's wiring; then any cues give the
        same result and callers may skip computing neighbouring-frame cues)."""
        return self.model.uses_motion

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) the network sees for a frame of ``height x width``."""
        if self.mode == "original":
            return self.size, self.size
        return processing_size(height, width, self.size)

    def memory_estimate(self, height: int, width: int, batch: int = 1, size: int | None = None) -> int:
        """Bytes a batch of ``batch`` frames of ``height x width`` needs, about (``NETWORK_BYTES_PER_PIXEL`` at the
        network's size, ``FRAME_BYTES_PER_PIXEL`` at the frame's); ``size`` replaces full mode's processing side."""
        if size is not None and self.mode == "full":
            net_h, net_w = processing_size(height, width, size)
        else:
            net_h, net_w = self.network_size(height, width)
        a, b = NETWORK_BYTES_PER_PIXEL
        ngf = int(self.model.generator.config.get("ngf", 64))
        return batch * ((a * ngf + b) * net_h * net_w + FRAME_BYTES_PER_PIXEL * height * width)

    def _check_memory(self, images: Sequence[np.ndarray]) -> None:
        """A :class:`MemoryLimitError` saying what helps when the batch's :meth:`memory_estimate` is above the limit."""
        if self.memory_limit is None:
            return
        height, width = max((np.shape(image)[:2] for image in images), key=lambda hw: hw[0] * hw[1])
        need = self.memory_estimate(height, width, len(images))
        if need <= self.memory_limit:
            return
        advice = ["a smaller --batch-size"] if len(images) > 1 else []
        if self.mode == "full":
            side = max(height, width)
            while side > 64 and self.memory_estimate(height, width, size=side) > self.memory_limit:
                side = int(side * 0.9) // 32 * 32
            advice += [f"--size {side} (full mode's processing long side)", "--mode original"]
        else:
            advice.append("a smaller --size")
        raise MemoryLimitError(
            f"a batch of {len(images)} frame(s) of {width}x{height} in {self.mode} mode needs about "
            f"{need / 2**30:.1f} GiB, above the limit of {self.memory_limit / 2**30:.1f} GiB (--max-memory-gb); "
            f"use {' or '.join(advice)}"
        )

    # ------------------------------------------------------------------------------------------------ API
    def matte(
        self,
        image: np.ndarray,
        background: np.ndarray,
        segmentation: np.ndarray | None = None,
        motion: np.ndarray | None = None,
    ) -> Matte:
        """Matte one frame. ``image``, ``background`` H x W x 3, ``segmentation`` H x W, ``motion`` 4 x H x W
        (default: 4 x gray(image)); all float in [0, 1]. ``background`` must already have the frame's size."""
        return self.matte_batch([image], [background], [segmentation], [motion])[0]

    def matte_batch(
        self,
        images: Sequence[np.ndarray],
        backgrounds: Sequence[np.ndarray],
        segmentations: Sequence[np.ndarray | None] | None = None,
        motions: Sequence[np.ndarray | None] | None = None,
    ) -> list[Matte]:
        """Matte several frames in one network call (frames may differ in size in original mode):
        :meth:`prepare_batch`, :meth:`run_network` and :meth:`finish_batch` in turn."""
        prepared = self.prepare_batch(images, backgrounds, segmentations, motions)
        return self.finish_batch(images, prepared, self.run_network(prepared))

    def prepare_batch(
        self,
        images: Sequence[np.ndarray],
        backgrounds: Sequence[np.ndarray],
        segmentations: Sequence[np.ndarray | None] | None = None,
        motions: Sequence[np.ndarray | None] | None = None,
    ) -> list[_Prepared]:
        """Everything before the network, per frame (checks, segmentation if none is given, crop and resize, the
        S post-process): no network, so it may run on another thread while the network mattes earlier frames."""
        count = len(images)
        segmentations = list(segmentations) if segmentations is not None else [None] * count
        motions = list(motions) if motions is not None else [None] * count
        if not (len(backgrounds) == len(segmentations) == len(motions) == count):
            raise ValueError("images, backgrounds, segmentations and motions must have the same length")
        if count == 0:
            return []
        self._check_memory(images)
        return [self._prepare(*args) for args in zip(images, backgrounds, segmentations, motions)]

    def run_network(self, prepared: list[_Prepared]) -> list[tuple[np.ndarray, np.ndarray]]:
        """The network on prepared frames: (alpha h x w, F h x w x 3) per frame at the network's size; one call
        for the batch (frames of different sizes one by one). :class:`NonFiniteOutputError` names the frame."""
        if not prepared:
            return []
        if len({p.image.shape for p in prepared}) > 1:  # full mode with frames of different sizes
            outputs = []
            for index, p in enumerate(prepared):
                try:
                    alpha, foreground = self._run_network([p])
                except NonFiniteOutputError as error:
                    raise NonFiniteOutputError(str(error), index) from None
                outputs.append((alpha[0], foreground[0]))
            return outputs
        alphas, foregrounds = self._run_network(prepared)
        return list(zip(alphas, foregrounds))

    def finish_batch(self, images: Sequence[np.ndarray], prepared: list[_Prepared],
                     outputs: list[tuple[np.ndarray, np.ndarray]]) -> list[Matte]:
        """Everything after the network, per frame (uncrop or resize, the clean-up): no network, so it may run on
        another thread."""
        return [self._finish(image, p, alpha, fg) for image, p, (alpha, fg) in zip(images, prepared, outputs)]

    # ----------------------------------------------------------------------------------------------- steps
    def _prepare(
        self,
        image: np.ndarray,
        background: np.ndarray,
        segmentation: np.ndarray | None,
        motion: np.ndarray | None,
    ) -> _Prepared:
        image = _check_image(image, "image")
        background = _check_image(background, "background")
        height, width = image.shape[:2]
        if background.shape != image.shape:
            raise ValueError(
                f"background is {background.shape[1]}x{background.shape[0]} but the image is {width}x{height}; "
                "align or resize it first"
            )
        if segmentation is None:
            if self.segmenter is None:
                raise ValueError("no segmentation given and no segmenter configured")
            segmentation = self.segmenter(image, background)
        segmentation = np.asarray(segmentation, dtype=np.float32)
        if segmentation.shape != (height, width):
            raise ValueError(f"segmentation has shape {segmentation.shape}, expected {(height, width)}")
        if motion is None and self.uses_motion:
            motion = image_motion_cues(image)
        if motion is not None:  # None: the network cannot see the cues (they would be 4 x gray(I)); none are made
            motion = np.asarray(motion, dtype=np.float32)
            if motion.ndim != 3 or motion.shape[1:] != (height, width):
                raise ValueError(f"motion cues must be K x {height} x {width}, got shape {motion.shape}")

        if self.mode == "original":
            box = subject_box(segmentation, self.crop_threshold)
            if box is None:
                warnings.warn("segmentation has no subject pixels; matting the whole frame", stacklevel=3)
                box = CropBox.full_frame(height, width)
            net_size = (self.size, self.size)
        else:
            box = CropBox.full_frame(height, width)
            net_size = (height, width) if self.mode == "refine" else processing_size(height, width, self.size)
        net_segmentation = crop_to_network(segmentation, box, net_size)
        # The original post-processes S on its 512 x 512 crop; other sizes scale the iterations and blur.
        if self.mode == "original":
            scale = self.size / REFERENCE_CROP_SIDE
        else:
            scale = segmentation_crop_scale(net_segmentation, threshold=self.crop_threshold)
        net_segmentation = np.asarray(postprocess_segmentation(net_segmentation, scale=scale), dtype=np.float32)
        return _Prepared(
            image=crop_to_network(image, box, net_size),
            background=crop_to_network(background, box, net_size),
            segmentation=net_segmentation[:, :, None],
            motion=None if motion is None else _motion_to_network(motion, box, net_size),
            box=box,
            frame_segmentation=segmentation,
        )

    def _run_network(self, prepared: list[_Prepared]) -> tuple[np.ndarray, np.ndarray]:
        """The model on a batch -> (alpha B x h x w, foreground B x h x w x 3), F = I where alpha > 0.975.

        Inputs go in as views of the h x w x C arrays (channels_last tensors, no copy for one frame) and the
        outputs come back as views of the model's tensors where their layout allows."""
        batch = {key: _batch_tensor([getattr(p, key) for p in prepared])
                 for key in ("image", "background", "segmentation")}
        if any(p.motion is None for p in prepared):
            height, width = prepared[0].image.shape[:2]
            batch["motion"] = torch.zeros(1, 1, 1, 1).expand(len(prepared), self.model.motion_frames, height, width)
        else:
            batch["motion"] = torch.from_numpy(_stacked([p.motion for p in prepared]))
        alpha, foreground = self.model.predict(batch)
        alpha = alpha[:, 0].cpu().numpy()
        foreground = foreground.permute(0, 2, 3, 1).cpu().numpy()
        for index in range(len(prepared)):
            # alpha and F are clamped to [0, 1], where only NaN survives: a sum finds it without a mask
            if not (np.isfinite(alpha[index].sum()) and np.isfinite(foreground[index].sum())):
                raise NonFiniteOutputError("the network's output is not finite (NaN or infinity): the checkpoint's "
                                           "weights or this input are broken", index)
        return alpha.astype(np.float32, copy=False), np.ascontiguousarray(foreground, dtype=np.float32)

    def _finish(self, image: np.ndarray, prepared: _Prepared, alpha: np.ndarray, foreground: np.ndarray) -> Matte:
        image = _check_image(image, "image")
        height, width = image.shape[:2]
        if self.mode == "original":
            alpha, foreground = postprocess_matte(alpha, foreground, None, self.largest_component)
            alpha = resize_to_box(alpha, prepared.box)
            foreground = foreground_cleanup(resize_to_box(foreground, prepared.box), alpha)  # again after resizing
            alpha = paste(alpha, prepared.box, (height, width))
            foreground = paste(foreground, prepared.box, (height, width))
        elif alpha.shape == (height, width):  # refine mode: the model's F = I used this very image
            alpha, foreground = postprocess_matte(alpha, foreground, None, self.largest_component, copy=False)
        else:
            alpha = np.clip(resize_to(alpha, height, width), 0.0, 1.0)
            foreground = np.clip(resize_to(foreground, height, width), 0.0, 1.0)
            alpha, foreground = postprocess_matte(alpha, foreground, image, self.largest_component, copy=False)
        return Matte(
            alpha=np.ascontiguousarray(alpha, dtype=np.float32),
            foreground=np.ascontiguousarray(foreground, dtype=np.float32),
            box=prepared.box,
            segmentation=prepared.frame_segmentation,
        )


def _stacked(arrays: list[np.ndarray]) -> np.ndarray:
    """The arrays stacked along a new first axis, float32: a view of the one array of a batch of one."""
    return np.ascontiguousarray(arrays[0][None] if len(arrays) == 1 else np.stack(arrays), dtype=np.float32)


def _batch_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    """B x C x h x w float32 tensor over h x w x C (or h x w) arrays: a channels_last view of one frame's array,
    a stacked copy for several."""
    return torch.from_numpy(_stacked([a if a.ndim == 3 else a[:, :, None] for a in arrays])).permute(0, 3, 1, 2)


def _motion_to_network(motion: np.ndarray, box: CropBox, size: tuple[int, int]) -> np.ndarray:
    """Motion cues K x H x W cut to ``box`` and resized to ``size`` -> K x h x w float32 (the array itself when
    that changes nothing: refine mode's native frame)."""
    if (box.top, box.left, box.height, box.width) == (0, 0, *motion.shape[1:]) and tuple(size) == motion.shape[1:]:
        return np.asarray(motion, dtype=np.float32)
    return np.moveaxis(crop_to_network(np.moveaxis(motion, 0, -1), box, size), -1, 0)


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be H x W x 3 RGB, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32, copy=False)
