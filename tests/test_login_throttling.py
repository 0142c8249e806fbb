"""Login throttling (django-axes): per account and per client address, with a clear page and an
admin unlock; and the dashboard's Content-Security-Policy."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse

from . import factories

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery"


@pytest.fixture
def account():
    user = factories.UserFactory(email="ops@example.com")
    user.set_password(PASSWORD)
    user.save()
    return user


def _sign_in(client: Client, email: str, password: str, ip: str = "203.0.113.7"):
    return client.post(reverse("login"), {"username": email, "password": password}, REMOTE_ADDR=ip)


def test_wrong_passwords_lock_the_account_even_for_the_right_one_then_an_admin_unlocks_it(account, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _sign_in(client, "ops@example.com", "wrong").status_code == 200  # the form again
    locked = _sign_in(client, "OPS@example.com ", "wrong")  # same account, however it is typed
    assert locked.status_code == 429
    assert "Too many sign-in attempts" in locked.content.decode() and "15 minutes" in locked.content.decode()
    # The right password from another address: the account itself is locked.
    assert _sign_in(Client(), "ops@example.com", PASSWORD, ip="198.51.100.9").status_code == 429

    AccessAttempt.objects.filter(username="ops@example.com").delete()  # the admin's unlock
    response = _sign_in(Client(), "ops@example.com", PASSWORD, ip="198.51.100.9")
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:home")


def test_one_address_trying_many_accounts_is_locked(account, settings):
    client = Client()
    for n in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(client, f"guess{n}@example.com", "wrong")
    assert _sign_in(client, "ops@example.com", PASSWORD).status_code == 429
    assert _sign_in(Client(), "ops@example.com", PASSWORD, ip="198.51.100.20").status_code == 302


def test_the_admin_sign_in_is_throttled_too(account, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "ops@example.com", "password": "wrong"}, REMOTE_ADDR="203.0.113.8")
    assert AccessAttempt.objects.get(username="ops@example.com").failures_since_start == settings.AXES_FAILURE_LIMIT


def test_locked_out_accounts_are_listed_in_the_admin_for_unlocking(account, superuser, settings, client):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(Client(), "ops@example.com", "wrong")
    client.force_login(superuser)
    page = client.get("/admin/axes/accessattempt/")
    assert page.status_code == 200 and "ops@example.com" in page.content.decode()


def test_dashboard_and_admin_pages_carry_a_same_origin_csp(client, owner, environment):
    client.force_login(owner)
    for path in (reverse("dashboard:integrations", kwargs={"env": environment.slug}), "/admin/", "/login/"):
        policy = client.get(path, follow=True)["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
