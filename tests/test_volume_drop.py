"""Silent failures: a sync that "succeeds" with far fewer records than usual finishes
PARTIALLY_FAILED with a VOLUME_DROP warning (integrations/sync_warnings.py), shown on the
integration page — the page its `sync-finished` webhook's `log_url` opens — until a sync reads the
usual count again."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone

from integrations import syncs, webhooks
from integrations.models import Environment, Role, ScopeConfig, Sync, WebhookDelivery
from integrations.pages import integration_url
from integrations.sync_warnings import BASELINE_SCAN, VolumeDrop, latest_volume_drops, volume_drops
from sandbox.models import SandboxCompany, SandboxEmployee

from .factories import (
    IntegrationFactory,
    SandboxEmployeeFactory,
    ScopeConfigFactory,
    SyncFactory,
    WebhookEndpointFactory,
    member,
)

EMPLOYEES = "hris_employees"
ABSENCES = "hris_absences"


# --- Through a real sync against the sandbox ------------------------------------------------------


@pytest.fixture
def sandbox(live_server, settings):
    settings.BASE_URL = live_server.url
    company = SandboxCompany.objects.create(name="Initech")
    SandboxEmployeeFactory.create_batch(30, company=company)
    return company


def _run(integration, sync_type: str = "FULL") -> Sync:
    """FULL by default: records that vanish upstream show only in a complete read (a DELTA sync
    reads the sandbox's changes only, see test_a_delta_sync_counts_the_live_records_and_never_warns)."""
    sync, already = syncs.queue_sync(integration.pk, sync_type)
    assert not already
    return syncs.run_sync(sync.pk)


def _finished_payload(sync: Sync) -> dict:
    (delivery,) = [
        d.payload["data"]
        for d in WebhookDelivery.objects.filter(event_type="sync-finished")
        if d.payload["data"]["sync_id"] == sync.pk
    ]
    return delivery


@pytest.mark.django_db(transaction=True)
def test_a_sync_reading_far_fewer_records_warns_until_a_normal_sync_clears_it(sandbox, broker, client):
    """`broker`: nothing is published (the syncs are run here, no webhook is sent anywhere)."""
    _, raw = sandbox.create_key(permissions=["employees:read", "compensation:read"])
    integration = IntegrationFactory(credentials={"api_key": raw})
    WebhookEndpointFactory(environment=integration.environment, event_types=["sync-finished"])
    for _ in range(3):
        assert _run(integration).status == "SUCCEEDED"

    # 20 of the 30 employees vanish from what the credentials can see.
    hidden = list(SandboxEmployee.objects.filter(company=sandbox).order_by("pk")[:20].values())
    SandboxEmployee.objects.filter(pk__in=[row["id"] for row in hidden]).delete()
    dropped = _run(integration)
    assert dropped.status == "PARTIALLY_FAILED"
    assert dropped.records_per_model == {EMPLOYEES: 10}
    assert dropped.warnings == ["VOLUME_DROP: hris_employees: 10 records, usually 30 (down 67 %)"]
    finished = _finished_payload(dropped)
    assert "warnings" not in finished and finished["sync_state"] == "PARTIALLY_FAILED"
    # The webhook's log_url opens the integration's page, which says it.
    client.force_login(member(integration.environment, Role.VIEWER, "viewer@initech.test"))
    page = client.get(urlsplit(finished["log_url"]).path)
    assert page.status_code == 200
    assert "Employees: 10 records in the last sync, usually 30" in page.content.decode()
    assert latest_volume_drops(integration) == [VolumeDrop(EMPLOYEES, 30, 10)]

    # A flagged count is not a usual one: the drop keeps warning while it lasts...
    again = _run(integration)
    assert again.warnings == ["VOLUME_DROP: hris_employees: 10 records, usually 30 (down 67 %)"]

    # ...and the next normal sync clears it.
    SandboxEmployee.objects.bulk_create(SandboxEmployee(**row) for row in hidden)
    normal = _run(integration)
    assert normal.status == "SUCCEEDED" and normal.warnings == []
    assert "warnings" not in _finished_payload(normal)
    assert latest_volume_drops(integration) == []


@pytest.mark.django_db(transaction=True)
def test_a_delta_sync_counts_the_live_records_and_never_warns(sandbox, broker):
    """A DELTA sync reads only the sandbox's changes (here: none, then one): its count is the live
    records Relink holds, not the handful it read, so a small delta is never a drop. Records gone
    upstream are seen by the next complete read, which then warns."""
    _, raw = sandbox.create_key(permissions=["employees:read", "compensation:read"])
    integration = IntegrationFactory(credentials={"api_key": raw})
    assert _run(integration).records_per_model == {EMPLOYEES: 30}
    unchanged = _run(integration, "DELTA")
    assert (unchanged.type, unchanged.status, unchanged.warnings) == ("DELTA", "SUCCEEDED", [])
    assert unchanged.records_per_model == {EMPLOYEES: 30}
    SandboxEmployee.objects.filter(company=sandbox).first().save()  # one change upstream
    assert _run(integration, "DELTA").records_per_model == {EMPLOYEES: 30}

    SandboxEmployee.objects.filter(pk__in=list(sandbox.employees.values_list("pk", flat=True)[:20])).delete()
    assert _run(integration, "DELTA").records_per_model == {EMPLOYEES: 30}  # a delta cannot see it
    complete = _run(integration, "FULL")
    assert complete.records_per_model == {EMPLOYEES: 10}
    assert complete.warnings == ["VOLUME_DROP: hris_employees: 10 records, usually 30 (down 67 %)"]


# --- The rule, on recorded history --------------------------------------------------------------


@pytest.fixture
def integration(environment):
    integration = IntegrationFactory(environment=environment, end_user_organization_name="Umbrella Corp")
    # Its scope config has not changed since long before the history below.
    ScopeConfig.objects.filter(pk=integration.scope_config_id).update(updated_at=timezone.now() - timedelta(days=30))
    integration.scope_config.refresh_from_db()
    return integration


def _sync(integration, counts: dict, *, hours_ago: float, status="SUCCEEDED", scope_config=None, **fields) -> Sync:
    at = timezone.now() - timedelta(hours=hours_ago)
    return SyncFactory(
        integration=integration,
        scope_config=scope_config or integration.scope_config,
        status=status,
        records_per_model=counts,
        created_at=at,
        started_at=at,
        ended_at=at + timedelta(seconds=30),
        **fields,
    )


def _history(integration, *counts: int, model: str = EMPLOYEES) -> None:
    """Finished syncs reading `counts` of `model`, oldest first, three hours apart."""
    for i, count in enumerate(counts):
        _sync(integration, {model: count}, hours_ago=3 * (len(counts) - i) + 1)


def _judge(integration, counts: dict, scope_config=None) -> list[VolumeDrop]:
    """The drops of a sync that has just read `counts` (running, not finished yet)."""
    current = _sync(integration, counts, hours_ago=0, status="RUNNING", scope_config=scope_config)
    try:
        return volume_drops(Sync.objects.select_related("integration__environment", "scope_config").get(pk=current.pk))
    finally:
        current.delete()  # one open sync per integration: the next judgement makes its own


def _policy(environment: Environment, percent: int, min_records: int) -> None:
    Environment.objects.filter(pk=environment.pk).update(
        volume_drop_percent=percent, volume_drop_min_records=min_records
    )


def test_the_warning_names_the_model_and_both_counts(integration):
    _history(integration, 240, 240, 240)
    (drop,) = _judge(integration, {EMPLOYEES: 12})
    assert drop == VolumeDrop(EMPLOYEES, previous=240, current=12)
    assert drop.drop_percent == 95
    assert drop.text == "VOLUME_DROP: hris_employees: 12 records, usually 240 (down 95 %)"
    assert VolumeDrop.parse(drop.text) == drop


def test_no_warning_when_the_usual_count_is_below_the_minimum(integration):
    _history(integration, 19, 19, 19)
    assert _judge(integration, {EMPLOYEES: 0}) == []


def test_a_usual_count_of_exactly_the_minimum_is_judged(integration):
    _history(integration, 20, 20, 20)
    assert _judge(integration, {EMPLOYEES: 2}) == [VolumeDrop(EMPLOYEES, 20, 2)]


def test_a_drop_of_at_most_the_share_is_not_a_warning(integration):
    _history(integration, 240, 240, 240)
    assert _judge(integration, {EMPLOYEES: 120}) == []  # exactly 50 %
    assert _judge(integration, {EMPLOYEES: 119}) == [VolumeDrop(EMPLOYEES, 240, 119)]  # more than 50 %


def test_a_growing_count_is_never_a_warning(integration):
    _history(integration, 240, 240)
    assert _judge(integration, {EMPLOYEES: 5000}) == []


def test_the_thresholds_are_the_environments(integration, environment):
    _policy(environment, percent=20, min_records=100)
    _history(integration, 150, 150, 150)
    assert _judge(integration, {EMPLOYEES: 110}) == [VolumeDrop(EMPLOYEES, 150, 110)]  # 27 % > 20 %
    assert _judge(integration, {EMPLOYEES: 125}) == []  # 17 %
    _history(integration, 90, 90, 90, model=ABSENCES)
    assert _judge(integration, {ABSENCES: 10}) == []  # 90 < 100 records


def test_the_usual_count_is_the_median_of_the_last_five_that_read_the_model(integration):
    _history(integration, 1000, 1000, 1000, 100, 240, 250, 30, 260)
    # The newest five, 260 30 250 240 100, sorted 30 100 [240] 250 260; the 1000s are older.
    assert _judge(integration, {EMPLOYEES: 100}) == [VolumeDrop(EMPLOYEES, 240, 100)]


def test_failed_and_cancelled_syncs_and_other_integrations_are_no_baseline(integration, environment):
    _sync(integration, {EMPLOYEES: 400}, hours_ago=9, status="FAILED")
    _sync(integration, {EMPLOYEES: 400}, hours_ago=6, status="CANCELLED")
    other = IntegrationFactory(environment=environment, scope_config=integration.scope_config)
    _sync(other, {EMPLOYEES: 400}, hours_ago=3)
    assert _judge(integration, {EMPLOYEES: 10}) == []


def test_a_sync_partially_failed_for_another_reason_is_a_baseline(integration):
    withheld = "permission 'compensation:read' for hris_employees.salary not granted: the field is missing"
    for hours in (9, 6, 3):
        _sync(integration, {EMPLOYEES: 240}, hours_ago=hours, status="PARTIALLY_FAILED", warnings=[withheld])
    assert _judge(integration, {EMPLOYEES: 12}) == [VolumeDrop(EMPLOYEES, 240, 12)]


def test_another_scope_config_is_not_compared(integration):
    _history(integration, 240, 240, 240)
    other = ScopeConfigFactory(environment=integration.environment)
    assert _judge(integration, {EMPLOYEES: 12}, scope_config=other) == []


def test_an_edited_scope_config_starts_its_baseline_again(integration):
    _history(integration, 240, 240, 240)
    ScopeConfig.objects.filter(pk=integration.scope_config_id).update(updated_at=timezone.now() - timedelta(hours=2))
    integration.scope_config.refresh_from_db()
    assert _judge(integration, {EMPLOYEES: 12}) == []  # every count is from before the edit


def test_a_model_the_sync_did_not_read_is_not_judged(integration):
    for hours in (9, 6, 3):
        _sync(integration, {EMPLOYEES: 240, ABSENCES: 500}, hours_ago=hours)
    assert _judge(integration, {EMPLOYEES: 240}) == []  # absences: no longer read, or refused


def test_a_drop_that_lasts_the_whole_scan_becomes_the_usual_count(integration):
    _history(integration, 240, 240)
    drop = VolumeDrop(EMPLOYEES, 240, 12).text
    for i in range(BASELINE_SCAN):
        _sync(integration, {EMPLOYEES: 12}, hours_ago=3 - (i + 1) / (BASELINE_SCAN + 1), warnings=[drop])
    assert _judge(integration, {EMPLOYEES: 12}) == []


# --- The webhook's and the dashboard's view of it ------------------------------------------------


def test_sync_finished_carries_no_warnings_and_its_log_url_shows_them(client, viewer, integration):
    """The payload is exactly the reference's (no `warnings`); the page `log_url` opens lists each
    warning of the sync, a volume drop in words."""
    sync = _sync(
        integration,
        {EMPLOYEES: 1},
        hours_ago=0,
        status="PARTIALLY_FAILED",
        warnings=[
            "permission 'absences:read' for hris_absences not granted",
            "VOLUME_DROP: hris_employees: 1 record, usually 240 (down 100 %)",
        ],
    )
    data = webhooks.sync_data(sync, integration_url(integration))
    assert "warnings" not in data and data["sync_state"] == "PARTIALLY_FAILED"

    client.force_login(viewer)
    page = client.get(urlsplit(data["log_url"]).path)
    assert page.status_code == 200
    body = page.content.decode()
    assert "permission &#x27;absences:read&#x27; for hris_absences not granted" in body
    assert "Employees: 1 record in the last sync, usually 240" in body


def _page(client, integration) -> str:
    url = reverse(
        "dashboard:integration", kwargs={"env": integration.environment.slug, "integration_id": integration.pk}
    )
    return client.get(url).content.decode()


PLAIN = "Employees: 12 records in the last sync, usually 240 — a permission may have been removed upstream"


def test_the_integration_page_says_it_in_plain_words_until_a_normal_sync(client, viewer, integration):
    integration.last_auth_check_at, integration.last_auth_outcome = timezone.now(), "OK"
    integration.save()
    _history(integration, 240, 240, 240)
    drop = VolumeDrop(EMPLOYEES, 240, 12).text
    _sync(integration, {EMPLOYEES: 12}, hours_ago=0.5, status="PARTIALLY_FAILED", warnings=[drop])
    client.force_login(viewer)

    body = _page(client, integration)
    assert f'<p class="volume-drop" id="volume-drop">{PLAIN}.</p>' in body  # the status card
    assert "Healthy" not in body
    assert body.count(PLAIN) == 2  # and the sync's row in the history

    # A sync that read nothing (failed) neither clears nor repeats it; a running one neither.
    _sync(integration, {}, hours_ago=0.3, status="FAILED", error_message="Sandbox HR answered 503")
    _sync(integration, {}, hours_ago=0, status="RUNNING")
    assert 'id="volume-drop"' in _page(client, integration)

    Sync.objects.filter(status="RUNNING").update(status="SUCCEEDED", records_per_model={EMPLOYEES: 239})
    body = _page(client, integration)
    assert 'id="volume-drop"' not in body and "Healthy" in body
    assert body.count(PLAIN) == 1  # still in the history row of the sync that had it


def test_the_overview_lists_it_among_what_needs_attention(client, viewer, integration):
    drop = VolumeDrop(EMPLOYEES, 240, 12).text
    _sync(integration, {EMPLOYEES: 12}, hours_ago=0, status="PARTIALLY_FAILED", warnings=["other", drop])
    client.force_login(viewer)
    body = client.get(reverse("dashboard:overview", kwargs={"env": integration.environment.slug})).content.decode()
    assert f"Latest sync partially failed with 2 warnings: {PLAIN}" in body
