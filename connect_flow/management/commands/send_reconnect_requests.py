from django.core.management.base import BaseCommand

from connect_flow.notifications import send_reconnect_requests


class Command(BaseCommand):
    help = (
        "Send the reconnect requests that are due now (what beat does every few minutes), each step once; "
        "prints how many emails went out."
    )

    def handle(self, *args, **options):
        sent = send_reconnect_requests()
        self.stdout.write(f"{sent} reconnect request{'s' if sent != 1 else ''} sent.")
