"""The demo page: its JSON API over HTTP, and the page itself driven by a real headless Chromium (skipped where
no Chromium is installed): an example is loaded in the browser, uploaded, matted and shown with download links.
The server under hostile clients, over real sockets: idle and slow connections, malformed requests and bodies,
oversized uploads and images, a full pool; and photos with an EXIF orientation read as infer reads them."""
from __future__ import annotations

import base64
import json
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from bgmatting.io import read_image
from bgmatting.demo.__main__ import main as demo_main
from bgmatting.demo.app import decode_data_url, demo_app, make_server, png_data_url
from bgmatting.demo.server import ServerLimits

sys.path.insert(0, str(Path(__file__).parent / "inference"))
from image_files import jpeg_with_orientation, marked, png_bomb_header  # noqa: E402
from infer_helpers import save_checkpoint, tiny_generator  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from headless_browser import CHROMIUM, HeadlessPage  # noqa: E402



@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The demo app with a tiny generator (network side 64 to stay fast) and its examples."""
    root = tmp_path_factory.mktemp("demo")
    checkpoint = save_checkpoint(root / "tiny.pt", tiny_generator())
    return demo_app(checkpoint, {"size": 64}, cache=root / "cache")


def _serve(app, limits: ServerLimits | None = None):
    httpd = make_server(app, "127.0.0.1", 0, limits)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture(scope="module")
def server(app):
    """The demo on a free port with the default limits, serving in a thread."""
    httpd = _serve(app)
    yield f"http://127.0.0.1:{httpd.server_address[1]}", app
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def tight(app):
    """The demo with one worker, no queue, a 0.5 s timeout and 4 KiB bodies: its port."""
    httpd = _serve(app, ServerLimits(workers=1, pending=0, timeout_s=0.5, max_body_bytes=4096))
    yield httpd.server_address[1]
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
    assert [e["id"] for e in examples] == ["clip_000", "clip_001", "capture_still_0000", "capture_still_0001"]
    assert "hand-held" in examples[1]["title"] and "phone-like capture" in examples[2]["title"]
    with urllib.request.urlopen(base + "/examples/capture_still_0000/photo.png", timeout=60) as response:
        assert response.headers["Content-Type"] == "image/jpeg" and response.read(2) == b"\xff\xd8"  # a phone's JPEG
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
    assert status == 400 and answer["error"] == ("photo: cannot decode image (unreadable, truncated or not a PNG, "
                                                 "JPEG, BMP, TIFF or WebP file)")
    status, answer = _post(base + "/api/composite", {"id": "nope", "color": "#000000"})
    assert status == 400 and "no such result" in answer["error"]
    image = png_data_url(np.zeros((8, 8, 3), np.float32))
    status, answer = _post(base + "/api/matte", {"photo": image, "plate": image, "color": "red"})
    assert status == 400 and "color: expected #rrggbb" in answer["error"]
    with pytest.raises(urllib.error.HTTPError):
        _get(base + "/nothing")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_the_page_in_headless_chromium(server):
    base, _ = server
    with HeadlessPage(1280, 1000) as page:
        page.open(f"{base}/?example=clip_000&color=%230000ff")
        settled = page.wait_for("['done', 'error'].includes(document.body && document.body.dataset.state)")
        dom = page.html()
        assert settled and 'data-state="done"' in dom, (re.findall(r"<body[^>]*>", dom),
                                                        re.findall(r'id="status"[^<]*<', dom))
        picture = cv2.imdecode(np.frombuffer(page.screenshot(), np.uint8), cv2.IMREAD_COLOR)
    assert re.search(r'id="status"[^>]*>Done: 320x240', dom)
    images = dict(re.findall(r'<img id="(\w+)"[^>]*src="(data:image/png;base64,[^"]+)"', dom))
    assert set(images) == {"alpha", "foreground", "composite"}
    alpha, composite = _decode(images["alpha"]), _decode(images["composite"])
    assert alpha.shape == (240, 320) and np.all(composite[alpha == 0] == (255, 0, 0))  # blue, as asked in the URL
    links = dict(re.findall(r'<a id="(\w+)Link" download="[\w.]+" href="(data:image/png;base64,[^"]+)"', dom))
    assert links == images  # each result has its download link
    assert picture is not None and picture.shape[:2] == (1000, 1280) and picture.std() > 10


# ------------------------------------------------------------------------------------------- hostile clients
def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _exchange(port: int, data: bytes, end_request: bool = False, timeout: float = 10) -> tuple[int, dict]:
    """Send raw bytes (then, with ``end_request``, end the sending half), read the reply until the server closes:
    (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(data)
        if end_request:
            connection.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def _post_raw(path: str, body: bytes, length: str | None = None) -> bytes:
    header = f"Content-Length: {len(body) if length is None else length}\r\n" if length != "none" else ""
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode() + body


def _json_post(path: str, value) -> bytes:
    return _post_raw(path, json.dumps(value).encode())


PNG_URL = png_data_url(np.zeros((8, 8, 3), np.float32))
BOMB_URL = "data:image/png;base64," + base64.b64encode(png_bomb_header(30000, 30000)).decode()
BAD_REQUESTS = [  # (case, raw request, status, the reply's one-line error)
    ("a list", _json_post("/api/matte", []), 400, "request body must be a JSON object, got a list"),
    ("null", _json_post("/api/matte", None), 400, "request body must be a JSON object, got null"),
    ("photo a number", _json_post("/api/matte", {"photo": 5, "plate": PNG_URL}), 400,
     "photo: expected an image file (a data:...;base64 URL)"),
    ("empty base64", _json_post("/api/matte", {"photo": "data:image/png;base64,", "plate": PNG_URL}), 400,
     "photo: file is empty"),
    ("not base64", _json_post("/api/matte", {"photo": "data:image/png;base64,%%%", "plate": PNG_URL}), 400,
     "photo: the data URL is not valid base64"),
    ("decompression bomb", _json_post("/api/matte", {"photo": BOMB_URL, "plate": PNG_URL}), 400,
     "photo: image is 30000x30000 (900,000,000 pixels), above the limit of 100,000,000 pixels "
     "(raise it with BGMATTING_MAX_IMAGE_PIXELS=N or max_pixels=N)"),
    ("id a list", _json_post("/api/composite", {"id": [], "color": "#000000"}), 400,
     "id: expected a string, got a list"),
    ("colour a number", _json_post("/api/matte", {"photo": PNG_URL, "plate": PNG_URL, "color": 5}), 400,
     "color: expected a string, got a number"),
    ("length not a number", _post_raw("/api/matte", b"{}", "abc"), 400,
     "Content-Length: expected a number of bytes, got 'abc'"),
    ("length negative", _post_raw("/api/matte", b"", "-1"), 400,
     "Content-Length: expected a number of bytes, got '-1'"),
    ("no length", _post_raw("/api/matte", b"", "none"), 411, "Content-Length: required (a JSON body of known length)"),
    ("too large", _post_raw("/api/matte", b"", str(65 * 2**20)), 413,
     f"request body of {65 * 2**20} bytes is above the limit of {64 * 2**20} bytes"),
    ("nested too deep", _post_raw("/api/matte", b"[" * 100_000), 400, None),
    ("not JSON", _post_raw("/api/matte", b"\xff{"), 400, None),
]


@pytest.mark.parametrize("case, raw, status, error", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_malformed_requests_get_a_status_and_one_line(server, capfd, case, raw, status, error):
    base, _ = server
    got, answer = _exchange(_port(base), raw)
    assert got == status, answer
    assert answer["error"] == error if error else answer["error"].startswith("request body is not JSON (")
    assert "\n" not in answer["error"]
    assert "Traceback" not in capfd.readouterr().err


def test_a_body_shorter_than_announced_is_refused_when_the_client_stops(server):
    base, _ = server
    status, answer = _exchange(_port(base), _post_raw("/api/matte", b'{"photo"', "100"), end_request=True)
    assert status == 400 and answer["error"] == "request body ended after 8 of the 100 bytes announced"


def test_idle_and_unfinished_clients_do_not_block_others(server):
    base, _ = server
    stalled = [socket.create_connection(("127.0.0.1", _port(base))) for _ in range(3)]
    try:
        stalled[1].sendall(_post_raw("/api/matte", b"", "-1"))                # Content-Length: -1, then nothing
        stalled[2].sendall(_post_raw("/api/matte", b'{"photo": "da', "5000"))  # a body shorter than announced
        tick = time.perf_counter()
        assert json.loads(_get(base + "/examples"))[0]["id"] == "clip_000"
        assert time.perf_counter() - tick < 5  # served at once, not after the stalled clients
    finally:
        for connection in stalled:
            connection.close()


def test_slow_clients_are_cut_off_and_a_full_pool_answers_busy(tight):
    idle = socket.create_connection(("127.0.0.1", tight))  # takes the only worker
    try:
        time.sleep(0.1)
        status, answer = _exchange(tight, b"GET /examples HTTP/1.0\r\n\r\n")
        assert status == 503 and answer["error"] == "the server is busy; try again"
        idle.settimeout(5)
        tick = time.perf_counter()
        assert idle.recv(1024) == b"" and time.perf_counter() - tick < 2  # closed after the 0.5 s timeout
    finally:
        idle.close()
    with socket.create_connection(("127.0.0.1", tight), timeout=5) as trickle:  # bytes keep coming, too slowly
        trickle.sendall(_post_raw("/api/matte", b"{", "50"))
        tick = time.perf_counter()

        def keep_sending() -> None:  # a byte every 0.1 s: each read waits less than the 0.5 s socket timeout
            while time.perf_counter() - tick < 2:
                time.sleep(0.1)
                try:
                    trickle.send(b" ")
                except OSError:
                    return

        sender = threading.Thread(target=keep_sending)
        sender.start()
        reply = trickle.recv(65536)
        elapsed = time.perf_counter() - tick
        while chunk := trickle.recv(65536):
            reply += chunk
        sender.join()
        assert reply.startswith(b"HTTP/1.0 408") and b"not received within 0.5 s" in reply and elapsed < 1.5
    status, answer = _exchange(tight, _post_raw("/api/matte", b"", "5000"))
    assert status == 413 and answer["error"] == "request body of 5000 bytes is above the limit of 4096 bytes"


def test_concurrent_mattes_all_succeed_with_their_own_results(server):
    base, _ = server
    photo, plate = _file_url(base, "/examples/clip_000/photo.png"), _file_url(base, "/examples/clip_000/plate.png")
    answers: list = [None] * 3

    def one(i: int) -> None:
        answers[i] = _post(base + "/api/matte", {"photo": photo, "plate": plate, "color": "#0000ff"})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [status for status, _ in answers] == [200] * 3
    assert len({result["id"] for _, result in answers}) == 3
    first = _decode(answers[0][1]["alpha"])
    assert all(np.array_equal(_decode(result["alpha"]), first) for _, result in answers)


def test_an_upload_with_exif_orientation_is_read_as_infer_reads_the_file(server, tmp_path):
    base, _ = server
    data = jpeg_with_orientation(cv2.resize(marked(), (64, 48), interpolation=cv2.INTER_NEAREST), 6)
    path = tmp_path / "portrait.jpg"
    path.write_bytes(data)
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    np.testing.assert_array_equal(decode_data_url(url, "photo"), read_image(path))  # one reader for both
    status, result = _post(base + "/api/matte", {"photo": url, "plate": url})
    assert status == 200 and result["size"] == [48, 64] and _decode(result["alpha"]).shape == (64, 48)


@pytest.mark.parametrize("option, value, expected", [
    ("--port", "70000", r"argument --port: must be in 0\.\.65535, got 70000"),
    ("--port", "http", r"argument --port: expected an integer, got 'http'"),
    ("--workers", "0", r"argument --workers: must be in 1\.\.256, got 0"),
    ("--timeout", "-1", r"argument --timeout: must be in 0\.1\.\.3600, got -1"),
])
def test_the_command_refuses_bad_options_with_one_line(tmp_path, capsys, option, value, expected):
    from bad_input import assert_refused, files_under, run_argparse_main

    before = files_under(tmp_path)
    code = run_argparse_main(demo_main, ["--checkpoint", str(tmp_path / "none.pt"), option, value])
    assert_refused(code, capsys.readouterr().err, expected, tmp_path, before, argparse_usage=True)


def test_the_command_names_a_port_it_cannot_listen_on(app, tmp_path, capsys, monkeypatch):
    import bgmatting.demo.__main__ as command
    from bad_input import assert_refused, files_under

    monkeypatch.setattr(command, "demo_app", lambda *args, **kwargs: app)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = files_under(tmp_path)
        code = command.main(["--checkpoint", "x.pt", "--port", str(port)])
    assert_refused(code, capsys.readouterr().err, rf"^demo: error: 127\.0\.0\.1:{port}: cannot listen there: ",
                   tmp_path, before)
