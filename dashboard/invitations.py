"""Member invitations: an owner invites a person by email; the person opens the link, sets a
password (or signs in, if they already have an account) and joins with the invited role.

The email goes through Django's email framework (EMAIL_URL). The raw token exists only in the
email; if the email cannot be sent, the owner is shown the link once (after the redirect, from the
session: integrations/lib/shown_once.py) to pass it on another way.

Opening the link (GET) changes nothing — mail scanners fetch links; only the POST joins.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, password_validation
from django.core.mail import EmailMultiAlternatives
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from integrations import invitations
from integrations.invitations import InvitationError, NewInvitation
from integrations.lib import shown_once
from integrations.models import Invitation, Role, User

from .access import EnvAccess
from .htmx import DashboardRequest

UNSENT_LINK_SLOT = "invitation_link"  # an invitation whose email could not be sent, shown once
ACCEPT_TEMPLATE = "dashboard/invitation.html"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


def invitation_url(token: str) -> str:
    return settings.BASE_URL + reverse("dashboard:invitation", kwargs={"token": token})


def send_invitation(new: NewInvitation, inviter: User) -> None:
    """The invitation email, plain text and HTML; raises what the email backend raises."""
    invitation = new.invitation
    ctx = {
        "invitation": invitation,
        "environment": invitation.environment,
        "inviter": inviter,
        "role": invitation.get_role_display().lower(),
        "url": invitation_url(new.token),
    }
    message = EmailMultiAlternatives(
        subject=f"You are invited to {invitation.environment.name} on Relink",
        body=render_to_string("dashboard/email/invitation.txt", ctx),
        to=[invitation.email],
        reply_to=[inviter.email],
    )
    message.attach_alternative(render_to_string("dashboard/email/invitation.html", ctx), "text/html")
    message.send()


def take_unsent_link(request: DashboardRequest, access: EnvAccess) -> dict | None:
    """The invitation link whose email could not be sent a moment ago, once."""
    pending = shown_once.take(request.session, UNSENT_LINK_SLOT, access.environment.pk)
    if pending is None:
        return None
    invitation = Invitation.objects.filter(pk=pending[0], environment=access.environment).first()
    return {"invitation": invitation, "url": invitation_url(pending[1])} if invitation else None


# --- The invited person's page -------------------------------------------------------------------


class NewAccountForm(forms.Form):
    name = forms.CharField(label="Your name", max_length=150, required=False)
    password1 = forms.CharField(label="Choose a password", strip=False, widget=forms.PasswordInput)
    password2 = forms.CharField(label="The password again", strip=False, widget=forms.PasswordInput)

    def __init__(self, *args, email: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.email = email
        self.fields["password1"].widget.attrs["autocomplete"] = "new-password"
        self.fields["password2"].widget.attrs["autocomplete"] = "new-password"
        self.fields["password1"].help_text = password_validation.password_validators_help_text_html()

    def clean(self) -> dict:
        data = super().clean() or {}
        first, second = data.get("password1"), data.get("password2")
        if first and second and first != second:
            self.add_error("password2", "The two passwords differ.")
        elif first:
            try:
                password_validation.validate_password(first, User(email=self.email, name=data.get("name", "")))
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data


def _page(request: HttpRequest, ctx: dict, status: int = 200) -> HttpResponse:
    response = render(request, ACCEPT_TEMPLATE, ctx, status=status)
    add_never_cache_headers(response)
    # The token is in the URL: no other site gets it as a referrer. (Not "no-referrer": a browser
    # then sends `Origin: null` with the form, which CSRF protection rightly refuses.)
    response["Referrer-Policy"] = "same-origin"
    return response


def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """GET: what the invitation is, and the one next step (set a password, sign in, or join).
    POST: create the account or join with the signed-in one; then to the environment."""
    found = invitations.find(token)
    if found is None:
        return _page(request, {"invalid": True}, status=404)
    account = invitations.account_for(found)
    user = request.user if request.user.is_authenticated else None
    ctx: dict = {"invitation": found, "environment": found.environment, "role": found.get_role_display().lower()}
    if user is not None and user.email.lower() != found.email.lower():
        return _page(request, ctx | {"wrong_user": user}, status=403)
    if account is not None and user is None:
        login_url = reverse("login") + "?next=" + reverse("dashboard:invitation", kwargs={"token": token})
        return _page(request, ctx | {"sign_in_url": login_url})
    form = None
    if account is None:
        form = NewAccountForm(request.POST or None, email=found.email)
    if request.method == "POST":
        try:
            if form is not None:
                if not form.is_valid():
                    return _page(request, ctx | {"form": form}, status=400)
                membership = invitations.join_with_new_account(
                    found, form.cleaned_data["name"], form.cleaned_data["password1"]
                )
                login(request, membership.user, backend=MODEL_BACKEND)
            else:
                assert isinstance(user, User)  # signed in as the invited account (checked above)
                membership = invitations.accept(found, user)
        except InvitationError as exc:
            return _page(request, ctx | {"form": form, "error": str(exc)}, status=409)
        messages.success(
            request, f"Welcome to {found.environment.name}: you are a {membership.get_role_display().lower()}."
        )
        return redirect("dashboard:overview", env=found.environment.slug)
    return _page(request, ctx | {"form": form})
