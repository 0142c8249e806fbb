"""Django admin for the sandbox HR system. Key hashes are never shown; keys come from `create_key`."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from integrations.admin import ReadOnlyAdmin

from .models import (
    SandboxAccessToken,
    SandboxApiKey,
    SandboxAuthorizationCode,
    SandboxCompany,
    SandboxEmployee,
    SandboxOAuthClient,
    SandboxOAuthGrant,
)


@admin.register(SandboxCompany)
class SandboxCompanyAdmin(admin.ModelAdmin):
    """`environment` decides who sees the company's HR admin pages (sandbox.access); empty: staff only."""

    list_display = ("name", "slug", "environment", "created_at")
    list_filter = (("environment", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("environment",)
    search_fields = ("name", "slug")
    autocomplete_fields = ("environment",)
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at",)


@admin.register(SandboxEmployee)
class SandboxEmployeeAdmin(admin.ModelAdmin):
    list_display = ("last_name", "first_name", "email", "department", "salary", "company")
    list_filter = ("company", "department")
    list_select_related = ("company",)
    search_fields = ("first_name", "last_name", "email")
    autocomplete_fields = ("company",)


@admin.register(SandboxApiKey)
class SandboxApiKeyAdmin(admin.ModelAdmin):
    """Keys are created with `SandboxCompany.create_key`, which returns the raw key once."""

    exclude = ("key_hash",)
    list_display = ("prefix", "label", "company", "active", "created_at", "revoked_at")
    list_filter = ("company", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("company",)
    search_fields = ("=prefix", "label", "company__name")
    readonly_fields = ("prefix", "company", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="active", boolean=True, ordering="revoked_at")
    def active(self, obj: SandboxApiKey) -> bool:
        return obj.is_active


@admin.register(SandboxOAuthClient)
class SandboxOAuthClientAdmin(admin.ModelAdmin):
    """The secret is stored hashed and never shown; Relink's client comes from `ensure_default`."""

    exclude = ("secret_hash",)
    list_display = ("name", "client_id", "created_at")
    search_fields = ("name", "client_id")
    readonly_fields = ("client_id", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(SandboxOAuthGrant)
class SandboxOAuthGrantAdmin(admin.ModelAdmin):
    """Grants come from the consent page; revoke them on the company page or by setting revoked_at."""

    exclude = ("refresh_token_hash",)
    list_display = ("company", "client", "permissions", "active", "created_at", "revoked_at")
    list_filter = ("client", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("company", "client")
    search_fields = ("company__name", "client__name")
    readonly_fields = ("company", "client", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="active", boolean=True, ordering="revoked_at")
    def active(self, obj: SandboxOAuthGrant) -> bool:
        return obj.is_active


@admin.register(SandboxAccessToken)
class SandboxAccessTokenAdmin(ReadOnlyAdmin):
    exclude = ("token_hash",)
    list_display = ("grant", "created_at", "expires_at")
    list_select_related = ("grant__company", "grant__client")


@admin.register(SandboxAuthorizationCode)
class SandboxAuthorizationCodeAdmin(ReadOnlyAdmin):
    exclude = ("code_hash",)
    list_display = ("company", "client", "redirect_uri", "created_at", "expires_at", "used_at")
    list_select_related = ("company", "client")
