"""Sandbox companies belong to an environment.

The data step gives each existing company the environment of the integrations that reach it:
a `sandbox` integration's API key or a `sandbox_oauth` integration's tokens are looked up by
hash (revoked keys and grants count: the integration still points at that company). A company
reached from exactly one environment goes to it; one reached from none, or from several (it
cannot be given to one without handing it the other's keys), keeps no environment and is then
visible to staff only, who can assign it in the Django admin.
"""

from __future__ import annotations

import json
from collections import defaultdict

import django.db.models.deletion
from django.db import migrations, models

from integrations.lib import crypto
from integrations.lib.tokens import hash_secret

BATCH = 500


def _credentials(integration) -> dict:
    """The decrypted credentials, or {} when they cannot be read (a removed key, bad data)."""
    if not integration.credentials_encrypted:
        return {}
    try:
        value = crypto.decrypt_json(integration.credentials_encrypted)
    except (crypto.UndecryptableSecret, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _companies_by_hash(model, field: str, company_path: str, hashes: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    wanted = list(hashes)
    for start in range(0, len(wanted), BATCH):
        rows = model.objects.filter(**{f"{field}__in": wanted[start : start + BATCH]})
        found.update(rows.values_list(field, company_path))
    return found


def assign_environments(apps, schema_editor) -> None:
    Integration = apps.get_model("integrations", "Integration")
    SandboxCompany = apps.get_model("sandbox", "SandboxCompany")
    SandboxApiKey = apps.get_model("sandbox", "SandboxApiKey")
    SandboxOAuthGrant = apps.get_model("sandbox", "SandboxOAuthGrant")
    SandboxAccessToken = apps.get_model("sandbox", "SandboxAccessToken")

    # hash of a secret an integration holds -> the environments of the integrations holding it
    key_envs: dict[str, set[int]] = defaultdict(set)
    refresh_envs: dict[str, set[int]] = defaultdict(set)
    access_envs: dict[str, set[int]] = defaultdict(set)
    rows = Integration.objects.filter(tool__in=("sandbox", "sandbox_oauth")).only(
        "environment_id", "tool", "credentials_encrypted"
    )
    for integration in rows.iterator(chunk_size=BATCH):
        credentials = _credentials(integration)
        for name, envs in (("api_key", key_envs), ("refresh_token", refresh_envs), ("access_token", access_envs)):
            raw = credentials.get(name)
            if isinstance(raw, str) and raw:
                envs[hash_secret(raw)].add(integration.environment_id)

    company_envs: dict[int, set[int]] = defaultdict(set)
    for envs_by_hash, model, field, company_path in (
        (key_envs, SandboxApiKey, "key_hash", "company_id"),
        (refresh_envs, SandboxOAuthGrant, "refresh_token_hash", "company_id"),
        (access_envs, SandboxAccessToken, "token_hash", "grant__company_id"),
    ):
        for secret_hash, company_id in _companies_by_hash(model, field, company_path, set(envs_by_hash)).items():
            company_envs[company_id] |= envs_by_hash[secret_hash]

    by_environment: dict[int, list[int]] = defaultdict(list)
    for company_id, envs in company_envs.items():
        if len(envs) == 1:
            by_environment[next(iter(envs))].append(company_id)
    for environment_id, company_ids in by_environment.items():
        for start in range(0, len(company_ids), BATCH):
            SandboxCompany.objects.filter(pk__in=company_ids[start : start + BATCH], environment__isnull=True).update(
                environment_id=environment_id
            )


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0004_outboxmessage"),
        ("sandbox", "0002_oauth"),
    ]

    operations = [
        migrations.AddField(
            model_name="sandboxcompany",
            name="environment",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="sandbox_companies",
                to="integrations.environment",
            ),
        ),
        migrations.RunPython(assign_environments, migrations.RunPython.noop, elidable=True),
    ]
