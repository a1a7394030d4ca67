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
from dataclasses import fields
from typing import Any

import numpy as np
import torch

from bgmatting.io import DataError
from bgmatting.inference.job import InferenceJob, run_job
from bgmatting.inference.pipeline import Matte
from bgmatting.inference.sinks import MemoryWriter
from bgmatting.inference.sources import parse_colour
from bgmatting.preprocess.capture import is_video_file

Source = str | os.PathLike | np.ndarray
_OPTIONS = {f.name for f in fields(InferenceJob)} - {"input", "background", "checkpoint", "output",
                                                     "target_background", "target_color", "notes"}


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


def _job(input: Any, background: Any, checkpoint: Any, output: Any, target: Any, progress: bool,
         options: dict[str, Any], call: str) -> InferenceJob:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise TypeError(f"{call}() got unknown options {', '.join(unknown)}; known: {', '.join(sorted(_OPTIONS))}")
    return InferenceJob(input=input, background=background, checkpoint=checkpoint, output=output,
                        progress=progress, **_target(target), **options)


def _in_memory(job: InferenceJob) -> list[Matte]:
    """Run ``job`` into memory: a :class:`Matte` per frame, in order (name and composite set)."""
    memory = MemoryWriter()
    _warned(run_job(job, memory))
    return [Matte(alpha, foreground, name=name, composite=composite)
            for name, (alpha, foreground, composite) in memory.frames.items()]


def matte(
    photo: str | os.PathLike | np.ndarray,
    background: str | os.PathLike | np.ndarray,
    *,
    checkpoint: str | os.PathLike | torch.nn.Module | None = None,
    target: Any = None,
    progress: bool = False,
    **options: Any,
) -> Matte:
    """Matte one photo against its captured ``background`` with the network in ``checkpoint``, in memory.

    photo: an image file or an H x W x 3 RGB array (uint8, or float in [0, 1]); background: its plate (file or
    array). checkpoint: a checkpoint file (ours or the original release's) or a loaded model (e.g.
    ``bgmatting.models.load_matting_model(path)``, to load it once for many calls). target: what the composite
    shows behind the subject: None (the original's green), a colour (R, G, B) or "R,G,B" with 0..255 values, an
    image path or an H x W x 3 array. options: any other option of ``python -m bgmatting.infer`` by its name, e.g.
    ``mode="full"``, ``segmenter="deeplabv3"``, ``device="cuda"``.

    Returns a :class:`~bgmatting.inference.Matte` (``alpha``, ``foreground``, ``composite``: float32 arrays in
    [0, 1]). Folders, videos and lists of frames: :func:`matte_frames` (in memory) or :func:`matte_to_folder`.
    Raises :class:`bgmatting.io.DataError` (one line naming the file or value) on bad input.
    """
    if isinstance(photo, (list, tuple)) or (not isinstance(photo, np.ndarray) and (
            os.path.isdir(photo) or is_video_file(photo))):
        raise DataError(f"{photo if not isinstance(photo, (list, tuple)) else 'a list of frames'}: matte() takes one "
                        "photo; use bgmatting.matte_frames (in memory) or bgmatting.matte_to_folder for folders, "
                        "videos and lists of frames")
    results = _in_memory(_job(photo, background, checkpoint, None, target, progress, options, "matte"))
    if len(results) != 1:
        raise DataError(f"{photo}: expected one frame, got {len(results)}")
    return results[0]


def matte_frames(
    input: Source | list[np.ndarray],
    background: Source | None = None,
    *,
    checkpoint: str | os.PathLike | torch.nn.Module | None = None,
    target: Any = None,
    progress: bool = True,
    **options: Any,
) -> list[Matte]:
    """Matte a folder of images, a video or a list of arrays (a clip's frames with ``sequence=True``, else stills)
    in memory, with everything :func:`matte` does plus a clip's motion cues and temporal smoothing; returns one
    :class:`~bgmatting.inference.Matte` per frame, in order. ``background``: a plate, a folder of plates matched by
    name, or None for a folder in the original release's layout (``0001_img.png`` + ``0001_back.png``). For long
    videos write to a folder instead (:func:`matte_to_folder`)."""
    return _in_memory(_job(input, background, checkpoint, None, target, progress, options, "matte_frames"))


def matte_to_folder(
    input: Source | list[np.ndarray],
    background: Source | None = None,
    *,
    checkpoint: str | os.PathLike | torch.nn.Module | None = None,
    output: str | os.PathLike,
    target: Any = None,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """What ``python -m bgmatting.infer`` does: matte a photo, a folder, a video or a list of arrays into the folder
    ``output`` (alpha/, foreground/, composite/ PNGs, for videos the encoded composite and alpha videos, and
    summary.json); returns the summary (frames, frames/s, what was done with the plate per frame). What the run
    should tell (a video that decoded fewer frames than it declares) is a :class:`UserWarning`."""
    return _warned(run_job(_job(input, background, checkpoint, output, target, progress, options, "matte_to_folder")))
