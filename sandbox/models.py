"""The sandbox: a small fake HR system served by Relink itself, for the demo and the tests.

Its companies have employees and API keys; the sandbox adapter calls its JSON API over HTTP.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.text import slugify

from integrations.lib.tokens import hash_secret, new_secret

SANDBOX_KEY_PREFIX = "sbx_"
ALL_PERMISSIONS = ["employees:read", "compensation:read", "absences:read"]


def _all_permissions() -> list[str]:
    return list(ALL_PERMISSIONS)


class SandboxCompany(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=200, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "sandbox company"
        verbose_name_plural = "sandbox companies"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        if not self.slug:
            self.slug = slugify(self.name)[:200]
        super().save(*args, **kwargs)

    def create_key(self, label: str = "", permissions: list[str] | None = None) -> tuple["SandboxApiKey", str]:
        raw = new_secret(SANDBOX_KEY_PREFIX)
        key = SandboxApiKey.objects.create(
            company=self,
            label=label,
            prefix=raw[: len(SANDBOX_KEY_PREFIX) + 6],
            key_hash=hash_secret(raw),
            permissions=list(permissions) if permissions is not None else _all_permissions(),
        )
        return key, raw


class SandboxEmployee(models.Model):
    company = models.ForeignKey(SandboxCompany, on_delete=models.CASCADE, related_name="employees")
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    email = models.EmailField()
    department = models.CharField(max_length=100, blank=True)
    salary = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "sandbox employee"
        ordering = ["last_name", "first_name"]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}"


class SandboxApiKeyQuerySet(models.QuerySet):
    def find_active(self, raw: str) -> "SandboxApiKey | None":
        return self.select_related("company").filter(key_hash=hash_secret(raw), revoked_at__isnull=True).first()


class SandboxApiKey(models.Model):
    company = models.ForeignKey(SandboxCompany, on_delete=models.CASCADE, related_name="api_keys")
    label = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    permissions = models.JSONField(default=_all_permissions)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = SandboxApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "sandbox API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.company})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
