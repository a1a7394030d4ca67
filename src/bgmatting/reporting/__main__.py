"""``python -m bgmatting.reporting CHECKPOINT``: score a checkpoint on the held-out photo set at every scale.

Prints the table (model and baselines, ratio best-baseline SAD / model SAD, target); with ``--out DIR`` also
writes heldout_scores.json, heldout_scores.md and gallery_<size>.png there.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bgmatting.reporting", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="generator checkpoint (ours or the original release)")
    parser.add_argument("--sizes", type=int, nargs="+", help="scales in px (default: 96 128 192 256)")
    parser.add_argument("--scenes", type=int, default=32, help="scenes in the held-out set (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="generation seed of the set (default 0)")
    parser.add_argument("--limit", type=int, help="score only the first N images")
    parser.add_argument("--out", type=Path, help="folder for the JSON, Markdown and gallery PNGs")
    parser.add_argument("--gallery", type=int, default=6, help="images per gallery (default 6; 0: none)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto ... (default cpu)")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16, auto ... (default fp32)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from bgmatting.data.io import DataError, write_text
    from bgmatting.models import CheckpointError, load_generator
    from bgmatting.reporting.heldout import SetOptions, heldout_table, score_generator, write_heldout_gallery

    try:
        generator = load_generator(args.checkpoint)
        options = SetOptions(n_scenes=args.scenes, seed=args.seed, limit=args.limit)
        scores = score_generator(generator, sizes=args.sizes, options=options, device=args.device,
                                 precision=args.precision)
        table = heldout_table(scores)
        print(table, end="")
        if args.out is not None:
            write_text(args.out / "heldout_scores.json",
                       json.dumps({str(k): v.as_dict() for k, v in scores.items()}, indent=2) + "\n")
            write_text(args.out / "heldout_scores.md", f"# Held-out photo set: {args.checkpoint}\n\n{table}")
            for size in scores if args.gallery > 0 else ():
                write_heldout_gallery(generator, args.out / f"gallery_{size}.png", size=size,
                                      indices=range(args.gallery), options=options, precision=args.precision)
            print(f"reports: {args.out}")
    except (DataError, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"bgmatting.reporting: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
