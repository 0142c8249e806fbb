"""The sandbox HR system: its JSON API, its HR admin pages, its `sandbox_key` command, and the
`sandbox` adapter talking to it over real HTTP."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from integrations.models import Role
from integrations.providers import Outcome, get_provider
from integrations.providers.base import ModelPermissionDenied
from sandbox.models import SandboxApiKey, SandboxCompany, SandboxEmployee

from .factories import MembershipFactory, SandboxCompanyFactory, SandboxEmployeeFactory, UserFactory

RAW_KEY_RE = re.compile(r"sbx_[A-Za-z0-9_\-]{20,}")


@pytest.fixture
def company(db):
    return SandboxCompanyFactory(name="Initech HR")


@pytest.fixture
def hr_admin(db, client, company):
    """An editor of the company's environment: the HR admin pages are its members' (test_sandbox_tenancy.py)."""
    user = UserFactory(email="hr@initech.test")
    MembershipFactory(environment=company.environment, user=user, role=Role.EDITOR)
    client.force_login(user)
    return user


def _api(client, path: str, raw: str | None = None):
    headers = {"Authorization": f"Bearer {raw}"} if raw is not None else {}
    return client.get(f"/sandbox/api/v1/{path}", headers=headers)


def _last_line(out: StringIO) -> str:
    return out.getvalue().strip().splitlines()[-1].strip()


# --- JSON API ------------------------------------------------------------------------------


def test_me_answers_with_the_company_of_a_valid_key(client, company):
    _, raw = company.create_key()
    response = _api(client, "me", raw)
    assert response.status_code == 200
    assert response.json()["data"]["company"] == "Initech HR"


def test_it_rejects_an_unknown_key(client, company):
    response = _api(client, "me", "sbx_this-key-does-not-exist")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_API_KEY"


def test_it_rejects_a_request_without_authorization_header(client, company):
    company.create_key()
    response = _api(client, "me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_API_KEY"


def test_it_rejects_a_non_bearer_authorization_header(client, company):
    _, raw = company.create_key()
    response = client.get("/sandbox/api/v1/me", headers={"Authorization": f"Basic {raw}"})
    assert response.status_code == 401


def test_it_rejects_a_revoked_key(client, company):
    key, raw = company.create_key()
    key.revoked_at = timezone.now()
    key.save()
    response = _api(client, "me", raw)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_API_KEY"


def test_a_key_revoked_on_the_hr_admin_page_stops_working(client, company, hr_admin):
    key, raw = company.create_key()
    assert _api(client, "me", raw).status_code == 200

    response = client.post(reverse("sandbox:revoke_key", args=[company.slug, key.pk]))
    assert response.status_code == 302

    key.refresh_from_db()
    assert key.revoked_at is not None
    assert _api(client, "me", raw).status_code == 401


def test_employees_lists_only_the_keys_company(client, company):
    SandboxEmployeeFactory(company=company, first_name="Milton", last_name="Waddams")
    SandboxEmployeeFactory(company=SandboxCompanyFactory(name="Globex HR"), first_name="Hank", last_name="Scorpio")
    _, raw = company.create_key()

    response = _api(client, "employees", raw)

    assert response.status_code == 200
    names = [(row["first_name"], row["last_name"]) for row in response.json()["data"]]
    assert names == [("Milton", "Waddams")]


def test_employees_include_salary_only_with_compensation_read(client, company):
    SandboxEmployeeFactory(company=company, salary=51234)
    _, with_comp = company.create_key(permissions=["employees:read", "compensation:read"])
    _, without_comp = company.create_key(permissions=["employees:read"])

    [row] = _api(client, "employees", with_comp).json()["data"]
    assert row["salary"] == 51234

    [row] = _api(client, "employees", without_comp).json()["data"]
    assert "salary" not in row
    assert "first_name" in row


def test_employees_page_like_personio_by_limit_and_offset_in_id_order(client, company):
    employees = SandboxEmployeeFactory.create_batch(5, company=company)
    SandboxEmployeeFactory.create_batch(3, company=SandboxCompanyFactory(name="Globex HR"))  # never listed here
    _, raw = company.create_key()
    ids = sorted(e.pk for e in employees)

    pages = [_api(client, f"employees?limit=2&offset={offset}", raw).json() for offset in (0, 2, 4)]

    assert [[int(row["id"]) for row in page["data"]] for page in pages] == [ids[:2], ids[2:4], ids[4:]]
    assert [page["metadata"] for page in pages] == [
        {"total_elements": 5, "current_page": n, "total_pages": 3} for n in range(3)
    ]
    assert [(page["offset"], page["limit"]) for page in pages] == [(0, 2), (2, 2), (4, 2)]
    assert _api(client, "employees?offset=5", raw).json()["data"] == []


def test_employees_default_to_50_a_page_and_refuse_more_than_100(client, company):
    SandboxEmployeeFactory.create_batch(51, company=company)
    _, raw = company.create_key()

    first = _api(client, "employees", raw).json()
    assert (len(first["data"]), first["limit"], first["metadata"]["total_elements"]) == (50, 50, 51)
    for bad in ("limit=101", "limit=0", "limit=x", "offset=-1", "updated_after=yesterday"):
        response = _api(client, f"employees?{bad}", raw)
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "INVALID_PARAMETER"
    assert _api(client, "employees?limit=100", raw).status_code == 200


def test_employees_updated_after_returns_only_the_records_changed_since(client, company):
    old, changed = SandboxEmployeeFactory.create_batch(2, company=company)
    day_ago = timezone.now() - timedelta(days=1)
    SandboxEmployee.objects.filter(pk=old.pk).update(updated_at=day_ago)
    changed.first_name = "Changed"
    changed.save()  # updated_at: now
    _, raw = company.create_key()
    since = (timezone.now() - timedelta(hours=1)).isoformat()

    page = client.get("/sandbox/api/v1/employees", {"updated_after": since}, headers={"Authorization": f"Bearer {raw}"})

    assert [row["id"] for row in page.json()["data"]] == [str(changed.pk)]
    assert page.json()["metadata"]["total_elements"] == 1
    naive = (timezone.now() - timedelta(hours=1)).replace(tzinfo=None).isoformat()  # read as UTC
    assert len(_api(client, f"employees?updated_after={naive}", raw).json()["data"]) == 1


def test_absences_page_too(client, company):
    _, raw = company.create_key()
    body = _api(client, "absences?limit=10&offset=0", raw).json()
    assert body["data"] == [] and body["metadata"]["total_elements"] == 0
    assert _api(client, "absences?limit=500", raw).status_code == 400


def test_employees_need_employees_read(client, company):
    SandboxEmployeeFactory(company=company)
    _, raw = company.create_key(permissions=["absences:read", "compensation:read"])

    response = _api(client, "employees", raw)

    assert response.status_code == 403
    assert response.json()["error"]["required_permission"] == "employees:read"
    assert "data" not in response.json()


def test_absences_need_absences_read(client, company):
    _, without = company.create_key(permissions=["employees:read"])
    _, with_perm = company.create_key(permissions=["absences:read"])

    response = _api(client, "absences", without)
    assert response.status_code == 403
    assert response.json()["error"]["required_permission"] == "absences:read"

    assert _api(client, "absences", with_perm).status_code == 200


# --- HR admin pages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "method", "args"),
    [
        ("sandbox:companies", "get", []),
        ("sandbox:company", "get", ["SLUG"]),
        ("sandbox:create_key", "post", ["SLUG"]),
        ("sandbox:revoke_key", "post", ["SLUG", "KEY"]),
    ],
)
def test_hr_admin_pages_require_login(client, company, name, method, args):
    key, _ = company.create_key()
    url = reverse(name, args=[{"SLUG": company.slug, "KEY": key.pk}[a] for a in args])

    response = getattr(client, method)(url, {"permissions": ["employees:read"]} if method == "post" else None)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    # Nothing happened on the anonymous user's behalf.
    assert SandboxApiKey.objects.count() == 1
    key.refresh_from_db()
    assert key.revoked_at is None


def test_company_page_lists_keys_by_prefix_but_never_the_raw_key(client, company, hr_admin):
    key, raw = company.create_key(label="Relink prod")

    response = client.get(reverse("sandbox:company", args=[company.slug]))

    assert response.status_code == 200
    body = response.content.decode()
    assert key.prefix in body
    assert "Relink prod" in body
    assert raw not in body
    assert key.key_hash not in body
    assert not RAW_KEY_RE.search(body)


def test_a_new_key_is_shown_once_right_after_creation(client, company, hr_admin):
    url = reverse("sandbox:company", args=[company.slug])

    response = client.post(
        reverse("sandbox:create_key", args=[company.slug]),
        {"label": "Relink", "permissions": ["employees:read", "absences:read"]},
        follow=True,
    )

    assert response.redirect_chain == [(url, 302)]
    body = response.content.decode()
    match = RAW_KEY_RE.search(body)
    assert match, "the new raw key is shown after creation"
    raw = match.group(0)
    key = SandboxApiKey.objects.find_active(raw)
    assert key is not None and key.company == company
    assert key.label == "Relink"
    assert sorted(key.permissions) == ["absences:read", "employees:read"]
    assert key.prefix in body

    # Reloading the page no longer shows it, and the session no longer holds it.
    reloaded = client.get(url).content.decode()
    assert raw not in reloaded
    assert not RAW_KEY_RE.search(reloaded)
    assert key.prefix in reloaded
    assert raw not in str(dict(client.session.items()))


def test_creating_a_key_without_permissions_is_refused(client, company, hr_admin):
    response = client.post(reverse("sandbox:create_key", args=[company.slug]), {"label": "nothing"}, follow=True)

    assert response.status_code == 200
    assert "Choose at least one permission" in response.content.decode()
    assert not RAW_KEY_RE.search(response.content.decode())
    assert SandboxApiKey.objects.count() == 0


def test_creating_a_key_with_only_unknown_permissions_is_refused(client, company, hr_admin):
    response = client.post(
        reverse("sandbox:create_key", args=[company.slug]), {"permissions": ["admin:all"]}, follow=True
    )

    assert "Choose at least one permission" in response.content.decode()
    assert SandboxApiKey.objects.count() == 0


def test_revoking_a_key_requires_post(client, company, hr_admin):
    key, raw = company.create_key()

    response = client.get(reverse("sandbox:revoke_key", args=[company.slug, key.pk]))

    assert response.status_code == 405
    key.refresh_from_db()
    assert key.revoked_at is None
    assert _api(client, "me", raw).status_code == 200


def test_a_key_cannot_be_revoked_through_another_companys_page(client, company, hr_admin):
    other = SandboxCompanyFactory(name="Globex HR", environment=company.environment)
    key, _ = company.create_key()

    response = client.post(reverse("sandbox:revoke_key", args=[other.slug, key.pk]))

    assert response.status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_companies_page_counts_only_active_keys(client, company, hr_admin):
    SandboxEmployeeFactory.create_batch(2, company=company)
    company.create_key()
    revoked, _ = company.create_key()
    revoked.revoked_at = timezone.now()
    revoked.save()

    body = client.get(reverse("sandbox:companies")).content.decode()

    row = re.search(r"<tr><td><a [^>]*>Initech HR</a></td>(.*?)</tr>", body)
    assert row, body
    assert re.findall(r"<td>\s*(\d+)\s*</td>", row.group(1)) == ["2", "1"]


# --- sandbox_key command -------------------------------------------------------------------


def test_sandbox_key_prints_a_working_key_on_its_last_line(client, company):
    out = StringIO()
    call_command("sandbox_key", company="Initech HR", stdout=out)

    raw = _last_line(out)
    assert raw.startswith("sbx_")
    response = _api(client, "me", raw)
    assert response.status_code == 200
    assert response.json()["data"]["company"] == "Initech HR"


def test_sandbox_key_finds_the_company_by_slug(client, company):
    out = StringIO()
    call_command("sandbox_key", company=company.slug, stdout=out)

    assert _api(client, "me", _last_line(out)).json()["data"]["company"] == "Initech HR"


def test_sandbox_key_create_makes_the_company(client, db):
    out = StringIO()
    call_command("sandbox_key", company="Brand New HR", create=True, stdout=out)

    created = SandboxCompany.objects.get(name="Brand New HR")
    assert created.api_keys.count() == 1
    assert _api(client, "me", _last_line(out)).json()["data"]["company"] == "Brand New HR"


def test_sandbox_key_refuses_an_unknown_company_without_create(db):
    with pytest.raises(CommandError, match="No sandbox company"):
        call_command("sandbox_key", company="Nobody HR", stdout=StringIO())
    assert not SandboxCompany.objects.exists()
    assert not SandboxApiKey.objects.exists()


# --- The `sandbox` adapter over real HTTP ---------------------------------------------------


@pytest.fixture
def sandbox_over_http(live_server, settings):
    settings.BASE_URL = live_server.url
    return get_provider("sandbox")


@pytest.mark.django_db(transaction=True)
def test_adapter_check_auth_accepts_an_active_key(sandbox_over_http):
    _, raw = SandboxCompanyFactory().create_key()

    result = sandbox_over_http.check_auth({"api_key": raw})

    assert result.outcome is Outcome.OK
    assert result.http_status == 200


@pytest.mark.django_db(transaction=True)
def test_adapter_check_auth_reports_a_revoked_key_as_auth_failed(sandbox_over_http):
    key, raw = SandboxCompanyFactory().create_key()
    key.revoked_at = timezone.now()
    key.save()

    result = sandbox_over_http.check_auth({"api_key": raw})

    assert result.outcome is Outcome.AUTH_FAILED
    assert result.http_status == 401
    assert result.error_code == "INVALID_API_KEY"


@pytest.mark.django_db(transaction=True)
def test_adapter_fetch_returns_only_the_requested_fields_plus_id(sandbox_over_http):
    found = SandboxCompanyFactory()
    employee = SandboxEmployeeFactory(company=found, first_name="Ada", salary=91000)
    SandboxEmployeeFactory(company=SandboxCompanyFactory(), first_name="Someone else")
    _, raw = found.create_key()

    rows = sandbox_over_http.fetch("hris_employees", {"api_key": raw}, ["first_name", "salary"])

    assert rows == [{"id": str(employee.pk), "first_name": "Ada", "salary": 91000}]


@pytest.mark.django_db(transaction=True)
def test_adapter_fetch_without_employees_read_raises_model_permission_denied(sandbox_over_http):
    found = SandboxCompanyFactory()
    SandboxEmployeeFactory(company=found)
    _, raw = found.create_key(permissions=["absences:read"])

    with pytest.raises(ModelPermissionDenied) as excinfo:
        sandbox_over_http.fetch("hris_employees", {"api_key": raw}, ["first_name"])

    assert excinfo.value.model == "hris_employees"
    assert excinfo.value.permission == "employees:read"
    assert "hris_employees" in str(excinfo.value)


def test_adapter_check_auth_reports_a_closed_port_as_unavailable(settings):
    settings.BASE_URL = "http://127.0.0.1:9"

    result = get_provider("sandbox").check_auth({"api_key": "sbx_whatever"})

    assert result.outcome is Outcome.UNAVAILABLE
    assert result.http_status is None


def test_a_new_key_is_never_shown_on_another_companys_page(client, company, hr_admin):
    other = SandboxCompanyFactory(environment=company.environment)
    client.post(reverse("sandbox:create_key", args=[company.slug]), {"permissions": ["employees:read"]})
    other_page = client.get(reverse("sandbox:company", args=[other.slug]))
    assert 'id="new-key"' not in other_page.content.decode()
    own_page = client.get(reverse("sandbox:company", args=[company.slug]))
    assert 'id="new-key"' in own_page.content.decode()
    assert "no-store" in own_page["Cache-Control"] or "max-age=0" in own_page["Cache-Control"]
