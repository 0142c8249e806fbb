"""A small fake HTTP server that answers like a provider's documented API, for adapter tests.

A threaded `http.server` on 127.0.0.1 with an OS-chosen port. Each route (method + path) gets a
status, a JSON body (or a fixture file under tests/fixtures/providers/), optional headers and an
optional delay before answering (to trigger client timeouts), or a function choosing the answer
from the request (`respond`: e.g. one fake tool serving two companies, told apart by credentials).
Every request received is recorded with its method, path, query, headers, body and the client's
port (requests sharing a port came over one kept-alive connection) so tests can assert the exact
outbound request. Unrouted requests answer 404. `pages` serves a list the way Personio pages it.

Use the `fake_hr` fixture (import it into the test module) or `FakeHRServer` as a context manager.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "providers"


def load_fixture(tool: str, name: str) -> Any:
    """The JSON payload stored at tests/fixtures/providers/<tool>/<name>.json."""
    return json.loads((FIXTURES / tool / f"{name}.json").read_text())


@dataclass
class Route:
    status: int = 200
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    client_port: int = 0  # the client's end of the TCP connection the request came over

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is expected here: stay quiet."""


Responder = Callable[[RecordedRequest], Route]


class FakeHRServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Route]] = {}
        self.requests: list[RecordedRequest] = []
        self._responders: dict[tuple[str, str], Responder] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.005}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def route(
        self,
        method: str,
        path: str,
        status: int = 200,
        json: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer `method path` (path without query string) with this status, body and delay."""
        self.sequence(method, path, Route(status, json, dict(headers or {}), delay))

    def sequence(self, method: str, path: str, *routes: Route) -> None:
        """Answer successive requests with these routes in turn; the last one keeps answering
        (in place of a `respond` function for the same route)."""
        self._responders.pop((method.upper(), path), None)
        self.routes[(method.upper(), path)] = list(routes)

    def respond(self, method: str, path: str, responder: Responder) -> None:
        """Answer `method path` with whatever `responder` makes of each request."""
        self._responders[(method.upper(), path)] = responder

    def pages(
        self,
        method: str,
        path: str,
        items: list[Any],
        *,
        numbered: bool = False,
        default_limit: int = 50,
        max_limit: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Responder:
        """Answer `method path` with `items` a page at a time, as Personio's lists page
        (https://developer.personio.de/docs/pagination-adoption-guide-for-v1-get-employees-endpoint):
        `limit` items (`default_limit` when absent; above `max_limit` a 400) from `offset`, the first
        item — or, `numbered`, the page number (Personio's time-offs) — with a `metadata` block
        (`total_elements`, `current_page`, `total_pages`). Returns the responder, for a test to
        wrap (e.g. to fail from the second page on)."""

        def answer(request: RecordedRequest) -> Route:
            try:
                limit = int(request.query.get("limit", [str(default_limit)])[0])
                offset = int(request.query.get("offset", ["0"])[0])
            except ValueError:
                return Route(400, {"success": False, "error": {"code": 400, "message": "bad paging"}})
            if not 1 <= limit <= max_limit or offset < 0:
                return Route(400, {"success": False, "error": {"code": 400, "message": "bad paging"}})
            first = offset * limit if numbered else offset
            metadata = {
                "total_elements": len(items),
                "current_page": offset if numbered else offset // limit,
                "total_pages": -(-len(items) // limit),
            }
            body = {"success": True, "metadata": metadata, "offset": offset, "limit": limit}
            return Route(json={**body, "data": items[first : first + limit]}, headers=dict(headers or {}))

        self.respond(method, path, answer)
        return answer

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def start(self) -> FakeHRServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeHRServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    client_port=self.client_address[1],
                )
                with fake._lock:
                    fake.requests.append(recorded)
                    responder = fake._responders.get((self.command, parts.path))
                    queue = fake.routes.get((self.command, parts.path)) or [Route(404, {"error": "no such route"})]
                    route = queue.pop(0) if len(queue) > 1 else queue[0]
                if responder is not None:
                    route = responder(recorded)
                if route.delay:
                    time.sleep(route.delay)
                payload = b"" if route.json is None else json.dumps(route.json).encode()
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in route.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def closed_port_url() -> str:
    """A local URL nothing listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(name="fake_hr")
def fake_hr_fixture():
    with FakeHRServer() as server:
        yield server
