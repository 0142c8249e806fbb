"""Provider calls share one HTTP client per process (integrations/lib/http.py): connections are
pooled and kept alive, nothing of one call (cookies) leaks into the next, and a forked child
(Celery's prefork pool) never uses its parent's client."""

from __future__ import annotations

import os

import httpx
import pytest

from integrations.lib import http
from integrations.lib.http import RequestNotEncodable, provider_client

from .fake_hr import FakeHRServer, fake_hr_fixture  # noqa: F401


def test_every_call_borrows_the_same_client_and_leaving_the_block_keeps_it_open():
    with provider_client() as first:
        pass
    with provider_client() as second:
        assert second is first
    assert not first.is_closed
    assert http.shared_client() is first


def test_requests_reuse_one_kept_alive_connection(fake_hr: FakeHRServer):
    fake_hr.route("GET", "/ping", json={"ok": True})
    for _ in range(3):
        with provider_client() as client:
            assert client.get(f"{fake_hr.url}/ping").status_code == 200

    ports = {r.client_port for r in fake_hr.requests}
    assert len(fake_hr.requests) == 3 and len(ports) == 1  # one TCP connection for all three


def test_no_cookie_is_kept_between_calls(fake_hr: FakeHRServer):
    """One customer's session cookie must never ride along on another customer's call to the same tool."""
    fake_hr.route("GET", "/login", json={}, headers={"Set-Cookie": "session=customer-a; Path=/"})
    fake_hr.route("GET", "/data", json={})
    with provider_client() as client:
        client.get(f"{fake_hr.url}/login")
        client.get(f"{fake_hr.url}/data")

    assert "cookie" not in fake_hr.requests_to("/data")[0].headers


def test_the_timeout_setting_is_read_at_every_request(fake_hr: FakeHRServer, settings):
    fake_hr.route("GET", "/slow", json={}, delay=0.5)
    with provider_client() as client:
        settings.PROVIDER_HTTP_TIMEOUT = 0.1
        with pytest.raises(httpx.TimeoutException):
            client.get(f"{fake_hr.url}/slow")
        settings.PROVIDER_HTTP_TIMEOUT = 5
        assert client.get(f"{fake_hr.url}/slow").status_code == 200


def test_a_header_http_cannot_carry_raises_request_not_encodable(fake_hr: FakeHRServer):
    with provider_client() as client, pytest.raises(RequestNotEncodable) as raised:
        client.get(f"{fake_hr.url}/data", headers={"Authorization": "Bearer clé-secrète"})
    assert "clé" not in str(raised.value)
    assert fake_hr.requests == []


def test_a_forked_child_builds_its_own_client_and_leaves_the_parents_open(fake_hr: FakeHRServer):
    fake_hr.route("GET", "/ping", json={"ok": True})
    parent = http.shared_client()
    parent.get(f"{fake_hr.url}/ping")  # a pooled connection the child must not use
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        try:
            child = http.shared_client()
            ok = child is not parent and not child.is_closed and child.get(f"{fake_hr.url}/ping").status_code == 200
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)

    assert http.shared_client() is parent and not parent.is_closed
    assert parent.get(f"{fake_hr.url}/ping").status_code == 200
    ports = [r.client_port for r in fake_hr.requests]
    assert ports[0] == ports[2] != ports[1]  # the child opened a connection of its own


def test_a_closed_client_is_rebuilt_on_next_use():
    first = http.shared_client()
    http.close_shared_client()
    assert first.is_closed
    assert http.shared_client() is not first


def test_a_client_with_its_own_transport_is_closed_by_its_block():
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    with provider_client(transport=transport) as client:
        assert client.get("https://provider.test/").status_code == 204
        assert client is not http.shared_client()
    assert client.is_closed
