"""Data: image I/O, compositing, augmentation, supervised datasets, composite sets and manifests.

Submodules: ``io`` (files <-> float arrays), ``compositing`` (I = aF + (1-a)B, trimaps, background fitting),
``augment`` (per-sample numpy recipe ``AdobeAugment``), ``batch_augment`` (device-side ``BackgroundPerturbation``),
``adobe`` (``AdobeCompositeDataset``, ``CompositeSetDataset``), ``compose`` (fixed composite sets),
``manifest`` (CSV manifests), ``check`` (manifest checks), ``real`` (real captures: layout, manifest, dataset),
``prepare_real`` (a capture -> the real-captures layout) and ``synthetic`` (embedded generated data). Library
only: the commands are ``python -m bgmatting.compose``, ``bgmatting.check_data`` and ``bgmatting.prepare_real``.
"""
from __future__ import annotations

from bgmatting.data.adobe import AdobeCompositeDataset, CompositeSetDataset
from bgmatting.data.augment import AdobeAugment
from bgmatting.data.composite_sets import build_composite_set
from bgmatting.data.compositing import composite, fit_background, trimap_from_alpha
from bgmatting.io import DataError, read_alpha, read_image, read_trimap, write_alpha, write_image
from bgmatting.data.manifest import read_manifest, write_manifest

__all__ = [
    "AdobeAugment", "AdobeCompositeDataset", "CompositeSetDataset", "DataError", "build_composite_set", "composite",
    "fit_background", "read_alpha", "read_image", "read_manifest", "read_trimap", "trimap_from_alpha", "write_alpha",
    "write_image", "write_manifest",
]

