"""Shared fixtures: named personas for access tests, and markers for real services."""

from __future__ import annotations

import os

import pytest
from django.db import connection

from integrations.lib.http import close_shared_client
from integrations.models import Role

from . import factories


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    if os.environ.get("RELINK_REQUIRE_SERVICES"):
        # CI must exercise the real services: refuse to fall back to SQLite or the embedded broker.
        if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql") or not settings.REDIS_URL:
            raise pytest.UsageError(
                "RELINK_REQUIRE_SERVICES is set but DATABASE_URL/REDIS_URL are not PostgreSQL/Redis"
            )
    for item in items:
        if "postgres" in item.keywords and not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://..."))
        if "redis" in item.keywords and not settings.REDIS_URL:
            item.add_marker(pytest.mark.skip(reason="needs Redis: set REDIS_URL=redis://..."))


@pytest.fixture
def environment(db):
    return factories.EnvironmentFactory(slug="acme", name="Acme production")


@pytest.fixture
def other_environment(db):
    return factories.EnvironmentFactory(slug="globex", name="Globex production")


@pytest.fixture
def owner(environment):
    return factories.member(environment, Role.OWNER, "owner@acme.test")


@pytest.fixture
def editor(environment):
    return factories.member(environment, Role.EDITOR, "editor@acme.test")


@pytest.fixture
def viewer(environment):
    return factories.member(environment, Role.VIEWER, "viewer@acme.test")


@pytest.fixture
def outsider(other_environment):
    """An owner of another environment: must see nothing of `environment`."""
    return factories.member(other_environment, Role.OWNER, "owner@globex.test")


@pytest.fixture
def superuser(db):
    from integrations.models import User

    return User.objects.create_superuser("admin@relink.test", "password")


@pytest.fixture
def is_postgres():
    return connection.vendor == "postgresql"


@pytest.fixture(autouse=True)
def _no_pooled_provider_connections():
    """Provider calls share one pooled client per process (integrations/lib/http.py). Closed after
    each test, so no test reuses another's connection, and no kept-alive connection holds a live
    server's request thread (and that thread's database connection) open after its test."""
    yield
    close_shared_client()


@pytest.fixture(autouse=True)
def _clear_cache():
    """Each test starts with an empty cache (rate-limit windows, cached list counts)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


class Broker:
    """Stands in at the outbox's one publishing choke point: records (task name, args) instead of
    running them, and with `down` set refuses like kombu does when Redis is unreachable."""

    def __init__(self) -> None:
        self.down = False
        self.sent: list[tuple[str, tuple]] = []

    def __call__(self, task: str, args) -> None:
        from kombu.exceptions import OperationalError

        if self.down:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")
        self.sent.append((task, tuple(args)))


@pytest.fixture
def broker(monkeypatch) -> Broker:
    from integrations import outbox

    fake = Broker()
    monkeypatch.setattr(outbox, "publish", fake)
    return fake


@pytest.fixture
def published(broker) -> list[tuple[str, tuple]]:
    """What reached the broker (task name, args), instead of running it."""
    return broker.sent


@pytest.fixture
def smtp(settings):
    """A real SMTP server of the test's own (aiosmtpd, 127.0.0.1, free port) with Django's SMTP
    backend pointed at it: `smtp.messages`, `smtp.wait_for(address)`, `smtp.text(message)`."""
    from .smtp import SmtpServer

    server = SmtpServer()
    server.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    try:
        yield server.inbox
    finally:
        server.stop()
