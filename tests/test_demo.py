"""The demo page: its JSON API over HTTP, and the page itself driven by a real headless Chromium (skipped where
no Chromium is installed): an example is loaded in the browser, uploaded, matted and shown with download links."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from bgmatting.demo.app import demo_app, make_server, png_data_url

sys.path.insert(0, str(Path(__file__).parent / "inference"))
from infer_helpers import save_checkpoint, tiny_generator  # noqa: E402

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo on a free port with a tiny generator (network side 64 to stay fast), serving in a thread."""
    root = tmp_path_factory.mktemp("demo")
    checkpoint = save_checkpoint(root / "tiny.pt", tiny_generator())
    app = demo_app(checkpoint, {"size": 64}, cache=root / "cache")
    httpd = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", app
    httpd.shutdown()
    httpd.server_close()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _decode(url: str) -> np.ndarray:
    data = base64.b64decode(url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def _file_url(base: str, path: str) -> str:
    return "data:image/png;base64," + base64.b64encode(_get(base + path)).decode()


def test_the_api_mattes_an_example_and_recomposites_it(server):
    base, app = server
    assert b"Background matting" in _get(base + "/")
    examples = json.loads(_get(base + "/examples"))
    assert [e["id"] for e in examples] == ["clip_000", "clip_001"] and "hand-held" in examples[1]["title"]
    photo, plate = _file_url(base, "/examples/clip_001/photo.png"), _file_url(base, "/examples/clip_001/plate.png")
    status, result = _post(base + "/api/matte", {"photo": photo, "plate": plate, "color": "#0000ff"})
    assert status == 200, result
    alpha, foreground, composite = (_decode(result[k]) for k in ("alpha", "foreground", "composite"))
    assert alpha.shape == (240, 320) and foreground.shape == (240, 320, 4) and composite.shape == (240, 320, 3)
    np.testing.assert_array_equal(foreground[..., 3], alpha)
    assert np.all(composite[alpha == 0] == (255, 0, 0))  # BGR: pure blue where alpha is 0
    status, again = _post(base + "/api/composite", {"id": result["id"], "color": "#ff0000"})
    assert status == 200 and np.all(_decode(again["composite"])[alpha == 0] == (0, 0, 255))
    image = _file_url(base, "/examples/target.png")
    status, target = _post(base + "/api/composite", {"id": result["id"], "image": image})
    assert status == 200 and _decode(target["composite"]).shape == (240, 320, 3)


def test_the_api_answers_bad_requests_with_one_line(server):
    base, _ = server
    status, answer = _post(base + "/api/matte", {"photo": "not a picture", "plate": "x"})
    assert status == 400 and answer["error"] == "photo: expected an image file (a data:...;base64 URL)"
    garbage = "data:image/png;base64," + base64.b64encode(b"garbage").decode()
    status, answer = _post(base + "/api/matte", {"photo": garbage, "plate": garbage})
    assert status == 400 and answer["error"] == "photo: cannot decode the image"
    status, answer = _post(base + "/api/composite", {"id": "nope", "color": "#000000"})
    assert status == 400 and "no such result" in answer["error"]
    image = png_data_url(np.zeros((8, 8, 3), np.float32))
    status, answer = _post(base + "/api/matte", {"photo": image, "plate": image, "color": "red"})
    assert status == 400 and "color: expected #rrggbb" in answer["error"]
    with pytest.raises(urllib.error.HTTPError):
        _get(base + "/nothing")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=120000", *args], capture_output=True, text=True, timeout=240)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_the_page_in_headless_chromium(server, tmp_path):
    base, _ = server
    url = f"{base}/?example=clip_000&color=%230000ff"
    dom = _chromium("--dump-dom", url).stdout
    assert 'data-state="done"' in dom, dom[-2000:]
    assert re.search(r'id="status"[^>]*>Done: 320x240', dom)
    images = dict(re.findall(r'<img id="(\w+)"[^>]*src="(data:image/png;base64,[^"]+)"', dom))
    assert set(images) == {"alpha", "foreground", "composite"}
    alpha, composite = _decode(images["alpha"]), _decode(images["composite"])
    assert alpha.shape == (240, 320) and np.all(composite[alpha == 0] == (255, 0, 0))  # blue, as asked in the URL
    links = dict(re.findall(r'<a id="(\w+)Link" download="[\w.]+" href="(data:image/png;base64,[^"]+)"', dom))
    assert links == images  # each result has its download link
    shot = tmp_path / "demo.png"
    _chromium("--window-size=1280,1000", f"--screenshot={shot}", url)
    picture = cv2.imread(str(shot))
    assert picture is not None and picture.shape[:2] == (1000, 1280) and picture.std() > 10
