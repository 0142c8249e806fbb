from django.urls import path

from . import views
from . import logs
from . import relink

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("env/<slug:env>/", views.integrations, name="integrations"),
    path("env/<slug:env>/integrations/<str:integration_id>/", views.integration, name="integration"),
    path("env/<slug:env>/integrations/<str:integration_id>/syncs/", views.integration_syncs, name="integration_syncs"),
    path("env/<slug:env>/integrations/<str:integration_id>/force-sync/", views.force_sync, name="force_sync"),
    path("env/<slug:env>/integrations/<str:integration_id>/check-now/", views.check_now, name="check_now"),
    path("env/<slug:env>/integrations/<str:integration_id>/relink/", relink.section, name="relink"),
    path(
        "env/<slug:env>/integrations/<str:integration_id>/relink/scope-diff/",
        relink.scope_diff_view,
        name="relink_scope_diff",
    ),
    path("env/<slug:env>/integrations/<str:integration_id>/links/", relink.links, name="relink_links"),
    path("env/<slug:env>/integrations/<str:integration_id>/links/create/", relink.create_link, name="relink_create"),
    path(
        "env/<slug:env>/integrations/<str:integration_id>/links/<str:link_id>/revoke/",
        relink.revoke_link,
        name="relink_revoke",
    ),
    path("env/<slug:env>/logs/", logs.logs, name="logs"),
    path("env/<slug:env>/logs/<str:log_id>/", logs.log, name="log"),
]
