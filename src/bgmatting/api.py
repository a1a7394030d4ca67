"""One call to matte a photo, a folder of photos or a video: ``bgmatting.matte``.

    import bgmatting
    result = bgmatting.matte("photo.jpg", "plate.jpg", checkpoint="ckpt.pt")       # -> Matte, in memory
    result.alpha, result.foreground, result.composite                               # float32 arrays in [0, 1]
    summary = bgmatting.matte("clip.mp4", "plate.jpg", checkpoint="ckpt.pt",
                              output="out/", target="beach.jpg")                    # -> summary, files in out/

It runs exactly what ``python -m bgmatting.infer`` runs (:func:`bgmatting.inference.job.run_job`): the plate is
aligned where it is measurably off, its exposure corrected where that helps, a clip's alpha smoothed over time,
with a progress bar. Every other option of the command is a keyword here (``InferenceJob``'s fields).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from bgmatting.data.io import DataError
from bgmatting.inference.job import InferenceJob, run_job
from bgmatting.inference.sinks import MemoryWriter
from bgmatting.inference.sources import parse_colour
from bgmatting.preprocess.capture import is_video_file

Source = str | os.PathLike | np.ndarray
_OPTIONS = {f.name for f in fields(InferenceJob)} - {"input", "background", "checkpoint", "output",
                                                     "target_background", "target_color", "notes"}


@dataclass
class Matte:
    """One frame's result: ``alpha`` H x W, ``foreground`` H x W x 3 (0 where alpha <= 0.01) and ``composite``
    H x W x 3 (alpha F + (1 - alpha) target), float32 in [0, 1]; ``name`` is the frame's output name."""

    name: str
    alpha: np.ndarray
    foreground: np.ndarray
    composite: np.ndarray

    def rgba(self) -> np.ndarray:
        """H x W x 4: the foreground with alpha as its 4th channel (what foreground/*.png holds)."""
        return np.dstack([self.foreground, self.alpha])


def _target(target: Any) -> dict[str, Any]:
    """``target`` as InferenceJob fields: None (green), "R,G,B" or (R, G, B) in 0..255, a path, or an array."""
    if target is None:
        return {}
    if isinstance(target, str) and "," in target and not os.path.exists(target):
        return {"target_color": parse_colour(target)}
    if isinstance(target, (tuple, list)):
        return {"target_color": parse_colour(",".join(str(int(v)) for v in target))}
    return {"target_background": target}


def _warned(summary: dict[str, Any]) -> dict[str, Any]:
    """Issue the run's warnings (``summary["warnings"]``) as Python warnings; returns the summary."""
    for line in summary["warnings"]:
        warnings.warn(line, UserWarning, stacklevel=3)
    return summary


def matte(
    input: Source | list[np.ndarray],
    background: Source | None = None,
    *,
    checkpoint: str | os.PathLike | torch.nn.Module,
    output: str | os.PathLike | None = None,
    target: Any = None,
    progress: bool = True,
    **options: Any,
) -> Matte | list[Matte] | dict[str, Any]:
    """Matte ``input`` against its captured ``background`` with the network in ``checkpoint``.

    input: an image file, a folder of images, a video file, an H x W x 3 RGB array (uint8, or float in
        [0, 1]), or a list of arrays (a clip's frames with ``sequence=True``, else stills).
    background: the plate (file, folder of plates matched by name, or array); None for a folder in the
        original release's layout (``0001_img.png`` + ``0001_back.png``).
    checkpoint: a checkpoint file (ours or the original release's), or a loaded model (e.g.
        ``bgmatting.models.load_matting_model(path)``, to load it once for many calls).
    output: a folder to write alpha/, foreground/, composite/ (and videos, summary.json) into; then the summary
        is returned. None: nothing is written and the results are returned: one :class:`Matte` for an image
        (file or array), a list for a folder, a video or a list of arrays (for long videos give ``output``).
    target: what the composite shows behind the subject: None (the original's green), a colour (R, G, B) or
        "R,G,B" with 0..255 values, or an image / folder / video path, or an H x W x 3 array.
    options: any other option of ``python -m bgmatting.infer`` by its name, e.g. ``mode="full"``,
        ``alignment="per_frame"``, ``temporal="none"``, ``segmenter="deeplabv3"``, ``device="cuda"``.

    Raises :class:`bgmatting.data.io.DataError` (one line naming the file or value) on bad input; what the run
    should tell (a video that decoded fewer frames than it declares) is a :class:`UserWarning`.
    """
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise TypeError(f"matte() got unknown options {', '.join(unknown)}; known: {', '.join(sorted(_OPTIONS))}")
    job = InferenceJob(input=input, background=background, checkpoint=checkpoint, output=output,
                       progress=progress, **_target(target), **options)
    if output is not None:
        return _warned(run_job(job))
    memory = MemoryWriter()
    _warned(run_job(job, memory))
    results = [Matte(name, *arrays) for name, arrays in memory.frames.items()]
    if isinstance(input, (list, tuple)):
        return results
    single = isinstance(input, np.ndarray) or not (os.path.isdir(input) or is_video_file(input))
    if single and len(results) != 1:
        raise DataError(f"{input}: expected one frame, got {len(results)}")
    return results[0] if single else results

