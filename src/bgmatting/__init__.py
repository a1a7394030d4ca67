"""bgmatting: Background Matting (Sengupta et al., CVPR 2020) as a research training framework.

``bgmatting.matte(photo, plate, checkpoint=...)`` mattes a photo in memory (a ``Matte``),
``bgmatting.matte_frames(...)`` a folder, a video or a list of frames (a list of ``Matte``), and
``bgmatting.matte_to_folder(..., output=...)`` writes what ``python -m bgmatting.infer`` writes (returns its
summary): :mod:`bgmatting.api`, imported on first use, so ``import bgmatting`` stays light.
"""

__version__ = "0.1.0"

__all__ = ["matte", "matte_frames", "matte_to_folder"]


def __getattr__(name: str):
    if name in __all__:
        from bgmatting import api

        return getattr(api, name)
    raise AttributeError(f"module 'bgmatting' has no attribute {name!r}")
