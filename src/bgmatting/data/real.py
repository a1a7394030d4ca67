"""Unlabeled real captures: on-disk layout, manifest, and the dataset of the self-supervised stage.

Layout (what ``python -m bgmatting.prepare_real`` writes; the synthetic captures use it too)::

    <root>/manifest.json
    <root>/clips/<name>/frames/000000.png ...          video frames (RGB), numbered from 0
    <root>/clips/<name>/background.png                 the captured background plate B' (one per clip)
    <root>/clips/<name>/segmentation/000000.png ...    soft segmentation S per frame (8-bit gray, [0, 1])
    <root>/clips/<name>/aligned_background/000000.png  optional (hand-held clips): B' aligned to each frame
    <root>/targets/*.png                               optional pool of target backgrounds

``manifest.json`` (paths relative to the manifest's folder unless absolute)::

    {"format": "bgmatting/real-captures", "version": 1,
     "target_backgrounds": "targets",            # a folder, a list of image files, or null
     "clips": [{"name": "walk", "path": "clips/walk", "n_frames": 120, "height": 1080, "width": 1920,
                "handheld": false, "frames": "frames", "background": "background.png",
                "segmentation": "segmentation", "aligned_background": null,
                "source": "walk.mp4", "ground_truth": null}]}

Within a clip, ``frames``/``background``/``segmentation``/``aligned_background`` are relative to the clip's
``path``; frame i is ``{i:06d}.png`` in each per-frame folder. ``ground_truth`` (synthetic captures only)
points to a folder with alpha/ and foreground/ per frame, for tests and evaluation; training never reads it.
"""
from __future__ import annotations

import bisect
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from bgmatting.data.compositing import TRIMAP_K, cut_and_resize, hwc_to_chw, trimap_from_alpha
from bgmatting.io import DataError, list_images, read_alpha, read_image, write_json
from bgmatting.preprocess.motion import BOUNDARIES, DEFAULT_OFFSETS, video_motion_cues

PathLike = str | os.PathLike
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "bgmatting/real-captures"
MANIFEST_VERSION = 1
SAMPLE_KEYS = ("image", "background", "segmentation", "motion", "target_background", "clip")
GROUND_TRUTH_KEYS = ("alpha", "foreground", "trimap")
CROPS = ("subject", "center", "resize")


def frame_name(index: int) -> str:
    """File name of frame ``index`` in every per-frame folder."""
    return f"{index:06d}.png"


@dataclass
class Clip:
    """One capture: per-frame folders and the plate, relative to ``path`` (the clip folder)."""

    name: str
    path: Path
    n_frames: int
    height: int | None = None
    width: int | None = None
    handheld: bool = False
    frames: str = "frames"
    background: str = "background.png"
    segmentation: str = "segmentation"
    aligned_background: str | None = None
    source: str | None = None
    ground_truth: Path | None = None
    extra: dict = field(default_factory=dict)

    def frame_path(self, i: int) -> Path:
        return self.path / self.frames / frame_name(i)

    def segmentation_path(self, i: int) -> Path:
        return self.path / self.segmentation / frame_name(i)

    def background_path(self, i: int | None = None) -> Path:
        """The plate aligned to frame i when the clip has aligned backgrounds, else the clip's plate."""
        if self.aligned_background and i is not None:
            return self.path / self.aligned_background / frame_name(i)
        return self.path / self.background

    def ground_truth_path(self, kind: str, i: int) -> Path:
        if self.ground_truth is None:
            raise DataError(f"{self.path}: clip {self.name!r} has no ground truth (only synthetic captures do)")
        return self.ground_truth / kind / frame_name(i)


@dataclass
class RealCaptureManifest:
    """The parsed manifest: absolute clip paths and the target-background files (may be empty)."""

    path: Path
    clips: list[Clip]
    target_backgrounds: list[Path]
    target_spec: str | list[str] | None = None


def _resolve(root: Path, value: str | os.PathLike) -> Path:
    p = Path(value)
    return p if p.is_absolute() else root / p


def _relative(root: Path, path: Path) -> str:
    try:
        return Path(os.path.relpath(Path(path).resolve(), root.resolve())).as_posix()
    except ValueError:  # another drive
        return Path(path).resolve().as_posix()


def manifest_path(path: PathLike) -> Path:
    """A manifest file, or a folder holding ``manifest.json``."""
    p = Path(path)
    return p / MANIFEST_NAME if p.is_dir() else p


def resolve_target_backgrounds(root: Path, spec, source: Path) -> list[Path]:
    """Target-background files from a folder, a list of files, or None (-> [])."""
    if spec is None:
        return []
    if isinstance(spec, (str, os.PathLike)):
        return list_images(_resolve(root, spec))
    if isinstance(spec, Sequence):
        paths = [_resolve(root, p) for p in spec]
        for p in paths:
            if not p.is_file():
                raise DataError(f"{source}: target background {p} does not exist")
        return paths
    raise DataError(f"{source}: target_backgrounds must be a folder, a list of files or null, got {spec!r}")


def read_real_manifest(path: PathLike) -> RealCaptureManifest:
    """Parse and check a real-captures manifest (see the module docstring). Errors name the file."""
    path = manifest_path(path)
    if not path.is_file():
        raise DataError(f"{path}: real-captures manifest does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a valid JSON manifest ({err})") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{path}: not a real-captures manifest (expected \"format\": \"{MANIFEST_FORMAT}\")")
    version, entries = data.get("version", 0), data.get("clips") or []
    if not isinstance(version, int) or not isinstance(entries, list):
        raise DataError(f"{path}: \"version\" must be a number and \"clips\" a list")
    if version > MANIFEST_VERSION:
        raise DataError(f"{path}: manifest version {version} is newer than this code ({MANIFEST_VERSION})")
    root = path.parent
    clips = []
    for k, entry in enumerate(entries):
        try:
            name, rel, n = str(entry["name"]), entry["path"], int(entry["n_frames"])
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{path}: clip #{k} lacks name/path/n_frames ({err})") from None
        if n < 1:
            raise DataError(f"{path}: clip {name!r} has n_frames={n}; need at least 1")
        known = {f for f in Clip.__dataclass_fields__} - {"name", "path", "n_frames", "ground_truth", "extra"}
        kwargs = {f: entry[f] for f in known if f in entry and entry[f] is not None}
        gt = entry.get("ground_truth")
        extra = {k2: v for k2, v in entry.items() if k2 not in Clip.__dataclass_fields__}
        clips.append(Clip(name=name, path=_resolve(root, rel), n_frames=n,
                          ground_truth=_resolve(root, gt) if gt else None, extra=extra, **kwargs))
    if not clips:
        raise DataError(f"{path}: manifest lists no clips")
    names = [c.name for c in clips]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: clip names repeat ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
    spec = data.get("target_backgrounds")
    return RealCaptureManifest(path, clips, resolve_target_backgrounds(root, spec, path), spec)


def clip_entry(clip: Clip, root: Path) -> dict:
    """A clip as a JSON-ready dict with paths relative to ``root`` (the manifest's folder)."""
    d = asdict(clip)
    extra = d.pop("extra") or {}
    d["path"] = _relative(root, clip.path)
    d["ground_truth"] = _relative(root, clip.ground_truth) if clip.ground_truth else None
    return {**d, **extra}


def write_real_manifest(path: PathLike, clips: Sequence[Clip], target_backgrounds=None) -> Path:
    """Write a manifest atomically (temp file + rename). ``target_backgrounds``: folder, list of files or None."""
    path = manifest_path(path) if Path(path).is_dir() else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent
    if isinstance(target_backgrounds, (str, os.PathLike)):
        targets = _relative(root, _resolve(root, target_backgrounds))
    elif target_backgrounds is not None:
        targets = [_relative(root, _resolve(root, p)) for p in target_backgrounds]
    else:
        targets = None
    data = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "target_backgrounds": targets,
            "clips": [clip_entry(c, root) for c in clips]}
    return write_json(path, data)


def upsert_clip(path: PathLike, clip: Clip, target_backgrounds=None) -> Path:
    """Add ``clip`` to the manifest at ``path`` (creating it), replacing a clip of the same name.

    ``target_backgrounds`` (folder or files) replaces the manifest's pool when given; else it is kept."""
    path = Path(path)
    clips: list[Clip] = []
    spec = None
    if path.is_file():
        existing = read_real_manifest(path)
        clips = [c for c in existing.clips if c.name != clip.name]
        spec = existing.target_spec
        if isinstance(spec, str):
            spec = _resolve(path.parent, spec)
        elif isinstance(spec, list):
            spec = [_resolve(path.parent, s) for s in spec]
    clips.append(clip)
    return write_real_manifest(path, clips, target_backgrounds if target_backgrounds is not None else spec)


# ----------------------------------------------------------------------------------------------- geometry
def _output_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if h < 4 or w < 4 or h % 4 or w % 4:
        raise ValueError(f"size must be a multiple of 4 (the generator downsamples twice), got {(h, w)}")
    return h, w


def subject_window(segmentation: np.ndarray, out_hw: tuple[int, int], margin: float,
                   threshold: float = 0.1) -> tuple[int, int, int, int]:
    """(y, x, h, w): a window of aspect out_h/out_w around the subject (S > threshold) grown by ``margin`` of
    its longer side on each side (the public code uses 0.1-0.4), shifted/shrunk to lie inside the frame."""
    H, W = segmentation.shape
    oh, ow = out_hw
    ys, xs = np.nonzero(segmentation > threshold)
    if len(ys) == 0:
        return center_window((H, W), out_hw)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0) * (1.0 + 2.0 * margin)
    h = max(side, (x1 - x0) * (1.0 + 2.0 * margin) * oh / ow)
    w = h * ow / oh
    shrink = min(1.0, H / h, W / w)
    h, w = max(1, int(round(h * shrink))), max(1, int(round(w * shrink)))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    y = int(round(min(max(cy - h / 2, 0), H - h)))
    x = int(round(min(max(cx - w / 2, 0), W - w)))
    return y, x, h, w


def center_window(hw: tuple[int, int], out_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(y, x, h, w): the largest centred window of the output's aspect."""
    H, W = hw
    oh, ow = out_hw
    scale = min(H / oh, W / ow)
    h, w = min(H, int(round(oh * scale))), min(W, int(round(ow * scale)))
    return (H - h) // 2, (W - w) // 2, h, w


def fit_cover(image: np.ndarray, out_hw: tuple[int, int], position: tuple[float, float]) -> np.ndarray:
    """Scale ``image`` to cover out_hw (aspect kept) and crop a window at relative ``position`` (y, x)."""
    H, W = image.shape[:2]
    oh, ow = out_hw
    scale = max(oh / H, ow / W)
    nh, nw = max(oh, int(np.ceil(H * scale))), max(ow, int(np.ceil(W * scale)))
    if (nh, nw) != (H, W):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    y, x = int(round(position[0] * (nh - oh))), int(round(position[1] * (nw - ow)))
    return np.ascontiguousarray(image[y:y + oh, x:x + ow])


# ----------------------------------------------------------------------------------------------- dataset
class RealCaptureDataset(Dataset):
    """Frames of real (or synthetic) captures for the self-supervised stage.

    Sample (float32 C x H x W in [0, 1]): ``image`` (3), ``background`` (3, the plate, aligned per frame
    when the clip has aligned backgrounds), ``segmentation`` (1), ``motion`` (4 gray frames at
    ``motion_offsets`` around the frame, kept in the clip by ``boundary``: "clamp", "wrap" or "reflect"),
    ``target_background`` (3, a random pool image fitted to the output size), ``clip`` (int64 scalar: the
    clip's position in this dataset). With ``ground_truth=True`` (synthetic captures only: clips with a
    ground_truth folder) also ``alpha`` (1), ``foreground`` (3) and ``trimap`` (1, uint8 0/128/255, from alpha
    with the public code's K=5 scaled to the output size), so the set can validate a model.

    size: None keeps the frame size (centre-cropped down to multiples of 4); an int or (h, w) (multiples of 4)
    crops and resizes every map the same way: ``crop="subject"`` (the public code's training crop: a window
    around S with a random margin in ``subject_margin``), "center" (largest centred window) or "resize"
    (whole frame, aspect not kept). hflip: probability of a horizontal flip (public code 0.5).
    Randomness is a pure function of (seed, epoch, index); call ``set_epoch`` each epoch.
    """

    def __init__(self, manifest: PathLike, *, size: int | Sequence[int] | None = None,
                 motion_offsets: Sequence[int] = DEFAULT_OFFSETS, boundary: str = "clamp",
                 target_backgrounds: PathLike | Sequence[PathLike] | None = None, seed: int = 0,
                 crop: str = "subject", subject_margin: Sequence[float] = (0.1, 0.4), hflip: float = 0.5,
                 clips: Sequence[str] | None = None, ground_truth: bool = False) -> None:
        self.manifest = read_real_manifest(manifest)
        self.clips = self.manifest.clips
        if clips is not None:
            wanted = set(clips)
            missing = wanted - {c.name for c in self.clips}
            if missing:
                raise DataError(f"{self.manifest.path}: no clip named {', '.join(sorted(missing))}")
            self.clips = [c for c in self.clips if c.name in wanted]
        if target_backgrounds is not None:
            spec = str(target_backgrounds) if isinstance(target_backgrounds, os.PathLike) else target_backgrounds
            if not isinstance(spec, str):
                spec = [str(p) for p in spec]
            self.targets = resolve_target_backgrounds(Path.cwd(), spec, self.manifest.path)
        else:
            self.targets = self.manifest.target_backgrounds
        if not self.targets:
            raise DataError(f"{self.manifest.path}: no target backgrounds (set \"target_backgrounds\" in the "
                            f"manifest or pass target_backgrounds=)")
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        self.size = _output_size(size)
        self.motion_offsets = tuple(int(o) for o in motion_offsets)
        self.boundary = boundary
        self.seed = int(seed)
        self.epoch = 0
        self.crop = crop
        self.subject_margin = (float(subject_margin[0]), float(subject_margin[1]))
        self.hflip = float(hflip)
        self.ground_truth = bool(ground_truth)
        if self.ground_truth:
            lacking = [c.name for c in self.clips if c.ground_truth is None]
            if lacking:
                raise DataError(f"{self.manifest.path}: ground_truth=True but clip(s) {', '.join(lacking)} have no "
                                f"ground truth (only synthetic captures do)")
        self._starts = np.cumsum([0] + [c.n_frames for c in self.clips]).tolist()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._starts[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """(clip position in this dataset, frame index within the clip) of a dataset index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} frames")
        c = bisect.bisect_right(self._starts, index) - 1
        return c, index - self._starts[c]

    def _read_same_size(self, reader, path: Path, shape: tuple[int, int], reference: Path) -> np.ndarray:
        arr = reader(path)
        if arr.shape[:2] != shape:
            raise DataError(f"{path}: size {arr.shape[1]}x{arr.shape[0]} differs from its frame {reference} "
                            f"({shape[1]}x{shape[0]})")
        return arr

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if torch.utils.data.get_worker_info() is not None and cv2.getNumThreads() != 1:
            cv2.setNumThreads(1)
        c, t = self.locate(index)
        clip = self.clips[c]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        frame_path = clip.frame_path(t)
        image = read_image(frame_path)
        shape = image.shape[:2]
        background = self._read_same_size(read_image, clip.background_path(t), shape, frame_path)
        segmentation = self._read_same_size(read_alpha, clip.segmentation_path(t), shape, frame_path)

        def get_frame(j: int) -> np.ndarray:
            return image if j == t else self._read_same_size(read_image, clip.frame_path(j), shape, frame_path)

        motion = video_motion_cues(get_frame, t, clip.n_frames, self.motion_offsets, self.boundary)
        motion = np.ascontiguousarray(motion.transpose(1, 2, 0))  # H x W x 4
        target = read_image(self.targets[int(rng.integers(len(self.targets)))])

        if self.size is None:
            out_hw = (shape[0] // 4 * 4, shape[1] // 4 * 4)
            window = center_window(shape, out_hw)
        else:
            out_hw = self.size
            if self.crop == "subject":
                window = subject_window(segmentation, out_hw, rng.uniform(*self.subject_margin))
            elif self.crop == "center":
                window = center_window(shape, out_hw)
            else:
                window = (0, 0, shape[0], shape[1])
        if min(out_hw) < 4:
            raise DataError(f"{frame_path}: frame {shape[1]}x{shape[0]} is too small")
        maps = {"image": image, "background": background, "segmentation": segmentation, "motion": motion}
        if self.ground_truth:
            maps["alpha"] = self._read_same_size(read_alpha, clip.ground_truth_path("alpha", t), shape, frame_path)
            maps["foreground"] = self._read_same_size(read_image, clip.ground_truth_path("foreground", t), shape,
                                                      frame_path)
        maps = {k: cut_and_resize(v, window, out_hw) for k, v in maps.items()}
        maps["target_background"] = fit_cover(target, out_hw, (rng.random(), rng.random()))
        if rng.random() < self.hflip:
            maps = {k: v[:, ::-1] for k, v in maps.items()}
        sample = {k: hwc_to_chw(np.clip(v, 0.0, 1.0).astype(np.float32, copy=False)) for k, v in maps.items()}
        sample["clip"] = torch.tensor(c, dtype=torch.int64)
        keys = SAMPLE_KEYS
        if self.ground_truth:
            k = max(1, int(round(TRIMAP_K * max(out_hw) / 512)))
            sample["trimap"] = hwc_to_chw(trimap_from_alpha(sample["alpha"][0].numpy(), k))
            keys = SAMPLE_KEYS + GROUND_TRUTH_KEYS
        return {k: sample[k] for k in keys}
