"""Manifest check (command line: ``python -m bgmatting.check_data MANIFEST [MANIFEST ...]``).

A ``.json`` manifest (or a folder holding ``manifest.json``) is a real-captures manifest
(:mod:`bgmatting.data.real`): every clip's plate, frames, segmentations and aligned plates must exist, decode and
share the clip's frame size (segmentations single-channel); problems name the clip, frame and path.
A CSV composite manifest must have the columns evaluation reads (``CompositeSetDataset.REQUIRED``: image,
background, alpha, trimap; else it is unreadable, one problem naming them) and is checked row by row. For every
row: each referenced file exists and decodes;
single-channel columns (alpha, trimap, segmentation, mask) hold one channel (or identical colour channels, the
documented conversion) and trimaps one of the recognised encodings (``bgmatting.io.read_trimap``); all files
of a row share one size (except columns with their own size, e.g. target_background); the row has as many
cells as the header. Each problem names its line (or clip and frame), column, path and reason.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from bgmatting.data.adobe import CompositeSetDataset
from bgmatting.io import DataError, read_alpha, read_image, read_trimap
from bgmatting.data.manifest import Manifest, is_path_cell, read_manifest
from bgmatting.data.real import manifest_path, read_real_manifest

SINGLE_CHANNEL_COLUMNS = ("alpha", "trimap", "segmentation", "mask")
INDEPENDENT_SIZE_COLUMNS = ("target_background",)


@dataclass
class Problem:
    """One reason a row is bad. ``line`` is the row's 1-based line in the manifest (0: the manifest itself; -1: a
    real-captures manifest, which has clips, not lines, and ``column`` names the clip and frame)."""

    line: int
    column: str | None
    path: Path | None
    reason: str

    def __str__(self) -> str:
        where = f"column {self.column!r}" if self.column else "row"
        if self.line < 0:
            return (self.column or "manifest") + (f" {self.path}" if self.path else "") + f": {self.reason}"
        return f"line {self.line}: {where}" + (f" {self.path}" if self.path else "") + f": {self.reason}"


@dataclass
class CheckReport:
    """What a check found. ``readable`` is False when the manifest itself could not be read (its one problem
    says why); ``ok`` when it was read, holds rows and has no problem."""

    manifest: Path
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    readable: bool = True

    @property
    def bad_lines(self) -> list[int]:
        """Manifest lines (rows) with a problem; problems of the manifest itself (line 0) are not rows."""
        return sorted({p.line for p in self.problems if p.line > 0})

    @property
    def ok(self) -> bool:
        return self.rows > 0 and not self.problems

    def summary(self) -> str:
        if not self.readable:
            return f"not checked: {self.problems[0].reason}"
        if self.manifest.suffix.lower() == ".json":
            return f"{self.manifest}: {self.rows} frames checked, {len(self.problems)} problems"
        bad = len(self.bad_lines)
        return f"{self.manifest}: {self.rows} rows checked, {self.rows - bad} good, {bad} bad"


def _reason(error: DataError, path: Path) -> str:
    """The error's message without the leading ``"<path>: "`` (the problem prints the path itself)."""
    reason, prefix = str(error), f"{path}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason


def _reader(column: str, single_channel: Sequence[str]):
    """How a column's files are read: trimaps as trimaps (recognised encodings only), single-channel columns as
    mattes, the others as RGB images."""
    if column == "trimap":
        return read_trimap
    return read_alpha if column in single_channel else read_image


def check_row(manifest: Manifest, index: int, single_channel: Sequence[str] = SINGLE_CHANNEL_COLUMNS,
              independent_size: Sequence[str] = INDEPENDENT_SIZE_COLUMNS) -> list[Problem]:
    """Problems of one manifest row (empty when the row is good)."""
    row, line = manifest.rows[index], manifest.line(index)
    problems: list[Problem] = []
    if None in row:
        problems.append(Problem(line, None, None, f"{len(manifest.columns) + len(row[None])} cells but the header "
                                                  f"has {len(manifest.columns)} columns"))
    sizes: dict[str, tuple[tuple[int, int], Path]] = {}
    for column in manifest.columns:
        value = row.get(column) or ""
        if not is_path_cell(column, value):
            continue
        if not value:
            problems.append(Problem(line, column, None, "empty path"))
            continue
        path = manifest.resolve(value)
        try:
            array = _reader(column, single_channel)(path)
        except DataError as err:
            problems.append(Problem(line, column, path, _reason(err, path)))
            continue
        if column not in independent_size:
            sizes[column] = (array.shape[:2], path)
    if len({s for s, _ in sizes.values()}) > 1:
        desc = ", ".join(f"{c} {s[1]}x{s[0]}" for c, (s, _) in sizes.items())
        problems.append(Problem(line, None, None, f"sizes disagree: {desc}"))
    return problems


def _check_clip_file(clip_name: str, what: str, path: Path, single_channel: bool,
                     expected: tuple[int, int] | None) -> tuple[tuple[int, int] | None, list[Problem]]:
    """(height, width) of one clip file (None if unreadable) and its problems against ``expected``."""
    where = f"clip {clip_name!r} {what}"
    try:
        array = read_alpha(path) if single_channel else read_image(path)
    except DataError as err:
        return None, [Problem(-1, where, path, _reason(err, path))]
    hw = tuple(array.shape[:2])
    if expected is not None and hw != expected:
        return hw, [Problem(-1, where, path, f"is {hw[1]}x{hw[0]} but the clip's frames are {expected[1]}x{expected[0]}")]
    return hw, []


def check_real_manifest(path: str | Path, workers: int = 4, progress: bool = False) -> CheckReport:
    """Check a real-captures manifest: per clip the plate and, per frame, the frame, its segmentation and (if
    any) its aligned plate exist, decode and share the first frame's size. ``rows`` counts frames."""
    report = CheckReport(manifest_path(path))
    try:
        manifest = read_real_manifest(path)
    except DataError as err:
        report.problems.append(Problem(-1, None, None, str(err)))
        report.readable = False
        return report
    first: dict[str, tuple[int, int] | None] = {}  # clip name -> frame 0's size, the reference for its files
    jobs = []
    for clip in manifest.clips:
        first[clip.name], problems = _check_clip_file(clip.name, "frame 0", clip.frame_path(0), False, None)
        report.problems.extend(problems)
        if clip.height and clip.width and first[clip.name] and first[clip.name] != (clip.height, clip.width):
            h, w = first[clip.name]
            report.problems.append(Problem(-1, f"clip {clip.name!r}", manifest.path,
                                           f"manifest says {clip.width}x{clip.height} but frame 0 is {w}x{h}"))
        jobs.append((clip, "plate", clip.background_path(None), False))
        for i in range(clip.n_frames):
            if i > 0:
                jobs.append((clip, f"frame {i}", clip.frame_path(i), False))
            jobs.append((clip, f"segmentation {i}", clip.segmentation_path(i), True))
            if clip.aligned_background:
                jobs.append((clip, f"aligned background {i}", clip.background_path(i), False))
    report.rows = sum(clip.n_frames for clip in manifest.clips)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda job: _check_clip_file(job[0].name, job[1], job[2], job[3], first[job[0].name])[1], jobs)
        for problems in tqdm(results, total=len(jobs), desc="check", disable=not progress, unit="file"):
            report.problems.extend(problems)
    return report


def check_manifest(path: str | Path, workers: int = 4, progress: bool = False) -> CheckReport:
    """Check every row of a manifest; an unreadable manifest gives one problem at line 0. A ``.json`` file or a
    folder goes to :func:`check_real_manifest`."""
    if Path(path).suffix.lower() == ".json" or Path(path).is_dir():
        return check_real_manifest(path, workers, progress)
    report = CheckReport(Path(path))
    try:
        manifest = read_manifest(path, required_columns=CompositeSetDataset.REQUIRED)  # evaluate's rule
    except DataError as err:
        report.problems.append(Problem(0, None, None, str(err)))
        report.readable = False
        return report
    report.rows = len(manifest)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results: Iterable[list[Problem]] = pool.map(lambda i: check_row(manifest, i), range(len(manifest)))
        for problems in tqdm(results, total=len(manifest), desc="check", disable=not progress, unit="row"):
            report.problems.extend(problems)
    return report
