"""/v1: the JSON API, shaped after the reference API (see api/openapi.json)."""

from django.urls import path, re_path

from . import hris, passthrough, views

app_name = "api"

urlpatterns = [
    path("openapi.json", views.openapi_view, name="openapi"),
    path("check-api-key", views.check_api_key_view, name="check_api_key"),
    path("force-sync", views.force_sync_view, name="force_sync"),
    path("integrations/<str:integration_id>", views.integration_view, name="integration"),
    path("integrations/<str:integration_id>/enabled", views.enabled_view, name="integration_enabled"),
    path("integrations/<str:integration_id>/relink", views.relink_view, name="integration_relink"),
    path("tools/<str:category>", views.tools_view, name="tools"),
    path("connect/create-link", views.create_link_view, name="create_link"),
    path("connect/integration-by-token/<str:token>", views.integration_by_token_view, name="integration_by_token"),
    path("hris/employees", hris.employees_view, name="hris_employees"),
    path("hris/absences", hris.absences_view, name="hris_absences"),
    path("passthrough/<str:tool>/<str:api>", passthrough.passthrough_view, name="passthrough"),
    # Anything else under /v1 answers in the error envelope too.
    re_path(r"^.*$", views.not_found_view, name="not_found"),
]
