"""Tenancy of the sandbox's HR admin pages: a sandbox company belongs to an environment.

Members of its environment see it; editors and owners also create and revoke its keys and
connected apps; staff see and manage every company. Everyone else gets a 404 (never a 403, so
another environment's company is not even confirmed to exist); a member below editor gets 403,
as on the dashboard. A new key is shown once, after a redirect (Post/Redirect/Get).

Each test pairs what is allowed with what is refused, so it fails if the rule is removed.
"""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.template.defaultfilters import date as date_filter
from django.urls import reverse
from django.utils.timezone import localtime

from integrations.lib import crypto
from integrations.lib.tokens import hash_secret
from integrations.models import Role
from sandbox.models import SandboxApiKey, SandboxCompany, SandboxOAuthClient, SandboxOAuthGrant

from . import factories
from .pages import without_csrf

RAW_KEY_RE = re.compile(r"sbx_[A-Za-z0-9_\-]{20,}")
ACME_COMPANY = "Acme Payroll Corp"
GLOBEX_COMPANY = "Globex Staffing Corp"


@pytest.fixture
def acme_company(environment) -> SandboxCompany:
    return factories.SandboxCompanyFactory(name=ACME_COMPANY, environment=environment)


@pytest.fixture
def globex_company(other_environment) -> SandboxCompany:
    return factories.SandboxCompanyFactory(name=GLOBEX_COMPANY, environment=other_environment)


@pytest.fixture
def acme_key(acme_company) -> SandboxApiKey:
    key, _ = acme_company.create_key(label="Relink")
    return key


@pytest.fixture
def acme_grant(acme_company) -> SandboxOAuthGrant:
    grant, _ = SandboxOAuthGrant.create_with_refresh_token(
        acme_company, SandboxOAuthClient.ensure_default(), ["employees:read"]
    )
    return grant


@pytest.fixture
def globex_viewer(other_environment):
    """A viewer of environment B (Globex): must not even learn that Acme's company exists."""
    return factories.member(other_environment, Role.VIEWER, "viewer@globex.test")


@pytest.fixture
def globex_editor(other_environment):
    return factories.member(other_environment, Role.EDITOR, "editor@globex.test")


@pytest.fixture
def staff(db):
    """An admin (is_staff) with no membership anywhere."""
    return factories.UserFactory(email="staff@relink.test", is_staff=True)


def _state() -> dict:
    """Everything the HR admin pages can change."""
    return {
        "keys": set(SandboxApiKey.objects.values_list("pk", "company_id", "revoked_at")),
        "grants": set(SandboxOAuthGrant.objects.values_list("pk", "company_id", "revoked_at")),
        "companies": set(SandboxCompany.objects.values_list("pk", "name", "environment_id")),
    }


def _requests(company: SandboxCompany, key: SandboxApiKey, grant: SandboxOAuthGrant) -> list[tuple[str, str, dict]]:
    """(method, URL, data) of every HR admin page of one company."""
    return [
        ("get", reverse("sandbox:company", args=[company.slug]), {}),
        ("post", reverse("sandbox:create_key", args=[company.slug]), {"permissions": ["employees:read"]}),
        ("post", reverse("sandbox:revoke_key", args=[company.slug, key.pk]), {}),
        ("post", reverse("sandbox:revoke_grant", args=[company.slug, grant.pk]), {}),
    ]


def _new_key(client, company: SandboxCompany) -> str:
    """Create a key on the company page as the signed-in user; the raw key the page shows once."""
    response = client.post(
        reverse("sandbox:create_key", args=[company.slug]), {"permissions": ["employees:read"]}, follow=True
    )
    assert response.status_code == 200
    match = RAW_KEY_RE.search(response.content.decode())
    assert match, "the new key is shown after creating it"
    return match.group(0)


# --- Another environment's company: 404, nothing changes ------------------------------------


def test_a_viewer_of_another_environment_can_neither_see_nor_mint_nor_revoke(
    client, acme_company, acme_key, acme_grant, globex_viewer
):
    client.force_login(globex_viewer)
    before = _state()

    for method, url, data in _requests(acme_company, acme_key, acme_grant):
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (method, url)
        assert ACME_COMPANY not in response.content.decode(), url

    assert _state() == before
    assert ACME_COMPANY not in client.get(reverse("sandbox:companies")).content.decode()


def test_an_editor_of_another_environment_cannot_reach_a_key_or_grant_through_their_own_company(
    client, globex_company, acme_key, acme_grant, globex_editor
):
    """Guessed ids: another company's key or grant, through a page the user may manage, is a 404."""
    client.force_login(globex_editor)
    before = _state()

    revoke_key = client.post(reverse("sandbox:revoke_key", args=[globex_company.slug, acme_key.pk]))
    revoke_grant = client.post(reverse("sandbox:revoke_grant", args=[globex_company.slug, acme_grant.pk]))

    assert (revoke_key.status_code, revoke_grant.status_code) == (404, 404)
    assert _state() == before
    # The page itself is theirs to manage.
    assert client.get(reverse("sandbox:company", args=[globex_company.slug])).status_code == 200


def test_an_unknown_company_and_another_environments_company_answer_alike(client, acme_company, globex_viewer):
    client.force_login(globex_viewer)

    hidden = client.get(reverse("sandbox:company", args=[acme_company.slug]))
    missing = client.get(reverse("sandbox:company", args=["no-such-company"]))

    assert hidden.status_code == missing.status_code == 404
    assert without_csrf(hidden).replace(acme_company.slug, "") == without_csrf(missing).replace("no-such-company", "")


def test_the_list_shows_only_the_companies_of_the_users_environments(
    client, acme_company, globex_company, viewer, globex_viewer, staff
):
    orphan = factories.SandboxCompanyFactory(name="Orphaned Legacy Corp", environment=None)
    nobody = factories.UserFactory(email="nobody@example.test")
    companies = reverse("sandbox:companies")
    names = (ACME_COMPANY, GLOBEX_COMPANY, orphan.name)

    def listed(user) -> list[str]:
        client.force_login(user)
        body = client.get(companies).content.decode()
        return [name for name in names if name in body]

    assert listed(viewer) == [ACME_COMPANY]
    assert listed(globex_viewer) == [GLOBEX_COMPANY]
    assert listed(nobody) == []
    assert listed(staff) == [ACME_COMPANY, GLOBEX_COMPANY, orphan.name]


# --- Members of the company's environment ----------------------------------------------------


def test_an_editor_of_the_environment_can_mint_and_revoke(
    client, acme_company, acme_key, acme_grant, globex_company, editor
):
    client.force_login(editor)
    page = client.get(reverse("sandbox:company", args=[acme_company.slug]))
    assert page.status_code == 200
    assert reverse("sandbox:create_key", args=[acme_company.slug]) in page.content.decode()

    raw = _new_key(client, acme_company)
    revoked_key = client.post(reverse("sandbox:revoke_key", args=[acme_company.slug, acme_key.pk]))
    revoked_grant = client.post(reverse("sandbox:revoke_grant", args=[acme_company.slug, acme_grant.pk]))

    assert (revoked_key.status_code, revoked_grant.status_code) == (302, 302)
    minted = SandboxApiKey.objects.find_active(raw)
    assert minted is not None and minted.company == acme_company
    acme_key.refresh_from_db()
    acme_grant.refresh_from_db()
    assert acme_key.revoked_at is not None and acme_grant.revoked_at is not None
    # The same editor has no say over another environment's company.
    before = _state()
    assert client.post(reverse("sandbox:create_key", args=[globex_company.slug])).status_code == 404
    assert _state() == before


def test_a_viewer_of_the_environment_can_look_but_not_mint_or_revoke(
    client, acme_company, acme_key, acme_grant, viewer
):
    client.force_login(viewer)
    before = _state()

    page = client.get(reverse("sandbox:company", args=[acme_company.slug]))
    refused = {
        url: getattr(client, method)(url, data).status_code
        for method, url, data in _requests(acme_company, acme_key, acme_grant)[1:]
    }

    assert page.status_code == 200
    body = page.content.decode()
    assert ACME_COMPANY in body and f"{acme_key.prefix}…" in body
    assert 'id="read-only"' in body
    assert reverse("sandbox:create_key", args=[acme_company.slug]) not in body, "no form a viewer cannot use"
    assert reverse("sandbox:revoke_key", args=[acme_company.slug, acme_key.pk]) not in body
    assert set(refused.values()) == {403}, refused  # a member below the role: 403, as on the dashboard
    assert _state() == before


def test_staff_see_and_manage_every_company_members_of_none_do_not(client, acme_company, acme_key, staff):
    orphan = factories.SandboxCompanyFactory(name="Orphaned Legacy Corp", environment=None)
    client.force_login(staff)
    staff.is_staff = False
    staff.save(update_fields=["is_staff"])
    assert client.get(reverse("sandbox:company", args=[acme_company.slug])).status_code == 404
    assert client.get(reverse("sandbox:company", args=[orphan.slug])).status_code == 404

    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    assert client.get(reverse("sandbox:company", args=[acme_company.slug])).status_code == 200
    raw = _new_key(client, orphan)
    assert client.post(reverse("sandbox:revoke_key", args=[acme_company.slug, acme_key.pk])).status_code == 302

    assert SandboxApiKey.objects.find_active(raw).company == orphan
    acme_key.refresh_from_db()
    assert acme_key.revoked_at is not None


def test_a_company_without_environment_is_staff_only(client, acme_company, owner):
    orphan = factories.SandboxCompanyFactory(name="Orphaned Legacy Corp", environment=None)
    client.force_login(owner)

    assert client.get(reverse("sandbox:company", args=[acme_company.slug])).status_code == 200
    assert client.get(reverse("sandbox:company", args=[orphan.slug])).status_code == 404
    assert (
        client.post(reverse("sandbox:create_key", args=[orphan.slug]), {"permissions": ["employees:read"]}).status_code
        == 404
    )
    assert not orphan.api_keys.exists()


# --- Creating a company ----------------------------------------------------------------------


def test_an_editor_creates_a_company_in_their_environment_only(client, environment, other_environment, editor):
    client.force_login(editor)
    url = reverse("sandbox:create_company")

    created = client.post(url, {"name": "Initech Payroll", "environment": environment.slug})
    elsewhere = client.post(url, {"name": "Sneaky Corp", "environment": other_environment.slug})
    unknown = client.post(url, {"name": "Sneaky Corp", "environment": "no-such-env"})

    company = SandboxCompany.objects.get(name="Initech Payroll")
    assert company.environment == environment
    assert created.status_code == 302 and created["Location"] == reverse("sandbox:company", args=[company.slug])
    assert (elsewhere.status_code, unknown.status_code) == (404, 404)
    assert not SandboxCompany.objects.filter(name="Sneaky Corp").exists()
    form = client.get(reverse("sandbox:companies")).content.decode()
    assert f'value="{environment.slug}"' in form and f'value="{other_environment.slug}"' not in form


def test_a_viewer_cannot_create_a_company_staff_can_anywhere(client, environment, other_environment, viewer, staff):
    url = reverse("sandbox:create_company")
    client.force_login(viewer)
    assert client.post(url, {"name": "Viewer Corp", "environment": environment.slug}).status_code == 403
    assert 'id="new-company"' not in client.get(reverse("sandbox:companies")).content.decode()

    client.force_login(staff)
    assert client.post(url, {"name": "Staff Corp", "environment": other_environment.slug}).status_code == 302

    assert not SandboxCompany.objects.filter(name="Viewer Corp").exists()
    assert SandboxCompany.objects.get(name="Staff Corp").environment == other_environment


def test_a_taken_name_is_refused_without_saying_whose_it_is(client, environment, globex_company, editor):
    client.force_login(editor)

    response = client.post(
        reverse("sandbox:create_company"), {"name": GLOBEX_COMPANY, "environment": environment.slug}, follow=True
    )

    body = response.content.decode()
    assert "That name is not available" in body
    assert "Globex production" not in body
    assert SandboxCompany.objects.get(name=GLOBEX_COMPANY).environment == globex_company.environment


# --- A new key: shown once, after a redirect -------------------------------------------------


def test_a_refresh_after_minting_does_not_create_a_second_key(client, acme_company, editor):
    client.force_login(editor)
    page = reverse("sandbox:company", args=[acme_company.slug])

    created = client.post(reverse("sandbox:create_key", args=[acme_company.slug]), {"permissions": ["employees:read"]})

    # Post/Redirect/Get: the POST answers with a redirect, never with the key itself...
    assert created.status_code == 302 and created["Location"] == page
    assert not RAW_KEY_RE.search(created.content.decode())
    # ...so the browser's refresh repeats the GET, which mints nothing.
    for _ in range(2):
        assert client.get(page).status_code == 200
    assert acme_company.api_keys.count() == 1


def test_the_key_appears_in_full_only_once(client, acme_company, editor):
    client.force_login(editor)
    client.post(reverse("sandbox:create_key", args=[acme_company.slug]), {"permissions": ["employees:read"]})
    key = acme_company.api_keys.get()
    # Waiting in the session for its one display, it is encrypted like every stored secret.
    session = str(dict(client.session.items()))
    assert "sbx_" not in session

    pages = [client.get(reverse("sandbox:company", args=[acme_company.slug])).content.decode() for _ in range(3)]
    pages.append(client.get(reverse("sandbox:companies")).content.decode())

    shown = [RAW_KEY_RE.findall(body) for body in pages]
    assert len(shown[0]) == 1 and SandboxApiKey.objects.find_active(shown[0][0]) == key
    assert shown[1:] == [[], [], []]
    # Listed afterwards by its prefix and creation date only.
    assert f"{key.prefix}…" in pages[1]
    assert date_filter(localtime(key.created_at), "j M Y H:i") in pages[1]
    assert shown[0][0] not in str(dict(client.session.items()))


# --- The migration's data step -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_each_company_the_environment_of_the_integrations_using_it():
    before, after = ("sandbox", "0002_oauth"), ("sandbox", "0003_sandboxcompany_environment")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    executor.loader.build_graph()
    leaves = [node for node in executor.loader.graph.leaf_nodes() if node[0] != "sandbox"]
    old = executor.loader.project_state([before, *leaves]).apps
    Environment = old.get_model("integrations", "Environment")
    Integration = old.get_model("integrations", "Integration")
    Company = old.get_model("sandbox", "SandboxCompany")
    ApiKey = old.get_model("sandbox", "SandboxApiKey")
    Client = old.get_model("sandbox", "SandboxOAuthClient")
    Grant = old.get_model("sandbox", "SandboxOAuthGrant")

    acme = Environment.objects.create(slug="acme", name="Acme production")
    globex = Environment.objects.create(slug="globex", name="Globex production")
    companies = {
        name: Company.objects.create(name=name, slug=name) for name in ("key", "revoked", "oauth", "shared", "unused")
    }
    oauth_client = Client.objects.create(client_id="relink", name="Relink")
    Grant.objects.create(company=companies["oauth"], client=oauth_client, refresh_token_hash=hash_secret("sbxrt_oauth"))
    for name, raw in (("key", "sbx_key"), ("revoked", "sbx_revoked"), ("shared", "sbx_shared")):
        ApiKey.objects.create(company=companies[name], prefix=raw[:10], key_hash=hash_secret(raw))
    ApiKey.objects.filter(key_hash=hash_secret("sbx_revoked")).update(revoked_at="2026-01-01T00:00:00Z")

    def integration(n: int, environment, tool: str, encrypted: str) -> None:
        Integration.objects.create(
            id=f"{tool}:{n}",
            environment=environment,
            tool=tool,
            category="HRIS",
            end_user_organization_name=f"Customer {n}",
            credentials_encrypted=encrypted,
        )

    integration(1, acme, "sandbox", crypto.encrypt_json({"api_key": "sbx_key"}))
    integration(2, acme, "sandbox", crypto.encrypt_json({"api_key": "sbx_revoked"}))
    integration(3, globex, "sandbox_oauth", crypto.encrypt_json({"refresh_token": "sbxrt_oauth", "access_token": "x"}))
    integration(4, acme, "sandbox", crypto.encrypt_json({"api_key": "sbx_shared"}))
    integration(5, globex, "sandbox", crypto.encrypt_json({"api_key": "sbx_shared"}))
    integration(6, globex, "sandbox", "not-a-fernet-token")  # unreadable: skipped, not fatal
    integration(7, globex, "personio", crypto.encrypt_json({"api_key": "sbx_key"}))  # not a sandbox tool

    executor = MigrationExecutor(connection)
    executor.migrate([after])
    try:
        owners = dict(SandboxCompany.objects.values_list("slug", "environment__slug"))
        assert owners == {"key": "acme", "revoked": "acme", "oauth": "globex", "shared": None, "unused": None}
    finally:  # back to the latest schema (later sandbox migrations), which the next tests expect
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


# --- The sandbox_key command -------------------------------------------------------------------


def test_sandbox_key_creates_the_company_in_the_given_environment_and_checks_an_existing_one(
    environment, globex_company
):
    call_command("sandbox_key", company="Initech Payroll", create=True, environment=environment.slug, stdout=StringIO())
    assert SandboxCompany.objects.get(name="Initech Payroll").environment == environment

    with pytest.raises(CommandError, match="does not belong"):
        call_command("sandbox_key", company=GLOBEX_COMPANY, environment=environment.slug, stdout=StringIO())
    with pytest.raises(CommandError, match="No environment"):
        call_command("sandbox_key", company="Other Payroll", create=True, environment="nope", stdout=StringIO())
    assert not globex_company.api_keys.exists()
    assert not SandboxCompany.objects.filter(name="Other Payroll").exists()
