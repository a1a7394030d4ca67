"""Which images an evaluation scores: test sets (a manifest, a folder, a ready dataset), the
first items of a set, per-sample names, and image folders matched by file stem."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Subset

from bgmatting.data.adobe import CompositeSetDataset
from bgmatting.io import IMAGE_EXTENSIONS, DataError
from bgmatting.data.manifest import read_manifest, write_manifest
from bgmatting.data.synthetic.capture_set import CaptureSet
from bgmatting.evaluation.reports import safe_file_name

PathLike = str | os.PathLike

#: Sub-folders of a test-set folder (see :func:`manifest_from_folder`).
REQUIRED_FOLDERS = ("image", "background", "alpha", "trimap")
OPTIONAL_FOLDERS = ("foreground", "segmentation", "background_clean")


def open_test_set(*, manifest: PathLike | None = None, root: PathLike | None = None, dataset: Dataset | None = None,
                  segmentation: str = "auto", seed: int = 0, work_dir: PathLike = ".") -> Dataset:
    """The test set given by exactly one of ``manifest`` (a composite-set manifest), ``root`` (a folder, see
    :func:`manifest_from_folder`; its manifest is written into ``work_dir``) or ``dataset`` (any ready dataset,
    e.g. the configured ``data.val``, returned as is).

    ``segmentation`` for manifest and folder sets: ``auto`` (the set's files when it has a segmentation
    column, else ``from_alpha``), ``file`` or ``from_alpha`` (soft S made from the true alpha with ``seed``).
    Raises DataError when not exactly one set is given or a folder is incomplete.
    """
    given = {"manifest": manifest, "root": root, "dataset": dataset}
    chosen = [name for name, value in given.items() if value is not None and value is not False and value != ""]
    if len(chosen) != 1:
        raise DataError("choose exactly one test set: dataset.manifest=PATH, dataset.root=DIR, dataset.synthetic=true "
                        f"or dataset.config={{_target_: ...}} (got {', '.join(chosen) or 'none'})")
    if dataset is not None:
        return dataset
    if not manifest:
        manifest = manifest_from_folder(root, Path(work_dir) / "test_set_manifest.csv")
    if segmentation == "auto":
        segmentation = "file" if "segmentation" in read_manifest(manifest).columns else "from_alpha"
    return CompositeSetDataset(manifest, segmentation=segmentation, seed=seed)


def first_items(dataset: Dataset, limit: int | None) -> Dataset:
    """The first ``limit`` samples of ``dataset`` (all of them for None or a limit >= its length); of a capture
    set, its first ``limit`` units (:meth:`CaptureSet.first`, still a capture set)."""
    if isinstance(dataset, CaptureSet):
        return dataset.first(limit)
    if limit is None or limit >= len(dataset):
        return dataset
    return Subset(dataset, list(range(int(limit))))


def underlying(dataset: Dataset, index: int) -> tuple[Dataset, int]:
    """(dataset, index) behind (nested) ``torch.utils.data.Subset`` wrappers."""
    while isinstance(dataset, Subset):
        dataset, index = dataset.dataset, int(dataset.indices[index])
    return dataset, index


def _sample_name(dataset: Dataset, index: int) -> str:
    base, i = underlying(dataset, index)
    manifest = getattr(base, "manifest", None)
    if manifest is not None and "name" in getattr(manifest, "columns", ()) and manifest.rows[i].get("name"):
        return str(manifest.rows[i]["name"])
    if callable(getattr(base, "file", None)):
        return Path(base.file(i, "image")).stem
    return f"{index:05d}"


def sample_names(dataset: Dataset) -> list[str]:
    """A unique name per sample, usable as a file name (:func:`~bgmatting.evaluation.reports.safe_file_name`): the
    manifest's ``name`` column, else the image file's stem (datasets with ``file(index, "image")``, also behind
    ``Subset``), else the zero-padded index."""
    n = len(dataset)
    names = [safe_file_name(_sample_name(dataset, i)) for i in range(n)]
    if len(set(names)) != n:
        names = [f"{i:05d}_{name}" for i, name in enumerate(names)]
    return names


def has_true_foreground(dataset: Dataset, index: int) -> bool:
    """False where a manifest-based set has no foreground file (CompositeSetDataset then stands in F = I)."""
    base, i = underlying(dataset, index)
    manifest = getattr(base, "manifest", None)
    if manifest is not None and callable(getattr(manifest, "has", None)):
        return bool(manifest.has(i, "foreground"))
    return True


def images_by_stem(folder: Path, what: str) -> dict[str, Path]:
    """Image files of ``folder`` by file stem; DataError when the folder is missing or empty, or two files share
    a stem. ``what`` names the folder's role in messages."""
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder does not exist")
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            if p.stem in files:
                raise DataError(f"{p}: two {what} files share the name {p.stem!r} ({files[p.stem].name})")
            files[p.stem] = p
    if not files:
        raise DataError(f"{folder}: {what} folder contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def manifest_from_folder(root: PathLike, manifest_path: PathLike) -> Path:
    """Write a composite-set manifest for a folder ``root`` with sub-folders ``image/``, ``background/``,
    ``alpha/``, ``trimap/`` (required) and ``foreground/``, ``segmentation/``, ``background_clean/``
    (optional), files matched by stem. The manifest (with a ``name`` column) feeds
    :class:`bgmatting.data.adobe.CompositeSetDataset`. Missing folders or files are DataErrors naming them."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: test-set folder does not exist")
    columns = {c: images_by_stem(root / c, c) for c in REQUIRED_FOLDERS}
    columns.update({c: images_by_stem(root / c, c) for c in OPTIONAL_FOLDERS if (root / c).is_dir()})
    rows = []
    for stem, image_path in columns["image"].items():
        row: dict[str, Any] = {"name": stem, "image": image_path}
        for column, files in columns.items():
            if column == "image":
                continue
            if stem not in files:
                raise DataError(f"{image_path}: no {column} file named {stem!r} in {root / column}")
            row[column] = files[stem]
        rows.append(row)
    for column, files in columns.items():
        extra = sorted(set(files) - set(columns["image"]))
        if extra:
            raise DataError(f"{files[extra[0]]}: no image named {extra[0]!r} in {root / 'image'}")
    return write_manifest(manifest_path, rows, columns=["name", *columns])
