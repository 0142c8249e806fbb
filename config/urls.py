from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from config import bench

admin.site.site_header = "Relink administration"
admin.site.site_title = "Relink admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("v1/", include("api.urls")),
    path("connect/", include("connect_flow.urls")),
    path("", include("dashboard.urls")),
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))

if settings.BENCH_VIEWS:  # the benchmarks' floor (config/bench.py); off unless a bench server turns it on
    urlpatterns.insert(0, path("bench/trivial", bench.trivial, name="bench_trivial"))
