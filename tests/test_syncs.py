"""Sync runs over real HTTP against the sandbox, queueing, the scheduler tick and the reaper."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection, connections
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from integrations import outbox, records, syncs, webhooks
from integrations.models import Integration, OutboxMessage, Sync, SyncedRecord, WebhookDelivery
from integrations.providers.base import Page, ProviderUnavailable
from integrations.providers.sandbox import SandboxProvider
from sandbox.models import SandboxCompany, SandboxEmployee

from .factories import (
    EnvironmentFactory,
    IntegrationFactory,
    SandboxEmployeeFactory,
    ScopeConfigFactory,
    SyncFactory,
    WebhookEndpointFactory,
)
from .webhook_receiver import start_receiver

ABSENCES_SPEC = {
    "hris_employees": {"availability": "ENABLED", "fields": {"first_name": "ENABLED", "salary": "OPTIONAL"}},
    "hris_absences": {"availability": "ENABLED", "fields": {"start_date": "ENABLED"}},
}


@pytest.fixture(autouse=True)
def enqueued(monkeypatch) -> list[str]:
    """Tasks are eager in tests; record what would be enqueued instead, and run syncs by hand."""
    sent: list[str] = []
    monkeypatch.setattr(syncs, "_enqueue", lambda sync_ids, **kwargs: sent.extend(sync_ids))
    return sent


@pytest.fixture
def sandbox(live_server, settings):
    settings.BASE_URL = live_server.url
    company = SandboxCompany.objects.create(name="Initech")
    SandboxEmployeeFactory.create_batch(3, company=company)
    return company


def _integration(company, permissions=None, **kwargs):
    _, raw = company.create_key(permissions=permissions)
    return IntegrationFactory(credentials={"api_key": raw}, next_sync_at=timezone.now(), **kwargs), raw


def _run(integration) -> Sync:
    sync, already = syncs.queue_sync(integration.pk)
    assert not already
    return syncs.run_sync(sync.pk)


@pytest.mark.django_db(transaction=True)
def test_a_sync_checks_auth_then_upserts_each_enabled_model(sandbox):
    integration, _ = _integration(sandbox)
    Integration.objects.filter(pk=integration.pk).update(data_expired_at=timezone.now())
    sync = _run(integration)
    assert sync.status == "SUCCEEDED"
    assert sync.records_per_model == {"hris_employees": 3}
    assert (sync.models_done, sync.models_total) == (1, 1)
    assert integration.auth_checks.get().outcome == "OK"
    assert SyncedRecord.objects.filter(integration=integration).count() == 3
    record = SyncedRecord.objects.filter(integration=integration).first()
    assert "salary" in record.data  # OPTIONAL and not opted out
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.data_expired_at is None and fresh.last_sync_at == sync.ended_at
    # A second sync updates the same rows instead of duplicating them.
    assert _run(integration).status == "SUCCEEDED"
    assert SyncedRecord.objects.filter(integration=integration).count() == 3


@pytest.mark.django_db(transaction=True)
def test_opted_out_optional_fields_are_not_read(sandbox):
    integration, _ = _integration(sandbox, opted_out_fields=["hris_employees.salary"])
    _run(integration)
    assert all("salary" not in r.data for r in SyncedRecord.objects.filter(integration=integration))


@pytest.mark.django_db(transaction=True)
def test_a_403_on_one_model_is_a_warning_and_the_sync_partially_fails(sandbox):
    environment = EnvironmentFactory()
    scope = ScopeConfigFactory(environment=environment, spec=ABSENCES_SPEC)
    integration, _ = _integration(sandbox, permissions=["employees:read"], environment=environment, scope_config=scope)
    sync = _run(integration)
    assert sync.status == "PARTIALLY_FAILED"
    assert sync.records_per_model == {"hris_employees": 3}
    assert sync.warnings == [
        # The tool answers 200 for employees but leaves salary out: a field-level gap.
        "permission 'compensation:read' for hris_employees.salary not granted: the field is missing from every record",
        "permission 'absences:read' for hris_absences not granted",
    ]
    assert (sync.models_done, sync.models_total) == (2, 2)


@pytest.mark.django_db(transaction=True)
def test_a_field_the_tool_leaves_out_is_a_warning_unless_the_customer_opted_out(sandbox):
    integration, _ = _integration(sandbox, permissions=["employees:read", "absences:read"])
    sync = _run(integration)
    assert sync.status == "PARTIALLY_FAILED"
    assert sync.warnings == [
        "permission 'compensation:read' for hris_employees.salary not granted: the field is missing from every record"
    ]
    Integration.objects.filter(pk=integration.pk).update(opted_out_fields=["hris_employees.salary"])
    assert _run(Integration.objects.get(pk=integration.pk)).status == "SUCCEEDED"


@pytest.mark.django_db(transaction=True)
def test_a_revoked_key_fails_the_sync_with_authentication_failed(sandbox):
    integration, _ = _integration(sandbox)
    sandbox.api_keys.update(revoked_at=timezone.now())
    sync = _run(integration)
    assert sync.status == "AUTHENTICATION_FAILED"
    # This check's error, not the one stored before it (empty on the first failure).
    assert sync.error_message == Integration.objects.get(pk=integration.pk).last_auth_error
    assert sync.error_message.startswith("401 ")
    check = integration.auth_checks.get()
    assert (check.outcome, check.http_status) == ("AUTH_FAILED", 401)
    assert Integration.objects.get(pk=integration.pk).auth_failing_since is not None


@pytest.mark.django_db(transaction=True)
def test_key_revoked_at_t_makes_it_invalid_at_the_first_check_after_72h_with_one_signed_webhook(sandbox):
    receiver, server = start_receiver()
    try:
        integration, _ = _integration(sandbox)
        endpoint = WebhookEndpointFactory(environment=integration.environment, url=receiver.url)
        t = timezone.now()
        sandbox.api_keys.update(revoked_at=t)
        for hours in (0, 3, 27, 51, 71):
            with time_machine.travel(t + timedelta(hours=hours)):
                assert _run(integration).status == "AUTHENTICATION_FAILED"
                assert Integration.objects.get(pk=integration.pk).state == "ACTIVE"
        with time_machine.travel(t + timedelta(hours=74)):
            _run(integration)
            assert Integration.objects.get(pk=integration.pk).state == "INVALID"
            state_events = [r for r in receiver.received if b'"integration-state-changed"' in r.body]
            assert len(state_events) == 1
            payload = Webhook(endpoint.get_secret()).verify(state_events[0].body, state_events[0].headers)
        assert payload["data"]["state"] == "INVALID"
        assert payload["data"]["integration_id"] == integration.pk
        finished = [r for r in receiver.received if b'"sync-finished"' in r.body]
        assert len(finished) == 6
        # INVALID: the scheduler no longer claims it.
        Integration.objects.filter(pk=integration.pk).update(next_sync_at=t)
        with time_machine.travel(t + timedelta(hours=80)):
            assert syncs.tick(enqueue=lambda ids: None) == 0
    finally:
        server.shutdown()


@pytest.mark.django_db
def test_sync_finished_payload_shape():
    sync = SyncFactory()
    data = webhooks.sync_data(sync, "http://relink.test/log")
    assert set(data) == {
        "sync_id",
        "sync_state",
        "sync_started_at",
        "sync_ended_at",
        "sync_duration_seconds",
        "integration_id",
        "integration_tool",
        "integration_category",
        "end_user",
        "log_url",
    }
    assert data["sync_duration_seconds"] == 120 and data["sync_state"] == "SUCCEEDED"


# --- Queueing and the scheduler ------------------------------------------------------------------


@pytest.mark.django_db
def test_force_sync_returns_the_open_sync_instead_of_a_second_one(enqueued, django_capture_on_commit_callbacks):
    integration = IntegrationFactory()
    with django_capture_on_commit_callbacks(execute=True):
        first, already = syncs.queue_sync(integration.pk)
    assert not already
    assert enqueued == [first.pk]
    second, already = syncs.queue_sync(integration.pk)
    assert already and second.pk == first.pk
    Sync.objects.filter(pk=first.pk).update(status="RUNNING")
    third, already = syncs.queue_sync(integration.pk)
    assert already and third.pk == first.pk


@pytest.mark.django_db
def test_tick_claims_only_due_active_integrations_without_an_open_sync():
    now = timezone.now()
    due = IntegrationFactory(next_sync_at=now - timedelta(minutes=1))
    IntegrationFactory(next_sync_at=now + timedelta(minutes=5))  # not due
    IntegrationFactory(next_sync_at=now - timedelta(minutes=1), enabled=False, state="INACTIVE")
    IntegrationFactory(next_sync_at=now - timedelta(minutes=1), state="INVALID", invalid_since=now)
    busy = IntegrationFactory(next_sync_at=now - timedelta(minutes=1))
    SyncFactory(integration=busy, status="RUNNING", ended_at=None)

    claimed = syncs.tick(now=now, enqueue=lambda ids: None)
    assert claimed == 1
    assert Sync.objects.get(integration=due).status == "QUEUED"
    assert not Sync.objects.filter(integration=busy, status="QUEUED").exists()
    fresh = Integration.objects.get(pk=due.pk)
    interval = due.environment.sync_interval
    assert now + interval * 0.9 <= fresh.next_sync_at <= now + interval * 1.1
    assert syncs.tick(now=now, enqueue=lambda ids: None) == 0  # moved forward: not due again


@pytest.mark.django_db
def test_tick_publishes_after_commit_through_the_outbox(published, django_capture_on_commit_callbacks):
    integration = IntegrationFactory(next_sync_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        syncs.tick()
        sync = Sync.objects.get(integration=integration)
        # In the tick's transaction: the task waits in the outbox, nothing is published yet.
        assert list(OutboxMessage.objects.values_list("task", "args")) == [(outbox.RUN_SYNC, [sync.pk])]
        assert published == []
    assert published == [(outbox.RUN_SYNC, (sync.pk,))]
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db
def test_tick_works_in_batches(django_assert_max_num_queries):
    now = timezone.now()
    IntegrationFactory.create_batch(7, next_sync_at=now - timedelta(minutes=1))
    assert syncs.tick(now=now, batch_size=3, enqueue=lambda ids: None) == 7
    assert Sync.objects.filter(status="QUEUED").count() == 7


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_ticks_on_two_connections_claim_disjoint_integrations():
    now = timezone.now()
    IntegrationFactory.create_batch(40, next_sync_at=now - timedelta(minutes=1))
    barrier = threading.Barrier(2)
    results: dict[str, list[str]] = {}

    def run(name: str) -> None:
        claimed: list[str] = []
        barrier.wait()
        syncs.tick(now=now, batch_size=5, enqueue=claimed.extend)
        results[name] = claimed
        connections.close_all()

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a = set(Sync.objects.filter(pk__in=results["a"]).values_list("integration_id", flat=True))
    b = set(Sync.objects.filter(pk__in=results["b"]).values_list("integration_id", flat=True))
    assert not a & b
    assert len(a | b) == 40
    # Each claim enqueued exactly one real sync: no integration was claimed by both ticks.
    assert len(results["a"]) + len(results["b"]) == 40
    assert Sync.objects.count() == 40
    assert connection.vendor == "postgresql"


@pytest.mark.django_db
def test_the_reaper_fails_stuck_syncs_and_resends_lost_ones(enqueued):
    now = timezone.now()
    stuck = SyncFactory(status="RUNNING", started_at=now - timedelta(hours=1), ended_at=None)
    fine = SyncFactory(
        status="RUNNING", started_at=now - timedelta(minutes=5), heartbeat_at=now - timedelta(seconds=5), ended_at=None
    )
    lost = SyncFactory(status="QUEUED", created_at=now - timedelta(hours=1), started_at=None, ended_at=None)
    WebhookEndpointFactory(environment=stuck.integration.environment)
    assert syncs.reap_stuck_syncs(now) == (1, 1)
    assert Sync.objects.get(pk=stuck.pk).status == "FAILED"
    assert Sync.objects.get(pk=fine.pk).status == "RUNNING"
    assert enqueued == [lost.pk]
    # The reaped sync ends like any other: one sync-finished webhook, last_sync_at moved.
    (delivery,) = WebhookDelivery.objects.filter(event_type="sync-finished")
    assert delivery.payload["data"]["sync_id"] == stuck.pk and delivery.payload["data"]["sync_state"] == "FAILED"
    # Its log_url opens the integration's page in the dashboard (registered by the dashboard app).
    integration = stuck.integration
    page = f"/env/{integration.environment.slug}/integrations/{integration.pk}/"
    assert delivery.payload["data"]["log_url"] == f"{settings.BASE_URL}{page}"
    assert Integration.objects.get(pk=stuck.integration_id).last_sync_at is not None


@pytest.mark.django_db
def test_a_run_outliving_the_reaper_does_not_finish_twice(enqueued):
    now = timezone.now()
    sync = SyncFactory(status="RUNNING", started_at=now - timedelta(hours=1), ended_at=None)
    WebhookEndpointFactory(environment=sync.integration.environment)
    syncs.reap_stuck_syncs(now)
    late = syncs._finish(Sync.objects.get(pk=sync.pk), "SUCCEEDED")  # the slow run finally ends
    assert late.status == "FAILED" and Sync.objects.get(pk=sync.pk).status == "FAILED"
    assert WebhookDelivery.objects.filter(event_type="sync-finished").count() == 1


@pytest.mark.django_db
def test_run_sync_is_a_no_op_when_redelivered():
    sync = SyncFactory(status="SUCCEEDED")
    assert syncs.run_sync(sync.pk) is None
    assert syncs.run_sync("doesnotexist") is None
    assert WebhookDelivery.objects.count() == 0


@pytest.mark.django_db
def test_bench_scheduler_claims_exactly_the_due_integrations(capsys):
    from django.core.management import call_command

    call_command("bench_scheduler", integrations=60, due=25, batch_size=10)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    fields = dict(part.split("=") for part in last.split())
    assert fields["claimed"] == "25"
    assert float(fields["seconds"]) >= 0 and int(fields["queries"]) > 0
    assert not Sync.objects.filter(status="QUEUED").exists()  # the bench cleans up after itself


@pytest.mark.django_db(transaction=True)
def test_the_daily_recheck_heals_an_invalid_integration_whose_key_works_again(sandbox):
    from integrations.health import recheck_invalid_integrations

    now = timezone.now()
    healed, _ = _integration(sandbox)
    Integration.objects.filter(pk=healed.pk).update(
        state="INVALID",
        invalid_since=now - timedelta(days=1),
        auth_failing_since=now - timedelta(days=4),
        last_auth_check_at=now - timedelta(hours=24),
        next_sync_at=None,
    )
    recent = IntegrationFactory(state="INVALID", invalid_since=now, last_auth_check_at=now - timedelta(hours=2))

    assert recheck_invalid_integrations() == 1  # eager: the check runs at once, over HTTP
    fresh = Integration.objects.get(pk=healed.pk)
    assert fresh.state == "ACTIVE" and fresh.auth_failing_since is None
    assert fresh.next_sync_at is not None and fresh.next_sync_at <= timezone.now()
    assert Integration.objects.get(pk=recent.pk).state == "INVALID"  # checked 2 h ago: not yet


@pytest.mark.parametrize(
    "rows, withheld",
    [
        ([], []),  # no records prove nothing
        ([{"id": "1", "first_name": "A"}, {"id": "2", "first_name": "B"}], [("salary", "compensation:read")]),
        ([{"id": "1", "first_name": "A"}, {"id": "2", "first_name": "B", "salary": None}], []),  # present once: granted
    ],
)
def test_withheld_fields(rows, withheld):
    from integrations.providers import get_provider

    assert get_provider("sandbox").withheld_fields("hris_employees", ["first_name", "salary"], rows) == withheld


@pytest.mark.django_db
def test_a_queued_sync_moves_the_next_scheduled_one_an_interval_away(enqueued):
    """A forced or post-connect sync is not followed at once by a scheduled one."""
    now = timezone.now()
    integration = IntegrationFactory(next_sync_at=now)  # due, as after a completed reconnect
    sync, already = syncs.queue_sync(integration.pk)
    assert not already
    integration.refresh_from_db()
    interval = integration.environment.sync_interval
    assert sync.created_at + interval * 0.9 <= integration.next_sync_at <= sync.created_at + interval * 1.1
    syncs.run_sync(sync.pk)
    assert syncs.tick(now=now + timedelta(minutes=1), enqueue=lambda ids: None) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["INVALID", "INACTIVE"])
def test_queue_sync_refuses_an_integration_that_may_not_sync(enqueued, state):
    integration = IntegrationFactory(state=state, enabled=state != "INACTIVE")
    with pytest.raises(syncs.NotSyncable) as raised:
        syncs.queue_sync(integration.pk)
    assert raised.value.state == state
    assert not Sync.objects.filter(integration=integration).exists()
    assert enqueued == []


# --- A running sync's lease: a dead worker's sync runs again ------------------------------------


def _running(heartbeat_age: timedelta, **fields) -> Sync:
    now = timezone.now()
    return SyncFactory(
        status="RUNNING",
        started_at=now - heartbeat_age,
        heartbeat_at=now - heartbeat_age,
        ended_at=None,
        attempts=fields.pop("attempts", 1),
        run_by=fields.pop("run_by", "elsewhere:1"),
        **fields,
    )


@pytest.mark.django_db
def test_the_reaper_queues_again_a_sync_whose_heartbeat_stopped(enqueued, settings):
    dead = _running(timedelta(seconds=settings.SYNC_LEASE_SECONDS + 1))
    alive = _running(timedelta(seconds=settings.SYNC_LEASE_SECONDS - 5))
    assert syncs.reap_stuck_syncs() == (0, 1)
    assert enqueued == [dead.pk]
    assert Sync.objects.get(pk=dead.pk).status == "QUEUED"
    assert Sync.objects.get(pk=alive.pk).status == "RUNNING"
    assert syncs.reap_stuck_syncs() == (0, 0)  # queued once, not on every pass


@pytest.mark.django_db
def test_a_sync_whose_worker_died_three_times_fails(enqueued, settings):
    dead = _running(timedelta(minutes=2), attempts=syncs.MAX_ATTEMPTS)
    WebhookEndpointFactory(environment=dead.integration.environment)
    assert syncs.reap_stuck_syncs() == (1, 0)
    failed = Sync.objects.get(pk=dead.pk)
    assert failed.status == "FAILED" and "worker stopped 3 times" in failed.error_message
    assert WebhookDelivery.objects.filter(event_type="sync-finished").count() == 1


@pytest.mark.django_db
def test_a_redelivered_task_takes_over_a_dead_run_and_ignores_a_live_one(sandbox, settings):
    integration, _ = _integration(sandbox)
    sync = SyncFactory(integration=integration, status="RUNNING", started_at=timezone.now(), ended_at=None)
    Sync.objects.filter(pk=sync.pk).update(heartbeat_at=timezone.now(), attempts=1, run_by="elsewhere:1")
    assert syncs.run_sync(sync.pk) is None  # its lease is live: another worker is on it
    Sync.objects.filter(pk=sync.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    done = syncs.run_sync(sync.pk)
    assert done.status == "SUCCEEDED" and done.attempts == 2
    assert SyncedRecord.objects.filter(integration=integration).count() == sum(done.records_per_model.values())


@pytest.mark.django_db
def test_a_redelivered_task_takes_over_at_once_when_the_process_that_ran_it_is_gone(sandbox):
    integration, _ = _integration(sandbox)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid of this host that no longer exists
    sync = SyncFactory(integration=integration, status="RUNNING", started_at=timezone.now(), ended_at=None)
    run_by = f"{socket.gethostname()}:{gone.pid}"
    Sync.objects.filter(pk=sync.pk).update(heartbeat_at=timezone.now(), attempts=1, run_by=run_by)
    assert syncs.run_sync(sync.pk).status == "SUCCEEDED"


@pytest.mark.django_db
def test_a_late_result_of_a_run_presumed_dead_does_not_finish_its_successor():
    sync = SyncFactory(status="RUNNING", started_at=timezone.now(), ended_at=None, attempts=1)
    presumed_dead = Sync.objects.get(pk=sync.pk)
    Sync.objects.filter(pk=sync.pk).update(attempts=2)  # taken over
    assert syncs._finish_running(presumed_dead, "SUCCEEDED") is False
    assert Sync.objects.get(pk=sync.pk).status == "RUNNING"


@pytest.mark.django_db
def test_force_sync_runs_a_dead_sync_again_instead_of_calling_it_already_queued(enqueued, settings):
    dead = _running(timedelta(minutes=5))
    sync, already = syncs.queue_sync(dead.integration_id)
    assert (sync.pk, already) == (dead.pk, False)
    assert Sync.objects.get(pk=dead.pk).status == "QUEUED" and enqueued == [dead.pk]


@pytest.mark.django_db
def test_undecryptable_credentials_fail_the_sync_with_a_clear_error(sandbox):
    integration, _ = _integration(sandbox)
    Integration.objects.filter(pk=integration.pk).update(credentials_encrypted="gAAAAABnot-a-fernet-token")
    sync = SyncFactory(integration=integration, status="QUEUED", started_at=None, ended_at=None)
    done = syncs.run_sync(sync.pk)
    assert done.status == "FAILED" and "cannot be decrypted" in done.error_message


# --- Streaming, no-op writes, deletions, deltas --------------------------------------------------


class _SandboxRequests:
    """The sandbox adapter's list requests (path and query) and how many records each answered."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[str, dict, int]] = []
        real = SandboxProvider._get

        def spy(provider, path, credentials, params=None):
            response = real(provider, path, credentials, params)
            if path != "me":
                self.calls.append((path, dict(params or {}), len(response.json().get("data", []))))
            return response

        monkeypatch.setattr(SandboxProvider, "_get", spy)

    def to(self, path: str) -> list[tuple[dict, int]]:
        return [(params, count) for p, params, count in self.calls if p == path]


def _employees(company, count: int) -> None:
    SandboxEmployee.objects.bulk_create(
        SandboxEmployee(company=company, first_name=f"F{n}", last_name=f"L{n}", email=f"e{n}@x.test", salary=n)
        for n in range(count)
    )


def _row_versions(integration) -> dict[str, tuple]:
    """Per record: its updated_at and, on PostgreSQL, its row version (xmin, xmax): a row rewritten,
    or only locked, gets new ones."""
    fields = ["remote_id", "updated_at"]
    if connection.vendor != "postgresql":
        return {r: (u,) for r, u in SyncedRecord.objects.filter(integration=integration).values_list(*fields)}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT remote_id, updated_at, xmin::text, xmax::text FROM integrations_syncedrecord "
            "WHERE integration_id = %s",
            [integration.pk],
        )
        return {row[0]: tuple(row[1:]) for row in cursor.fetchall()}


def _record_writes(queries) -> list[str]:
    """The statements that write synced records (page upserts and the deletion marking)."""
    return [q["sql"] for q in queries if "integrations_syncedrecord" in q["sql"] and not q["sql"].startswith("SELECT")]


@pytest.mark.django_db(transaction=True)
def test_a_company_larger_than_a_page_syncs_completely_page_by_page(sandbox, monkeypatch):
    _employees(sandbox, 227)  # 230 with the fixture's 3: pages of 100, 100, 30
    requests = _SandboxRequests(monkeypatch)
    integration, _ = _integration(sandbox)

    with CaptureQueriesContext(connection) as queries:
        sync = _run(integration)

    assert sync.status == "SUCCEEDED" and sync.type == "FULL"  # the first sync of an integration reads everything
    assert sync.records_per_model == {"hris_employees": 230}
    assert SyncedRecord.objects.filter(integration=integration, remote_deleted_at=None).count() == 230
    pages = requests.to("employees")
    assert [(params["offset"], params["limit"], count) for params, count in pages] == [
        (0, 100, 100),
        (100, 100, 100),
        (200, 100, 30),
    ]
    assert all("updated_after" not in params for params, _ in pages)
    # One upsert per page, then the deletion marking: written as they arrive, never held all at once.
    upserts = [sql for sql in _record_writes(queries) if "INSERT" in sql]
    assert len(upserts) == 3


@pytest.mark.django_db(transaction=True)
def test_an_unchanged_resync_writes_no_row(sandbox):
    _employees(sandbox, 150)
    integration, _ = _integration(sandbox)
    assert _run(integration).status == "SUCCEEDED"
    before = _row_versions(integration)

    with CaptureQueriesContext(connection) as queries:
        again = _run(Integration.objects.get(pk=integration.pk))  # DELTA; the sandbox reads no change since

    assert again.status == "SUCCEEDED" and again.records_per_model == {"hris_employees": 153}
    assert _row_versions(integration) == before  # not one row rewritten, nor even locked
    again_full, _ = syncs.queue_sync(integration.pk, "FULL")
    with CaptureQueriesContext(connection) as full_queries:
        assert syncs.run_sync(again_full.pk).records_per_model == {"hris_employees": 153}
    assert _row_versions(integration) == before
    if connection.vendor == "sqlite":  # the portable path writes only changed rows, with the ORM
        assert not [sql for sql in _record_writes([*queries, *full_queries]) if "INSERT" in sql]


@pytest.mark.django_db(transaction=True)
def test_a_changed_record_is_the_only_row_written_and_only_its_updated_at_moves(sandbox):
    integration, _ = _integration(sandbox)
    _run(integration)
    before = _row_versions(integration)
    changed = sandbox.employees.order_by("pk").first()
    changed.first_name = "Renamed"
    changed.save()

    _run(Integration.objects.get(pk=integration.pk))

    after = _row_versions(integration)
    assert {remote_id for remote_id in before if after[remote_id] != before[remote_id]} == {str(changed.pk)}
    assert SyncedRecord.objects.get(integration=integration, remote_id=str(changed.pk)).data["first_name"] == "Renamed"


@pytest.mark.django_db(transaction=True)
def test_a_record_gone_upstream_is_marked_deleted_by_a_complete_read_and_unmarked_when_it_returns(sandbox):
    integration, _ = _integration(sandbox)
    _run(integration)
    row = sandbox.employees.order_by("pk").values().first()
    SandboxEmployee.objects.filter(pk=row["id"]).delete()

    sync, _ = syncs.queue_sync(integration.pk, "FULL")
    finished = syncs.run_sync(sync.pk)

    assert finished.records_per_model == {"hris_employees": 2}
    record = SyncedRecord.objects.get(integration=integration, remote_id=str(row["id"]))  # kept, not deleted
    assert record.remote_deleted_at is not None and record.updated_at == record.remote_deleted_at
    assert SyncedRecord.objects.filter(integration=integration, remote_deleted_at=None).count() == 2

    SandboxEmployee.objects.create(**row)  # back, same id and data
    sync, _ = syncs.queue_sync(integration.pk, "FULL")
    assert syncs.run_sync(sync.pk).records_per_model == {"hris_employees": 3}
    record.refresh_from_db()
    assert record.remote_deleted_at is None
    assert SyncedRecord.objects.filter(integration=integration).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_failed_read_marks_nothing_deleted(sandbox, monkeypatch):
    integration, _ = _integration(sandbox)
    _run(integration)
    sandbox.employees.order_by("pk").first().delete()

    def broken(*args, **kwargs):
        yield Page([])
        raise ProviderUnavailable("Sandbox HR answered 503", 503)

    monkeypatch.setattr(SandboxProvider, "fetch_pages", broken)
    sync, _ = syncs.queue_sync(integration.pk, "FULL")
    assert syncs.run_sync(sync.pk).status == "FAILED"
    assert not SyncedRecord.objects.filter(integration=integration, remote_deleted_at__isnull=False).exists()


class _WorkerKilled(BaseException):
    """The worker process dies mid-read: nothing in run_sync handles it, the sync stays RUNNING."""


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ended_by", ["its next attempt", "the reaper"])
def test_changes_a_dead_run_wrote_are_reported_by_whoever_ends_the_sync(sandbox, monkeypatch, broker, ended_by):
    """A run that dies after writing a page leaves the model in `changed_models` on the row; the
    attempt that runs the sync again finds nothing left to write, yet its `data-changed` lists it
    (and so does the reaper's end of the sync)."""
    integration, _ = _integration(sandbox)
    WebhookEndpointFactory(environment=integration.environment)
    sync, _ = syncs.queue_sync(integration.pk, "FULL")
    real = SandboxProvider.fetch_pages

    def dies_after_the_first_page(self, *args, **kwargs):
        yield next(real(self, *args, **kwargs))
        raise _WorkerKilled

    with monkeypatch.context() as patched, pytest.raises(_WorkerKilled):
        patched.setattr(SandboxProvider, "fetch_pages", dies_after_the_first_page)
        syncs.run_sync(sync.pk)
    dead = Sync.objects.get(pk=sync.pk)
    assert (dead.status, dead.changed_models) == ("RUNNING", ["hris_employees"])
    assert not WebhookDelivery.objects.filter(event_type="data-changed").exists()

    if ended_by == "the reaper":
        with time_machine.travel(timezone.now() + syncs.STUCK_AFTER + timedelta(minutes=1)):
            assert syncs.reap_stuck_syncs() == (1, 0)
        assert Sync.objects.get(pk=sync.pk).status == "FAILED"
    else:
        with time_machine.travel(timezone.now() + timedelta(seconds=settings.SYNC_LEASE_SECONDS + 5)):
            again = syncs.run_sync(sync.pk)
        assert (again.status, again.attempts, again.records_per_model) == ("SUCCEEDED", 2, {"hris_employees": 3})
    (changed,) = WebhookDelivery.objects.filter(event_type="data-changed")
    assert changed.payload["data"]["changed_models"] == [{"name": "hris_employees"}]
    assert WebhookDelivery.objects.filter(event_type="sync-finished").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_delta_sync_asks_the_sandbox_for_changes_since_the_previous_read(sandbox, monkeypatch):
    _employees(sandbox, 40)
    SandboxEmployee.objects.filter(company=sandbox).update(updated_at=timezone.now() - timedelta(hours=2))
    integration, _ = _integration(sandbox)
    first = _run(integration)
    assert first.type == "FULL"
    changed = sandbox.employees.order_by("pk").last()
    changed.first_name = "Moved"
    changed.save()  # updated_at: now
    requests = _SandboxRequests(monkeypatch)

    delta = _run(Integration.objects.get(pk=integration.pk))

    assert (delta.type, delta.status) == ("DELTA", "SUCCEEDED")
    ((params, count),) = requests.to("employees")
    since = datetime.fromisoformat(params["updated_after"])
    assert since == first.started_at - syncs.DELTA_OVERLAP
    assert count == 1  # only the changed employee crossed the wire
    assert delta.records_per_model == {"hris_employees": 43}  # the live count, not the one read
    assert SyncedRecord.objects.get(integration=integration, remote_id=str(changed.pk)).data["first_name"] == "Moved"


@pytest.mark.django_db(transaction=True)
def test_a_delta_sync_runs_as_full_when_no_full_read_is_recent(sandbox):
    integration, _ = _integration(sandbox)
    first = _run(integration)
    Sync.objects.filter(pk=first.pk).update(
        created_at=F("created_at") - syncs.FULL_READ_EVERY, started_at=F("started_at") - syncs.FULL_READ_EVERY
    )
    second = _run(Integration.objects.get(pk=integration.pk))
    assert second.type == "FULL"  # a day without a complete read: this one reads everything
    assert _run(Integration.objects.get(pk=integration.pk)).type == "DELTA"


@pytest.mark.django_db
def test_the_portable_writer_and_the_postgresql_one_agree(environment):
    """The page writer without a live sync: insert, no-op, change, delete, come back."""
    integration = IntegrationFactory(environment=environment)
    writer = records.ModelWriter(integration.pk, "hris_employees", complete=True)
    assert writer.write([{"id": "1", "a": 1}, {"id": "2", "a": 2}, {"id": "2", "a": 3}]) == 2
    assert (writer.finish(), writer.read, writer.present) == (0, 2, {"id", "a"})
    assert SyncedRecord.objects.get(integration=integration, remote_id="2").data == {"id": "2", "a": 3}

    writer = records.ModelWriter(integration.pk, "hris_employees", complete=True)
    assert writer.write([{"id": "2", "a": 3}]) == 0  # unchanged
    assert writer.finish() == 1  # "1" is gone
    assert SyncedRecord.objects.get(integration=integration, remote_id="1").remote_deleted_at is not None
    assert records.live_count(integration.pk, "hris_employees") == 1

    writer = records.ModelWriter(integration.pk, "hris_employees", complete=False)
    assert writer.write([{"id": "1", "a": 1}]) == 1  # back: unmarked, same data
    assert writer.finish() == 0  # a partial read marks nothing
    assert SyncedRecord.objects.get(integration=integration, remote_id="1").remote_deleted_at is None
    assert SyncedRecord.objects.get(integration=integration, remote_id="2").remote_deleted_at is None
