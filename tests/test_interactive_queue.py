"""Interactive work first: a sync a person is waiting for (a completed link, Force sync) goes to the
interactive queue, which workers take from before the scheduler's (bench_fleet measures the wait)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations import outbox, syncs
from integrations.models import Sync

from .factories import IntegrationFactory


@pytest.mark.django_db
def test_a_persons_sync_goes_to_the_interactive_queue_and_a_scheduled_one_to_syncs(
    published, django_capture_on_commit_callbacks
):
    from config.celery import app

    mine = IntegrationFactory(next_sync_at=timezone.now() + timedelta(hours=2))
    scheduled = IntegrationFactory(next_sync_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        syncs.tick()
        forced, _ = syncs.queue_sync(mine.pk)
    queued = Sync.objects.get(integration=scheduled)
    assert sorted(published) == sorted([(outbox.RUN_SYNC, (queued.pk,)), (outbox.RUN_SYNC_NOW, (forced.pk,))])
    route = app.amqp.router.route
    assert route({}, outbox.RUN_SYNC_NOW)["queue"].name == "interactive"
    assert route({}, outbox.RUN_SYNC)["queue"].name == "syncs"
    # Workers take the interactive queue first (Redis: one BRPOP over the queues in this order).
    queues = [q.name for q in app.conf.task_queues]
    assert queues.index("interactive") < queues.index("celery") < queues.index("syncs")
