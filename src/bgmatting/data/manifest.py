"""Manifests: CSV files with a header row, one sample per row; relative file paths are relative to the
manifest's folder (files inside it are written that way, others as absolute paths).

Columns are free-form; a cell is a file reference when its column is a known path column or its value ends
with an image extension (name columns, ``name`` / ``*_name``, excepted). Absolute paths are allowed and kept.
Written atomically.
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from bgmatting.io import IMAGE_EXTENSIONS, DataError, write_text

PathLike = str | os.PathLike

#: Column names whose cells are always file paths (composite sets and real captures).
PATH_COLUMNS = frozenset({
    "image", "background", "background_clean", "alpha", "trimap", "foreground", "segmentation", "mask",
    "target_background", "frame", "motion_0", "motion_1", "motion_2", "motion_3",
})


def is_path_cell(column: str, value: str) -> bool:
    """Whether a manifest cell refers to a file: a known path column, or an image file name in any column
    except name columns (``name`` or ``*_name``, e.g. fg_name / bg_name, which record source names)."""
    if column in PATH_COLUMNS:
        return True
    if column == "name" or column.endswith("_name"):
        return False
    return bool(value) and Path(value).suffix.lower() in IMAGE_EXTENSIONS


class Manifest:
    """Rows of a manifest CSV. ``rows[i]`` maps column -> raw string; ``file(i, column)`` resolves a path.

    ``line(i)`` is the 1-based line number of row i in the file (the header is line 1).
    """

    def __init__(self, path: Path, columns: list[str], rows: list[dict[str, str]], lines: list[int]) -> None:
        self.path = path
        self.root = path.parent
        self.columns = columns
        self.rows = rows
        self.lines = lines

    def __len__(self) -> int:
        return len(self.rows)

    def resolve(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.root / p

    def has(self, index: int, column: str) -> bool:
        return bool(self.rows[index].get(column))

    def file(self, index: int, column: str) -> Path:
        value = self.rows[index].get(column)
        if not value:
            raise DataError(f"{self.path}:{self.lines[index]}: column {column!r} is empty")
        return self.resolve(value)

    def line(self, index: int) -> int:
        return self.lines[index]


def read_manifest(path: PathLike, required_columns: Iterable[str] = ()) -> Manifest:
    """Read a manifest CSV. Missing file, missing header/required columns or no rows are DataErrors.

    Rows with more cells than the header get the extra cells under the key ``None`` (reported by the check);
    rows with fewer get empty strings.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: manifest is not UTF-8 text ({err})") from None
    reader = csv.DictReader(io.StringIO(text), restval="")
    if not reader.fieldnames:
        raise DataError(f"{path}: manifest is empty (no header row)")
    columns = [c.strip() for c in reader.fieldnames]
    reader.fieldnames = columns
    missing = [c for c in required_columns if c not in columns]
    if missing:
        raise DataError(f"{path}: manifest lacks column(s) {', '.join(missing)} (has {', '.join(columns)})")
    rows, lines = [], []
    for row in reader:
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue  # blank line
        rows.append({k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()})
        lines.append(reader.line_num)
    if not rows:
        raise DataError(f"{path}: manifest has no rows")
    return Manifest(path, columns, rows, lines)


def write_manifest(path: PathLike, rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None) -> Path:
    """Write rows as a CSV with a header. ``os.PathLike`` values inside the manifest's folder become POSIX paths
    relative to it (the set can be moved as a whole), others stay absolute; other values are written with
    ``str``. Atomic (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    root = path.parent.resolve()

    def cell(value: object) -> str:
        if isinstance(value, os.PathLike):
            p = Path(value).resolve()
            return (p.relative_to(root) if p.is_relative_to(root) else p).as_posix()
        return "" if value is None else str(value)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    return write_text(path, buf.getvalue())
