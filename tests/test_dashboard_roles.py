"""The dashboard's role matrix, in one table, checked for every role on every URL.

viewer reads; editor also creates links, edits scope configs, enables, disables, forces syncs,
checks auth and deletes integrations; owner also manages API keys, webhooks and members.
Below its role a member gets 403; outside the environment everyone gets 404
(test_dashboard_access.py).
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from integrations.models import Role

from . import factories
from .test_dashboard_access import ENV_PATTERNS, _samples, _url_for

V, E, O = Role.VIEWER, Role.EDITOR, Role.OWNER  # noqa: E741 -- one letter per column of the role table

# (URL name, method) → the lowest role allowed. Every dashboard URL with an environment is here.
ROLE_MATRIX: dict[tuple[str, str], str] = {
    ("dashboard:overview", "GET"): V,
    ("dashboard:integrations", "GET"): V,
    ("dashboard:integration", "GET"): V,
    ("dashboard:integration_syncs", "GET"): V,
    ("dashboard:relink", "GET"): V,
    ("dashboard:relink_scope_diff", "GET"): V,
    ("dashboard:relink_links", "GET"): V,
    ("dashboard:logs", "GET"): V,
    ("dashboard:log", "GET"): V,
    ("dashboard:scope_configs", "GET"): V,
    ("dashboard:scope_config", "GET"): V,
    ("dashboard:webhooks", "GET"): V,
    ("dashboard:webhook", "GET"): V,
    ("dashboard:force_sync", "POST"): E,
    ("dashboard:check_now", "POST"): E,
    ("dashboard:set_enabled", "POST"): E,
    ("dashboard:delete", "GET"): E,
    ("dashboard:delete", "POST"): E,
    ("dashboard:relink_create", "POST"): E,
    ("dashboard:relink_revoke", "POST"): E,
    ("dashboard:scope_config_new", "GET"): E,
    ("dashboard:scope_config_new", "POST"): E,
    ("dashboard:scope_config", "POST"): E,
    ("dashboard:scope_config_delete", "GET"): E,
    ("dashboard:scope_config_delete", "POST"): E,
    ("dashboard:scope_config_duplicate", "POST"): E,
    ("dashboard:api_keys", "GET"): O,
    ("dashboard:api_key_create", "POST"): O,
    ("dashboard:api_key_revoke", "POST"): O,
    ("dashboard:members", "GET"): O,
    ("dashboard:member_invite", "POST"): O,
    ("dashboard:invitation_revoke", "POST"): O,
    ("dashboard:environment_settings", "GET"): O,
    ("dashboard:environment_settings", "POST"): O,
    ("dashboard:member_role", "POST"): O,
    ("dashboard:member_remove", "POST"): O,
    ("dashboard:webhook_new", "GET"): O,
    ("dashboard:webhook_new", "POST"): O,
    ("dashboard:webhook_toggle", "POST"): O,
    ("dashboard:webhook_delete", "GET"): O,
    ("dashboard:webhook_delete", "POST"): O,
    ("dashboard:webhook_test", "POST"): O,
    ("dashboard:webhook_replay", "POST"): O,
    ("dashboard:webhook_edit", "GET"): O,
    ("dashboard:webhook_edit", "POST"): O,
    ("dashboard:webhook_rotate", "GET"): O,
    ("dashboard:webhook_rotate", "POST"): O,
    ("dashboard:webhook_end_overlap", "POST"): O,
    ("dashboard:connect", "GET"): V,
    ("dashboard:connect", "POST"): E,
    ("dashboard:connect_revoke", "POST"): E,
    ("dashboard:integration_health", "GET"): V,
    ("dashboard:reconnect", "POST"): E,
    ("dashboard:reconnect_requests", "POST"): E,
    ("dashboard:relink_bulk", "GET"): E,
    ("dashboard:relink_bulk", "POST"): E,
    ("dashboard:relink_bulk_csv", "GET"): E,
}
RANK = {V: 0, E: 1, O: 2}
PATTERNS = dict(ENV_PATTERNS)
CASES = [(name, method, role) for (name, method) in ROLE_MATRIX for role in (V, E, O)]


def test_every_dashboard_url_is_in_the_role_matrix():
    assert set(PATTERNS) == {name for name, _ in ROLE_MATRIX}


@pytest.mark.parametrize(("name", "method", "role"), CASES, ids=[f"{n.split(':')[1]}-{m}-{r}" for n, m, r in CASES])
def test_role_matrix(client, environment, name, method, role):
    user = factories.MembershipFactory(environment=environment, role=role).user
    url = _url_for(name, PATTERNS[name], environment.slug, _samples(environment))
    client.force_login(user)

    response = client.get(url) if method == "GET" else client.post(url)

    if RANK[role] >= RANK[ROLE_MATRIX[(name, method)]]:
        assert response.status_code not in (403, 404, 405), f"{role} {method} {url}: {response.status_code}"
    else:
        assert response.status_code == 403, f"{role} {method} {url}: {response.status_code}"


def test_a_viewer_sees_no_buttons_they_cannot_use(client, environment):
    """The integration page offers editors' actions only to editors."""
    integration = factories.IntegrationFactory(environment=environment)
    url = reverse("dashboard:integration", kwargs={"env": environment.slug, "integration_id": integration.pk})
    for role, shown in ((V, False), (E, True)):
        client.force_login(factories.MembershipFactory(environment=environment, role=role).user)
        body = client.get(url).content.decode()
        assert ("Force sync" in body) is shown and ("Create link" in body) is shown, role
