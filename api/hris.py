"""The unified HRIS read endpoints: `GET /v1/hris/employees` and `GET /v1/hris/absences`.

They serve the records the integration's syncs stored (integrations.reads), in the reference's
shapes (`GetHrisEmployeesPositiveResponse`, `GetHrisAbsencesPositiveResponse`), a page at a time:
`page_size` (1–250, default 100) and the opaque `cursor` of the previous page's `next` (null on the
last page). The client sends the same filters with every page, as the reference's SDKs do.

What an answer holds is what the integration's scope config reads now (its own, else its
environment's default for the category) minus what the customer opted out of: a model it does not
read answers `INTEGRATION.MODEL_DISABLED`; a field it does not read is null (every documented
property is present; a list it would fill is empty), even if an earlier sync under a wider scope
config stored it. Records gone upstream are kept and marked `remote_deleted_at`; they are left out
unless `include_deleted=true`.

Filters: `ids`, `remote_ids`, `updated_after` (records Relink saw change after it: `changed_at`,
which includes a deletion), `include_deleted`; employees also `work_emails` and `group_ids` (the
department), absences `employee_id`, `date_from`/`date_until` (and the deprecated
`time_from`/`time_until`, by their date). Relink's tools carry no employment status, legal entity,
work location, personal email, custom field or absence type: a filter on one of those matches no
record, unless `ignore_unsupported_filters=true` (then it is ignored), as the reference documents.
A filter on a field the scope config does not read is unsupported the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from django.http import QueryDict

from integrations import reads
from integrations.models import Integration, IntegrationState
from integrations.reads import ABSENCES, EMPLOYEES, EMPLOYMENTS, GROUPS, Filters, Row, record_id
from integrations.scopes import ScopeSpec, effective_scope_config

from . import errors
from .errors import ApiError
from .framework import ApiContext, api_view
from .shapes import iso

MAX_PAGE_SIZE = 250
DEFAULT_PAGE_SIZE = 100
MAX_LIST_VALUES = 250  # values in one comma-separated filter

# The reference's pattern for `updated_after` (and the deprecated time filters), plus a UTC offset,
# which its SDKs send for a datetime that is not in UTC.
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
# The reference's pattern for a valid work email; another address is given as null.
EMAIL = re.compile(r"^(?!\.)(?!.*\.\.)([\w'+-.]*)[\w+-]@([\da-z][\da-z-]*\.)+[a-z]{2,}$")
EMPLOYMENT_STATUSES = ("ACTIVE", "PENDING", "INACTIVE", "LEAVE")

MODEL_DISABLED = "INTEGRATION.MODEL_DISABLED"
INACTIVE = "INTEGRATION.INACTIVE"
SETUP_SYNC_PENDING = "INTEGRATION.SETUP_SYNC_PENDING"


def model_disabled(model: str) -> ApiError:
    return ApiError(
        MODEL_DISABLED,
        f"The integration's scope config does not read {model} (or the customer opted out of it), so there "
        "is nothing to return. Enable it in the scope config; its next sync reads it.",
        status=403,
        title="This data model is disabled in the integration's scope config.",
    )


def inactive() -> ApiError:
    return ApiError(
        INACTIVE,
        "The integration is INACTIVE: it was disabled. Enable it first (PUT /integrations/{id}/enabled).",
        status=403,
        title="The integration is inactive.",
    )


def setup_sync_pending() -> ApiError:
    return ApiError(
        SETUP_SYNC_PENDING,
        "The integration's first sync has not finished yet; its data is served once it has. The "
        "sync-finished webhook says when.",
        status=409,
        title="The initial sync after connection is still running.",
    )


# --- Query parameters ----------------------------------------------------------------------------


class Query:
    """The query string, read parameter by parameter with 400 messages that name the parameter."""

    def __init__(self, params: QueryDict):
        self.params = params

    def text(self, name: str) -> str | None:
        value = self.params.get(name)
        if value is None:
            return None
        if "\x00" in value:
            raise errors.input_invalid(f"{name}: must not contain NUL characters.")
        return value

    def flag(self, name: str) -> bool:
        value = self.text(name)
        if value is None:
            return False
        if value not in ("true", "false"):
            raise errors.input_invalid(f"{name}: must be `true` or `false`.")
        return value == "true"

    def page_size(self) -> int:
        value = self.text("page_size")
        if value is None:
            return DEFAULT_PAGE_SIZE
        if not re.fullmatch(r"\d{1,6}", value) or not 1 <= int(value) <= MAX_PAGE_SIZE:
            raise errors.input_invalid(f"page_size: must be a whole number from 1 to {MAX_PAGE_SIZE}.")
        return int(value)

    def values(self, name: str) -> list[str] | None:
        """A comma-separated list (empty items dropped); None when the parameter is absent."""
        value = self.text(name)
        if value is None:
            return None
        items = [item.strip() for item in value.split(",") if item.strip()]
        if len(items) > MAX_LIST_VALUES:
            raise errors.input_invalid(f"{name}: at most {MAX_LIST_VALUES} values.")
        return items

    def date_time(self, name: str) -> datetime | None:
        value = self.text(name)
        if value is None:
            return None
        if not DATE_TIME.match(value):
            raise errors.input_invalid(f"{name}: must be a date-time like 2026-01-31T12:00:00.000Z.")
        try:
            parsed = datetime.fromisoformat(value.removesuffix("Z"))
        except ValueError:
            raise errors.input_invalid(f"{name}: {value[:40]!r} is not a real date and time.") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed

    def day(self, name: str) -> str | None:
        """A plain date (`yyyy-MM-dd`; anything after it, such as a time, is discarded)."""
        value = self.text(name)
        if value is None:
            return None
        if not DATE.match(value):
            raise errors.input_invalid(f"{name}: must be a date like 2026-01-31.")
        try:
            return date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            raise errors.input_invalid(f"{name}: {value[:40]!r} is not a real date.") from None

    def cursor(self, model: str) -> str | None:
        value = self.text("cursor")
        if not value:
            return None
        after = read_cursor(model, value)
        if after is None:
            raise errors.input_invalid(
                "cursor: not a cursor of this endpoint. Pass the `next` of the previous page unchanged."
            )
        return after


def make_cursor(model: str, after: str | None) -> str | None:
    """The opaque `next` of a page: where the next page of `model` starts (None: no next page)."""
    if after is None:
        return None
    raw = json.dumps({"model": model, "after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def read_cursor(model: str, value: str) -> str | None:
    """The position a `make_cursor` cursor of `model` stands for; None for anything else."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        after = decoded["after"]
        ok = decoded.get("model") == model and isinstance(after, str)
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError):
        return None
    return after if ok else None


# --- What the integration reads ------------------------------------------------------------------


def readable(integration: Integration, model: str) -> set[str]:
    """The fields of `model` the integration's scope config reads now (less the customer's
    opt-outs); MODEL_DISABLED if it does not read the model."""
    provider = integration.provider
    scope = effective_scope_config(integration)
    if scope is None or provider is None:
        raise model_disabled(model)
    try:
        plan = dict(ScopeSpec.parse(scope.spec).fetch_plan(provider, integration.opted_out_fields))
    except ValueError:  # a stored spec that no longer parses reads nothing
        plan = {}
    if model not in plan:
        raise model_disabled(model)
    return set(plan[model])


def _integration(ctx: ApiContext) -> Integration:
    integration_id = ctx.request.headers.get("X-Integration-Id", "").strip()
    if not integration_id:
        raise errors.input_invalid("X-Integration-Id: this header is required and names the integration to read.")
    integration = ctx.get_integration(integration_id)
    if integration.state == IntegrationState.INACTIVE:
        raise inactive()
    return integration


def _page(
    ctx: ApiContext,
    model: str,
    filters_of: Callable[[Query, Integration, set[str]], Filters],
    shape: Callable[[Integration, set[str], Row], dict[str, Any]],
) -> dict[str, Any]:
    integration = _integration(ctx)
    fields = readable(integration, model)
    query = Query(ctx.request.GET)
    limit = query.page_size()
    after = query.cursor(model)
    filters = filters_of(query, integration, fields)
    page = reads.read_page(integration.pk, model, after=after, limit=limit, filters=filters)
    if not page.rows and after is None and integration.last_sync_at is None:
        raise setup_sync_pending()
    next_cursor = make_cursor(model, page.next_after)
    ctx.logged_answer = {"_note": f"{len(page.rows)} {model} records, not logged", "next": next_cursor}
    return {"next": next_cursor, "results": [shape(integration, fields, row) for row in page.rows]}


def _common(query: Query, integration: Integration, model: str) -> dict[str, Any]:
    """The filters every model has: include_deleted, updated_after, ids and remote_ids (AND)."""
    remote_ids: list[str] | None = None
    ids = query.values("ids")
    if ids is not None:
        remote_ids = reads.remote_ids_of(integration.pk, model, ids)
    wanted = query.values("remote_ids")
    if wanted is not None:
        remote_ids = wanted if remote_ids is None else [r for r in remote_ids if r in set(wanted)]
    return {
        "include_deleted": query.flag("include_deleted"),
        "updated_after": query.date_time("updated_after"),
        "remote_ids": remote_ids,
    }


def _unsupported(query: Query, names: list[str]) -> bool:
    """Whether a filter Relink cannot serve was given (and not to be ignored): it matches nothing."""
    ignore = query.flag("ignore_unsupported_filters")
    return not ignore and any(query.values(name) for name in names)


# --- Employees -----------------------------------------------------------------------------------


def employee_filters(query: Query, integration: Integration, fields: set[str]) -> Filters:
    statuses = (query.values("employment_statuses") or []) + (query.values("employment_status") or [])
    for status in statuses:
        if status not in EMPLOYMENT_STATUSES:
            raise errors.input_invalid(
                f"employment_statuses: each value must be one of {', '.join(EMPLOYMENT_STATUSES)}."
            )
    custom = query.text("custom_fields")
    if custom:
        try:
            parsed = json.loads(custom)
        except ValueError:
            parsed = None
        if not (isinstance(parsed, dict) and len(parsed) == 1):
            raise errors.input_invalid('custom_fields: must be a JSON object with one key, like {"fieldKey":"value"}.')
    unsupported = [
        "employment_statuses",
        "employment_status",
        "legal_entity_ids",
        "work_location_ids",
        "personal_emails",
        "custom_fields",
    ]
    text_in: dict[str, list[str]] = {}
    text_iexact_in: dict[str, list[str]] = {}
    emails = query.values("work_emails")
    if emails is not None:
        if "email" in fields:
            text_iexact_in["email"] = emails
        else:
            unsupported.append("work_emails")
    groups = query.values("group_ids")
    if groups is not None:
        if "department" in fields:
            text_in["department"] = reads.remote_ids_of(integration.pk, GROUPS, groups)
            if not text_in["department"]:
                return Filters(nothing=True)
        else:
            unsupported.append("group_ids")
    return Filters(
        **_common(query, integration, EMPLOYEES),
        text_in=text_in,
        text_iexact_in=text_iexact_in,
        nothing=_unsupported(query, unsupported),
    )


def _text(data: dict[str, Any], fields: set[str], name: str) -> str | None:
    value = data.get(name) if name in fields else None
    if value is None or value == "":
        return None
    return str(value)


def _number(data: dict[str, Any], fields: set[str], name: str) -> float | int | None:
    value = data.get(name) if name in fields else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    try:
        return float(value) if isinstance(value, str) and value.strip() else None
    except ValueError:
        return None


EMPLOYEE_NULLS = (
    "employee_number",
    "nationality",
    "job_title",
    "personal_email",
    "mobile_phone_number",
    "ssn",
    "tax_id",
    "gender",
    "ethnicity",
    "marital_status",
    "employment_status",
    "employment_type",
    "weekly_hours",
    "avatar",
    "work_location_id",
    "legal_entity_id",
    "manager_id",
    "home_address",
    "bank_accounts",
    "date_of_birth",
    "start_date",
    "termination_date",
    "remote_created_at",
    "custom_fields",
    "remote_data",
    "manager",
    "legal_entity",
    "work_location",
)


def employee(integration: Integration, fields: set[str], row: Row) -> dict[str, Any]:
    """One employee in the reference's shape, from what Relink's tools read: names, work email,
    department (a group of type DEPARTMENT) and salary (a yearly pay rate on one employment)."""
    data = row.data
    employee_id = record_id(integration.pk, EMPLOYEES, row.remote_id)
    first_name, last_name = _text(data, fields, "first_name"), _text(data, fields, "last_name")
    email = _text(data, fields, "email")
    changed_at, deleted_at = iso(row.updated_at), iso(row.remote_deleted_at)
    groups: list[dict[str, Any]] = []
    department = _text(data, fields, "department")
    if department is not None:
        groups.append(
            {
                "id": record_id(integration.pk, GROUPS, department),
                "remote_id": department,
                "name": department,
                "type": "DEPARTMENT",
            }
        )
    employments: list[dict[str, Any]] = []
    salary = _number(data, fields, "salary")
    if salary is not None:
        employments.append(
            {
                "id": record_id(integration.pk, EMPLOYMENTS, row.remote_id),
                "remote_id": None,
                "employee_id": employee_id,
                "job_title": None,
                "pay_rate": salary,
                "pay_period": "YEAR",
                "pay_frequency": None,
                "employment_type": None,
                "pay_currency": None,
                "effective_date": None,
                "changed_at": changed_at,
                "remote_deleted_at": deleted_at,
                "remote_data": None,
                "custom_fields": None,
                "integration_fields": [],
            }
        )
    shaped: dict[str, Any] = {
        "id": employee_id,
        "remote_id": row.remote_id,
        "first_name": first_name,
        "last_name": last_name,
        "display_full_name": " ".join(n for n in (first_name, last_name) if n) or None,
        "work_email": email.strip().lower() if email and EMAIL.match(email.strip().lower()) else None,
    }
    shaped.update(dict.fromkeys(EMPLOYEE_NULLS))
    shaped.update(
        {
            "changed_at": changed_at,
            "remote_deleted_at": deleted_at,
            "integration_fields": [],
            "employments": employments,
            "time_off_balances": [],
            "groups": groups,
            "teams": groups,  # the reference's deprecated name for the same list
        }
    )
    return shaped


# --- Absences ------------------------------------------------------------------------------------


def absence_filters(query: Query, integration: Integration, fields: set[str]) -> Filters:
    unsupported = ["type_ids"]
    text_in: dict[str, list[str]] = {}
    employee = query.text("employee_id")
    if employee:
        if "employee_id" not in fields:
            unsupported.append("employee_id")
        else:
            remote = reads.remote_id_of(integration.pk, EMPLOYEES, employee)
            if remote is None:
                return Filters(nothing=True)
            text_in["employee_id"] = [remote]
    on_or_after: dict[str, str] = {}
    on_or_before: dict[str, str] = {}
    start = query.day("date_from") or _day_of(query.date_time("time_from"))
    if start is not None:
        on_or_after["end_date"] = start
    end = query.day("date_until") or _day_of(query.date_time("time_until"))
    if end is not None:
        on_or_before["start_date"] = end
    if (on_or_after and "end_date" not in fields) or (on_or_before and "start_date" not in fields):
        unsupported += ["date_from", "date_until", "time_from", "time_until"]
    return Filters(
        **_common(query, integration, ABSENCES),
        text_in=text_in,
        on_or_after=on_or_after,
        on_or_before=on_or_before,
        nothing=_unsupported(query, unsupported),
    )


def _day_of(value: datetime | None) -> str | None:
    return value.date().isoformat() if value is not None else None


def _date(data: dict[str, Any], fields: set[str], name: str) -> str | None:
    """A `yyyy-MM-dd` date, or null (not read, or not a date)."""
    value = _text(data, fields, name)
    if value is None or not DATE.match(value):
        return None
    return value[:10]


def absence(integration: Integration, fields: set[str], row: Row) -> dict[str, Any]:
    """One absence in the reference's shape: its employee (by the employee's id) and its dates."""
    data = row.data
    employee_remote_id = _text(data, fields, "employee_id")
    return {
        "id": record_id(integration.pk, ABSENCES, row.remote_id),
        "remote_id": row.remote_id,
        # Required and not nullable: an absence whose employee is not read names no one ("").
        "employee_id": record_id(integration.pk, EMPLOYEES, employee_remote_id) if employee_remote_id else "",
        "approver_id": None,
        "start_date": _date(data, fields, "start_date"),
        "end_date": _date(data, fields, "end_date"),
        "start_half_day": None,
        "end_half_day": None,
        "start_time": None,
        "end_time": None,
        "amount": None,
        "unit": "DAYS",  # Relink's tools give absences as whole days
        "status": None,
        "employee_note": None,
        "type_id": None,
        "remote_created_at": None,
        "remote_updated_at": None,
        "changed_at": iso(row.updated_at),
        "remote_deleted_at": iso(row.remote_deleted_at),
        "remote_data": None,
        "type": None,
    }


# --- Endpoints -----------------------------------------------------------------------------------


def get_employees(ctx: ApiContext) -> dict[str, Any]:
    return _page(ctx, EMPLOYEES, employee_filters, employee)


def get_absences(ctx: ApiContext) -> dict[str, Any]:
    return _page(ctx, ABSENCES, absence_filters, absence)


employees_view = api_view({"GET": get_employees})
absences_view = api_view({"GET": get_absences})
