"""The notification digest by e-mail: stdlib smtplib, STARTTLS when configured (docs/integration-guide.md)."""

from __future__ import annotations

import json
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from service.usecases.ports.notifications import PermanentSendError, StoredNotification, TransientSendError

__all__ = ["SmtpSender", "load_recipients"]


class SmtpSender:
    """Sends an owner's digest to the owner's recipient addresses (one message, all recipients in To)."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Mapping[str, Sequence[str]],
        *,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self._host = host
        self._port = port
        self._from = sender
        self._recipients = {owner: list(addresses) for owner, addresses in recipients.items()}
        self._starttls = starttls
        self._username = username
        self._password = password
        self._timeout_s = timeout_s

    def reaches(self, owner: str) -> bool:
        """See usecases.notify.Sender."""
        return bool(self._recipients.get(owner))

    def send(self, message: StoredNotification) -> None:
        """See usecases.notify.Sender. SMTP 4xx and connection failures are transient; 5xx permanent."""
        email = EmailMessage()
        email["From"] = self._from
        email["To"] = ", ".join(self._recipients.get(message.owner, []))
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False, usegmt=True)
        # Stable per record row: a resend after a crash carries the same id, so mail clients can fold duplicates.
        email["Message-ID"] = make_msgid(idstring=f"refracture-digest-{message.id}")
        email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to a machine
        email.set_content(message.body)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username and self._password:
                    smtp.login(self._username, self._password)
                smtp.send_message(email)
        except smtplib.SMTPResponseException as error:
            reason = f"smtp {error.smtp_code}"
            if 400 <= error.smtp_code < 500:
                raise TransientSendError(reason) from None
            raise PermanentSendError(reason) from None
        except smtplib.SMTPRecipientsRefused:
            raise PermanentSendError("smtp recipients refused") from None
        except (OSError, smtplib.SMTPException) as error:
            # The exception's class only: its text may carry an address.
            raise TransientSendError(f"smtp {type(error).__name__}") from None


def load_recipients(path: Path) -> dict[str, list[str]]:
    """The recipients file: ``{"CareTeam/fls-north": ["fls-north@hospital.example"], "*": [...]}``.

    Raises:
        ValueError: not such a mapping (the process stops at start with the reason, as for the routing table).
    """
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError("the notification recipients file must be a JSON object of owner -> [addresses]")
    recipients: dict[str, list[str]] = {}
    for owner, addresses in document.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and "@" in a for a in addresses):
            raise ValueError(f"recipients of {owner!r} must be a list of e-mail addresses")
        recipients[str(owner)] = list(addresses)
    return recipients
