"""The demo's server: the page, built-in examples, and a JSON API over :func:`bgmatting.matte`.

Routes:

* ``GET /``: the page (``page.html``, shipped with the package).
* ``GET /examples``: ``[{"id", "title"}]``; ``GET /examples/<id>/photo.png`` and ``.../plate.png``: the pictures of
  a built-in example (frames of the synthetic real captures, :mod:`bgmatting.data.synthetic.clips`, generated once
  into the cache), ``GET /examples/target.png``: an image to composite over.
* ``POST /api/matte`` with JSON ``{"photo": data URL, "plate": data URL, "color": "#rrggbb" | "image": data URL}``:
  ``{"id", "alpha", "foreground", "composite"}`` (PNG data URLs; the foreground is RGBA), ``"plate"`` (what was done
  with the plate) and ``"seconds"``.
* ``POST /api/composite`` with ``{"id", "color" | "image"}``: a new ``"composite"`` of an earlier result.

Errors are HTTP 400 with ``{"error": one line}``. Requests are served one at a time (one model in memory).
"""
from __future__ import annotations

import base64
import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from bgmatting.api import matte
from bgmatting.data.io import DataError, to_uint8
from bgmatting.data.synthetic.clips import ensure_synthetic_real
from bgmatting.inference.pipeline import composite_over
from bgmatting.models import CheckpointError, load_matting_model

MAX_UPLOAD_BYTES = 64 * 2**20
KEPT_RESULTS = 8
EXAMPLE_SIZE = (240, 320)


def decode_data_url(url: str, what: str) -> np.ndarray:
    """A ``data:...;base64,`` URL of an image file -> RGB float32 H x W x 3 in [0, 1]; DataError naming ``what``."""
    match = re.match(r"data:[\w./+-]*;base64,(.*)$", url or "", re.DOTALL)
    if not match:
        raise DataError(f"{what}: expected an image file (a data:...;base64 URL)")
    raw = np.frombuffer(base64.b64decode(match.group(1)), np.uint8)
    bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{what}: cannot decode the image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def png_data_url(image: np.ndarray) -> str:
    """float [0, 1] H x W (gray), H x W x 3 (RGB) or H x W x 4 (RGBA) -> a PNG data URL."""
    pixels = to_uint8(image)
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(".png", pixels)
    if not ok:
        raise DataError("cannot encode the result as PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")


def parse_hex_colour(text: str) -> tuple[float, float, float]:
    """``#rrggbb`` -> RGB floats in [0, 1]."""
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", text or ""):
        raise DataError(f"color: expected #rrggbb, got {text!r}")
    return tuple(int(text[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


@dataclass
class Example:
    id: str
    title: str
    photo: Path
    plate: Path


def build_examples(cache: Path | None = None) -> tuple[list[Example], Path]:
    """The built-in examples (first frames of a fixed-camera and a hand-held synthetic capture) and a target image."""
    manifest = ensure_synthetic_real(cache, n_clips=2, n_frames=2, size=EXAMPLE_SIZE, n_targets=2,
                                     handheld_fraction=0.5, seed=5)
    clips = json.loads(manifest.read_text())["clips"]
    examples = []
    for clip in clips:
        folder = manifest.parent / clip["path"]
        kind = "hand-held camera" if clip["handheld"] else "fixed camera"
        examples.append(Example(clip["name"], f"synthetic capture, {kind}",
                                sorted((folder / "frames").glob("*.png"))[0], folder / "background.png"))
    targets = sorted((manifest.parent / "targets").glob("*.png"))
    return examples, targets[0]


@dataclass
class DemoApp:
    """What the handler needs: the model, matting options, the examples, and the last results (for recolouring)."""

    model: torch.nn.Module
    options: dict[str, Any] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    target: Path | None = None
    results: OrderedDict = field(default_factory=OrderedDict)

    def matte(self, request: dict) -> dict:
        photo = decode_data_url(request.get("photo"), "photo")
        plate = decode_data_url(request.get("plate"), "plate")
        target = self._target(request)
        tick = time.perf_counter()
        result = matte(photo, plate, checkpoint=self.model, target=target, progress=False, **self.options)
        seconds = time.perf_counter() - tick
        key = f"r{int(time.time() * 1000)}"
        self.results[key] = (result.alpha, result.foreground)
        while len(self.results) > KEPT_RESULTS:
            self.results.popitem(last=False)
        return {"id": key, "alpha": png_data_url(result.alpha), "foreground": png_data_url(result.rgba()),
                "composite": png_data_url(result.composite), "seconds": round(seconds, 2),
                "size": [int(photo.shape[1]), int(photo.shape[0])]}

    def composite(self, request: dict) -> dict:
        if request.get("id") not in self.results:
            raise DataError("id: no such result (matte the photo again)")
        alpha, foreground = self.results[request["id"]]
        target = self._target(request)
        target = np.asarray([v / 255 for v in target], np.float32) if isinstance(target, tuple) else target
        return {"composite": png_data_url(composite_over(alpha, foreground, target))}

    @staticmethod
    def _target(request: dict) -> tuple[int, int, int] | np.ndarray:
        if request.get("image"):
            return decode_data_url(request["image"], "target image")
        rgb = parse_hex_colour(request.get("color", "#78ff9b"))
        return tuple(int(round(v * 255)) for v in rgb)


class DemoHandler(BaseHTTPRequestHandler):
    """Routes of the module docstring; ``server.app`` is the :class:`DemoApp`."""

    server_version = "bgmatting-demo"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per error only
        return

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), "application/json")

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        app: DemoApp = self.server.app
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            page = resources.files("bgmatting.demo").joinpath("page.html").read_bytes()
            return self._send(200, page, "text/html; charset=utf-8")
        if path == "/examples":
            return self._json(200, [{"id": e.id, "title": e.title} for e in app.examples])
        if path == "/examples/target.png" and app.target is not None:
            return self._send(200, app.target.read_bytes(), "image/png")
        match = re.fullmatch(r"/examples/([\w-]+)/(photo|plate)\.png", path)
        example = next((e for e in app.examples if match and e.id == match.group(1)), None)
        if example is not None:
            picture = example.photo if match.group(2) == "photo" else example.plate
            return self._send(200, picture.read_bytes(), "image/png")
        self._json(404, {"error": f"{path}: not found"})

    def do_POST(self) -> None:  # noqa: N802
        app: DemoApp = self.server.app
        routes = {"/api/matte": app.matte, "/api/composite": app.composite}
        if self.path not in routes:
            return self._json(404, {"error": f"{self.path}: not found"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_UPLOAD_BYTES:
            return self._json(413, {"error": f"upload of {length} bytes is above {MAX_UPLOAD_BYTES} bytes"})
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
            self._json(200, routes[self.path](request))
        except (DataError, CheckpointError, ValueError) as error:
            self._json(400, {"error": str(error).splitlines()[0]})


def make_server(app: DemoApp, host: str = "127.0.0.1", port: int = 8765) -> HTTPServer:
    """An HTTP server (not yet serving) for ``app`` on ``host:port`` (port 0: any free port)."""
    server = HTTPServer((host, port), DemoHandler)
    server.app = app
    return server


def demo_app(checkpoint: str | Path, options: dict[str, Any] | None = None, cache: Path | None = None) -> DemoApp:
    """Load the checkpoint once and prepare the examples."""
    examples, target = build_examples(cache)
    return DemoApp(load_matting_model(checkpoint), dict(options or {}), examples, target)

