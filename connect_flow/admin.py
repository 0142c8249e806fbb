"""Django admin for connection links. The token hash is never shown; links are created by the app."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from integrations.admin import IntegrationAdmin, ReadOnlyAdmin, RelatedWithoutSecretsMixin
from integrations.models import Integration

from .links import LinkInputError, create_relink_link, revoke
from .models import ConnectionLink, LinkStatus, LinkType, ReconnectRequest


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
        # Chosen when the link is created, and audited there; an edit here would not be.
        "allow_account_change",
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


# The integration admin with the link action: links are this app's, so the action lives here and
# replaces the integrations app's registration (admin modules load in INSTALLED_APPS order).
admin.site.unregister(Integration)


@admin.register(Integration)
class IntegrationWithLinksAdmin(IntegrationAdmin):
    actions = (*IntegrationAdmin.actions, "create_magic_links")

    @admin.action(description="Create a relink link (magic link, 1 year)", permissions=("change",))
    def create_magic_links(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse:
        """One magic link per integration, rendered on a page of its own and shown only there.

        Not through `messages`: the default message storage keeps messages in a (signed, not
        encrypted) cookie, and a link URL is a bearer secret.
        """
        integrations = queryset.select_related("environment", "scope_config").defer("credentials_encrypted")
        rows, errors = [], []
        for integration in integrations:
            label = f"{integration.end_user_organization_name} ({integration.pk})"
            try:
                created = create_relink_link(integration, link_type=LinkType.MAGIC_LINK, user=request.user)
            except LinkInputError as exc:
                errors.append(f"No link created for {label}: {exc}.")
                continue
            rows.append({"label": label, "url": created.url, "expires_at": created.link.expires_at})
        context = {
            **self.admin_site.each_context(request),
            "title": "Relink links created",
            "rows": rows,
            "errors": errors,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/integrations/relink_links.html", context)
        response["Cache-Control"] = "no-store"
        return response


@admin.register(ReconnectRequest)
class ReconnectRequestAdmin(ReadOnlyAdmin):
    """The emails that asked end customers to reconnect (connect_flow/notifications.py), one per
    step of a failure streak; written by the application only."""

    list_display = ("integration", "step_key", "recipient", "language", "created_at", "sent_at", "attempts", "error")
    list_filter = ("step", "language")
    list_select_related = ("integration",)
    search_fields = ("=integration__id", "recipient", "integration__end_user_organization_name")
    date_hierarchy = "created_at"
