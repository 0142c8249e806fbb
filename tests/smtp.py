"""A real SMTP server for tests that send email: aiosmtpd on a free 127.0.0.1 port, collecting what
it receives, with Django's SMTP backend pointed at it."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import time
from email.message import EmailMessage

from aiosmtpd.controller import Controller


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """Collects every message the server accepts (aiosmtpd handler interface)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        message["X-Rcpt-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address.lower() in m["X-Rcpt-To"].lower()]

    def wait_for(self, address: str, timeout: float = 10.0) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no email to {address} within {timeout} s")

    @staticmethod
    def text(message: EmailMessage) -> str:
        part = message.get_body(preferencelist=("plain",))
        assert part is not None, "message has no text/plain part"
        return part.get_content()

    @staticmethod
    def html(message: EmailMessage) -> str | None:
        part = message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else None

    def links(self, message: EmailMessage) -> list[str]:
        return re.findall(r"https?://[^\s\"'<>]+", self.text(message))


class SmtpServer:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=_free_port())

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port
