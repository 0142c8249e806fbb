"""The reference's official Python SDK reads what Relink synced: real syncs of a Sandbox HR company
over HTTP, then `hris.get_employees` / `get_absences` paged with the SDK's own `next()`, every
answer parsed by the SDK's models."""

from __future__ import annotations

import io

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone
from kombo import Kombo, errors

from integrations import reads, syncs
from integrations.models import ApiKey, Environment, Integration, IntegrationState, SyncedRecord, SyncType
from sandbox.models import SandboxCompany, SandboxEmployee

from . import factories

pytestmark = pytest.mark.django_db(transaction=True)

FIELDS = ["first_name", "last_name", "email", "department", "salary"]


@pytest.fixture(autouse=True)
def _setup(monkeypatch, settings, live_server):
    cache.clear()
    settings.BASE_URL = live_server.url  # the sandbox's API is served by the live server
    settings.API_RATE_LIMIT_PER_MINUTE = 100_000
    monkeypatch.setattr(syncs, "_enqueue", lambda sync_ids, **kwargs: None)  # syncs run by hand here
    yield
    cache.clear()


@pytest.fixture
def environment():
    return factories.EnvironmentFactory(slug="acme")


def _connect(environment, company, fields=FIELDS):
    spec = {"hris_employees": {"availability": "ENABLED", "fields": dict.fromkeys(fields, "ENABLED")}}
    scope = factories.ScopeConfigFactory(environment=environment, spec=spec)
    _, raw = company.create_key()
    return factories.IntegrationFactory(environment=environment, scope_config=scope, credentials={"api_key": raw})


def _sync(integration, sync_type=SyncType.FULL):
    sync, _ = syncs.queue_sync(integration.pk, sync_type)
    done = syncs.run_sync(sync.pk)
    assert done.status == "SUCCEEDED", done.error_message
    return done


def _every_employee(client, page_size, **filters):
    """All pages, following the SDK's own `next()`; returns the employees and the page count."""
    employees, pages = [], 0
    page = client.hris.get_employees(page_size=page_size, **filters)
    while page is not None:
        pages += 1
        employees += page.result.data.results
        page = page.next()
    return employees, pages


def _client(environment, integration, live_server):
    return Kombo(
        api_key=ApiKey.create(environment, "SDK")[1], integration_id=integration.pk, server_url=live_server.url + "/v1"
    )


def test_the_sdk_pages_through_exactly_the_synced_employees(environment, live_server):
    company = SandboxCompany.objects.create(name="Initech")
    factories.SandboxEmployeeFactory.create_batch(57, company=company)
    integration = _connect(environment, company)
    _sync(integration)

    with _client(environment, integration, live_server) as client:
        employees, pages = _every_employee(client, page_size=10)

    assert pages == 6
    upstream = {str(e.pk): e for e in SandboxEmployee.objects.filter(company=company)}
    assert sorted(e.remote_id for e in employees) == sorted(upstream)
    assert len({e.id for e in employees}) == 57
    for employee in employees:
        source = upstream[employee.remote_id]
        assert (employee.first_name, employee.last_name) == (source.first_name, source.last_name)
        assert employee.groups[0].name == source.department
        assert employee.employments[0].pay_rate == source.salary
        assert employee.id == reads.record_id(integration.pk, "hris_employees", employee.remote_id)


def test_a_field_the_scope_config_disables_is_not_there(environment, live_server):
    company = SandboxCompany.objects.create(name="Initech")
    factories.SandboxEmployeeFactory.create_batch(3, company=company, salary=99_000)
    integration = _connect(environment, company, fields=["first_name", "last_name"])
    _sync(integration)

    with _client(environment, integration, live_server) as client:
        employees, _ = _every_employee(client, page_size=100)

    assert len(employees) == 3
    assert all(e.employments == [] and e.groups == [] and e.work_email is None for e in employees)
    assert all(e.first_name for e in employees)
    stored = SyncedRecord.objects.filter(integration=integration).values_list("data", flat=True)
    assert all("salary" not in data for data in stored)  # not read either


def test_an_employee_deleted_upstream_shows_as_deleted_after_the_next_sync(environment, live_server):
    company = SandboxCompany.objects.create(name="Initech")
    leaver, *_ = factories.SandboxEmployeeFactory.create_batch(4, company=company)
    integration = _connect(environment, company)
    _sync(integration)
    leaver_id = str(leaver.pk)
    leaver.delete()

    with _client(environment, integration, live_server) as client:
        before, _ = _every_employee(client, page_size=100, include_deleted=True)
        assert {e.remote_id: e.remote_deleted_at for e in before}[leaver_id] is None
        since = timezone.now()  # after the first sync wrote everything

        _sync(integration)

        live, _ = _every_employee(client, page_size=100)
        everything, _ = _every_employee(client, page_size=100, include_deleted=True)
        changed, _ = _every_employee(client, page_size=100, include_deleted=True, updated_after=since)

    assert leaver_id not in {e.remote_id for e in live} and len(live) == 3
    deleted = {e.remote_id: e.remote_deleted_at for e in everything}
    assert deleted[leaver_id] is not None and len(deleted) == 4
    assert [e.remote_id for e in changed] == [leaver_id]


def test_ten_thousand_employees_page_through_completely(environment, live_server):
    company = SandboxCompany.objects.create(name="Globex")
    SandboxEmployee.objects.bulk_create(
        SandboxEmployee(
            company=company,
            first_name=f"First{n}",
            last_name=f"Last{n}",
            email=f"employee{n}@globex.test",
            department=("Sales", "Engineering", "Support")[n % 3],
            salary=40_000 + n,
        )
        for n in range(10_000)
    )
    integration = _connect(environment, company)
    _sync(integration)

    with _client(environment, integration, live_server) as client:
        employees, pages = _every_employee(client, page_size=250)

    assert pages == 40
    assert len(employees) == 10_000
    upstream = dict(SandboxEmployee.objects.filter(company=company).values_list("pk", "salary"))
    assert {e.remote_id: e.employments[0].pay_rate for e in employees} == {str(k): v for k, v in upstream.items()}


def test_the_sdk_reads_absences_and_filters(environment, live_server):
    company = SandboxCompany.objects.create(name="Initech")
    spec = {
        "hris_employees": {"availability": "ENABLED", "fields": {"first_name": "ENABLED"}},
        "hris_absences": {
            "availability": "ENABLED",
            "fields": dict.fromkeys(["employee_id", "start_date", "end_date"], "ENABLED"),
        },
    }
    integration = factories.IntegrationFactory(
        environment=environment,
        scope_config=factories.ScopeConfigFactory(environment=environment, spec=spec),
        credentials={"api_key": company.create_key()[1]},
        last_sync_at=timezone.now(),
    )
    for remote_id, employee, start, end in [
        ("1", "7", "2026-01-05", "2026-01-06"),
        ("2", "8", "2026-02-01", "2026-02-01"),
    ]:
        factories.SyncedRecordFactory(
            integration=integration,
            model="hris_absences",
            remote_id=remote_id,
            data={"id": remote_id, "employee_id": employee, "start_date": start, "end_date": end},
        )

    with _client(environment, integration, live_server) as client:
        everything = client.hris.get_absences().result.data.results
        employee_id = reads.record_id(integration.pk, "hris_employees", "7")
        mine = client.hris.get_absences(employee_id=employee_id).result.data.results

    assert [a.remote_id for a in everything] == ["1", "2"]
    assert [a.remote_id for a in mine] == ["1"]
    assert mine[0].start_date == "2026-01-05" and mine[0].employee_id == employee_id


def test_sdk_errors_carry_the_reference_codes(environment, live_server):
    company = SandboxCompany.objects.create(name="Initech")
    integration = _connect(environment, company)  # never synced

    with _client(environment, integration, live_server) as client:
        with pytest.raises(errors.KomboHrisError) as pending:
            client.hris.get_employees()
        with pytest.raises(errors.KomboHrisError) as disabled:
            client.hris.get_absences()

    assert pending.value.data.error.code == "INTEGRATION.SETUP_SYNC_PENDING"
    assert disabled.value.data.error.code == "INTEGRATION.MODEL_DISABLED"


def test_the_sdk_pages_through_a_demo_integration_and_a_real_sync_changes_nothing(live_server):
    """`make demo`'s data: a seeded integration serves its company's employees at once, exactly as
    its next real sync stores them (that sync writes nothing)."""
    call_command("seed_demo", stdout=io.StringIO())
    environment = Environment.objects.get(slug="demo")
    integration = (
        Integration.objects.filter(environment=environment, state=IntegrationState.ACTIVE, auth_failing_since=None)
        .order_by("id")
        .first()
    )
    company = SandboxCompany.objects.get(name=integration.end_user_organization_name)

    with _client(environment, integration, live_server) as client:
        employees, pages = _every_employee(client, page_size=2)  # demo companies have 5 to 12 employees
        assert pages == -(-len(employees) // 2) and pages >= 3
        before = {e.remote_id: (e.first_name, e.last_name, e.work_email) for e in employees}
        assert before == {
            str(e.pk): (e.first_name, e.last_name, e.email.lower())
            for e in SandboxEmployee.objects.filter(company=company)
        }
        unchanged = list(SyncedRecord.objects.filter(integration=integration).values_list("remote_id", "updated_at"))

        _sync(integration)

        again, _ = _every_employee(client, page_size=250)
    assert {e.remote_id: (e.first_name, e.last_name, e.work_email) for e in again} == before
    assert (
        list(SyncedRecord.objects.filter(integration=integration).values_list("remote_id", "updated_at")) == unchanged
    )
