"""Django admin for the sandbox HR system. Key hashes are never shown; keys come from `create_key`."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import SandboxApiKey, SandboxCompany, SandboxEmployee


@admin.register(SandboxCompany)
class SandboxCompanyAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")
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
