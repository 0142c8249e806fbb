from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from integrations.models import Environment
from sandbox.models import SandboxCompany


class Command(BaseCommand):
    help = "Create an API key for a sandbox company. Prints the key on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--company", required=True, help="company name or slug")
        parser.add_argument("--create", action="store_true", help="create the company if it does not exist")
        parser.add_argument(
            "--environment",
            help="slug of the environment owning the company: a company made with --create belongs to it "
            "(without it, only staff see that company's pages); an existing company must belong to it",
        )

    def handle(self, *args, company: str, create: bool, environment: str | None = None, **options):
        if not settings.SANDBOX_ENABLED:
            raise CommandError("Sandbox HR is off (SANDBOX_ENABLED=false): its keys would reach nothing.")
        owner = None
        if environment:
            owner = Environment.objects.filter(slug=environment).first()
            if owner is None:
                raise CommandError(f"No environment {environment!r}.")
        found = (
            SandboxCompany.objects.filter(name=company).first() or SandboxCompany.objects.filter(slug=company).first()
        )
        if found is None:
            if not create:
                raise CommandError(f"No sandbox company {company!r} (use --create to make it).")
            found = SandboxCompany.objects.create(name=company, environment=owner)
        elif owner is not None and found.environment_id != owner.pk:
            raise CommandError(f"The sandbox company {found.name!r} does not belong to the environment {owner.slug!r}.")
        key, raw = found.create_key(label="command line")
        self.stdout.write(f"New API key for {found.name} (prefix {key.prefix}):")
        self.stdout.write(raw)
