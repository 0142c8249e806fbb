"""The end customer's form on the hosted connect page: a tool's credential fields and the opt-outs.

Built per tool from the provider's `credential_fields`, so every tool gets its form from the one
registry. Labels are translated at construction time, so build the form inside
`translation.override(link.language)`.

Credential values (API keys, tokens, client ids, subdomains) are printable ASCII: anything else
(an umlaut, a typographic quote, a character pasted from a PDF) is a form error, before anything is
sent to the tool, whose HTTP headers could not carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.utils.translation import gettext, gettext_noop

from integrations.providers.base import Provider
from integrations.scopes import DISABLED, OPTIONAL, ScopeSpec

# The providers declare their labels and help texts in English. These marks put them in the
# catalogs, and `gettext(label)` at render time shows them in the link's language (an unknown
# string, e.g. from a newly added tool, falls back to the English text).
PROVIDER_STRINGS = (
    gettext_noop("API key"),
    gettext_noop("Company domain"),
    gettext_noop("Client ID"),
    gettext_noop("Client secret"),
    gettext_noop("Service user ID"),
    gettext_noop("Service user token"),
    gettext_noop("Create one in your Sandbox HR admin."),
    gettext_noop("The part before .bamboohr.com in the address you sign in at, e.g. acme."),
    gettext_noop("BambooHR: your name (top right) > API Keys > Add New Key."),
    gettext_noop("Personio: Settings > Integrations > API credentials > Create custom integration."),
    gettext_noop("Shown once, when the credential is created."),
    gettext_noop("Bob: System settings > Integrations > Service users > Create service user."),
    gettext_noop("Shown once, when the service user is created. Add the user to a permission group."),
    # Data models and the fields customers may opt out of.
    gettext_noop("Employees"),
    gettext_noop("Absences"),
)
FIELD_LABELS = {
    "first_name": gettext_noop("First name"),
    "last_name": gettext_noop("Last name"),
    "email": gettext_noop("Email"),
    "department": gettext_noop("Department"),
    "salary": gettext_noop("Salary"),
    "employee_id": gettext_noop("Employee ID"),
    "start_date": gettext_noop("Start date"),
    "end_date": gettext_noop("End date"),
}


@dataclass(frozen=True)
class OptionalItem:
    """Something the scope config reads only if the customer agrees: a model or one field."""

    value: str  # "hris_employees" or "hris_employees.salary", as stored in opted_out_fields
    label: str


def optional_items(provider: Provider, spec: ScopeSpec) -> list[OptionalItem]:
    """The OPTIONAL models and fields of `spec` this tool can read, with translated labels."""
    items = []
    for model in provider.models:
        scope = spec.models.get(model.name)
        if scope is None or not scope.is_read:
            continue
        model_label = gettext(model.label)
        if scope.availability == OPTIONAL:
            items.append(OptionalItem(model.name, model_label))
        for field_name in model.fields:
            if scope.fields.get(field_name, DISABLED) == OPTIONAL:
                field_label = gettext(FIELD_LABELS.get(field_name, field_name.replace("_", " ").capitalize()))
                items.append(OptionalItem(f"{model.name}.{field_name}", f"{model_label}: {field_label}"))
    return items


def printable_ascii(value: str) -> None:
    """The validator of every credential field: printable ASCII (space to tilde) only."""
    if any(not " " <= character <= "~" for character in value):
        raise forms.ValidationError(
            gettext("This value contains characters that cannot be part of a key."), code="not_printable_ascii"
        )


class ConnectForm(forms.Form):
    """Credential fields (secret ones never rendered back) and the OPTIONAL items to opt out of."""

    def __init__(self, provider: Provider, optional: list[OptionalItem], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.provider = provider
        for field in provider.credential_fields:
            attrs = {"autocomplete": "off", "autocapitalize": "none", "spellcheck": "false"}
            widget = forms.PasswordInput(attrs=attrs, render_value=False) if field.secret else forms.TextInput(attrs)
            self.fields[field.name] = forms.CharField(
                label=gettext(field.label),
                help_text=gettext(field.help_text) if field.help_text else "",
                widget=widget,
                max_length=2000,
                validators=[printable_ascii],
            )
        self.fields["opt_out"] = forms.MultipleChoiceField(
            required=False,
            choices=[(item.value, item.label) for item in optional],
            widget=forms.CheckboxSelectMultiple,
        )

    def credential_fields(self) -> list[forms.BoundField]:
        return [self[f.name] for f in self.provider.credential_fields]

    def credentials(self) -> dict[str, str]:
        return {f.name: self.cleaned_data[f.name] for f in self.provider.credential_fields}

    def opted_out(self) -> list[str]:
        return list(self.cleaned_data.get("opt_out") or [])
