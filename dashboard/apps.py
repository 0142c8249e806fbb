from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self) -> None:
        from integrations.pages import register_integration_page

        from . import signals  # noqa: F401  (connects the receivers)
        from .integration import integration_path

        register_integration_page(integration_path)
