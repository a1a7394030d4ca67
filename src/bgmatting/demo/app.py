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

Bad requests are answered with ``{"error": one line}``: 400 (a body that is not a JSON object, a field of the wrong
type, an image that does not decode or is above the pixel limit of :mod:`bgmatting.io`, a body shorter than
its ``Content-Length``), 408 (the body did not arrive in time), 411 (no ``Content-Length``), 413 (a body above
``ServerLimits.max_body_bytes``), 404 (an unknown path); a bug is a 500 and a traceback in the log.

Connections are served concurrently on a bounded pool of threads with timeouts (:mod:`bgmatting.demo.server`);
the model runs one request at a time (a lock), since one model is in memory.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from bgmatting.api import matte
from bgmatting.cli import one_line
from bgmatting.io import DataError, image_from_bytes, to_uint8
from bgmatting.data.synthetic.capture_set import capture_dataset
from bgmatting.data.synthetic.clips import ensure_synthetic_real
from bgmatting.demo.server import LimitedHandler, PooledHTTPServer, ServerLimits
from bgmatting.inference.pipeline import composite_over
from bgmatting.models import CheckpointError, load_matting_model
from bgmatting.models.starter import resolve_checkpoint

KEPT_RESULTS = 8
EXAMPLE_SIZE = (240, 320)
CAPTURE_EXAMPLE_SIZE = 512  # the capture set's 512 x 384 photos
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
               bool: "true or false", type(None): "null"}


class RequestError(DataError):
    """A request the demo refuses; ``status`` is the HTTP status of the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def text_field(request: dict, key: str, default: str | None = None) -> str:
    """``request[key]`` as a string (``default`` when absent); a DataError naming ``key`` otherwise."""
    value = request.get(key, default)
    if not isinstance(value, str):
        raise DataError(f"{key}: expected a string, got {_json_type(value)}")
    return value


def decode_data_url(url: Any, what: str) -> np.ndarray:
    """A ``data:...;base64,`` URL of an image file -> RGB float32 H x W x 3 in [0, 1], read as files are
    (:func:`bgmatting.io.image_from_bytes`: pixel limit, EXIF orientation); DataError naming ``what``."""
    match = re.match(r"data:[\w./+-]*;base64,(.*)$", url, re.DOTALL) if isinstance(url, str) else None
    if not match:
        raise DataError(f"{what}: expected an image file (a data:...;base64 URL)")
    try:
        data = base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        raise DataError(f"{what}: the data URL is not valid base64") from None
    return image_from_bytes(data, what)


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
    if not (isinstance(text, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", text)):
        raise DataError(f"color: expected #rrggbb, got {text!r}")
    return tuple(int(text[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


@dataclass
class Example:
    id: str
    title: str
    photo: Path
    plate: Path


def build_examples(cache: Path | None = None) -> tuple[list[Example], Path]:
    """The built-in examples (first frames of a fixed-camera and a hand-held synthetic capture, then two phone-like
    captures of the capture set: JPEG photo and plate from another pose, exposure, the subject's shadow) and a
    target image."""
    manifest = ensure_synthetic_real(cache, n_clips=2, n_frames=2, size=EXAMPLE_SIZE, n_targets=2,
                                     handheld_fraction=0.5, seed=5)
    clips = json.loads(manifest.read_text())["clips"]
    examples = []
    for clip in clips:
        folder = manifest.parent / clip["path"]
        kind = "hand-held camera" if clip["handheld"] else "fixed camera"
        examples.append(Example(clip["name"], f"synthetic capture, {kind}",
                                sorted((folder / "frames").glob("*.png"))[0], folder / "background.png"))
    for unit in capture_dataset(CAPTURE_EXAMPLE_SIZE, n_stills=2, n_clips=0, cache_dir=cache):
        examples.append(Example(f"capture_{unit.name}", "phone-like capture: plate from another pose, exposure, "
                                "the subject's shadow, JPEG", unit.frames[0].photo_path, unit.plate_path))
    targets = sorted((manifest.parent / "targets").glob("*.png"))
    return examples, targets[0]


@dataclass
class DemoApp:
    """What the handler needs: the model, matting options, the examples, and the last results (for recolouring).
    Requests may come from several threads: the model runs under ``model_lock``, ``results`` change under
    ``results_lock``."""

    model: torch.nn.Module
    options: dict[str, Any] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    target: Path | None = None
    results: OrderedDict = field(default_factory=OrderedDict)
    model_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    results_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def matte(self, request: dict) -> dict:
        photo = decode_data_url(request.get("photo"), "photo")
        plate = decode_data_url(request.get("plate"), "plate")
        target = self._target(request)
        with self.model_lock:
            tick = time.perf_counter()
            result = matte(photo, plate, checkpoint=self.model, target=target, progress=False, **self.options)
            seconds = time.perf_counter() - tick
        key = secrets.token_hex(8)
        with self.results_lock:
            self.results[key] = (result.alpha, result.foreground)
            while len(self.results) > KEPT_RESULTS:
                self.results.popitem(last=False)
        return {"id": key, "alpha": png_data_url(result.alpha), "foreground": png_data_url(result.rgba()),
                "composite": png_data_url(result.composite), "seconds": round(seconds, 2),
                "size": [int(photo.shape[1]), int(photo.shape[0])]}

    def composite(self, request: dict) -> dict:
        key = text_field(request, "id")
        with self.results_lock:
            kept = self.results.get(key)
        if kept is None:
            raise DataError("id: no such result (matte the photo again)")
        target = self._target(request)
        target = np.asarray([v / 255 for v in target], np.float32) if isinstance(target, tuple) else target
        return {"composite": png_data_url(composite_over(*kept, target))}

    @staticmethod
    def _target(request: dict) -> tuple[int, int, int] | np.ndarray:
        if request.get("image") is not None:
            return decode_data_url(request["image"], "target image")
        rgb = parse_hex_colour(text_field(request, "color", "#78ff9b"))
        return tuple(int(round(v * 255)) for v in rgb)


class DemoHandler(LimitedHandler):
    """Routes of the module docstring; ``server.app`` is the :class:`DemoApp`, ``server.limits`` the
    :class:`~bgmatting.demo.server.ServerLimits`."""

    server_version = "bgmatting-demo"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: a bug's traceback is the only log
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
            kind = "image/jpeg" if picture.suffix.lower() in (".jpg", ".jpeg") else "image/png"
            return self._send(200, picture.read_bytes(), kind)
        self._json(404, {"error": f"{path}: not found"})

    def do_POST(self) -> None:  # noqa: N802
        app: DemoApp = self.server.app
        route = {"/api/matte": app.matte, "/api/composite": app.composite}.get(self.path)
        if route is None:
            return self._json(404, {"error": f"{self.path}: not found"})
        try:
            answer = route(self._read_json())
        except RequestError as error:
            return self._json(error.status, {"error": one_line(error)})
        except (DataError, CheckpointError, ValueError) as error:
            return self._json(400, {"error": one_line(error)})
        except Exception as error:  # a bug: answer, then let the server log the traceback
            self._json(500, {"error": f"internal error: {one_line(error)}"})
            raise
        self._json(200, answer)

    def _read_json(self) -> dict:
        """The request body as a JSON object, within the server's limits (:class:`RequestError` otherwise)."""
        limit = self.server.limits.max_body_bytes
        text = self.headers.get("Content-Length")
        if text is None:
            raise RequestError(411, "Content-Length: required (a JSON body of known length)")
        if not text.strip().isdigit():
            raise RequestError(400, f"Content-Length: expected a number of bytes, got {text!r}")
        length = int(text)
        if length > limit:
            raise RequestError(413, f"request body of {length} bytes is above the limit of {limit} bytes")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise RequestError(408, f"request body not received within {self.server.limits.timeout_s:g} s") from None
        if len(body) < length:
            raise RequestError(400, f"request body ended after {len(body)} of the {length} bytes announced")
        try:
            request = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise RequestError(400, f"request body is not JSON ({one_line(error)})") from None
        if not isinstance(request, dict):
            raise RequestError(400, f"request body must be a JSON object, got {_json_type(request)}")
        return request


def make_server(app: DemoApp, host: str = "127.0.0.1", port: int = 8765,
                limits: ServerLimits | None = None) -> PooledHTTPServer:
    """An HTTP server (not yet serving) for ``app`` on ``host:port`` (port 0: any free port); ValueError for a
    port outside 0..65535, OSError when the address cannot be bound."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port!r}")
    server = PooledHTTPServer((host, port), DemoHandler, limits or ServerLimits())
    server.app = app
    return server


def demo_app(checkpoint: str | Path | None, options: dict[str, Any] | None = None,
             cache: Path | None = None) -> DemoApp:
    """Load the checkpoint once (None or ``"starter"``: the starter weights the package ships) and prepare the
    examples."""
    examples, target = build_examples(cache)
    return DemoApp(load_matting_model(resolve_checkpoint(checkpoint)), dict(options or {}), examples, target)
