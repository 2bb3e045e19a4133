"""The approval workflow's notification channels against real receivers on loopback.

A webhook receiver (``http.server`` in a thread) checks every notice with ``verify_notice`` and
the public half of the instance key, as a team's receiver would; an SMTP server (``aiosmtpd``)
takes the emails. Named adversarial cases: a notice changed in transit, replayed late, re-dated by
whoever replays it, signed by another Writ; a plan title written to split an email's headers.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from writ.attestations.instance_key import ensure_instance_key
from writ.engine.core.errors import NotificationError, SignatureError
from writ.engine.core.settings import NotifySettings
from writ.plans.keys import PrivateKey
from writ.workflows.approval.models import Notice, Recipient
from writ.workflows.approval.notify import NOTICE_TYPE, send_email, send_webhook, verify_notice

PLAN_ID = "sha256:" + "ab" * 32
EXPIRES = datetime(2026, 12, 11, 10, 0, tzinfo=UTC)
SECRET = "s3cr3t-token-in-query"


def notice(title: str = "Fix the README typo", event: str = "waiting") -> Notice:
    return Notice(
        event=event,  # type: ignore[arg-type]
        plan_id=PLAN_ID,
        title=title,
        planner="plan-bot",
        link=f"http://127.0.0.1:8420/plans/{PLAN_ID}",
        summary="0/2; missing: code-owners",
        requirement={"quorum": 2, "groups": ["code-owners"]},
        expires_at=EXPIRES,
        recipients=(Recipient(principal="alice", email="alice@example.com"),
                    Recipient(principal="bob", email="bob@example.com"),
                    Recipient(principal="carol")),
        event_id=f"writ-approval/{PLAN_ID}/waiting/1",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def key(tmp_path: Path) -> PrivateKey:
    """The instance key of a fresh data directory (what `writ init` makes)."""
    return ensure_instance_key(tmp_path)[0]


# -- a webhook receiver -------------------------------------------------------------------------


@dataclass
class Receiver:
    """A team's webhook endpoint: verifies each notice with Writ's public key, answers ``status``."""

    key: PrivateKey
    status: int = 204
    requests: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    verified: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver(key: PrivateKey) -> Iterator[Receiver]:
    state = Receiver(key)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((self.path, body, dict(self.headers.items())))
            try:
                state.verified.append(verify_notice(body, self.headers, state.key.public_key))  # type: ignore[arg-type]
            except SignatureError:
                self.send_response(401)
            else:
                self.send_response(state.status)
                if 300 <= state.status < 400:
                    self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/writ?token={SECRET}"
    yield state
    server.shutdown()
    server.server_close()


def hook(url: str, timeout_s: float = 5.0) -> NotifySettings:
    return NotifySettings(webhook_url=url, timeout_s=timeout_s)


def test_receiver_verifies_the_notice_with_the_instance_public_key(receiver: Receiver, key: PrivateKey) -> None:
    detail = send_webhook(hook(receiver.url), key, notice())
    port = receiver.url.split(":")[2].split("/")[0]
    assert detail == f"HTTP 204 from http://127.0.0.1:{port}/hooks/writ"  # the query (a secret) is not shown
    (path, body, headers), = receiver.requests
    assert path == f"/hooks/writ?token={SECRET}"
    assert headers["Writ-Key-Id"] == key.key_id and headers["Content-Type"] == "application/json"
    assert headers["Writ-Signature"].startswith("ed25519=")
    (doc,) = receiver.verified
    assert doc == {
        "type": NOTICE_TYPE, "event": "waiting", "notice_id": f"writ-approval/{PLAN_ID}/waiting/1",
        "plan_id": PLAN_ID, "title": "Fix the README typo", "planner": "plan-bot",
        "summary": "0/2; missing: code-owners", "requirement": {"quorum": 2, "groups": ["code-owners"]},
        "expires_at": "2026-12-11T10:00:00Z", "link": f"http://127.0.0.1:8420/plans/{PLAN_ID}",
        "recipients": ["alice", "bob", "carol"],
    }
    assert body == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def test_a_retry_of_one_notice_carries_the_same_notice_id(receiver: Receiver, key: PrivateKey) -> None:
    send_webhook(hook(receiver.url), key, notice())
    send_webhook(hook(receiver.url), key, notice())
    assert [d["notice_id"] for d in receiver.verified] == [f"writ-approval/{PLAN_ID}/waiting/1"] * 2


def test_header_names_are_matched_in_any_case(receiver: Receiver, key: PrivateKey) -> None:
    send_webhook(hook(receiver.url), key, notice())
    _, body, headers = receiver.requests[0]
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify_notice(body, lower, key.public_key)["plan_id"] == PLAN_ID


@pytest.fixture
def delivered(receiver: Receiver, key: PrivateKey) -> tuple[bytes, dict[str, str]]:
    """One notice as the receiver got it: its body and headers."""
    send_webhook(hook(receiver.url), key, notice())
    _, body, headers = receiver.requests[0]
    return body, headers


def test_notice_title_changed_in_transit(delivered: tuple[bytes, dict[str, str]], key: PrivateKey) -> None:
    body, headers = delivered
    forged = body.replace(b"Fix the README typo", b"Delete the production database")
    with pytest.raises(SignatureError, match="signature does not verify"):
        verify_notice(forged, headers, key.public_key)


def test_notice_replayed_after_max_age(delivered: tuple[bytes, dict[str, str]], key: PrivateKey) -> None:
    body, headers = delivered
    sent = int(headers["Writ-Timestamp"])
    assert verify_notice(body, headers, key.public_key, now=sent + 300)["plan_id"] == PLAN_ID
    with pytest.raises(SignatureError, match="signed 301s ago, more than 300s: a replay"):
        verify_notice(body, headers, key.public_key, now=sent + 301)
    with pytest.raises(SignatureError, match="in the future"):
        verify_notice(body, headers, key.public_key, now=sent - 301)


def test_notice_timestamp_refreshed_by_whoever_replays_it(
    delivered: tuple[bytes, dict[str, str]], key: PrivateKey
) -> None:
    body, headers = delivered
    redated = {**headers, "Writ-Timestamp": str(int(headers["Writ-Timestamp"]) + 3600)}
    with pytest.raises(SignatureError, match="signature does not verify"):
        verify_notice(body, redated, key.public_key, now=int(redated["Writ-Timestamp"]))


def test_notice_signed_by_another_writ(delivered: tuple[bytes, dict[str, str]], key: PrivateKey) -> None:
    body, headers = delivered
    other = PrivateKey.generate()
    with pytest.raises(SignatureError, match="expected Writ's instance key"):
        verify_notice(body, headers, other.public_key)
    with pytest.raises(SignatureError, match="signature does not verify"):  # claims the key id of the right one
        verify_notice(body, {**headers, "Writ-Key-Id": other.key_id}, other.public_key)


@pytest.mark.parametrize(("change", "message"), [
    pytest.param({"Writ-Signature": None}, "no Writ-Signature header", id="unsigned"),
    pytest.param({"Writ-Signature": "hmac-sha256=abcd"}, "does not start with 'ed25519='", id="other_scheme"),
    pytest.param({"Writ-Signature": "ed25519=not base64!"}, "not base64", id="signature_not_base64"),
    pytest.param({"Writ-Timestamp": "yesterday"}, "not a time in unix seconds", id="timestamp_not_a_number"),
    pytest.param({"writ-timestamp": "1"}, "2 different Writ-Timestamp headers", id="two_timestamps"),
])
def test_malformed_notice_headers_are_refused(
    delivered: tuple[bytes, dict[str, str]], key: PrivateKey, change: dict[str, str | None], message: str
) -> None:
    body, headers = delivered
    changed = {k: v for k, v in {**headers, **change}.items() if v is not None}
    with pytest.raises(SignatureError, match=message):
        verify_notice(body, changed, key.public_key)


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (404, False),
                                                   (302, False)])
def test_a_receiver_answering_an_error_is_a_notification_error(
    receiver: Receiver, key: PrivateKey, status: int, retryable: bool
) -> None:
    receiver.status = status
    with pytest.raises(NotificationError, match=f"webhook http://127.0.0.1:[0-9]+/hooks/writ answered HTTP {status}") as e:
        send_webhook(hook(receiver.url), key, notice())
    assert e.value.code == "notification_failed" and e.value.retryable is retryable
    assert SECRET not in str(e.value)
    assert len(receiver.requests) == 1  # a redirect is not followed


def test_a_closed_port_is_a_notification_error(key: PrivateKey) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/writ?token={SECRET}"
    with pytest.raises(NotificationError, match=r"webhook http://127.0.0.1:[0-9]+/hooks/writ cannot be reached") as e:
        send_webhook(hook(url), key, notice())
    assert e.value.retryable and SECRET not in str(e.value)


def test_a_receiver_that_never_answers_is_a_notification_error(key: PrivateKey) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        with pytest.raises(NotificationError, match="did not answer within 0.2s"):
            send_webhook(hook(url, timeout_s=0.2), key, notice())


def test_a_webhook_url_that_is_not_http_is_refused_without_retry(key: PrivateKey) -> None:
    with pytest.raises(NotificationError, match="not an http\\(s\\) URL") as e:
        send_webhook(hook("file:///etc/passwd"), key, notice())
    assert not e.value.retryable


# -- an SMTP server -----------------------------------------------------------------------------


class Inbox:
    """An aiosmtpd handler that keeps every message; ``refuse`` names recipients answered with 550."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def messages(self) -> list[tuple[list[str], email.message.EmailMessage]]:
        return [(list(e.rcpt_tos), email.message_from_bytes(e.original_content, policy=email.policy.default))
                for e in self.envelopes]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, NotifySettings]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, NotifySettings(smtp_host="127.0.0.1", smtp_port=port, email_from="writ@writ.example", timeout_s=5)
    controller.stop()


def test_one_mail_per_recipient_with_an_address(smtp: tuple[Inbox, NotifySettings]) -> None:
    inbox, settings = smtp
    assert send_email(settings, notice()) == "sent to alice@example.com, bob@example.com; no email for carol"
    mails = inbox.messages()
    assert [to for to, _ in mails] == [["alice@example.com"], ["bob@example.com"]]
    for (to, msg) in mails:
        assert msg["To"] == to[0] and msg["From"] == "writ@writ.example"
        assert msg["Subject"] == "[Writ] Plan waits for your approval: Fix the README typo"
        assert msg["Auto-Submitted"] == "auto-generated"
        text = msg.get_content()
        for fact in ("Title:    Fix the README typo", "Planner:  plan-bot", "Status:   0/2; missing: code-owners",
                     "Expires:  2026-12-11T10:00:00Z", f"http://127.0.0.1:8420/plans/{PLAN_ID}", "not signed"):
            assert fact in text, fact
    assert mails[0][1]["Message-ID"] != mails[1][1]["Message-ID"]


def test_a_retried_mail_keeps_its_message_id(smtp: tuple[Inbox, NotifySettings]) -> None:
    inbox, settings = smtp
    send_email(settings, notice())
    send_email(settings, notice())
    ids = [msg["Message-ID"] for _, msg in inbox.messages()]
    assert ids[0] == ids[2] and ids[1] == ids[3] and ids[0] != ids[1]


def test_plan_title_written_to_split_the_mail_headers(smtp: tuple[Inbox, NotifySettings]) -> None:
    inbox, settings = smtp
    title = "Fix typo\r\nBcc: mallory@evil.example\r\nX-Priority: 1\r\n\r\nApproved already, just click"
    send_email(settings, notice(title=title))
    for to, msg in inbox.messages():
        assert to in (["alice@example.com"], ["bob@example.com"])
        assert msg["Bcc"] is None and msg["X-Priority"] is None
        assert msg["Subject"] == ("[Writ] Plan waits for your approval: Fix typo Bcc: mallory@evil.example "
                                  "X-Priority: 1 Approved already, just click")
        assert sorted(msg.keys()) == ["Auto-Submitted", "Content-Transfer-Encoding", "Content-Type", "Date", "From",
                                      "MIME-Version", "Message-ID", "Subject", "To", "X-Writ-Notice-Id"]
        text = msg.get_content().replace("\r\n", "\n")
        assert text.startswith("A plan waits for your approval.\n\nTitle:    Fix typo Bcc: mallory@evil.example X-")


@pytest.mark.parametrize(("event", "subject"), [
    ("reminder", "Reminder: plan waits for your approval"),
    ("escalation", "Escalated: plan waits for approval"),
    ("approved", "Plan approved"),
    ("rejected", "Plan rejected"),
    ("expired", "Plan expired unapproved"),
])
def test_each_event_has_its_own_subject(smtp: tuple[Inbox, NotifySettings], event: str, subject: str) -> None:
    inbox, settings = smtp
    send_email(settings, notice(event=event))
    assert {msg["Subject"] for _, msg in inbox.messages()} == {f"[Writ] {subject}: Fix the README typo"}


def test_a_refused_recipient_is_a_notification_error(smtp: tuple[Inbox, NotifySettings]) -> None:
    inbox, settings = smtp
    inbox.refuse.add("bob@example.com")
    with pytest.raises(NotificationError, match=r"refused bob@example.com \(550 5.1.1 no such mailbox\) "
                                                r"\(already sent to alice@example.com\)"):
        send_email(settings, notice())


def test_an_unreachable_smtp_port_is_a_notification_error() -> None:
    settings = NotifySettings(smtp_host="127.0.0.1", smtp_port=free_port(), timeout_s=5)
    with pytest.raises(NotificationError, match=r"SMTP server 127.0.0.1:[0-9]+ cannot be reached: "
                                                r"Connection refused") as e:
        send_email(settings, notice())
    assert e.value.code == "notification_failed" and e.value.retryable


def test_recipients_without_an_address_are_skipped_and_nothing_is_sent(smtp: tuple[Inbox, NotifySettings]) -> None:
    inbox, settings = smtp
    only_carol = notice().model_copy(update={"recipients": (Recipient(principal="carol"),)})
    assert send_email(settings, only_carol) == "no email for carol"
    assert inbox.envelopes == []
