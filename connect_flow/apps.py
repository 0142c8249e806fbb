from django.apps import AppConfig


class ConnectFlowConfig(AppConfig):
    name = "connect_flow"
