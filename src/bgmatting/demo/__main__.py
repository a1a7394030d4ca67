"""``python -m bgmatting.demo --checkpoint ckpt.pt [--port 8765] [--host 127.0.0.1] [--size 512] [--mode original]
[--workers 8] [--timeout 20] [--max-upload-mb 64]``

Serves the demo page (:mod:`bgmatting.demo.app`) until interrupted; open the address it prints. Bad input (a
missing or broken checkpoint, a busy port, an option out of range): one line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from bgmatting.cli import report
from bgmatting.io import DataError
from bgmatting.demo.app import demo_app, make_server
from bgmatting.demo.server import ServerLimits
from bgmatting.inference.pipeline import MATTING_MODES
from bgmatting.models import CheckpointError


def _ranged(kind: type, low: float, high: float | None = None):
    """An argparse type: ``kind`` values in [low, high] (refused with one line naming the range)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if not (value >= low and (high is None or value <= high)):
            span = f"in {low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bgmatting.demo", description="A local demo page for matting.")
    p.add_argument("--checkpoint", default=None, help="our checkpoint or an original-release state dict (default: the "
                                                      "starter weights the package ships)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=_ranged(int, 0, 65535), default=8765, help="port (0: any free port)")
    p.add_argument("--mode", choices=MATTING_MODES, default=None,
                   help="matting mode (as python -m bgmatting.infer; default: refine with a refiner, else original)")
    p.add_argument("--size", type=_ranged(int, 4), default=512,
                   help="network side (original) or processing long side (full)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    p.add_argument("--workers", type=_ranged(int, 1, 256), default=ServerLimits.workers,
                   help="connections served at once (default %(default)s; the model itself runs one at a time)")
    p.add_argument("--timeout", type=_ranged(float, 0.1, 3600), default=ServerLimits.timeout_s,
                   help="seconds a client has to send its request, and per socket read/write (default %(default)s)")
    p.add_argument("--max-upload-mb", type=_ranged(float, 0.001, 4096), default=ServerLimits.max_body_bytes / 2**20,
                   help="largest request body in MiB, images included (default %(default)g)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limits = ServerLimits(workers=args.workers, timeout_s=args.timeout,
                          max_body_bytes=int(args.max_upload_mb * 2**20))
    try:
        app = demo_app(args.checkpoint, {"mode": args.mode, "size": args.size, "device": args.device})
    except (DataError, CheckpointError, OSError) as error:
        return report("demo", error)
    try:
        server = make_server(app, args.host, args.port, limits)
    except OSError as error:  # a busy port, an unknown host, no permission
        return report("demo", f"{args.host}:{args.port}: cannot listen there: {error.strerror or error}")
    host, port = server.server_address[:2]
    print(f"bgmatting demo on http://{host}:{port}/ (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
