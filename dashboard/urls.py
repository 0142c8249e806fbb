from django.urls import path

from . import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("env/<slug:env>/", views.integrations, name="integrations"),
    path("env/<slug:env>/integrations/<str:integration_id>/", views.integration, name="integration"),
    path("env/<slug:env>/integrations/<str:integration_id>/syncs/", views.integration_syncs, name="integration_syncs"),
    path("env/<slug:env>/integrations/<str:integration_id>/force-sync/", views.force_sync, name="force_sync"),
    path("env/<slug:env>/integrations/<str:integration_id>/check-now/", views.check_now, name="check_now"),
]
