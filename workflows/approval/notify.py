"""The approval workflow's notification channels: a signed webhook and email (plain functions, no Temporal).

    detail = send_webhook(settings.notify, load_instance_key(settings.home), notice)   # 'HTTP 204 from https://...'
    detail = send_email(settings.notify, notice)       # 'sent to alice@example.com; no email for carol'
    doc = verify_notice(body, request.headers, writ_public_key)    # a receiver: the notice, or SignatureError

The activities call these and let Temporal retry them (``WRIT_NOTIFY__MAX_ATTEMPTS``, backoff from
``WRIT_NOTIFY__FIRST_RETRY_S``); a ``NotificationError`` says whether another try can help
(``retryable``). A failed channel never fails an approval: the activity audits it and goes on.

The webhook POSTs compact JSON (``notice_body``) with three headers: ``Writ-Key-Id`` (the instance
key), ``Writ-Timestamp`` (unix seconds) and ``Writ-Signature: ed25519=<base64>``, the Ed25519
signature over ``b"<timestamp>." + body``. Signing the timestamp with the body lets a receiver refuse
a replayed notice (``verify_notice``: older than ``max_age_s``); ``notice_id`` is the same on every
retry of one notice, so a receiver deduplicates on it. Neither a redirect nor a proxy changes what
was signed: redirects are not followed (a 3xx is a failure).

Email is one message per recipient with an address. Nothing from the plan can become a header:
every field is flattened to one line (control and format characters become spaces), and the
address itself passed ``check_email``. An email is not signed: it says so, and points at the plan.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import smtplib
import time
import unicodedata
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import httpx

from writ.engine.core.errors import InputError, NotificationError, SignatureError
from writ.engine.core.settings import NotifySettings
from writ.engine.core.timeutil import iso
from writ.plans.contacts import check_email
from writ.plans.keys import PrivateKey, PublicKey, short_key_id
from writ.workflows.approval.models import Notice

__all__ = [
    "KEY_ID_HEADER",
    "NOTICE_TYPE",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "notice_body",
    "send_email",
    "send_webhook",
    "shown_url",
    "verify_notice",
]

NOTICE_TYPE = "https://writ.dev/notice/v1"
KEY_ID_HEADER = "Writ-Key-Id"
TIMESTAMP_HEADER = "Writ-Timestamp"
SIGNATURE_HEADER = "Writ-Signature"
_SCHEME = "ed25519="
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_RETRYABLE_4XX = frozenset({408, 425, 429})  # the receiver asks to come back later

# -- the webhook ----------------------------------------------------------------------------------


def notice_body(notice: Notice) -> bytes:
    """The webhook's JSON body: compact, keys sorted, ASCII only (what is signed is exactly what is sent)."""
    doc = {
        "type": NOTICE_TYPE,
        "event": notice.event,
        "notice_id": notice.event_id,
        "plan_id": notice.plan_id,
        "title": notice.title,
        "planner": notice.planner,
        "summary": notice.summary,
        "requirement": notice.requirement,
        "expires_at": iso(notice.expires_at),
        "link": notice.link,
        "recipients": [r.principal for r in notice.recipients],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _signed_message(timestamp: str, body: bytes) -> bytes:
    return timestamp.encode("ascii") + b"." + body


def shown_url(url: str) -> str:
    """``url`` fit for a message or the audit log: scheme, host, port and path; never a query, fragment or password."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "(an unparseable URL)"
    return f"{parts.scheme}://{host}{parts.path}"


def send_webhook(settings: NotifySettings, key: PrivateKey, notice: Notice) -> str:
    """POST the signed notice to ``settings.webhook_url``; ``HTTP <status> from <url>``, or ``NotificationError``."""
    url = settings.webhook_url
    if not url:
        raise NotificationError("no webhook configured: set WRIT_NOTIFY__WEBHOOK_URL", retryable=False)
    shown = shown_url(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotificationError(f"webhook URL {shown} is not an http(s) URL with a host: fix WRIT_NOTIFY__WEBHOOK_URL",
                                retryable=False)
    body = notice_body(notice)
    timestamp = str(int(time.time()))
    signature = base64.b64encode(key.sign(_signed_message(timestamp, body))).decode("ascii")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "writ-notify/1",
        KEY_ID_HEADER: key.key_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: _SCHEME + signature,
    }
    try:
        with httpx.Client(timeout=settings.timeout_s, follow_redirects=False) as client:
            # Streamed and never read: a receiver cannot make Writ hold a large or endless answer.
            with client.stream("POST", url, content=body, headers=headers) as response:
                status = response.status_code
    except httpx.TimeoutException:
        raise NotificationError(f"webhook {shown} did not answer within {settings.timeout_s:g}s") from None
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as e:
        raise NotificationError(f"webhook {shown} cannot be reached: {_redacted(str(e), url, shown)}") from None
    if 200 <= status < 300:
        return f"HTTP {status} from {shown}"
    hint = " (redirects are not followed: configure the final URL)" if 300 <= status < 400 else ""
    raise NotificationError(f"webhook {shown} answered HTTP {status}{hint}",
                            retryable=status >= 500 or status in _RETRYABLE_4XX)


def _redacted(text: str, url: str, shown: str) -> str:
    """``text`` (a library's message) without the URL's query string or password."""
    text = " ".join(text.split()) or "connection failed"
    text = text.replace(url, shown)
    parts = urlsplit(url)
    for secret in (parts.query, parts.fragment, parts.password or ""):
        if secret:
            text = text.replace(secret, "...")
    return text[:300]


# -- what a receiver runs -----------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str:
    """The one value of header ``name`` (any case); ``SignatureError`` if missing or given twice differently."""
    values = {str(v).strip() for k, v in headers.items() if str(k).lower() == name.lower()}
    if not values:
        raise SignatureError(f"notice has no {name} header: it was not sent by Writ")
    if len(values) > 1:
        raise SignatureError(f"notice has {len(values)} different {name} headers")
    return values.pop()


def verify_notice(
    body: bytes,
    headers: Mapping[str, str],
    public_key: PublicKey,
    *,
    now: float | None = None,
    max_age_s: float = 300,
) -> dict[str, Any]:
    """The notice in ``body`` if Writ's ``public_key`` signed it within ``max_age_s``; ``SignatureError`` otherwise.

    Steps, one refusal each: 1. the key id names ``public_key``; 2. the timestamp is unix seconds;
    3. the signature over ``b"<timestamp>." + body`` verifies; 4. the timestamp is neither older nor
    further ahead than ``max_age_s`` (a replay, or a clock far off); 5. the body is a Writ notice.
    """
    key_id = _header(headers, KEY_ID_HEADER)
    if key_id != public_key.key_id:
        raise SignatureError(f"notice names key {short_key_id(key_id)}, expected Writ's instance key "
                             f"{short_key_id(public_key.key_id)}")
    timestamp = _header(headers, TIMESTAMP_HEADER)
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureError(f"{TIMESTAMP_HEADER} {timestamp[:40]!r} is not a time in unix seconds")
    signature = _header(headers, SIGNATURE_HEADER)
    if not signature.startswith(_SCHEME):
        raise SignatureError(f"{SIGNATURE_HEADER} does not start with {_SCHEME!r}")
    try:
        raw = base64.b64decode(signature.removeprefix(_SCHEME), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{SIGNATURE_HEADER} is not base64") from None
    public_key.verify(raw, _signed_message(timestamp, body))
    age = (time.time() if now is None else now) - int(timestamp)
    if age > max_age_s:
        raise SignatureError(f"notice was signed {age:.0f}s ago, more than {max_age_s:g}s: a replay or a stale retry")
    if age < -max_age_s:
        raise SignatureError(f"notice is dated {-age:.0f}s in the future, more than {max_age_s:g}s: check the clocks")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("notice body is not JSON") from None
    if not isinstance(doc, dict) or doc.get("type") != NOTICE_TYPE:
        raise SignatureError(f"signed body is not a Writ notice (type {NOTICE_TYPE!r})")
    return doc


# -- email --------------------------------------------------------------------------------------

_SUBJECTS = {
    "waiting": ("Plan waits for your approval", "A plan waits for your approval."),
    "reminder": ("Reminder: plan waits for your approval", "Reminder: a plan still waits for your approval."),
    "escalation": ("Escalated: plan waits for approval", "A plan still waits for approval; it was escalated to you."),
    "approved": ("Plan approved", "A plan you were asked to approve was approved."),
    "rejected": ("Plan rejected", "A plan you were asked to approve was rejected."),
    "expired": ("Plan expired unapproved", "A plan you were asked to approve expired before it was approved."),
}


def _one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line: CR, LF, every other control or format character becomes a space; at most ``limit``."""
    flat = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in str(text))
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _message(notice: Notice, sender: str, address: str) -> EmailMessage:
    head, sentence = _SUBJECTS[notice.event]
    title = _one_line(notice.title, 120)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = address
    msg["Subject"] = f"[Writ] {head}: {title}"
    msg["Date"] = formatdate(usegmt=True)
    digest = hashlib.sha256(f"{notice.event_id}\n{address}".encode()).hexdigest()[:32]
    msg["Message-ID"] = f"<{digest}@{sender.rpartition('@')[2]}>"  # the same on every retry of one notice
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Writ-Notice-Id"] = _one_line(notice.event_id, 200)
    msg.set_content("\n".join([
        sentence,
        "",
        f"Title:    {_one_line(notice.title)}",
        f"Planner:  {_one_line(notice.planner, 128)}",
        f"Plan:     {_one_line(notice.plan_id, 80)}",
        f"Status:   {_one_line(notice.summary)}",
        f"Expires:  {iso(notice.expires_at)}",
        "",
        f"Review it and decide: {_one_line(notice.link, 2000)}",
        "",
        "This email is not signed and approves nothing: read the plan in Writ, and decide there",
        "with your own key. Only a signed approval counts.",
        "",
        f"-- Writ (notice {_one_line(notice.event_id, 200)})",
    ]) + "\n")
    return msg


def send_email(settings: NotifySettings, notice: Notice) -> str:
    """Email the notice to each recipient with an address, through ``settings.smtp_host``; what was done.

    ``NotificationError`` if the server cannot be reached or refuses a message (retried: the
    ``Message-ID`` stays the same, so a mail client shows one message).
    """
    if not settings.smtp_host:
        raise NotificationError("no SMTP server configured: set WRIT_NOTIFY__SMTP_HOST", retryable=False)
    try:
        sender = check_email(settings.email_from)
    except InputError as e:
        raise NotificationError(f"WRIT_NOTIFY__EMAIL_FROM: {e.message}", retryable=False) from None
    targets: list[tuple[str, str]] = []
    skipped: list[str] = []
    for r in notice.recipients:
        if not r.email:
            skipped.append(r.principal)
            continue
        try:
            targets.append((r.principal, check_email(r.email)))
        except InputError:
            skipped.append(f"{r.principal} (invalid address)")
    tail = f"no email for {', '.join(skipped)}" if skipped else ""
    if not targets:
        return tail or "no recipients"
    server = f"SMTP server {_one_line(settings.smtp_host, 200)}:{settings.smtp_port}"
    sent: list[str] = []
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_s) as smtp:
            for _principal, address in targets:
                smtp.send_message(_message(notice, sender, address), from_addr=sender, to_addrs=[address])
                sent.append(address)
    except TimeoutError:
        raise NotificationError(f"{server} did not answer within {settings.timeout_s:g}s{_so_far(sent)}") from None
    except smtplib.SMTPResponseException as e:
        raise NotificationError(f"{server} refused: {e.smtp_code} {_smtp_text(e.smtp_error)}{_so_far(sent)}",
                                retryable=e.smtp_code < 500) from None
    except smtplib.SMTPRecipientsRefused as e:
        refused = ", ".join(f"{a} ({code} {_smtp_text(text)})" for a, (code, text) in e.recipients.items())
        raise NotificationError(f"{server} refused {refused}{_so_far(sent)}") from None
    except (OSError, smtplib.SMTPException) as e:
        why = _one_line(e.strerror or str(e), 200) if isinstance(e, OSError) and e.strerror else _one_line(str(e), 200)
        raise NotificationError(f"{server} cannot be reached: {why or type(e).__name__}{_so_far(sent)}") from None
    return "; ".join(part for part in (f"sent to {', '.join(sent)}", tail) if part)


def _smtp_text(text: bytes | str) -> str:
    return _one_line(text.decode("utf-8", "replace") if isinstance(text, bytes) else text, 200)


def _so_far(sent: list[str]) -> str:
    return f" (already sent to {', '.join(sent)})" if sent else ""
