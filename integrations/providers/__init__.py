"""Tool adapters. Importing this package registers every shipped tool."""

from . import sandbox  # noqa: F401  (registers itself)
from .base import REGISTRY, AuthType, Category, Outcome, Provider, get_provider, register, tool_choices

__all__ = ["REGISTRY", "AuthType", "Category", "Outcome", "Provider", "get_provider", "register", "tool_choices"]
