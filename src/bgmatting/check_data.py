"""Check data manifests before training: ``python -m bgmatting.check_data MANIFEST [MANIFEST ...]``.

A composite manifest CSV is checked row by row, a real-captures ``manifest.json`` (or its folder) clip by clip
(:mod:`bgmatting.data.check`). Every problem is printed with its line or clip, column, path and reason, then
a summary line per manifest. Exit status: 0 when every manifest is good, 1 when a manifest has bad rows or
files, 2 when a manifest itself cannot be read (one line on stderr naming it).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bgmatting.cli import report as report_error
from bgmatting.data.check import check_manifest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bgmatting.check_data",
                                     description="Check that every file a data manifest names exists, decodes and "
                                                 "has the expected channels and size.")
    parser.add_argument("manifests", nargs="+", type=Path,
                        help="composite manifest CSV(s) or real-captures manifest.json (or its folder)")
    parser.add_argument("--workers", type=int, default=4, help="threads decoding images (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status = 0
    for path in args.manifests:
        report = check_manifest(path, args.workers, progress=not args.no_progress and sys.stderr.isatty())
        if not report.readable:
            status = report_error("check_data", report.problems[0].reason)
            continue
        for problem in report.problems:
            print(f"{path}: {problem}")
        print(report.summary())
        if not report.ok:
            status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
