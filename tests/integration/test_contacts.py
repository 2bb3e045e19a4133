"""Approvers' emails (``principal_contacts``) on real databases, and ``writ principals contact`` as an operator runs it."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from writ.attestations.audit import AuditLog
from writ.engine.cli.main import main
from writ.engine.core.db import Database
from writ.engine.core.errors import InputError, NotFoundError
from writ.engine.core.settings import Settings
from writ.plans.contacts import ContactStore, check_email
from writ.plans.trust_store import TrustStore

NOW = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def log(store: Database) -> AuditLog:
    return AuditLog(store)


@pytest.fixture
def contacts(store: Database, log: AuditLog) -> ContactStore:
    trust = TrustStore(store, audit=log)
    for name in ("alice", "bob", "carol"):
        trust.add_principal(name, "approver")
    return ContactStore(store, audit=log)


def contact_events(log: AuditLog) -> list[dict[str, object]]:
    return [e.payload for e in log.tail(100) if e.payload.get("event") == "contact_changed"]


def sha(address: str) -> str:
    return "sha256:" + hashlib.sha256(address.encode()).hexdigest()


def test_set_read_and_clear_an_approvers_email(contacts: ContactStore, log: AuditLog) -> None:
    assert contacts.set_email("alice", "alice@example.com", now=NOW) is None
    assert contacts.set_email("bob", "bob@example.com") is None
    assert contacts.email("alice") == "alice@example.com"
    assert contacts.emails(["alice", "bob", "carol", "nobody"]) == {"alice": "alice@example.com",
                                                                    "bob": "bob@example.com"}
    assert contacts.set_email("alice", "alice@corp.example") == "alice@example.com"
    assert contacts.set_email("alice", None) == "alice@corp.example"
    assert contacts.email("alice") is None and contacts.emails([]) == {}
    assert contact_events(log) == [
        {"event": "contact_changed", "principal": "alice", "change": "set", "email_sha256": sha("alice@example.com")},
        {"event": "contact_changed", "principal": "bob", "change": "set", "email_sha256": sha("bob@example.com")},
        {"event": "contact_changed", "principal": "alice", "change": "set", "email_sha256": sha("alice@corp.example")},
        {"event": "contact_changed", "principal": "alice", "change": "cleared", "email_sha256": None},
    ]


def test_the_audit_log_never_holds_the_address_itself(contacts: ContactStore, log: AuditLog) -> None:
    contacts.set_email("alice", "alice@example.com")
    assert all("alice@example.com" not in json.dumps(e.payload) for e in log.tail(100))


def test_an_unchanged_email_writes_and_audits_nothing(contacts: ContactStore, log: AuditLog) -> None:
    contacts.set_email("alice", "alice@Example.COM")
    assert contacts.email("alice") == "alice@example.com"  # the domain in lower case, the local part as given
    before = log.head()
    assert contacts.set_email("alice", " alice@example.com ") == "alice@example.com"
    assert contacts.set_email("carol", None) is None
    assert log.head() == before


def test_an_unknown_principal_gets_no_email(contacts: ContactStore, log: AuditLog) -> None:
    with pytest.raises(NotFoundError, match="no principal 'mallory'; add it with `writ principals add mallory") as e:
        contacts.set_email("mallory", "mallory@example.com")
    assert e.value.code == "principal_not_found"
    assert contacts.email("mallory") is None and contact_events(log) == []


@pytest.mark.parametrize("address", [
    pytest.param("alice@example.com, mallory@evil.example", id="two_addresses"),
    pytest.param("alice@example.com\r\nBcc: mallory@evil.example", id="header_injection"),
    pytest.param("Alice <alice@example.com>", id="display_name"),
    pytest.param("alice", id="no_domain"),
    pytest.param("alice@", id="empty_domain"),
    pytest.param("al ice@example.com", id="space"),
    pytest.param("alice@exa_mple.com", id="underscore_in_host"),
    pytest.param("alice..x@example.com", id="double_dot"),
    pytest.param('"alice"@example.com', id="quoted_local_part"),
    pytest.param("alice@[127.0.0.1]", id="ip_literal"),
    pytest.param("a" * 65 + "@example.com", id="local_part_over_64"),
    pytest.param("alice@" + "a" * 250 + ".com", id="over_254"),
])
def test_a_malformed_address_is_refused_and_nothing_changes(
    contacts: ContactStore, log: AuditLog, address: str
) -> None:
    contacts.set_email("alice", "alice@example.com")
    with pytest.raises(InputError) as e:
        contacts.set_email("alice", address)
    assert e.value.code == "input_invalid"
    assert contacts.email("alice") == "alice@example.com" and len(contact_events(log)) == 1


def test_check_email_names_the_bad_address_readably() -> None:
    with pytest.raises(InputError, match=r"'a\\r\\nb@x' is not an email address like alice@example.com"):
        check_email("a\r\nb@x")


def test_the_database_refuses_a_contact_for_no_principal(store: Database) -> None:
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(text("INSERT INTO principal_contacts (principal, email, updated_at) "
                          "VALUES ('ghost', 'ghost@example.com', 'x')"))


# -- writ principals contact ------------------------------------------------------------------------


class Writ:
    """``writ ... --data-dir HOME`` through click's runner."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def __call__(self, *args: str, code: int = 0) -> Result:
        result = CliRunner().invoke(main, [*args, "--data-dir", str(self.home)])
        assert result.exit_code == code, (args, result.output, result.exception)
        return result


@pytest.fixture
def writ(settings: Settings) -> Writ:
    from writ.engine.wiring.datadir import init_data_dir

    init_data_dir(settings)
    run = Writ(settings.home)
    run("principals", "add", "alice", "--role", "approver")
    run("principals", "add", "bob", "--role", "approver")
    return run


def test_cli_sets_shows_and_clears_an_email(writ: Writ) -> None:
    assert writ("principals", "contact", "alice", "--email", "Alice@Example.COM").output == (
        "email of alice: Alice@example.com\n")
    assert writ("principals", "contact", "alice", "--email", "alice@corp.example").output == (
        "email of alice: alice@corp.example (was Alice@example.com)\n")
    assert writ("principals", "contact", "alice", "--email", "alice@corp.example").output == (
        "email of alice: alice@corp.example (unchanged)\n")
    listing = writ("principals", "list").output.splitlines()
    assert listing[0].split() == ["PRINCIPAL", "ROLE", "GROUPS", "KEYS", "EMAIL"]
    assert listing[1].split()[-1] == "alice@corp.example" and listing[2].split()[-1] == "-"
    as_json = json.loads(writ("principals", "list", "--json").output)
    assert {p["name"]: p["email"] for p in as_json} == {"alice": "alice@corp.example", "bob": None}
    assert writ("principals", "contact", "alice", "--clear").output == (
        "cleared the email of alice (was alice@corp.example)\n")
    assert writ("principals", "contact", "alice", "--clear").output == "alice had no email; nothing changed\n"


def test_cli_refuses_a_bad_address_an_unknown_principal_and_unclear_flags(writ: Writ) -> None:
    bad = writ("principals", "contact", "alice", "--email", "alice@example.com, mallory@evil.example", code=1)
    assert "error[input_invalid]: 'alice@example.com, mallory@evil.example' is not an email address" in bad.output
    unknown = writ("principals", "contact", "mallory", "--email", "m@example.com", code=1)
    assert "error[principal_not_found]: no principal 'mallory'" in unknown.output
    for args in ([], ["--email", "a@example.com", "--clear"]):
        assert "give exactly one of --email ADDR and --clear" in writ("principals", "contact", "alice", *args,
                                                                      code=2).output
    assert json.loads(writ("principals", "list", "--json").output)[0]["email"] is None
