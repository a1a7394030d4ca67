"""Embedded synthetic data: the default that needs no download.

Deterministic from a seed, generated on first use into a cache folder (``$BGMATTING_CACHE`` or
``~/.cache/bgmatting``) and laid out like the real data, so the same dataset classes read both:

* ``ensure_synthetic_adobe`` / ``synthetic_adobe_dataset``: Adobe-style fg/, alpha/, bg/ + name lists and a
  held-out composite set (``bgmatting.data.adobe`` reads them);
* ``ensure_synthetic_real`` / ``synthetic_real_dataset``: clips of a moving subject with a captured plate in
  the real-captures layout (``bgmatting.data.real`` reads them), plus true alpha in ground_truth/.

Submodules: ``textures`` (backgrounds, colour fields), ``shapes`` (subjects with strands, veils, glass,
motion blur), ``clips`` (captures), ``adobe_set`` (the Adobe-style set), ``cache`` (atomic cached generation);
held-out test sets built otherwise: ``photo_set`` (clean photo composites) and ``capture_set`` (phone-like JPEG
captures scored end to end, docs/CAPTURES.md).
"""
from __future__ import annotations

from bgmatting.data.synthetic.adobe_set import ensure_synthetic_adobe, synthetic_adobe_dataset
from bgmatting.data.synthetic.cache import CACHE_ENV, cache_root
from bgmatting.data.synthetic.clips import ensure_synthetic_real, synthetic_real_dataset
from bgmatting.data.synthetic.shapes import Subject, render_subject
from bgmatting.data.synthetic.textures import random_background

__all__ = [
    "CACHE_ENV", "Subject", "cache_root", "ensure_synthetic_adobe", "ensure_synthetic_real", "random_background",
    "render_subject", "synthetic_adobe_dataset", "synthetic_real_dataset",
]
