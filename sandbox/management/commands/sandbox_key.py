from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sandbox.models import SandboxCompany


class Command(BaseCommand):
    help = "Create an API key for a sandbox company. Prints the key on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--company", required=True, help="company name or slug")
        parser.add_argument("--create", action="store_true", help="create the company if it does not exist")

    def handle(self, *args, company: str, create: bool, **options):
        if not settings.SANDBOX_ENABLED:
            raise CommandError("Sandbox HR is off (SANDBOX_ENABLED=false): its keys would reach nothing.")
        found = (
            SandboxCompany.objects.filter(name=company).first() or SandboxCompany.objects.filter(slug=company).first()
        )
        if found is None:
            if not create:
                raise CommandError(f"No sandbox company {company!r} (use --create to make it).")
            found = SandboxCompany.objects.create(name=company)
        key, raw = found.create_key(label="command line")
        self.stdout.write(f"New API key for {found.name} (prefix {key.prefix}):")
        self.stdout.write(raw)
