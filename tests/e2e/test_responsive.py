"""Every dashboard page fits a phone (390 × 844) and a desktop (1440 × 900): the page never
scrolls sideways (tables scroll inside their own box, long ids, URLs and bodies wrap), and at
390 px the navigation collapses behind a "Menu" disclosure that still reaches every section.

The pages come from the URL patterns of `dashboard.urls` (and `sandbox.urls` when the sandbox is
mounted), their kwargs filled from the data made in `_world`, so a page added later is checked
without touching this file. Skipped: POST-only views (a GET answers 405) and JSON/CSV endpoints
(by their Content-Type) and htmx fragments (no <html>: checked inside their page). A pattern
whose kwargs cannot be filled fails the test: make its object in `_world` and add the kwarg to
`World.values` rather than leave a page untested.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from connect_flow.models import LinkKind, LinkType
from integrations import audit, invitations
from integrations.lib.tokens import hash_secret, new_secret
from integrations.models import Role
from integrations.providers.sandbox_oauth import SandboxOAuthProvider
from integrations.scopes import everything_spec
from sandbox.models import SandboxOAuthClient, SandboxOAuthGrant
from tests import factories
from tests.e2e.conftest import sign_in

pytestmark = pytest.mark.django_db(transaction=True)

SIZES = {"phone": (390, 844), "desktop": (1440, 900)}
FITS = "document.documentElement.scrollWidth <= window.innerWidth"

# The elements sticking out on the right, for the failure message (the innermost ones).
OFFENDERS = """() => {
  const width = window.innerWidth;
  const wide = [...document.querySelectorAll("body *")].filter((el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.right > width + 0.5;
  });
  return wide.filter((el) => !wide.some((other) => other !== el && el.contains(other))).slice(0, 4).map((el) => {
    const cls = typeof el.className === "string" ? el.className.trim().split(/\\s+/).filter(Boolean) : [];
    const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + cls.map((c) => "." + c).join("");
    return `${name} (right edge ${Math.round(el.getBoundingClientRect().right)}px)`;
  });
}"""

# WCAG contrast ratio of an element's text against the first opaque background behind it.
CONTRAST = """(el) => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const lum = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  let node = el, bg = [255, 255, 255];
  while (node) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0)) { bg = c; break; }
    node = node.parentElement;
  }
  const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""

LONG_ORG = "Umbrella Pharmaceuticals International Holdings GmbH & Co. KG — Research and Development Division"
UNBROKEN_ORG = "Aktiengesellschaft-für-Langzeitarchivierung-und-Personalverwaltungssysteme-Niederlassung-Süd"
LONG_PATH = "/v1/integrations/sandbox:umbrella-pharmaceuticals-international/passthrough/hris/employees/" + (
    "0123456789abcdef" * 12
)


@dataclass
class World:
    owner: Any
    environment: Any
    values: dict[str, dict[str, Any]]  # namespace → kwarg → value
    overrides: dict[str, dict[str, Any]]  # "namespace:name" → kwarg → value
    queries: dict[str, str]  # "namespace:name" → query string the page needs


def _world() -> World:
    """An environment as an operator would see it after a few weeks: every state of integration,
    long names, failing syncs and checks, links, a webhook endpoint with deliveries, API keys,
    request logs with long paths and bodies, members and an invitation, a sandbox company."""
    now = timezone.now()
    env = factories.EnvironmentFactory(slug="acme-production", name="Acme Corporation production (EU West)")
    owner = factories.UserFactory(email="operations.owner@acme-corporation.example", name="Olivia Owner", is_staff=True)
    factories.MembershipFactory(environment=env, user=owner, role=Role.OWNER)
    editor = factories.member(env, Role.EDITOR, "integration.engineer.with.a.long.address@acme-corporation.example")
    factories.member(env, Role.VIEWER, "viewer@acme.example")
    editor_membership = editor.memberships.get(environment=env)

    scope = factories.ScopeConfigFactory(
        environment=env,
        name="Payroll, compensation and absences — EU entities only (reviewed 2026)",
        spec=everything_spec("HRIS"),
        is_default=True,
    )
    factories.IntegrationFactory(
        environment=env,
        end_user_organization_name="Initech",
        scope_config=scope,
        last_sync_at=now - timedelta(hours=1),
        last_auth_check_at=now - timedelta(minutes=30),
        last_auth_outcome="AUTH_FAILED",
        auth_failing_since=now - timedelta(hours=30),
    )
    invalid = factories.IntegrationFactory(
        environment=env,
        end_user_organization_name=UNBROKEN_ORG,
        end_user_email="hr-systems-administrator@aktiengesellschaft-fuer-langzeitarchivierung.example",
        end_user_origin_id="customer-0000000000000000000000000000000000000000000000000000000001",
        scope_config=scope,
        state="INVALID",
        last_auth_check_at=now - timedelta(minutes=5),
        last_auth_outcome="AUTH_FAILED",
        last_auth_error="401 Unauthorized: the API key was revoked by the customer's HR administrator",
        auth_failing_since=now - timedelta(days=4),
        invalid_since=now - timedelta(days=1),
    )
    factories.IntegrationFactory(
        environment=env, end_user_organization_name=LONG_ORG, scope_config=scope, state="INVALID"
    )
    factories.IntegrationFactory(
        environment=env,
        end_user_organization_name="Globex (disabled)",
        scope_config=scope,
        state="INACTIVE",
        enabled=False,
    )
    for day in range(12):
        for outcome in ("OK", "AUTH_FAILED", "UNAVAILABLE")[: 1 + day % 3]:
            factories.AuthCheckFactory(
                integration=invalid,
                checked_at=now - timedelta(days=day, hours=1),
                outcome=outcome,
                http_status={"OK": 200, "AUTH_FAILED": 401, "UNAVAILABLE": 503}[outcome],
                error_message=""
                if outcome == "OK"
                else "HTTPSConnectionPool(host='api.hr.example', port=443): Max retries exceeded with url: "
                "/api/v1/employees?page=2&per_page=100&fields=first_name,last_name,email (read timeout=30)",
            )
    factories.SyncFactory(integration=invalid, records_per_model={m: 1200 for m in scope.spec})
    factories.SyncFactory(
        integration=invalid,
        status="PARTIALLY_FAILED",
        warnings=[f"permission hris.{m}.read not granted: {m} skipped" for m in list(scope.spec)[:4]],
    )
    factories.SyncFactory(
        integration=invalid,
        status="AUTHENTICATION_FAILED",
        error_message="401 Unauthorized: " + "the token was revoked; " * 6,
    )
    for state_from, state_to in (("ACTIVE", "INVALID"), ("INACTIVE", "ACTIVE")):
        factories.AuditEventFactory(
            environment=env,
            integration_id=invalid.pk,
            action="integration.state_changed",
            details={"from": state_from, "to": state_to, "reason": "authentication failing for 72 hours"},
        )
    reconnect_link = factories.ConnectionLinkFactory(
        integration=invalid, scope_config=scope, link_type=LinkType.MAGIC_LINK, created_by_user=owner
    )
    connect_link = factories.ConnectionLinkFactory(
        integration=None,
        environment=env,
        kind=LinkKind.CONNECT,
        end_user_organization_name=LONG_ORG,
        end_user_email="people-operations-team@umbrella-pharmaceuticals-international.example",
        tool="sandbox",
    )
    endpoint = factories.WebhookEndpointFactory(
        environment=env,
        url="https://hooks.acme-corporation.example/relink/webhooks/receiver/" + "segment/" * 20 + "end",
        description="Production receiver behind the API gateway; pages the on-call engineer after 3 failures",
        event_types=["integration-state-changed", "integration-deleted", "sync-finished"],
    )
    delivery = None
    for status in ("DELIVERED", "FAILED", "PENDING"):
        delivery = factories.WebhookDeliveryFactory(
            endpoint=endpoint,
            status=status,
            attempts=2,
            last_response_status=500,
            next_attempt_at=now + timedelta(hours=2) if status == "PENDING" else None,
        )
        factories.WebhookAttemptFactory(
            delivery=delivery, response_body='{"error":"' + "upstream_timeout_" * 30 + '"}', error="Read timed out"
        )
    api_key = factories.ApiKeyFactory(
        environment=env, name="Nightly payroll export — production cluster eu-west-1", created_by=owner
    )
    factories.ApiKeyFactory(environment=env, name="Old key", revoked_at=now - timedelta(days=2))
    body = {"remote_id": "e" * 120, "fields": {"note": "A long note without breaks: " + "ab" * 200}, "tags": ["x"] * 30}
    log = factories.RequestLogFactory(
        environment=env,
        method="POST",
        path=LONG_PATH,
        status_code=422,
        error_code="PLATFORM.INPUT_INVALID",
        api_key=api_key,
        integration_id=invalid.pk,
        request_body=body,
        response_body={"error": {"code": "PLATFORM.INPUT_INVALID", "message": "m" * 300, "details": body}},
    )
    factories.RequestLogFactory(environment=env, source="CONNECT_FLOW", path="/connect/" + "t" * 60, status_code=200)
    values: dict[str, dict[str, Any]] = {
        "dashboard": {
            "env": env.slug,
            "integration_id": invalid.pk,
            "scope_config_id": scope.pk,
            "endpoint_id": endpoint.pk,
            "delivery_id": delivery.pk,
            "log_id": log.pk,
            "link_id": reconnect_link.pk,
            "key_id": api_key.pk,
            "member_id": editor_membership.pk,
        },
    }
    overrides: dict[str, dict[str, Any]] = {"dashboard:connect_revoke": {"link_id": connect_link.pk}}
    invited = invitations.invite(
        env, "new.colleague.with.a.long.address@acme-corporation.example", Role.EDITOR, audit.Actor(user=owner)
    )
    values["dashboard"].update(invitation_id=invited.invitation.pk, token=invited.token)

    company = factories.SandboxCompanyFactory(name="Acme Sandbox HR — Frankfurt subsidiary", environment=env)
    for _ in range(3):
        factories.SandboxEmployeeFactory(company=company)
    sandbox_key, _raw = company.create_key("Relink production connector (do not revoke)")
    client = SandboxOAuthClient.ensure_default()
    grant = SandboxOAuthGrant.objects.create(
        company=company, client=client, refresh_token_hash=hash_secret(new_secret(""))
    )
    values["sandbox"] = {"slug": company.slug, "key_id": sandbox_key.pk, "grant_id": grant.pk}
    authorize = SandboxOAuthProvider.authorize_url(client.redirect_uris[0], "state", ["employees:read"])
    queries = {"sandbox:oauth_authorize": authorize[authorize.index("?") :]}
    return World(owner=owner, environment=env, values=values, overrides=overrides, queries=queries)


def _named_patterns(namespace: str) -> list[tuple[str, list[str]]]:
    """("namespace:name", kwargs) of every named URL pattern mounted under `namespace`."""
    found: list[tuple[str, list[str]]] = []

    def walk(patterns: list, prefix: str, keys: list[str]) -> None:
        for entry in patterns:
            entry_keys = keys + list(entry.pattern.regex.groupindex)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, f"{prefix}{entry.namespace}:" if entry.namespace else prefix, entry_keys)
            elif isinstance(entry, URLPattern) and entry.name:
                found.append((f"{prefix}{entry.name}", entry_keys))

    _pattern_prefix, resolver = get_resolver().namespace_dict[namespace]
    walk(resolver.url_patterns, f"{namespace}:", list(resolver.pattern.regex.groupindex))
    return found


def _namespaces() -> list[str]:
    mounted = get_resolver().namespace_dict
    return ["dashboard"] + (["sandbox"] if "sandbox" in mounted else [])


# --- Pages reached through a form: the view's GET shows them only right after a POST -------------


def _bulk_links(page, base: str, world: World) -> None:
    """The reconnection links page, right after creating links for the invalid integrations."""
    page.goto(f"{base}/env/{world.environment.slug}/?state=INVALID")
    for box in page.locator('input[type=checkbox][name="integration"]').all():
        box.check()
    page.locator("#bulk-relink button[type=submit]").click()
    page.wait_for_url("**/relink-links/")


PREPARE: dict[str, Callable[[Any, str, World], None]] = {"dashboard:relink_bulk": _bulk_links}


def _api_key_created(page, base: str, world: World) -> None:
    page.goto(f"{base}/env/{world.environment.slug}/secrets/")
    page.fill("#id_name", "Payroll export for the data warehouse — staging cluster eu-central-1")
    page.get_by_role("button", name="Create key").click()
    page.wait_for_selector("#new-api-key")


def _connect_link_created(page, base: str, world: World) -> None:
    page.goto(f"{base}/env/{world.environment.slug}/connect/")
    page.fill("#id_end_user_organization_name", LONG_ORG)
    page.fill("#id_end_user_email", "people-operations-team@umbrella-pharmaceuticals-international.example")
    page.locator("#connect-form button[type=submit]").click()
    page.wait_for_selector("#connect-url")


def _relink_link_created(page, base: str, world: World) -> None:
    page.goto(f"{base}/env/{world.environment.slug}/integrations/{world.values['dashboard']['integration_id']}/")
    page.locator("#relink").get_by_role("button", name="Create link").click()
    page.wait_for_selector("#relink-url")


def _secret_rotated(page, base: str, world: World) -> None:
    endpoint_id = world.values["dashboard"]["endpoint_id"]
    page.goto(f"{base}/env/{world.environment.slug}/webhooks/{endpoint_id}/rotate-secret/")
    page.get_by_role("button", name="Rotate secret").click()
    page.wait_for_selector("#webhook-secret")


def _role_selects_usable(page) -> list[str]:
    """The members page's role selects keep room for their text, not only their arrow."""
    widths = page.locator(".role-form select").evaluate_all(
        "(els) => els.map((el) => el.getBoundingClientRect().width)"
    )
    return [f"a role select is {w:.0f}px wide" for w in widths if w < 80] or ([] if widths else ["no role select"])


# Pages shown after a POST, which the URL patterns alone do not reach (long one-time values).
AFTER_POST: dict[str, Callable[[Any, str, World], None]] = {
    "API keys, a key just created": _api_key_created,
    "Connect, a link just created": _connect_link_created,
    "Integration, a reconnection link just created": _relink_link_created,
    "Webhook, its secret just rotated": _secret_rotated,
}
EXTRA_CHECKS: dict[str, Callable[[Any], list[str]]] = {"dashboard:members": _role_selects_usable}
# The invitation page is the invitee's: the owner signed in sees "this invitation is for someone
# else" (403); the invitee, signed out, sees the form to create an account and join.
EXPECTED_STATUS = {"dashboard:invitation": 403}
ALSO_SIGNED_OUT = {"dashboard:invitation"}


def _kwargs(name: str, keys: list[str], world: World) -> tuple[dict[str, Any], list[str]]:
    namespace = name.split(":", 1)[0]
    known = {**world.values.get(namespace, {}), **world.overrides.get(name, {})}
    return {k: known[k] for k in keys if k in known}, [k for k in keys if k not in known]


def _nav_checks(page, width: int, phone: bool, problems: list[str], shot) -> None:
    """The main navigation: collapsed behind "Menu" on a phone, open on a desktop; its links
    readable on the dark bar (WCAG AA), inside the viewport and clickable either way, and the
    current section marked aria-current."""
    nav = page.get_by_role("navigation", name="Main")
    logs = nav.get_by_role("link", name="Logs", exact=True)
    menu = page.locator("details:has(nav[aria-label=Main]) > summary")
    if phone:
        if logs.is_visible() or not menu.is_visible():
            problems.append(f"{width}px: the main navigation is not collapsed behind a menu")
        if menu.is_visible():
            menu.click()
        shot(page, "menu-open")
    if not logs.is_visible():
        problems.append(f"{width}px: the Logs link of the main navigation is not visible")
        return
    box = logs.bounding_box()
    assert box is not None
    if box["x"] < 0 or box["x"] + box["width"] > width:
        problems.append(f"{width}px: the Logs link lies outside the viewport ({box})")
    if not page.evaluate(FITS):
        problems.append(f"{width}px: the open menu scrolls sideways: {page.evaluate(OFFENDERS)}")
    topbar_text = page.locator(".topbar a:visible, .topbar summary:visible, .topbar button:visible")
    for i in range(topbar_text.count()):
        item = topbar_text.nth(i)
        ratio = item.evaluate(CONTRAST)
        if ratio < 4.5:
            problems.append(f"{width}px: {item.inner_text()!r} in the top bar has contrast {ratio:.2f}:1")
    # The environment switcher opens inside the bar without widening the page; its links are dark on white.
    page.locator(".switcher > summary").click()
    preferences = page.get_by_role("link", name="Your preferences")
    if not preferences.is_visible() or preferences.evaluate(CONTRAST) < 4.5 or not page.evaluate(FITS):
        problems.append(f"{width}px: the environment switcher is hidden, unreadable or too wide")
    if phone:
        shot(page, "switcher-open")
    page.locator(".switcher > summary").click()
    logs.click()
    page.wait_for_url("**/logs/")
    # The menu is closed again on the new page: read the attribute, the link need not be visible.
    if page.locator('nav[aria-label="Main"] a', has_text="Logs").get_attribute("aria-current") != "page":
        problems.append(f"{width}px: the Logs link is not marked aria-current on the logs page")


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}px" for w, _h in SIZES.values()])
def test_every_page_fits_the_screen_without_sideways_scrolling(browser, live_server, shot, size):
    width, height = SIZES[size]
    world = _world()
    base = live_server.url
    csp: list[str] = []
    problems: list[str] = []
    checked: list[str] = []
    skipped: list[str] = []

    def new_page(context):
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.on("console", lambda msg: csp.append(msg.text) if "Content Security Policy" in msg.text else None)
        return page

    context = browser.new_context(viewport={"width": width, "height": height})
    signed_out = browser.new_context(viewport={"width": width, "height": height})
    page, invitee = new_page(context), new_page(signed_out)

    def check(label: str, on) -> None:
        checked.append(label)
        if not on.evaluate(FITS):
            wide = on.evaluate("document.documentElement.scrollWidth")
            problems.append(f"{label} ({on.url}) is {wide}px wide at {width}px: {on.evaluate(OFFENDERS)}")
        problems.extend(f"{label} at {width}px: {p}" for p in EXTRA_CHECKS.get(label, lambda _page: [])(on))
        if size == "phone":
            shot(on, label.replace(":", "-").replace(" ", "_").replace(",", ""))

    def visit(label: str, url: str, expected_status: int = 200, on=page) -> None:
        response = on.goto(url)
        assert response is not None
        if response.status != expected_status:
            problems.append(f"{label} ({url}) answered {response.status}, expected {expected_status}")
        check(label, on)

    visit("login", f"{base}/login/")
    sign_in(page, base, world.owner.email, then=f"/env/{world.environment.slug}/overview/")
    _nav_checks(page, width, size == "phone", problems, shot)

    for namespace in _namespaces():
        for name, keys in _named_patterns(namespace):
            kwargs, missing = _kwargs(name, keys, world)
            if missing:
                problems.append(
                    f"{name} needs {missing}, which test_responsive.py cannot fill: make the object in _world()"
                    " and add its kwarg to `values`, so the page is checked"
                )
                continue
            url = f"{base}{reverse(name, kwargs=kwargs)}{world.queries.get(name, '')}"
            probe = context.request.get(url)  # with the browser's cookies: signed in as the owner
            content_type = probe.headers.get("content-type", "")
            if probe.status == 405:
                skipped.append(f"{name} (POST only)")
            elif not content_type.startswith("text/html"):
                skipped.append(f"{name} ({content_type.split(';')[0]})")
            elif "<html" not in probe.text():
                skipped.append(f"{name} (htmx fragment, checked inside its page)")
            elif name in PREPARE:
                PREPARE[name](page, base, world)
                check(name, page)
            else:
                visit(name, url, EXPECTED_STATUS.get(name, 200))
                if name in ALSO_SIGNED_OUT:
                    visit(f"{name}, signed out", url, on=invitee)

    for label, reach in AFTER_POST.items():
        reach(page, base, world)
        check(label, page)
    if "sandbox" in _namespaces():
        visit("sandbox:oauth_authorize, refused", f"{base}/sandbox/oauth/authorize", expected_status=400)
    visit("404", f"{base}/env/{world.environment.slug}/no-such-page/", expected_status=404)

    signed_out.close()
    context.close()
    print(f"{width}px: checked {len(checked)} pages: {', '.join(checked)}; skipped {', '.join(skipped)}")
    assert not csp, f"Content Security Policy violations: {csp}"
    assert not problems, f"{len(problems)} problem(s) at {width}px:\n" + "\n".join(problems)
    assert len(checked) > 25, f"only {len(checked)} pages checked: {checked}"
