from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import URLValidator

from integrations import webhooks
from integrations.audit import Actor
from integrations.lib.targets import TargetRefused
from integrations.models import Environment, WebhookEvent


class Command(BaseCommand):
    help = "Add a webhook endpoint to an environment. Prints its whsec_ signing secret once, on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--environment", required=True, help="environment slug")
        parser.add_argument("--url", required=True)
        parser.add_argument(
            "--event",
            action="append",
            default=[],
            choices=WebhookEvent.values,
            help="event type to receive (repeatable; default: all)",
        )

    def handle(self, *args, environment: str, url: str, event: list[str], **options):
        try:
            env = Environment.objects.get(slug=environment)
        except Environment.DoesNotExist:
            raise CommandError(f"No environment with slug {environment!r}.") from None
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            raise CommandError(f"{url!r} is not an http(s) URL.") from None
        try:
            endpoint, secret = webhooks.create_endpoint(env.pk, url, Actor(label="command line"), event_types=event)
        except TargetRefused as exc:
            raise CommandError(f"Relink cannot send webhooks there: {exc} (WEBHOOK_ALLOW_PRIVATE_TARGETS).") from None
        self.stdout.write(f"Webhook endpoint {endpoint.id} for {env.name} → {url}. Signing secret (shown once):")
        self.stdout.write(secret)
