from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sandbox import demo


class Command(BaseCommand):
    help = (
        "Create the demo environment: two logins, three scope configs and ~40 sandbox integrations "
        "with five days of history. Safe to run again: existing demo objects are left untouched."
    )

    def handle(self, *args, **options):
        if not settings.SANDBOX_ENABLED:
            raise CommandError("The demo integrations connect to Sandbox HR, which is off: set SANDBOX_ENABLED=true.")
        result = demo.seed()
        if result.created:
            made = ", ".join(f"{count} {kind}{'s' if count > 1 else ''}" for kind, count in result.created.items())
            self.stdout.write(self.style.SUCCESS(f"Created {made}."))
        else:
            self.stdout.write("Demo data already present; nothing created.")
        states = ", ".join(f"{count} {state}" for state, count in result.states.items())
        self.stdout.write(f"{demo.ENVIRONMENT_NAME} ({demo.ENVIRONMENT_SLUG}): {states}.")
        self.stdout.write(f"Operator (editor): {demo.OPERATOR_EMAIL} / {demo.PASSWORD}")
        self.stdout.write(f"Owner (also API keys, webhooks, members): {demo.OWNER_EMAIL} / {demo.PASSWORD}")
        self.stdout.write(f"Admin (superuser): {demo.ADMIN_EMAIL} / {demo.PASSWORD}")
