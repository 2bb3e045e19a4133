"""The trust store on real databases: principals with one role, keys bound to them, groups from both sources."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from writ.attestations.audit import AuditLog
from writ.engine.core.db import Database
from writ.engine.core.errors import ConfigError, ConflictError, InputError, NotFoundError, VerificationError
from writ.engine.core.settings import Limits
from writ.engine.policy.embedded import EmbeddedEngine
from writ.plans.canonical import canonical_bytes, sha256_digest
from writ.plans.keys import PrivateKey
from writ.plans.trust import TrustSet
from writ.plans.trust_store import TrustStore, groups_from_policy_data, load_trust_root, policy_groups

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

# -- fixtures (the per-test PostgreSQL schema of tests/test_audit.py) ---------------------------


@pytest.fixture(scope="module")
def engine(policy_dir: Path) -> EmbeddedEngine:
    return EmbeddedEngine(policy_dir)


@pytest.fixture
def trust(store: Database, engine: EmbeddedEngine) -> TrustStore:
    return TrustStore(store, policy_groups(engine), audit=AuditLog(store))


def sql(store: Database, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


# -- principals ---------------------------------------------------------------------------------


def test_principal_has_one_role_and_its_groups_come_from_policy_data(trust: TrustStore) -> None:
    alice = trust.add_principal("alice", "approver", now=NOW)
    trust.add_principal("plan-bot", "planner", now=NOW)
    assert (alice.name, alice.role, alice.created_at, alice.groups) == ("alice", "approver", NOW, ("code-owners",))
    listed = {p.name: (p.role, p.groups) for p in trust.principals()}
    assert listed == {"alice": ("approver", ("code-owners",)), "plan-bot": ("planner", ())}
    assert trust.principal("plan-bot").role == "planner"


def test_a_second_role_needs_a_second_principal(trust: TrustStore) -> None:
    trust.add_principal("alice", "approver")
    with pytest.raises(ConflictError, match="principal 'alice' already exists with role approver") as e:
        trust.add_principal("alice", "auditor")
    assert e.value.code == "principal_exists"
    trust.add_principal("alice.audit", "auditor")  # the separation-of-duties way


@pytest.mark.parametrize("name", ["Alice", "ALICE", "aLiCe"])
def test_principal_names_differing_only_by_case(trust: TrustStore, name: str) -> None:
    trust.add_principal("alice", "approver")
    with pytest.raises(ConflictError, match=f"principal '{name}' clashes with existing 'alice'"):
        trust.add_principal(name, "planner")


def test_database_refuses_a_case_clash_written_behind_writs_back(trust: TrustStore, store: Database) -> None:
    trust.add_principal("alice", "approver")
    with pytest.raises(IntegrityError):
        sql(store, "INSERT INTO principals (name, role, created_at) VALUES ('ALICE', 'planner', 'x')")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("alice\n", id="trailing_newline"),
        pytest.param("../etc/passwd", id="path_traversal"),
        pytest.param("\u0430lice", id="cyrillic_a_homoglyph"),
        pytest.param("bob; DROP TABLE principals", id="sql_injection"),
        pytest.param("a" * 129, id="too_long"),
        pytest.param("-rf", id="leading_dash"),
    ],
)
def test_adversarial_principal_names_are_refused(trust: TrustStore, name: str) -> None:
    with pytest.raises(InputError, match="principal name .* is invalid") as e:
        trust.add_principal(name, "approver")
    assert e.value.code == "principal_invalid"
    assert trust.principals() == []


def test_unknown_role_is_refused(trust: TrustStore) -> None:
    with pytest.raises(InputError, match="role 'root' is not one of planner, executor, approver, auditor, admin"):
        trust.add_principal("mallory", "root")


def test_unknown_principal_says_how_to_add_it(trust: TrustStore) -> None:
    with pytest.raises(NotFoundError, match=r"no principal 'zed'; add it with `writ principals add zed --role ROLE`"):
        trust.principal("zed")


# -- keys ---------------------------------------------------------------------------------------


def test_key_takes_its_principals_role(trust: TrustStore) -> None:
    trust.add_principal("exec-bot", "executor")
    key = PrivateKey.generate()
    record = trust.add_key("exec-bot", key.public_key, now=NOW)
    assert (record.key_id, record.principal, record.role, record.created_at) == (
        key.key_id, "exec-bot", "executor", NOW,
    )
    trusted = trust.trust_set().key(key.key_id)
    assert trusted is not None and trusted.role == "executor" and trusted.public_key == key.public_key


def test_database_refuses_a_key_whose_role_is_not_its_principals(trust: TrustStore, store: Database) -> None:
    """An attacker with database access cannot turn an executor's key into a planner key by one column."""
    trust.add_principal("exec-bot", "executor")
    key = PrivateKey.generate()
    trust.add_key("exec-bot", key.public_key)
    with pytest.raises(IntegrityError):
        sql(store, "UPDATE trust_keys SET role = 'planner' WHERE key_id = :k", k=key.key_id)


def test_same_public_key_twice_is_refused(trust: TrustStore) -> None:
    trust.add_principal("alice", "approver")
    trust.add_principal("bob", "approver")
    key = PrivateKey.generate()
    trust.add_key("alice", key.public_key)
    with pytest.raises(ConflictError, match=r"key [0-9a-f]{12} is already trusted for 'alice' \(approver\)"):
        trust.add_key("bob", key.public_key)


def test_key_for_unknown_principal_is_refused(trust: TrustStore) -> None:
    with pytest.raises(NotFoundError, match="no principal 'ghost'"):
        trust.add_key("ghost", PrivateKey.generate().public_key)


def test_key_window_must_be_a_window(trust: TrustStore) -> None:
    trust.add_principal("alice", "approver")
    with pytest.raises(InputError, match="not_after must be later than not_before"):
        trust.add_key("alice", PrivateKey.generate().public_key, not_before=NOW, not_after=NOW - timedelta(days=1))


def test_key_by_prefix(trust: TrustStore) -> None:
    trust.add_principal("alice", "approver")
    key = PrivateKey.generate()
    trust.add_key("alice", key.public_key)
    hex_id = key.key_id.removeprefix("sha256:")
    assert trust.key(key.key_id).key_id == key.key_id
    assert trust.key(hex_id[:6]).key_id == key.key_id
    assert trust.key(hex_id[:12].upper()).key_id == key.key_id
    with pytest.raises(InputError, match="at least 6 hex digits"):
        trust.key(hex_id[:5])
    with pytest.raises(InputError, match="at least 6 hex digits"):
        trust.key("%%%%%%")  # a LIKE wildcard is not a prefix
    with pytest.raises(NotFoundError, match="no trusted key"):
        trust.key("f" * 64 if not hex_id.startswith("f") else "0" * 64)


def test_revoke_now_then_only_earlier(trust: TrustStore) -> None:
    trust.add_principal("bob", "approver")
    key = PrivateKey.generate()
    trust.add_key("bob", key.public_key)
    revoked = trust.revoke_key(key.key_id[7:19], at=NOW)
    assert revoked.revoked_at == NOW
    assert revoked.status(NOW - timedelta(seconds=1)) == "valid"
    assert revoked.status(NOW) == "revoked at 2026-11-22T10:00:00Z"
    with pytest.raises(ConflictError, match="already revoked since .* can only move earlier") as e:
        trust.revoke_key(key.key_id, at=NOW + timedelta(days=1))
    assert e.value.code == "key_already_revoked"
    earlier = trust.revoke_key(key.key_id, at=NOW - timedelta(hours=1))  # the compromise was older
    assert earlier.revoked_at == NOW - timedelta(hours=1)
    assert trust.trust_set().key(key.key_id).revoked_at == NOW - timedelta(hours=1)  # type: ignore[union-attr]


def test_trust_changes_are_in_the_audit_log(trust: TrustStore, store: Database) -> None:
    trust.add_principal("bob", "approver")
    key = PrivateKey.generate()
    trust.add_key("bob", key.public_key)
    trust.revoke_key(key.key_id, at=NOW)
    events = [(e.kind, e.payload["event"]) for e in AuditLog(store).tail(10)]
    assert events == [("trust_event", "principal_added"), ("trust_event", "key_added"), ("trust_event", "key_revoked")]
    assert AuditLog(store).tail(1)[0].payload["key_id"] == key.key_id


# -- groups: policy data, one source of truth ---------------------------------------------------


def test_groups_follow_the_policy_files_on_reload(store: Database, policy_dir: Path, tmp_path: Path) -> None:
    mine = tmp_path / "policies"
    shutil.copytree(policy_dir, mine, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    engine = EmbeddedEngine(mine, Limits(policy_reload_interval_s=0))
    trust = TrustStore(store, policy_groups(engine), audit=AuditLog(store))
    trust.add_principal("dave", "approver")
    assert trust.principal("dave").groups == ()
    (mine / "writ" / "groups.json").write_text(json.dumps({"code-owners": ["alice", "dave"]}))
    assert trust.principal("dave").groups == ("code-owners",)
    assert trust.trust_set().groups == {"code-owners": ("alice", "dave")}


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        pytest.param(["alice"], "must be an object of group name", id="list_not_object"),
        pytest.param({"code-owners": "alice"}, "group 'code-owners' must be a list", id="members_a_string"),
        pytest.param({"code-owners": ["alice", 7]}, "must be a list of principal names", id="member_a_number"),
        pytest.param({"code-owners": ["alice\n"]}, "lists 'alice\\\\n', which is not a valid", id="bad_member"),
    ],
)
def test_malformed_groups_data_is_a_config_error(groups: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        groups_from_policy_data({"writ": {"groups": groups}})


def test_no_groups_data_means_no_groups() -> None:
    assert groups_from_policy_data({"writ": {}}) == {} == groups_from_policy_data({})


def test_group_member_clashing_by_case_with_a_principal_is_refused(store: Database) -> None:
    trust = TrustStore(store, lambda: {"code-owners": ("Alice",)}, audit=AuditLog(store))
    trust.add_principal("alice", "approver")
    trust.add_key("alice", PrivateKey.generate().public_key)
    with pytest.raises(ConfigError, match="principals 'alice' and 'Alice' differ only by case"):
        trust.trust_set()


# -- groups: stored in the trust store, merged with the policy data ------------------------------


def test_stored_members_join_the_policy_datas_groups(trust: TrustStore) -> None:
    trust.add_principal("dave", "approver")
    trust.add_principal("erin", "approver")
    trust.add_group_member("code-owners", "dave")
    trust.add_group_member("release", "erin")
    assert trust.groups() == {"code-owners": ("alice", "bob", "dave"), "security": ("carol",), "release": ("erin",)}
    assert trust.principal("dave").groups == ("code-owners",)
    assert trust.trust_set().groups_of("erin") == {"release"}
    sources = {(m.group, m.principal): m.sources for m in trust.memberships()}
    assert sources[("code-owners", "alice")] == ("policy_data",)
    assert sources[("code-owners", "dave")] == ("trust_store",)
    assert trust.export_trust_root()["trust"]["groups"]["release"] == ["erin"]


def test_a_stored_group_member_is_audited_and_removed(store: Database, trust: TrustStore) -> None:
    trust.add_principal("alice", "approver")
    trust.add_group_member("security", "alice")
    assert trust.groups()["security"] == ("carol", "alice")
    trust.remove_group_member("security", "alice")
    assert trust.groups()["security"] == ("carol",)
    assert trust.principal("alice").groups == ("code-owners",)  # the policy data's membership stays
    events = [(e.payload["event"], e.payload.get("group")) for e in AuditLog(store).tail(3)]
    assert events == [("principal_added", None), ("group_member_added", "security"),
                      ("group_member_removed", "security")]


@pytest.mark.parametrize(
    ("group", "principal", "error", "code", "message"),
    [
        pytest.param("code-owners", "nobody", NotFoundError, "principal_not_found", "no principal 'nobody'",
                     id="unknown_principal"),
        pytest.param("code owners", "dave", InputError, "group_invalid", "group name 'code owners' is invalid",
                     id="bad_group_name"),
        pytest.param("code-owners", "dave", ConflictError, "group_member_exists", "'dave' is already in group",
                     id="added_twice"),
    ],
)
def test_group_member_refusals(
    trust: TrustStore, group: str, principal: str, error: type[Exception], code: str, message: str
) -> None:
    trust.add_principal("dave", "approver")
    trust.add_group_member("code-owners", "dave")
    with pytest.raises(error, match=message) as e:
        trust.add_group_member(group, principal)
    assert e.value.code == code  # type: ignore[attr-defined]


def test_removing_a_member_the_policy_data_lists_names_the_file(trust: TrustStore) -> None:
    trust.add_principal("alice", "approver")
    with pytest.raises(NotFoundError, match="through the policy data .*groups.json") as e:
        trust.remove_group_member("code-owners", "alice")
    assert e.value.code == "group_member_not_found"
    with pytest.raises(NotFoundError, match="'alice' is not a member of group 'release'"):
        trust.remove_group_member("release", "alice")


# -- the exported trust root ----------------------------------------------------------------------


def test_trust_root_round_trips_and_carries_its_digest(trust: TrustStore) -> None:
    trust.add_principal("plan-bot", "planner")
    trust.add_principal("bob", "approver")
    planner, bob = PrivateKey.generate(), PrivateKey.generate()
    trust.add_key("plan-bot", planner.public_key)
    trust.add_key("bob", bob.public_key)
    trust.revoke_key(bob.key_id, at=NOW)
    root = trust.export_trust_root(now=NOW)
    assert root["exported_at"] == "2026-11-22T10:00:00Z"
    assert root["digest"] == sha256_digest(canonical_bytes(root["trust"]))
    loaded = load_trust_root(json.dumps(root, indent=2).encode())
    assert isinstance(loaded, TrustSet) and loaded == trust.trust_set()
    assert loaded.key(bob.key_id).revoked_at == NOW  # type: ignore[union-attr]
    assert dict(loaded.groups)["code-owners"] == ("alice", "bob")


def test_trust_root_with_a_key_slipped_in_fails_its_digest(trust: TrustStore) -> None:
    trust.add_principal("plan-bot", "planner")
    trust.add_key("plan-bot", PrivateKey.generate().public_key)
    root = trust.export_trust_root(now=NOW)
    root["trust"]["keys"].append(
        {"principal": "mallory", "role": "planner", "public_key": PrivateKey.generate().public_key.to_base64(),
         "not_before": None, "not_after": None, "revoked_at": None}
    )
    with pytest.raises(VerificationError, match="trust root digest is 'sha256:.*', its contents hash to sha256:"):
        load_trust_root(json.dumps(root).encode())


def test_something_else_is_not_a_trust_root() -> None:
    with pytest.raises(InputError, match="not a Writ trust root"):
        load_trust_root(b'{"keys": []}')
