from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self) -> None:
        from integrations.pages import register_integration_page, register_request_log_page

        from . import signals  # noqa: F401  (connects the receivers)
        from .integration import integration_path
        from .logs import log_path

        register_integration_page(integration_path)
        register_request_log_page(log_path)
