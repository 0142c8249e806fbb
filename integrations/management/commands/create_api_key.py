from django.core.management.base import BaseCommand, CommandError

from integrations.models import ApiKey, Environment


class Command(BaseCommand):
    help = "Create a /v1 API key for an environment. Prints the key once, on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--environment", required=True, help="environment slug")
        parser.add_argument("--name", default="Command-line key")

    def handle(self, *args, environment: str, name: str, **options):
        try:
            env = Environment.objects.get(slug=environment)
        except Environment.DoesNotExist:
            raise CommandError(f"No environment with slug {environment!r}.") from None
        key, raw = ApiKey.create(env, name=name)
        self.stdout.write(f"Created API key {key.name!r} for {env.name} (prefix {key.prefix}). It is shown only once:")
        self.stdout.write(raw)
