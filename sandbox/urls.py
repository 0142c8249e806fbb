from django.urls import path

from . import views

app_name = "sandbox"

urlpatterns = [
    # The HR admin's pages (sandbox.access: members of the company's environment and staff).
    path("", views.companies, name="companies"),
    path("new/", views.create_company, name="create_company"),
    path("companies/<slug:slug>/", views.company, name="company"),
    path("companies/<slug:slug>/keys/", views.create_key, name="create_key"),
    path("companies/<slug:slug>/keys/<int:key_id>/revoke/", views.revoke_key, name="revoke_key"),
    path("companies/<slug:slug>/grants/<int:grant_id>/revoke/", views.revoke_grant, name="revoke_grant"),
    # The OAuth 2.0 authorization server the `sandbox_oauth` adapter uses.
    path("oauth/authorize", views.oauth_authorize, name="oauth_authorize"),
    path("oauth/token", views.oauth_token, name="oauth_token"),
    path("oauth/revoke", views.oauth_revoke, name="oauth_revoke"),
    # The JSON API the `sandbox` adapter calls.
    path("api/v1/me", views.api_me, name="api_me"),
    path("api/v1/employees", views.api_employees, name="api_employees"),
    path("api/v1/absences", views.api_absences, name="api_absences"),
]
