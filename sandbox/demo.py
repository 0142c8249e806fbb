"""Demo data: one environment, two logins, three scope configs and ~40 sandbox integrations.

Each integration is for a fictional customer with its own sandbox company (owned by the demo
environment, so its members manage it), employees and API key, and carries five days of
auth-check and sync history played out under the health rule of DESIGN "Integration state" with
the demo environment's policy (its auth-failure window: three days unless changed), so the
dashboard opens on a believable mix of healthy, failing, paused and disabled integrations.
The failures are real: the keys behind them are revoked, so a live check against /sandbox
answers 401.

Everything derives from fixed lists, a `random.Random` seeded per customer and one anchor time.
Objects are looked up by natural key (environment slug, email, scope config name, origin id) and
skipped when they exist, so running the seed again creates and changes nothing.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from integrations import audit, records
from integrations.health import DEFAULT_POLICY, HealthPolicy, apply_check_to_streak
from integrations.lib.tokens import hash_secret
from integrations.models import (
    AuditEvent,
    AuthCheck,
    Availability,
    Environment,
    Integration,
    IntegrationState,
    Membership,
    Role,
    ScopeConfig,
    Sync,
    SyncedRecord,
    SyncStatus,
    SyncType,
    User,
    new_integration_id,
)
from integrations.providers import Category, Outcome, get_provider
from integrations.providers.rest import select
from integrations.scopes import ScopeSpec

from .models import SandboxApiKey, SandboxCompany, SandboxEmployee

ENVIRONMENT_SLUG = "demo"
ENVIRONMENT_NAME = "Demo production"
PASSWORD = "relink-demo"
OPERATOR_EMAIL = "operator@example.com"
OWNER_EMAIL = "owner@example.com"  # also manages API keys, webhooks and members
ADMIN_EMAIL = "admin@example.com"
TOOL = "sandbox"

CHECK_INTERVAL = timedelta(hours=3)
RECHECK_INTERVAL = timedelta(days=1)

HISTORY = timedelta(days=5)
UNAVAILABLE_RATE = 0.03

AUTH_FAILED_ERROR = "401 The API key is unknown or has been revoked."  # as the sandbox answers

ORGANIZATIONS = [
    "Northwind GmbH",
    "Bluebird Logistics",
    "Alpenglow Outdoor AG",
    "Cobalt Ridge Software",
    "Harbor & Pine Dental",
    "Lumen Analytics",
    "Fjordline Shipping AS",
    "Brightwater Foods",
    "Kestrel Aerospace",
    "Maple Street Bakery",
    "Orchid Health Partners",
    "Quarry Stone Builders",
    "Redwood Legal LLP",
    "Silverline Transit",
    "Tidewater Energy",
    "Umbra Design Studio",
    "Vantage Point Consulting",
    "Willow & Finch Retail",
    "Zephyr Wind Systems",
    "Acorn Childcare Ltd",
    "Beacon Hill Insurance",
    "Copperleaf Hotels",
    "Driftwood Media",
    "Evergreen Facility Services",
    "Falkenstein Maschinenbau GmbH",
    "Granite Peak Capital",
    "Helios Solar SE",
    "Ironbridge Engineering",
    "Juniper Veterinary Clinics",
    "Kingfisher Travel",
    "Lighthouse Learning",
    "Meridian Pharma SA",
    "Nimbus Cloud Services",
    "Oakmont Property Group",
    "Pinnacle Fitness",
    "Quill & Ink Publishing",
    "Rosenthal Optik GmbH",
    "Saffron Kitchen Group",
    "Trailhead Gear Co.",
    "Uplands Dairy Cooperative",
]
LEGAL_SUFFIXES = ("GmbH", "AG", "AS", "LLP", "Ltd", "SE", "SA", "Co.")

FIRST_NAMES = [
    "Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hannah", "Isaac", "Julia",
    "Karim", "Lena", "Marco", "Nora", "Oscar", "Paula", "Quentin", "Rosa", "Samir", "Tara",
    "Ulrich", "Vera", "William", "Yara", "Zoe", "Luca", "Mia", "Noah", "Emma", "Jonas",
]  # fmt: skip
LAST_NAMES = [
    "Schmidt", "Novak", "Rossi", "Dubois", "Jensen", "Kowalski", "Garcia", "Bauer", "Larsen",
    "Moreau", "Fischer", "Silva", "Keller", "Weber", "Costa", "Meyer", "Brennan", "Nilsson",
    "Hoffmann", "Ricci", "Wagner", "Laurent", "Berger", "Olsen", "Vogel", "Martin", "Lang",
]  # fmt: skip
DEPARTMENTS = ["Engineering", "Sales", "Operations", "Finance", "People", "Marketing", "Support"]

# Fates by origin id; every other customer is healthy. FAILING ones are mid-streak, still ACTIVE.
INVALID = {"cust-004", "cust-009", "cust-015", "cust-022", "cust-029", "cust-035"}
INACTIVE = {"cust-007", "cust-018", "cust-026", "cust-038"}
FAILING = {"cust-003", "cust-013", "cust-031"}


# --- Scope configs -----------------------------------------------------------------------------


def _model_spec(model: str, availability: str, **field_overrides: str) -> dict:
    """A model's spec with every field of the sandbox tool following the model unless overridden."""
    fields = get_provider(TOOL).get_model(model).fields
    return {"availability": availability, "fields": {f: field_overrides.get(f, availability) for f in fields}}


def scope_config_specs() -> dict[str, dict]:
    on, optional, off = Availability.ENABLED.value, Availability.OPTIONAL.value, Availability.DISABLED.value
    return {
        "Core employees": {
            "hris_employees": _model_spec("hris_employees", on, salary=off),
            "hris_absences": _model_spec("hris_absences", off),
        },
        "Employees + compensation": {
            "hris_employees": _model_spec("hris_employees", on, department=optional),
            "hris_absences": _model_spec("hris_absences", off),
        },
        "Absences": {
            "hris_employees": _model_spec("hris_employees", on, salary=off),
            "hris_absences": _model_spec("hris_absences", on),
        },
    }


def enabled_models(scope_config: ScopeConfig) -> list[str]:
    return [m for m, spec in scope_config.spec.items() if spec["availability"] != Availability.DISABLED]


# --- The simulated history ---------------------------------------------------------------------


@dataclass
class Check:
    at: datetime
    outcome: Outcome
    with_sync: bool  # False for the daily re-checks of an INVALID integration


@dataclass
class Timeline:
    checks: list[Check] = field(default_factory=list)
    auth_failing_since: datetime | None = None
    invalid_since: datetime | None = None


def simulate(
    rng: random.Random,
    start: datetime,
    end: datetime,
    revoked_at: datetime | None,
    policy: HealthPolicy = DEFAULT_POLICY,
) -> Timeline:
    """Play the health rule under `policy` over checks from `start` to `end`, the key failing from
    `revoked_at`.

    Checks run every CHECK_INTERVAL while the integration can sync and every RECHECK_INTERVAL once
    it is INVALID. A rare UNAVAILABLE neither starts nor ends a streak (unless the policy counts
    transient errors), and never comes last, so the stored last outcome describes the credentials.
    """
    timeline = Timeline()
    at = start
    while at <= end:
        can_sync = timeline.invalid_since is None
        flaky = can_sync and at + CHECK_INTERVAL <= end and rng.random() < UNAVAILABLE_RATE
        if flaky:
            outcome = Outcome.UNAVAILABLE
        elif revoked_at is not None and at >= revoked_at:
            outcome = Outcome.AUTH_FAILED
        else:
            outcome = Outcome.OK
        timeline.checks.append(Check(at, outcome, with_sync=can_sync))
        apply_check_to_streak(timeline, outcome, at, policy)
        at += CHECK_INTERVAL if timeline.invalid_since is None else RECHECK_INTERVAL
    return timeline


# --- One customer ------------------------------------------------------------------------------


@dataclass
class Plan:
    """One demo customer, drawn from its own seed in a fixed order before touching the database."""

    origin_id: str
    name: str
    domain: str
    creator_email: str
    scope_config_name: str
    opted_out_fields: list[str]
    created_at: datetime
    employees: list[dict]
    revoked_at: datetime | None
    disabled_at: datetime | None
    timeline: Timeline
    rng: random.Random


def plan_customer(index: int, now: datetime, policy: HealthPolicy = DEFAULT_POLICY) -> Plan:
    origin_id = f"cust-{index + 1:03d}"
    rng = random.Random(f"relink-demo:{origin_id}")
    name = ORGANIZATIONS[index]
    domain = slugify(" ".join(w for w in name.split() if w not in LEGAL_SUFFIXES)) + ".example"
    scope_config_name = rng.choices(list(scope_config_specs()), weights=(6, 3, 2))[0]
    opts_out = scope_config_name == "Employees + compensation" and rng.random() < 0.4
    revoked_at = _revoked_at(origin_id, rng, now)
    disabled_at = _disabled_at(origin_id, rng, now)
    start = now - HISTORY + timedelta(minutes=rng.randrange(180))
    return Plan(
        origin_id=origin_id,
        name=name,
        domain=domain,
        creator_email=_email(*_person(rng), domain),
        scope_config_name=scope_config_name,
        opted_out_fields=["hris_employees.department"] if opts_out else [],
        created_at=now - timedelta(days=rng.randint(14, 90), minutes=rng.randrange(24 * 60)),
        employees=[_employee(rng, domain) for _ in range(rng.randint(5, 12))],
        revoked_at=revoked_at,
        disabled_at=disabled_at,
        timeline=simulate(rng, start, disabled_at or now, revoked_at, policy),
        rng=rng,
    )


def _revoked_at(origin_id: str, rng: random.Random, now: datetime) -> datetime | None:
    """When the customer revoked the key Relink holds: the cause of every AUTH_FAILED."""
    if origin_id in INVALID:
        return now - timedelta(days=4, minutes=rng.randrange(8 * 60))
    if origin_id in FAILING:
        return now - timedelta(hours=rng.randint(8, 40))
    return None


def _disabled_at(origin_id: str, rng: random.Random, now: datetime) -> datetime | None:
    if origin_id in INACTIVE:
        return now - timedelta(days=rng.randint(1, 4), minutes=rng.randrange(24 * 60))
    return None


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def _email(first: str, last: str, domain: str) -> str:
    return f"{first}.{last}@{domain}".lower()


def _employee(rng: random.Random, domain: str) -> dict:
    first, last = _person(rng)
    return {
        "first_name": first,
        "last_name": last,
        "email": _email(first, last, domain),
        "department": rng.choice(DEPARTMENTS),
        "salary": rng.randrange(42_000, 120_000, 500),
    }


# --- Writing a customer ------------------------------------------------------------------------


@dataclass
class Rows:
    """History rows of every new integration, written with one bulk_create per table."""

    auth_checks: list[AuthCheck] = field(default_factory=list)
    syncs: list[Sync] = field(default_factory=list)
    audit_events: list[AuditEvent] = field(default_factory=list)

    def save(self) -> None:
        AuthCheck.objects.bulk_create(self.auth_checks)
        Sync.objects.bulk_create(self.syncs)
        audit.record_many(self.audit_events)


def create_integration(
    plan: Plan, environment: Environment, scope_config: ScopeConfig, operator: User, rows: Rows
) -> Integration:
    company, employee_count = _sandbox_company(plan, environment)
    integration = Integration(
        id=new_integration_id(TOOL),
        environment=environment,
        tool=TOOL,
        category=Category.HRIS.value,
        end_user_organization_name=plan.name,
        end_user_email=plan.creator_email,
        end_user_origin_id=plan.origin_id,
        # The company its key reaches, as the sandbox adapter names it: recorded at the first connection.
        upstream_account=company.account_id,
        upstream_account_label=company.name,
        enabled=plan.disabled_at is None,
        scope_config=scope_config,
        opted_out_fields=plan.opted_out_fields,
        created_at=plan.created_at,
        auth_failing_since=plan.timeline.auth_failing_since,
        invalid_since=plan.timeline.invalid_since,
    )
    integration.set_credentials({"api_key": _sandbox_key(company, plan)})
    integration.state = integration.derived_state()
    _add_history(integration, plan, employee_count, rows)
    _add_audit_trail(integration, plan, operator, rows)
    integration.save(force_insert=True)
    _store_synced_records(integration, company, rows)
    return integration


EMPLOYEES = "hris_employees"
# What Sandbox HR's `GET /employees` answers for each employee, besides its id (sandbox.views).
SANDBOX_EMPLOYEE_COLUMNS = ("first_name", "last_name", "email", "department", "salary")


def _store_synced_records(integration: Integration, company: SandboxCompany, rows: Rows) -> None:
    """The records the integration's last successful sync in its history stored: its company's
    employees, each as Sandbox HR answers them cut to what the scope config reads (the adapter's
    own `select`), written by the syncs' writer — so `/v1/hris/employees` serves them at once, and
    the next real sync finds nothing changed."""
    mine = [s for s in rows.syncs if s.integration_id == integration.pk]
    succeeded = [s.ended_at for s in mine if s.status == SyncStatus.SUCCEEDED and s.ended_at is not None]
    spec = ScopeSpec.parse(integration.scope_config.spec if integration.scope_config else None)
    plan = dict(spec.fetch_plan(integration.provider, integration.opted_out_fields))
    if not succeeded or EMPLOYEES not in plan:
        return
    employees = company.employees.order_by("pk").values("id", *SANDBOX_EMPLOYEE_COLUMNS)
    writer = records.ModelWriter(integration.pk, EMPLOYEES, complete=True)
    writer.write(select({**row, "id": str(row["id"])}, plan[EMPLOYEES]) for row in employees)
    writer.finish()
    first_read = min(succeeded)
    SyncedRecord.objects.filter(integration=integration).update(first_seen_at=first_read, updated_at=max(succeeded))


def _sandbox_company(plan: Plan, environment: Environment) -> tuple[SandboxCompany, int]:
    """The customer's HR system, in the demo environment; one left behind by a deleted demo
    integration is reused as is, and one without an environment (from before companies had one)
    joins the demo environment. A company of that name owned by another environment is never
    touched: the demo gets its own, its name suffixed with the environment's slug."""
    name = plan.name
    existing = SandboxCompany.objects.filter(name=name).first()
    if existing is not None and existing.environment_id not in (None, environment.pk):
        name = f"{plan.name} ({environment.slug})"
        existing = SandboxCompany.objects.filter(name=name, environment=environment).first()
    if existing is not None:
        if existing.environment_id is None:
            existing.environment = environment
            existing.save(update_fields=["environment"])
        return existing, existing.employees.count()
    company = SandboxCompany.objects.create(
        name=name, environment=environment, created_at=plan.created_at - timedelta(days=180)
    )
    SandboxEmployee.objects.bulk_create(SandboxEmployee(company=company, **e) for e in plan.employees)
    return company, len(plan.employees)


def _sandbox_key(company: SandboxCompany, plan: Plan) -> str:
    """A fresh key, created just before the integration and revoked when the plan says so."""
    key, raw = company.create_key(label="Relink")
    key.created_at = plan.created_at - timedelta(minutes=5)
    key.revoked_at = plan.revoked_at
    key.save(update_fields=["created_at", "revoked_at"])
    return raw


def _add_history(integration: Integration, plan: Plan, employee_count: int, rows: Rows) -> None:
    """AuthCheck and Sync rows for the timeline, and the integration's last-outcome fields."""
    models = enabled_models(integration.scope_config)
    records = {m: employee_count if m == "hris_employees" else 0 for m in models}
    syncs = []
    for check in plan.timeline.checks:
        duration = timedelta(milliseconds=plan.rng.randint(80, 900))
        rows.auth_checks.append(_auth_check(integration, check, duration))
        if check.with_sync:
            fetching = timedelta(seconds=plan.rng.randint(2, 12)) if check.outcome is Outcome.OK else timedelta()
            syncs.append(_sync(integration, check, models, records, ended_at=check.at + duration + fetching))
    rows.syncs.extend(syncs)
    last_check = plan.timeline.checks[-1]
    integration.last_auth_check_at = last_check.at
    integration.last_auth_outcome = last_check.outcome.value
    integration.last_auth_error = AUTH_FAILED_ERROR if last_check.outcome is Outcome.AUTH_FAILED else ""
    integration.last_sync_at = syncs[-1].ended_at
    if integration.state == IntegrationState.ACTIVE:
        integration.next_sync_at = syncs[-1].created_at + CHECK_INTERVAL


def _auth_check(integration: Integration, check: Check, duration: timedelta) -> AuthCheck:
    http_status, error_code, error_message = {
        Outcome.OK: (200, "", ""),
        Outcome.AUTH_FAILED: (401, "INVALID_API_KEY", "The API key is unknown or has been revoked."),
        Outcome.UNAVAILABLE: (503, "HTTP_503", "Service Unavailable"),
    }[check.outcome]
    return AuthCheck(
        integration=integration,
        checked_at=check.at,
        outcome=check.outcome.value,
        http_status=http_status,
        error_code=error_code,
        error_message=error_message,
        duration_ms=duration // timedelta(milliseconds=1),
    )


def _sync(integration: Integration, check: Check, models: list[str], records: dict, ended_at: datetime) -> Sync:
    status, error_message = {
        Outcome.OK: (SyncStatus.SUCCEEDED, ""),
        Outcome.AUTH_FAILED: (SyncStatus.AUTHENTICATION_FAILED, "Sandbox HR rejected the API key"),
        Outcome.UNAVAILABLE: (SyncStatus.FAILED, "Sandbox HR answered 503"),
    }[check.outcome]
    succeeded = status == SyncStatus.SUCCEEDED
    return Sync(
        integration=integration,
        type=SyncType.DELTA,
        scope_config=integration.scope_config,
        status=status,
        # Queued a moment before its opening auth check, which is the check's recorded time.
        created_at=check.at - timedelta(seconds=1),
        started_at=check.at - timedelta(milliseconds=300),
        ended_at=ended_at,
        models_total=len(models),
        models_done=len(models) if succeeded else 0,
        records_per_model=dict(records) if succeeded else {},
        error_message=error_message,
    )


def _add_audit_trail(integration: Integration, plan: Plan, operator: User, rows: Rows) -> None:
    """The same trail integrations.health writes: a state change, and for a disable its action too."""
    if plan.timeline.invalid_since:
        invalid_since = plan.timeline.invalid_since
        reason = "auth check AUTH_FAILED"
        rows.audit_events.append(
            _state_changed(integration, IntegrationState.INVALID, reason, invalid_since, audit.SYSTEM)
        )
    if plan.disabled_at:
        rows.audit_events += [
            audit.event(
                integration.environment_id,
                "integration.disabled",
                audit.Actor(user=operator),
                integration_id=integration.id,
                at=plan.disabled_at,
            ),
            _state_changed(
                integration, IntegrationState.INACTIVE, "disabled", plan.disabled_at, audit.Actor(user=operator)
            ),
        ]


def _state_changed(integration: Integration, to: str, reason: str, at: datetime, actor: audit.Actor) -> AuditEvent:
    """Every seeded integration starts ACTIVE, so each change is away from ACTIVE."""
    return audit.event(
        integration.environment_id,
        "integration.state_changed",
        actor,
        integration_id=integration.id,
        at=at,
        **{"from": IntegrationState.ACTIVE.value, "to": IntegrationState(to).value, "reason": reason},
    )


# --- The whole seed ----------------------------------------------------------------------------


@dataclass
class SeedResult:
    created: Counter  # kind ("user", "integration", ...) -> how many this run created
    states: dict[str, int]


@transaction.atomic
def seed(now: datetime | None = None) -> SeedResult:
    """Create whatever part of the demo data is missing; existing objects are left untouched."""
    now = now or timezone.now()
    created: Counter = Counter()
    environment = _environment(now, created)
    operator = _user(OPERATOR_EMAIL, "Demo Operator", superuser=False, created=created)
    _user(ADMIN_EMAIL, "Demo Admin", superuser=True, created=created)
    owner = _user(OWNER_EMAIL, "Demo Owner", superuser=False, created=created)
    for user, role in ((operator, Role.EDITOR), (owner, Role.OWNER)):
        _, new = Membership.objects.get_or_create(environment=environment, user=user, defaults={"role": role})
        created["membership"] += new
    scope_configs = _scope_configs(environment, now, created)
    _integrations(environment, scope_configs, operator, now, created)
    _migrating_customer(environment, now, created)
    return SeedResult(created=+created, states=state_counts(environment))


# --- A customer moving to a new tenant ----------------------------------------------------------

MIGRATING_ORIGIN_ID = "cust-004"  # INVALID: the key Relink holds was revoked four days ago
# Demo keys with values the README can print (they reach demo Sandbox HR companies only).
SAME_COMPANY_KEY = "sbx_demo-same-company-new-key"
NEW_TENANT_KEY = "sbx_demo-new-tenant-key"


def _migrating_customer(environment: Environment, now: datetime, created: Counter) -> None:
    """The same-account guard to try: cust-004's company has a new key, which reconnects it; the
    tenant it is moving to, "<company> (new tenant)", has a key of its own, which a reconnection
    link refuses ("a different company account") unless the operator allowed a change of account
    when creating the link."""
    integration = environment.integrations.filter(end_user_origin_id=MIGRATING_ORIGIN_ID).first()
    if integration is None:
        return
    # Its own company, named as `_sandbox_company` names it (whatever key it holds now).
    name = integration.end_user_organization_name
    own = SandboxCompany.objects.filter(environment=environment, name__in=[name, f"{name} ({environment.slug})"])
    company = own.order_by("name").first()
    if company is None:
        return
    if not integration.upstream_account:  # seeded before accounts were recorded
        environment.integrations.filter(pk=integration.pk).update(
            upstream_account=company.account_id, upstream_account_label=company.name
        )
    tenant, new = SandboxCompany.objects.get_or_create(
        name=f"{company.name} (new tenant)",
        defaults={"environment": environment, "created_at": now - timedelta(days=2)},
    )
    if tenant.environment_id != environment.pk:
        return  # a company of another environment: never touched
    if new:
        created["sandbox company"] += 1
        SandboxEmployee.objects.bulk_create(
            SandboxEmployee(company=tenant, **e)
            for e in company.employees.values("first_name", "last_name", "email", "department", "salary")
        )
    for owner, raw, label in ((company, SAME_COMPANY_KEY, "New key"), (tenant, NEW_TENANT_KEY, "New tenant")):
        SandboxApiKey.objects.get_or_create(
            key_hash=hash_secret(raw),
            defaults={"company": owner, "label": label, "prefix": raw[:10], "created_at": now - timedelta(hours=1)},
        )


def demo_embed_origins() -> list[str]:
    """Where the demo's embedded links may be shown: Relink's own origin (the sandbox pages) and a
    local app on port 3000, the usual development server of the app that would embed them."""
    parts = urlsplit(settings.BASE_URL)
    return [f"{parts.scheme}://{parts.netloc}".lower(), "http://localhost:3000"]


def _environment(now: datetime, created: Counter) -> Environment:
    environment, new = Environment.objects.get_or_create(
        slug=ENVIRONMENT_SLUG,
        defaults={
            "name": ENVIRONMENT_NAME,
            "created_at": now - timedelta(days=120),
            "allowed_origins": demo_embed_origins(),
            # The demo asks its failing customers to reconnect; the emails land in var/mail/.
            "notify_customers": True,
        },
    )
    created["environment"] += new
    return environment


def _user(email: str, name: str, *, superuser: bool, created: Counter) -> User:
    """The user with this email, created with the demo password only if missing."""
    user = User.objects.filter(email=email).first()
    if user is not None:
        return user
    created["user"] += 1
    create = User.objects.create_superuser if superuser else User.objects.create_user
    return create(email, PASSWORD, name=name)


def _scope_configs(environment: Environment, now: datetime, created: Counter) -> dict[str, ScopeConfig]:
    configs = {}
    for name, spec in scope_config_specs().items():
        configs[name], new = ScopeConfig.objects.get_or_create(
            environment=environment,
            name=name,
            defaults={"category": Category.HRIS.value, "spec": spec, "created_at": now - timedelta(days=100)},
        )
        created["scope config"] += new
    # Integrations and links without a scope config of their own read "Core employees".
    if not ScopeConfig.objects.filter(environment=environment, category=Category.HRIS.value, is_default=True).exists():
        ScopeConfig.objects.filter(pk=configs["Core employees"].pk).update(is_default=True)
    return configs


def _integrations(
    environment: Environment, scope_configs: dict[str, ScopeConfig], operator: User, now: datetime, created: Counter
) -> None:
    existing = set(environment.integrations.values_list("end_user_origin_id", flat=True))
    rows = Rows()
    policy = HealthPolicy.of(environment)  # an existing demo environment may have its own window
    for index in range(len(ORGANIZATIONS)):
        plan = plan_customer(index, now, policy)
        if plan.origin_id in existing:
            continue
        create_integration(plan, environment, scope_configs[plan.scope_config_name], operator, rows)
        created["integration"] += 1
    rows.save()


def state_counts(environment: Environment) -> dict[str, int]:
    counts = Counter(environment.integrations.values_list("state", flat=True))
    return {state.value: counts[state.value] for state in IntegrationState}
