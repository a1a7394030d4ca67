"""Build a fixed composite set (the paper's protocol): ``python -m bgmatting.compose --help``.

    python -m bgmatting.compose --preset train|test --fg-dir DIR [DIR ...] --alpha-dir DIR [DIR ...] \\
        --bg-dir DIR [DIR ...] --out OUT [--fg-list FILE] [--bg-list FILE] [--trimap-dir DIR] [--size N]

A thin command over :func:`bgmatting.data.composite_sets.build_from_folders` (layout, presets and resume rules
there). Bad input: one line naming the file on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bgmatting.cli import report
from bgmatting.data.composite_sets import PRESETS, build_from_folders
from bgmatting.io import DataError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bgmatting.compose",
                                     description="Composite Adobe-style foregrounds over backgrounds into a fixed set.")
    parser.add_argument("--fg-dir", nargs="+", required=True, help="foreground folder(s)")
    parser.add_argument("--alpha-dir", nargs="+", required=True, help="alpha folder(s), paired in order with --fg-dir")
    parser.add_argument("--bg-dir", nargs="+", required=True, help="background folder(s) (COCO folder or VOC root)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--fg-list", help="foreground name list (e.g. training_fg_names.txt)")
    parser.add_argument("--bg-list", help="background name list (e.g. training_bg_names.txt); keeps its order")
    parser.add_argument("--trimap-dir", help="trimaps named like the foregrounds (e.g. the Adobe test trimaps)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="train: 100 bg per fg, own size (default); test: 20 bg per fg, 512")
    parser.add_argument("--per-fg", type=int, help="backgrounds per foreground (train 100, test 20)")
    parser.add_argument("--size", type=int, help="output size (square); default: keep the fg size (test preset: 512)")
    parser.add_argument("--fit", choices=("stretch", "center_crop"), default="stretch")
    parser.add_argument("--max-fg", type=int, help="use only the first N foregrounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="threads (default 2)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing outputs instead of resuming")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    preset = PRESETS[args.preset or "train"]
    per_fg = args.per_fg if args.per_fg is not None else preset["per_fg"]
    size = args.size if args.size is not None else preset["size"]
    try:
        manifest = build_from_folders(args.fg_dir, args.alpha_dir, args.bg_dir, args.out, args.fg_list, args.bg_list,
                                      args.trimap_dir, args.max_fg, per_fg=per_fg, size=size, seed=args.seed,
                                      fit=args.fit, workers=args.workers, overwrite=args.overwrite,
                                      progress=sys.stderr.isatty())
    except (DataError, ValueError) as error:
        return report("compose", error)
    except OSError as error:  # e.g. a read-only or full output folder
        return report("compose", f"cannot write into {args.out}: {error.strerror or error}")
    print(f"wrote {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
