"""Django admin for connection links. The token hash is never shown; links are created by the app."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from integrations.admin import RelatedWithoutSecretsMixin

from .links import revoke
from .models import ConnectionLink, LinkStatus


class LinkStatusFilter(admin.SimpleListFilter):
    """Filters on the derived status with the same precedence as `ConnectionLink.status_at`."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(LinkStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        done = Q(completed_at__isnull=False)
        revoked = Q(completed_at__isnull=True, revoked_at__isnull=False)
        live = Q(completed_at__isnull=True, revoked_at__isnull=True)
        conditions = {
            LinkStatus.COMPLETED: done,
            LinkStatus.REVOKED: revoked,
            LinkStatus.EXPIRED: live & Q(expires_at__lte=now),
            LinkStatus.OPENED: live & Q(expires_at__gt=now, opened_at__isnull=False),
            LinkStatus.PENDING: live & Q(expires_at__gt=now, opened_at__isnull=True),
        }
        condition = conditions.get(self.value())  # type: ignore[call-overload]
        return queryset.filter(condition) if condition is not None else queryset


@admin.register(ConnectionLink)
class ConnectionLinkAdmin(RelatedWithoutSecretsMixin, admin.ModelAdmin):
    """Links are created by the dashboard or the API, which hand out the raw token once.

    Only the revocation and expiry dates are editable.
    """

    exclude = ("token_hash",)
    list_display = (
        "id",
        "kind",
        "link_type",
        "status",
        "environment",
        "integration",
        "end_user_organization_name",
        "created_at",
        "expires_at",
    )
    list_filter = (LinkStatusFilter, "kind", "link_type", "environment")
    related_without_secrets = ("environment", "integration")
    search_fields = ("=id", "integration__id", "end_user_organization_name", "end_user_email", "end_user_origin_id")
    autocomplete_fields = ("integration",)
    date_hierarchy = "created_at"
    readonly_fields = (
        "id",
        "status",
        "environment",
        "kind",
        "link_type",
        "language",
        "integration",
        "scope_config",
        "end_user_email",
        "end_user_organization_name",
        "end_user_origin_id",
        "category",
        "tool",
        "created_by_user",
        "created_by_api_key",
        "created_at",
        "opened_at",
        "completed_at",
        "expiry_recorded_at",
    )

    actions = ("revoke_links",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke selected links", permissions=("change",))
    def revoke_links(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Revokes through `links.revoke` (audited); completed, expired or revoked links are left alone."""
        revoked = unusable = 0
        for link in queryset.defer("token_hash"):
            if revoke(link, user=request.user):
                revoked += 1
            else:
                unusable += 1
        text = f"{revoked} link{'' if revoked == 1 else 's'} revoked."
        if unusable:
            text += (
                f" {unusable} {'was' if unusable == 1 else 'were'} already unusable (completed, expired or revoked)."
            )
        self.message_user(request, text, messages.SUCCESS if revoked else messages.WARNING)

    @admin.display(description="status")
    def status(self, obj: ConnectionLink) -> str:
        return LinkStatus(obj.status).label
