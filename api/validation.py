"""Reading a JSON request body field by field, with 400 messages that name the field."""

from __future__ import annotations

from typing import Any, Literal, overload

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from .errors import input_invalid

_MISSING = object()


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class Body:
    """A parsed JSON object. Unknown keys are accepted and ignored."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def _get(self, name: str, required: bool) -> Any:
        value = self.data.get(name, _MISSING)
        if value is _MISSING and required:
            raise input_invalid(f"{name}: this field is required.")
        return value

    # A default, or required and not nullable, means a string comes back; otherwise maybe None.
    @overload
    def string(
        self,
        name: str,
        *,
        required: bool = ...,
        nullable: bool = ...,
        default: str,
        choices: list[str] | tuple[str, ...] | None = ...,
        min_length: int | None = ...,
        max_length: int | None = ...,
    ) -> str: ...
    @overload
    def string(
        self,
        name: str,
        *,
        required: Literal[True],
        nullable: Literal[False] = ...,
        default: None = ...,
        choices: list[str] | tuple[str, ...] | None = ...,
        min_length: int | None = ...,
        max_length: int | None = ...,
    ) -> str: ...
    @overload
    def string(
        self,
        name: str,
        *,
        required: bool = ...,
        nullable: bool = ...,
        default: None = ...,
        choices: list[str] | tuple[str, ...] | None = ...,
        min_length: int | None = ...,
        max_length: int | None = ...,
    ) -> str | None: ...
    def string(
        self,
        name: str,
        *,
        required: bool = False,
        nullable: bool = False,
        default: str | None = None,
        choices: list[str] | tuple[str, ...] | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
    ) -> str | None:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        if value is None:
            if nullable:
                return default
            raise input_invalid(f"{name}: expected a string, got null.")
        if not isinstance(value, str):
            raise input_invalid(f"{name}: expected a string, got {json_type(value)}.")
        if "\x00" in value:
            raise input_invalid(f"{name}: must not contain NUL characters.")
        if choices is not None and value not in choices:
            raise input_invalid(f"{name}: must be one of {', '.join(choices)}.")
        if min_length is not None and len(value) < min_length:
            raise input_invalid(
                f"{name}: must not be empty."
                if min_length == 1
                else f"{name}: must be at least {min_length} characters long."
            )
        if max_length is not None and len(value) > max_length:
            raise input_invalid(f"{name}: must be at most {max_length} characters long.")
        return value

    @overload
    def email(self, name: str, *, required: Literal[True], nullable: Literal[False] = ...) -> str: ...
    @overload
    def email(self, name: str, *, required: bool = ..., nullable: bool = ...) -> str | None: ...
    def email(self, name: str, *, required: bool = False, nullable: bool = False) -> str | None:
        value = self.string(name, required=required, nullable=nullable, max_length=254)
        if value is not None:
            try:
                validate_email(value)
            except ValidationError:
                raise input_invalid(f"{name}: not a valid email address.") from None
        return value

    @overload
    def boolean(self, name: str, *, required: Literal[True], default: None = ...) -> bool: ...
    @overload
    def boolean(self, name: str, *, required: bool = ..., default: bool) -> bool: ...
    @overload
    def boolean(self, name: str, *, required: bool = ..., default: None = ...) -> bool | None: ...
    def boolean(self, name: str, *, required: bool = False, default: bool | None = None) -> bool | None:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise input_invalid(f"{name}: expected a boolean, got {json_type(value)}.")
        return value
