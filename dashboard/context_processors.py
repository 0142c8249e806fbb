from django.http import HttpRequest

from integrations.models import Membership


def environments(request: HttpRequest) -> dict:
    """The signed-in operator's environments, for the switcher in the navigation."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def memberships():  # evaluated only if a template renders the switcher
        return list(Membership.objects.filter(user=user).select_related("environment").order_by("environment__name"))

    return {"my_memberships": memberships}
