"""``python -m bgmatting.demo --checkpoint ckpt.pt [--port 8765] [--host 127.0.0.1] [--size 512] [--mode original]``

Serves the demo page (:mod:`bgmatting.demo.app`) until interrupted; open the address it prints. Bad input (a
missing or broken checkpoint, a busy port): one line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from bgmatting.data.io import DataError
from bgmatting.demo.app import demo_app, make_server
from bgmatting.inference.pipeline import MODES
from bgmatting.models import CheckpointError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bgmatting.demo", description="A local demo page for matting.")
    p.add_argument("--checkpoint", required=True, help="our checkpoint or an original-release state dict")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    p.add_argument("--mode", choices=MODES, default="original", help="matting mode (as python -m bgmatting.infer)")
    p.add_argument("--size", type=int, default=512, help="network side (original) or processing long side (full)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        app = demo_app(args.checkpoint, {"mode": args.mode, "size": args.size, "device": args.device})
        server = make_server(app, args.host, args.port)
    except (DataError, CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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
