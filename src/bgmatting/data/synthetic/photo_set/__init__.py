"""Held-out composites of a different kind from the training data, for scoring whether a model learns.

Real photographs (perspective views of scikit-image's photos, defocused and graded; LFW faces as skin) as
backgrounds and foreground textures; subjects built otherwise than the training generator's (superellipse
and capsule people, scikit-image's horse); strand families it does not make (straight wisps, ringlets,
Archimedean coils, a curtain of long hair, faint circular flyaways, wires with a ball tip); S from the true
alpha by the original recipe, B' gamma-perturbed, trimap by the DIM rule. The same scenes at 96, 128, 192 and
256 px, generated on first use into the cache, deterministic from the seed.

Submodules: ``photos`` (photographs), ``figures`` (silhouettes), ``strands`` (strand families and their
rasteriser), ``scenes`` (one scene), ``build`` (scales, cues, files, cache, dataset).
"""
from __future__ import annotations

from .build import HELDOUT_SIZES, ensure_photo_set, heldout_dataset, heldout_manifest, heldout_sizes

__all__ = ["HELDOUT_SIZES", "ensure_photo_set", "heldout_dataset", "heldout_manifest", "heldout_sizes"]
