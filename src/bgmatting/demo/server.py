"""The demo's HTTP transport: a standard-library server that serves connections concurrently on a bounded pool of
worker threads, with socket timeouts and a deadline for reading each request.

* ``limits.workers`` connections are served at once; up to ``limits.pending`` more wait for a worker; beyond that
  a connection is answered ``503`` at once and closed (one idle client cannot block the others, many cannot
  exhaust threads or memory).
* Every socket read and write times out after ``limits.timeout_s``; reading a whole request (line, headers and
  body) must end within ``limits.timeout_s`` too (a client trickling bytes is cut off). Timed-out connections are
  closed; a request cut off while its body is read is answered ``408`` where the socket still takes it.
* A connection that breaks (reset, closed early, timed out) is not an error of the server: nothing is logged.
  Any other exception in a handler is a bug and is logged with its traceback.
"""
from __future__ import annotations

import io
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


@dataclass(frozen=True)
class ServerLimits:
    """How much the server takes on: ``workers`` threads, ``pending`` queued connections, ``timeout_s`` per socket
    operation and per request read, ``max_body_bytes`` per request body (larger ones: 413)."""

    workers: int = 8
    pending: int = 32
    timeout_s: float = 20.0
    max_body_bytes: int = 64 * 2**20

    def __post_init__(self) -> None:
        if self.workers < 1 or self.pending < 0 or not self.timeout_s > 0 or self.max_body_bytes < 1:
            raise ValueError(f"server limits must be positive (pending >= 0), got {self}")


class DeadlineReader(io.RawIOBase):
    """A socket's incoming bytes that stop at a deadline: each read waits at most until ``deadline``
    (``time.monotonic()`` seconds), then raises ``TimeoutError``."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not read within the time limit")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class LimitedHandler(BaseHTTPRequestHandler):
    """Reads the request through a :class:`DeadlineReader` (the server's ``limits.timeout_s``); the reply gets the
    full socket timeout again."""

    def setup(self) -> None:
        super().setup()
        limits: ServerLimits = self.server.limits
        self.rfile.close()  # the plain socket file, replaced by one with a deadline
        self.rfile = io.BufferedReader(DeadlineReader(self.connection, time.monotonic() + limits.timeout_s))

    def flush_headers(self) -> None:
        self.connection.settimeout(self.server.limits.timeout_s)  # not what the deadline left of it
        super().flush_headers()


class PooledHTTPServer(HTTPServer):
    """An HTTPServer whose connections are handled on a pool of ``limits.workers`` threads (see the module)."""

    def __init__(self, address: tuple[str, int], handler: type[LimitedHandler], limits: ServerLimits) -> None:
        self.limits = limits
        self.pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="demo-worker")
        self.slots = threading.BoundedSemaphore(limits.workers + limits.pending)
        super().__init__(address, handler)  # binds; closes the server (and the pool) when that fails

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        """Hand the connection to a worker, or answer 503 when every worker is busy and the queue is full."""
        request.settimeout(self.limits.timeout_s)
        if not self.slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            self.pool.submit(self._serve, request, client_address)
        except RuntimeError:  # the pool is shut down: the server is closing
            self.slots.release()
            self.shutdown_request(request)

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 (socketserver's contract: report, then close)
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self.slots.release()

    def _refuse(self, request: socket.socket) -> None:
        body = b'{"error": "the server is busy; try again"}'
        try:
            request.settimeout(1.0)
            request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Broken connections are the client's business; anything else is a bug: its traceback on stderr."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # ConnectionError, TimeoutError, BrokenPipeError ...
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)
