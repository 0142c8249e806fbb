"""GET /v1/hris/employees and /v1/hris/absences: the synced records, paged, filtered, in the
reference's shapes (every answer validated against the reference's schemas), limited to what the
integration's scope config reads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.hris import make_cursor
from integrations import reads
from integrations.models import ApiKey, SyncedRecord

from . import factories
from .reference_schemas import response_errors

pytestmark = pytest.mark.django_db

EVERYTHING = {
    "hris_employees": {
        "availability": "ENABLED",
        "fields": dict.fromkeys(["first_name", "last_name", "email", "department", "salary"], "ENABLED"),
    },
    "hris_absences": {
        "availability": "ENABLED",
        "fields": dict.fromkeys(["employee_id", "start_date", "end_date"], "ENABLED"),
    },
}


@pytest.fixture(autouse=True)
def _clean_cache(settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 100_000
    cache.clear()


@pytest.fixture
def environment():
    return factories.EnvironmentFactory(slug="acme")


@pytest.fixture
def raw_key(environment):
    return ApiKey.create(environment, "reader")[1]


@pytest.fixture
def integration(environment):
    scope = factories.ScopeConfigFactory(environment=environment, spec=EVERYTHING)
    return factories.IntegrationFactory(environment=environment, scope_config=scope, last_sync_at=timezone.now())


def _employee(integration, remote_id, **data):
    values = {
        "id": remote_id,
        "first_name": f"First{remote_id}",
        "last_name": f"Last{remote_id}",
        "email": f"e{remote_id}@acme.test",
        "department": "Sales",
        "salary": 50000,
    }
    values.update(data)
    return factories.SyncedRecordFactory(
        integration=integration, model="hris_employees", remote_id=remote_id, data=values
    )


def _absence(integration, remote_id, employee_id, start, end):
    data = {"id": remote_id, "employee_id": employee_id, "start_date": start, "end_date": end}
    return factories.SyncedRecordFactory(integration=integration, model="hris_absences", remote_id=remote_id, data=data)


def _get(client, raw_key, path, integration_id=None, **params):
    headers = {"Authorization": f"Bearer {raw_key}"}
    if integration_id is not None:
        headers["X-Integration-Id"] = integration_id
    response = client.get(f"/v1/hris/{path}", params, headers=headers)
    body = response.json()
    status = "200" if response.status_code == 200 else "default"
    problems = response_errors(body, f"/hris/{path}", "get", status)
    assert problems == [], problems
    return response.status_code, body


def test_employees_in_the_reference_shape(client, raw_key, integration):
    record = _employee(integration, "7", email="Ada.Lovelace@ACME.test")

    status, body = _get(client, raw_key, "employees", integration.pk)

    assert status == 200
    assert body["data"]["next"] is None
    (employee,) = body["data"]["results"]
    assert employee["id"] == reads.record_id(integration.pk, "hris_employees", "7")
    assert employee["remote_id"] == "7"
    assert (employee["first_name"], employee["last_name"], employee["display_full_name"]) == (
        "First7",
        "Last7",
        "First7 Last7",
    )
    assert employee["work_email"] == "ada.lovelace@acme.test"
    assert employee["groups"] == [
        {
            "id": reads.record_id(integration.pk, "hris_groups", "Sales"),
            "remote_id": "Sales",
            "name": "Sales",
            "type": "DEPARTMENT",
        }
    ]
    assert employee["teams"] == employee["groups"]
    (employment,) = employee["employments"]
    assert (employment["pay_rate"], employment["pay_period"], employment["employee_id"]) == (
        50000,
        "YEAR",
        employee["id"],
    )
    assert employee["changed_at"] == record.updated_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert employee["remote_deleted_at"] is None


def test_record_ids_are_stable_unique_and_decode_only_for_their_integration_and_model(integration):
    other = factories.IntegrationFactory(environment=integration.environment)
    record_id = reads.record_id(integration.pk, "hris_employees", "42")

    assert record_id == reads.record_id(integration.pk, "hris_employees", "42")
    assert record_id != reads.record_id(other.pk, "hris_employees", "42")
    assert record_id != reads.record_id(integration.pk, "hris_absences", "42")
    assert reads.remote_id_of(integration.pk, "hris_employees", record_id) == "42"
    assert reads.remote_id_of(other.pk, "hris_employees", record_id) is None
    assert reads.remote_id_of(integration.pk, "hris_absences", record_id) is None
    for garbage in ["", "!!!", "a", record_id + "=", record_id[:-1], "x" * 500]:
        assert reads.remote_id_of(integration.pk, "hris_employees", garbage) is None


def test_pages_follow_next_until_null_and_meet_every_record_once(client, raw_key, integration):
    for n in range(1, 12):
        _employee(integration, f"{n:03d}")

    seen, cursor, pages = [], None, 0
    while True:
        params = {"page_size": 4, **({"cursor": cursor} if cursor else {})}
        status, body = _get(client, raw_key, "employees", integration.pk, **params)
        assert status == 200
        pages += 1
        seen += [e["remote_id"] for e in body["data"]["results"]]
        cursor = body["data"]["next"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == [f"{n:03d}" for n in range(1, 12)]


def test_every_page_costs_the_same_queries(client, raw_key, integration):
    for n in range(30):
        _employee(integration, f"{n:03d}")
    _get(client, raw_key, "employees", integration.pk)  # the key's last_used_at, written once a minute
    counts = []
    for after in [None, "009", "019"]:  # first, middle and last page
        params = {"page_size": 10}
        if after:
            params["cursor"] = make_cursor("hris_employees", after)
        with CaptureQueriesContext(connection) as queries:
            status, body = _get(client, raw_key, "employees", integration.pk, **params)
        assert status == 200 and len(body["data"]["results"]) == 10
        # (the request log's savepoint is the test's transaction: in autocommit there is none)
        counts.append(sum(1 for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]))
    # The key with its environment, integration and scope config; the page; the request log.
    assert counts == [3, 3, 3]


def test_a_field_the_scope_config_does_not_read_is_null_even_if_stored(client, raw_key, environment):
    spec = {"hris_employees": {"availability": "ENABLED", "fields": {"first_name": "ENABLED", "salary": "DISABLED"}}}
    scope = factories.ScopeConfigFactory(environment=environment, spec=spec)
    integration = factories.IntegrationFactory(environment=environment, scope_config=scope, last_sync_at=timezone.now())
    _employee(integration, "1")  # stored by an earlier sync under a wider scope config

    status, body = _get(client, raw_key, "employees", integration.pk)

    (employee,) = body["data"]["results"]
    assert employee["first_name"] == "First1"
    assert employee["last_name"] is None and employee["work_email"] is None
    assert employee["display_full_name"] == "First1"
    assert employee["employments"] == [] and employee["groups"] == []
    assert "50000" not in str(body)


def test_an_opted_out_optional_field_is_null(client, raw_key, environment):
    spec = {"hris_employees": {"availability": "ENABLED", "fields": {"first_name": "ENABLED", "salary": "OPTIONAL"}}}
    scope = factories.ScopeConfigFactory(environment=environment, spec=spec)
    integration = factories.IntegrationFactory(
        environment=environment,
        scope_config=scope,
        last_sync_at=timezone.now(),
        opted_out_fields=["hris_employees.salary"],
    )
    _employee(integration, "1")

    status, body = _get(client, raw_key, "employees", integration.pk)

    assert body["data"]["results"][0]["employments"] == []


def test_a_model_the_scope_config_does_not_read_is_model_disabled(client, raw_key, environment):
    scope = factories.ScopeConfigFactory(environment=environment)  # employees only
    integration = factories.IntegrationFactory(environment=environment, scope_config=scope, last_sync_at=timezone.now())
    _absence(integration, "a1", "1", "2026-01-01", "2026-01-02")

    status, body = _get(client, raw_key, "absences", integration.pk)

    assert status == 403
    assert body["error"]["code"] == "INTEGRATION.MODEL_DISABLED"
    assert body["error"]["log_url"]


def test_deleted_records_are_kept_and_shown_only_when_asked(client, raw_key, integration):
    _employee(integration, "1")
    gone = _employee(integration, "2")
    SyncedRecord.objects.filter(pk=gone.pk).update(remote_deleted_at=timezone.now())

    _, default = _get(client, raw_key, "employees", integration.pk)
    _, everything = _get(client, raw_key, "employees", integration.pk, include_deleted="true")

    assert [e["remote_id"] for e in default["data"]["results"]] == ["1"]
    deleted = {e["remote_id"]: e["remote_deleted_at"] for e in everything["data"]["results"]}
    assert deleted["1"] is None and deleted["2"] is not None


def test_updated_after_returns_records_changed_since(client, raw_key, integration):
    old = _employee(integration, "1")
    _employee(integration, "2")
    SyncedRecord.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=3))
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    _, body = _get(client, raw_key, "employees", integration.pk, updated_after=since)

    assert [e["remote_id"] for e in body["data"]["results"]] == ["2"]


def test_employee_filters(client, raw_key, integration):
    _employee(integration, "1", email="Ada@Acme.test", department="Sales")
    _employee(integration, "2", email="bob@acme.test", department="Engineering")
    _employee(integration, "3", email="cy@acme.test", department="Engineering")
    employee_id = reads.record_id(integration.pk, "hris_employees", "2")
    engineering = reads.record_id(integration.pk, "hris_groups", "Engineering")

    def remote_ids(**params):
        status, body = _get(client, raw_key, "employees", integration.pk, **params)
        assert status == 200
        return [e["remote_id"] for e in body["data"]["results"]]

    assert remote_ids(ids=employee_id) == ["2"]
    assert remote_ids(ids=f"{employee_id},nonsense") == ["2"]
    assert remote_ids(ids=reads.record_id(integration.pk, "hris_absences", "2")) == []
    assert remote_ids(remote_ids="1,3") == ["1", "3"]
    assert remote_ids(remote_ids="1,3", ids=employee_id) == []  # filters AND
    assert remote_ids(work_emails="ADA@acme.TEST,cy@acme.test") == ["1", "3"]
    assert remote_ids(group_ids=engineering) == ["2", "3"]
    # What Relink's tools do not carry matches nothing, unless the caller says to ignore it.
    assert remote_ids(employment_statuses="ACTIVE") == []
    assert remote_ids(employment_statuses="ACTIVE", ignore_unsupported_filters="true") == ["1", "2", "3"]
    assert remote_ids(legal_entity_ids="x", ignore_unsupported_filters="true", remote_ids="2") == ["2"]


def test_absences_in_the_reference_shape_and_filters(client, raw_key, integration):
    _absence(integration, "a1", "7", "2026-01-05", "2026-01-09")
    _absence(integration, "a2", "8", "2026-02-02", "2026-02-03")
    _absence(integration, "a3", "7", "2026-03-01", None)

    status, body = _get(client, raw_key, "absences", integration.pk)

    assert status == 200
    first = body["data"]["results"][0]
    assert first["id"] == reads.record_id(integration.pk, "hris_absences", "a1")
    assert first["employee_id"] == reads.record_id(integration.pk, "hris_employees", "7")
    assert (first["start_date"], first["end_date"]) == ("2026-01-05", "2026-01-09")

    def remote_ids(**params):
        status, body = _get(client, raw_key, "absences", integration.pk, **params)
        assert status == 200, body
        return [a["remote_id"] for a in body["data"]["results"]]

    assert remote_ids(employee_id=first["employee_id"]) == ["a1", "a3"]
    assert remote_ids(employee_id="not-an-id") == []
    assert remote_ids(date_from="2026-01-10") == ["a2", "a3"]  # a3 has not ended
    assert remote_ids(date_until="2026-01-31") == ["a1"]
    assert remote_ids(date_from="2026-01-09", date_until="2026-02-02") == ["a1", "a2"]
    assert remote_ids(time_from="2026-02-03T10:00:00.000Z") == ["a2", "a3"]
    assert remote_ids(type_ids="x") == []
    assert remote_ids(type_ids="x", ignore_unsupported_filters="true") == ["a1", "a2", "a3"]


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": "0"},
        {"page_size": "251"},
        {"page_size": "ten"},
        {"cursor": "garbage"},
        {"cursor": make_cursor("hris_absences", "1")},
        {"include_deleted": "yes"},
        {"updated_after": "yesterday"},
        {"updated_after": "2026-13-40T00:00:00Z"},
        {"employment_statuses": "RETIRED"},
        {"custom_fields": "not json"},
        {"ignore_unsupported_filters": "1"},
    ],
)
def test_bad_parameters_are_input_invalid(client, raw_key, integration, params):
    status, body = _get(client, raw_key, "employees", integration.pk, **params)

    assert status == 400
    assert body["error"]["code"] == "PLATFORM.INPUT_INVALID"
    assert next(iter(params)) in body["error"]["message"]


def test_bad_absence_dates_are_input_invalid(client, raw_key, integration):
    status, body = _get(client, raw_key, "absences", integration.pk, date_from="2026-02-30")
    assert (status, body["error"]["code"]) == (400, "PLATFORM.INPUT_INVALID")


def test_another_environments_integration_is_not_found(client, raw_key, integration):
    stranger = factories.IntegrationFactory(last_sync_at=timezone.now())
    _employee(stranger, "1")
    other_key = ApiKey.create(stranger.environment, "theirs")[1]

    status, body = _get(client, raw_key, "employees", stranger.pk)
    assert (status, body["error"]["code"]) == (404, "PLATFORM.INTEGRATION_NOT_FOUND")
    status, body = _get(client, other_key, "employees", integration.pk)
    assert (status, body["error"]["code"]) == (404, "PLATFORM.INTEGRATION_NOT_FOUND")


def test_the_integration_header_is_required(client, raw_key):
    status, body = _get(client, raw_key, "employees")
    assert (status, body["error"]["code"]) == (400, "PLATFORM.INPUT_INVALID")
    assert "X-Integration-Id" in body["error"]["message"]


def test_an_inactive_integration_is_refused(client, raw_key, integration):
    integration.enabled, integration.state = False, "INACTIVE"
    integration.save()

    status, body = _get(client, raw_key, "employees", integration.pk)

    assert (status, body["error"]["code"]) == (403, "INTEGRATION.INACTIVE")


def test_before_the_first_sync_finishes_the_answer_is_setup_sync_pending(client, raw_key, integration):
    integration.last_sync_at = None
    integration.save()

    status, body = _get(client, raw_key, "employees", integration.pk)

    assert (status, body["error"]["code"]) == (409, "INTEGRATION.SETUP_SYNC_PENDING")


def test_an_integration_without_scope_config_reads_with_the_environments_default(client, raw_key, environment):
    default = factories.ScopeConfigFactory(environment=environment, spec=EVERYTHING, is_default=True)
    integration = factories.IntegrationFactory(environment=environment, scope_config=None, last_sync_at=timezone.now())
    _employee(integration, "1")

    status, body = _get(client, raw_key, "employees", integration.pk)

    assert status == 200 and body["data"]["results"][0]["employments"][0]["pay_rate"] == 50000
    default.spec = {"hris_employees": {"availability": "ENABLED", "fields": {"first_name": "ENABLED"}}}
    default.save()
    status, body = _get(client, raw_key, "employees", integration.pk)
    assert body["data"]["results"][0]["employments"] == []


def test_reads_are_request_logged(client, raw_key, integration):
    from integrations.models import RequestLog

    _employee(integration, "1")
    _get(client, raw_key, "employees", integration.pk, page_size="5")

    log = RequestLog.objects.latest("created_at")
    assert log.path == "/v1/hris/employees" and log.status_code == 200
    assert log.integration_id == integration.pk
    # The answer's personal data is not copied into the log: what was served is.
    assert log.response_body == {"_note": "1 hris_employees records, not logged", "next": None}
    assert "First1" not in str(log.response_body)
