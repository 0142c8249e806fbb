from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify

from integrations import audit, environments
from integrations.models import Environment, Membership, Role, User


class Command(BaseCommand):
    help = (
        "Create an environment (or find it by slug) and optionally make an existing user its owner. "
        "Prints the slug on the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help='e.g. "Acme production"')
        parser.add_argument("--slug", default="", help="URL name (default: from the name)")
        parser.add_argument("--owner", default="", help="email of an existing user to make owner")

    def handle(self, *args, name: str, slug: str, owner: str, **options):
        slug = slugify(slug or name)
        if not slug:
            raise CommandError("The name or --slug must contain letters or digits.")
        user = None
        if owner:
            user = User.objects.filter(email__iexact=owner).first()
            if user is None:
                raise CommandError(f"No user with email {owner!r} (create it first, e.g. manage.py createsuperuser).")
        env = Environment.objects.filter(slug=slug).first()
        created = env is None
        if env is None:  # with its owner and a default scope config per category (environments.py)
            env = environments.create_environment(name, audit.Actor(label="create_environment"), slug=slug, owner=user)
        elif user is not None:
            Membership.objects.update_or_create(environment=env, user=user, defaults={"role": Role.OWNER})
        self.stdout.write(
            f"{'Created' if created else 'Found'} environment {env.name!r}"
            + (f"; {user.email} is its owner" if user else "")
            + ":"
        )
        self.stdout.write(env.slug)
