from django.urls import path

from . import views

app_name = "connect_flow"

urlpatterns = [
    # Before <token>/: the provider returns here (registered as the OAuth redirect URI).
    path("oauth/callback/", views.oauth_callback, name="oauth_callback"),
    path("<str:token>/", views.link_page, name="link"),
    path("<str:token>/handoff/", views.link_handoff, name="handoff"),
]
