"""Tool adapters. Importing this package registers every shipped tool."""

from . import (  # noqa: F401  (each registers itself)
    bamboohr,
    hibob,
    personio,
    sandbox,
    sandbox_oauth,  # noqa: F401  (registers itself)
)
from .base import (
    REGISTRY,
    AuthType,
    Category,
    Outcome,
    Provider,
    UpstreamAccount,
    get_provider,
    providers_of_category,
    register,
    tool_choices,
)

__all__ = [
    "REGISTRY",
    "AuthType",
    "Category",
    "Outcome",
    "Provider",
    "UpstreamAccount",
    "get_provider",
    "providers_of_category",
    "register",
    "tool_choices",
]
