"""``python -m bgmatting.export``: export a trained matting model to ONNX or TorchScript, checked against PyTorch.

    python -m bgmatting.export --checkpoint CKPT --format onnx|torchscript --output PATH [--opset 17]
        [--size H,W] [--refine-mode thresholding|full] [--refine-threshold T] [--downsample-ratio R]

A checkpoint with a refiner exports with a fixed H x W (``--size``, e.g. 1080,1920) in refine mode
thresholding (default) or full; the refine options apply to such checkpoints only.

Reads the options and calls :func:`bgmatting.inference.model_export.export_model` on the checkpoint's
:class:`bgmatting.models.MattingModel`; the graph's inputs and outputs (the ONNX contract) are described there
and in the README. Bad input (checkpoint, sizes, options, missing export packages): one line on stderr, exit
status 2; a failed parity check: exit status 1, nothing written.
"""
from __future__ import annotations

import argparse
import json
import sys

from bgmatting.cli import report
from bgmatting.inference.model_export import (
    DEFAULT_OPSET,
    DEFAULT_TOLERANCE,
    EXPORT_REFINE_MODES,
    FORMATS,
    ExportError,
    ParityError,
    export_model,
)
from bgmatting.models import CheckpointError, MattingModel, NonFiniteOutputError, load_matting_model
from bgmatting.models.starter import STARTER_NOTE, is_starter, resolve_checkpoint


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"size must be H,W (e.g. 256,256), got {text!r}")
    size = int(parts[0]), int(parts[1])
    if min(size) < 4 or size[0] % 4 or size[1] % 4:
        raise argparse.ArgumentTypeError(f"size must be positive multiples of 4 (the graph does not pad), got {text!r}")
    return size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bgmatting.export", description="Export a Background Matting model to ONNX or TorchScript."
    )
    parser.add_argument("--checkpoint", default=None, help="our checkpoint or an original-release state dict (default: "
                                                           "the starter weights the package ships)")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--output", required=True, help="file to write (.onnx or .pt)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    parser.add_argument("--size", type=_size, default=(256, 256), help="H,W used to trace (multiples of 4)")
    parser.add_argument("--check-size", type=_size, default=None, help="second H,W of the parity check")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max |alpha diff| accepted")
    parser.add_argument("--refine-mode", choices=EXPORT_REFINE_MODES, default="thresholding",
                        help="checkpoints with a refiner: which patches to refine (no TopK: sampling does not export)")
    parser.add_argument("--refine-threshold", type=float, default=None,
                        help="refine mode thresholding: error-map limit in [0, 1] (default: the checkpoint's)")
    parser.add_argument("--downsample-ratio", type=float, default=None,
                        help="checkpoints with a refiner: base / frame resolution (default: automatic, long side 512)")
    return parser


def _with_refine_options(model: MattingModel, args: argparse.Namespace) -> MattingModel:
    """A refining model with the command's refine options (a plain model unchanged)."""
    if model.refiner is None:
        return model
    options = dict(model.refine_options, refine_mode=args.refine_mode, downsample_ratio=args.downsample_ratio)
    if args.refine_threshold is not None:
        options["refine_threshold"] = args.refine_threshold
    return model.set_refine_options(**options)


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when written; 2 for bad input (one line on stderr); 1 when the parity check refused it."""
    args = build_parser().parse_args(argv)
    try:
        if is_starter(args.checkpoint):
            print(f"export: {STARTER_NOTE}", file=sys.stderr)
        model = _with_refine_options(load_matting_model(resolve_checkpoint(args.checkpoint)), args)
        rows = export_model(model, args.output, args.format, opset=args.opset, size=args.size,
                            check_size=args.check_size, tolerance=args.tolerance)
    except ParityError as error:
        return report("export", error, status=1)
    except (CheckpointError, ExportError, NonFiniteOutputError) as error:
        return report("export", error)
    except ValueError as error:  # a refine option out of range
        return report("export", error)
    except OSError as error:
        return report("export", f"cannot write {args.output}: {error.strerror or error}")
    print(f"wrote {args.output} ({args.format}" + (f", opset {args.opset})" if args.format == "onnx" else ")"))
    for row in rows:
        print(
            f"parity at {row['height']}x{row['width']} (batch {row['batch']}): "
            f"alpha max |diff| {row['alpha_max_abs_diff']:.2e} "
            f"(mean {row['alpha_mean_abs_diff']:.2e}), foreground max |diff| {row['foreground_max_abs_diff']:.2e}"
        )
    print(json.dumps({"output": str(args.output), "format": args.format, "parity": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
