"""The request type of dashboard views: django-htmx's `request.htmx`, and a signed-in operator
(every dashboard view is behind `login_required`)."""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from integrations.models import User


class DashboardRequest(HttpRequest):
    htmx: HtmxDetails
    user: User  # narrowed from AbstractBaseUser | AnonymousUser by login_required
