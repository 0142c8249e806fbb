from django.urls import path

from . import integration, logs, members, overview, relink, scopes, secrets, views, webhooks

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("env/<slug:env>/", views.integrations, name="integrations"),
    path("env/<slug:env>/overview/", overview.overview, name="overview"),
    path("env/<slug:env>/integrations/<str:integration_id>/", integration.integration, name="integration"),
    path(
        "env/<slug:env>/integrations/<str:integration_id>/syncs/",
        integration.integration_syncs,
        name="integration_syncs",
    ),
    path("env/<slug:env>/integrations/<str:integration_id>/force-sync/", integration.force_sync, name="force_sync"),
    path("env/<slug:env>/integrations/<str:integration_id>/check-now/", integration.check_now, name="check_now"),
    path("env/<slug:env>/integrations/<str:integration_id>/enabled/", integration.set_enabled, name="set_enabled"),
    path("env/<slug:env>/integrations/<str:integration_id>/delete/", integration.delete, name="delete"),
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
    path("env/<slug:env>/secrets/", secrets.api_keys, name="api_keys"),
    path("env/<slug:env>/secrets/create/", secrets.create_api_key, name="api_key_create"),
    path("env/<slug:env>/secrets/<int:key_id>/revoke/", secrets.revoke_api_key, name="api_key_revoke"),
    path("env/<slug:env>/members/", members.members, name="members"),
    path("env/<slug:env>/members/add/", members.add_member, name="member_add"),
    path("env/<slug:env>/members/<int:member_id>/role/", members.change_role, name="member_role"),
    path("env/<slug:env>/members/<int:member_id>/remove/", members.remove_member, name="member_remove"),
    path("env/<slug:env>/scope-configs/", scopes.scope_configs, name="scope_configs"),
    path("env/<slug:env>/scope-configs/new/", scopes.new_scope_config, name="scope_config_new"),
    path("env/<slug:env>/scope-configs/<str:scope_config_id>/", scopes.scope_config, name="scope_config"),
    path("env/<slug:env>/webhooks/", webhooks.endpoints, name="webhooks"),
    path("env/<slug:env>/webhooks/new/", webhooks.new_endpoint, name="webhook_new"),
    path("env/<slug:env>/webhooks/<str:endpoint_id>/", webhooks.endpoint, name="webhook"),
    path("env/<slug:env>/webhooks/<str:endpoint_id>/toggle/", webhooks.toggle_endpoint, name="webhook_toggle"),
    path("env/<slug:env>/webhooks/<str:endpoint_id>/delete/", webhooks.delete_endpoint, name="webhook_delete"),
    path("env/<slug:env>/webhooks/<str:endpoint_id>/test/", webhooks.test_endpoint, name="webhook_test"),
    path(
        "env/<slug:env>/webhooks/<str:endpoint_id>/deliveries/<int:delivery_id>/replay/",
        webhooks.replay_delivery,
        name="webhook_replay",
    ),
]
