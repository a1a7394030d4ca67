"""bgmatting: Background Matting (Sengupta et al., CVPR 2020) as a research training framework.

``bgmatting.matte(input, background, checkpoint=..., output=..., target=...)`` mattes a photo, a folder or a
video in one call (:mod:`bgmatting.api`; imported on first use, so ``import bgmatting`` stays light).
"""

__version__ = "0.1.0"

__all__ = ["matte"]


def __getattr__(name: str):
    if name == "matte":
        from bgmatting.api import matte

        return matte
    raise AttributeError(f"module 'bgmatting' has no attribute {name!r}")
