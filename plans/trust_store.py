"""The trust store: principals (one role each), their Ed25519 public keys and group memberships, in Writ's database.

    trust = TrustStore(db, groups=policy_groups(engine), audit=AuditLog(db))     # + data.writ.groups of the policy set
    trust.add_principal("alice", "approver")
    key = PrivateKey.generate()
    trust.add_key("alice", key.public_key)                      # the key takes alice's role
    trust.add_group_member("code-owners", "alice")              # writ groups add code-owners alice
    trust.revoke_key(key.key_id[:19])                           # a full key id or a unique prefix
    trust.trust_set()                                           # writ.plans.trust.TrustSet for verification
    root = trust.export_trust_root()                            # what an auditor carries offline
    load_trust_root(json_bytes)                                 # -> TrustSet, after checking its digest

A principal has exactly one role (ADR 0008): a person who approves and audits gets
two principals. Keys carry their principal's role, and the database refuses a key
whose role is not its principal's. A group's members are those the policy data
``data.writ.groups`` (``policies/writ/groups.json``) lists *and* those stored here with
``writ groups add`` (see ``writ.plans.trust_groups``): ``groups()`` is that union, read
afresh each time a trust set is built, and it is what the gateway, approvals and the
exported trust root all see.

Every change is appended to the audit log (kind ``trust_event``) and bumps the trust
store's revision in its own transaction (``revision()``; ``writ.plans.trust_revision``).
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, get_args

from pydantic import ValidationError
from sqlalchemy import Connection, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from writ.engine.core import reasons
from writ.engine.core.db import Database, db_errors, describe_db_error
from writ.engine.core.errors import ConfigError, ConflictError, InputError, NotFoundError, VerificationError
from writ.engine.core.ports import AuditSink
from writ.engine.core.tables import PrincipalRow, TrustedKeyRow
from writ.engine.core.timeutil import db_time, from_db_time, utc_now
from writ.plans.canonical import canonical_bytes, parse_strict, sha256_digest
from writ.plans.keys import PublicKey, short_key_id
from writ.plans.principal_status import PrincipalState, PrincipalStatus
from writ.plans.trust import PRINCIPAL_PATTERN, Role, TrustSet
from writ.plans.trust_groups import (
    GroupMembership,
    GroupsSource,
    StoredGroups,
    check_group_name,
    groups_from_policy_data,
    memberships,
    merge_groups,
    policy_groups,
)
from writ.plans.trust_records import KeyRecord, PrincipalRecord, key_record
from writ.plans.trust_revision import bump_revision, read_revision

__all__ = [
    "TRUST_ROOT_TYPE",
    "GroupMembership",
    "KeyRecord",
    "PrincipalRecord",
    "TrustStore",
    "groups_from_policy_data",
    "load_trust_root",
    "policy_groups",
]

ROLES: tuple[str, ...] = get_args(Role)
TRUST_ROOT_TYPE = "https://writ.dev/trust-root/v1"
_HEX = re.compile(r"^[0-9a-f]+$")
MIN_PREFIX = 6


class TrustStore:
    """Principals, keys and stored group memberships in a ``Database``, merged with the policy data's groups.

    Safe to share between processes. ``groups``: the policy data's ``data.writ.groups`` (``policy_groups``).
    """

    def __init__(self, store: Database, groups: GroupsSource | None = None, *, audit: AuditSink) -> None:
        self._store = store
        self._groups: GroupsSource = groups or dict
        self._stored_groups = StoredGroups(store)
        self._audit = audit
        self.status = PrincipalStatus(store, audit=audit)  # locks and disables (writ.plans.principal_status)
        self._trust_cache: tuple[int, dict[str, tuple[str, ...]], TrustSet] | None = None

    def _db(self, what: str) -> AbstractContextManager[None]:
        return db_errors(self._store, what)

    def revision(self) -> int:
        """The trust store's revision: it changes with every change of principals, keys, revocations or groups."""
        return read_revision(self._store)

    @staticmethod
    def bump(executor: Session | Connection) -> None:
        """Bump the revision inside the caller's open transaction, before its commit: every trust change must."""
        bump_revision(executor)

    # -- principals ------------------------------------------------------------------------

    def add_principal(self, name: str, role: str, *, now: datetime | None = None) -> PrincipalRecord:
        """Register a principal with its one role. ``ConflictError`` if the name (ignoring case) is taken."""
        if not isinstance(name, str) or not re.fullmatch(PRINCIPAL_PATTERN, name):
            raise InputError(
                f"principal name {name!r} is invalid: 1-128 of A-Z a-z 0-9 . _ @ + -, starting with a letter or digit",
                code=reasons.PRINCIPAL_INVALID,
            )
        if role not in ROLES:
            raise InputError(f"role {role!r} is not one of {', '.join(ROLES)}", code=reasons.ROLE_INVALID)
        created = db_time(now or utc_now())
        with self._db(f"add principal {name!r}"), self._store.session(write=True) as session:
            clash = session.exec(select(PrincipalRow).where(func.lower(PrincipalRow.name) == name.lower())).first()
            if clash is not None:
                same = clash.name == name
                raise ConflictError(
                    f"principal {name!r} already exists with role {clash.role}"
                    if same
                    else f"principal {name!r} clashes with existing {clash.name!r}: names may not differ only by case",
                    code=reasons.PRINCIPAL_EXISTS,
                )
            session.add(PrincipalRow(name=name, role=role, created_at=created))
            try:
                self.bump(session)
                session.commit()
            except IntegrityError:
                session.rollback()
                raise ConflictError(
                    f"principal {name!r} was added by another process just now", code=reasons.PRINCIPAL_EXISTS
                ) from None
        self._audit.append("trust_event", {"event": "principal_added", "principal": name, "role": role})
        return PrincipalRecord(name, role, from_db_time(created), self._groups_of(name))

    def principal(self, name: str) -> PrincipalRecord:
        with self._db(f"read principal {name!r}"), self._store.session() as session:
            row = session.get(PrincipalRow, name)
        if row is None:
            raise NotFoundError(
                f"no principal {name!r}; add it with `writ principals add {name} --role ROLE`",
                code=reasons.PRINCIPAL_NOT_FOUND,
            )
        return PrincipalRecord(row.name, row.role, from_db_time(row.created_at), self._groups_of(row.name))

    def principals(self) -> list[PrincipalRecord]:
        with self._db("list principals"), self._store.session() as session:
            rows = list(session.exec(select(PrincipalRow).order_by(col(PrincipalRow.name))))
        groups = self.groups()
        return [
            PrincipalRecord(
                r.name, r.role, from_db_time(r.created_at), tuple(sorted(g for g, m in groups.items() if r.name in m))
            )
            for r in rows
        ]

    # -- groups ------------------------------------------------------------------------------

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Every group in force: ``data.writ.groups`` of the policy set and ``writ groups add``, merged."""
        return merge_groups(self._groups(), self._stored_groups.all())

    def memberships(self) -> list[GroupMembership]:
        """Every (group, principal) in force, with where each comes from (``policy_data``, ``trust_store``)."""
        return memberships(self._groups(), self._stored_groups.all())

    def add_group_member(self, group: str, principal: str, *, now: datetime | None = None) -> GroupMembership:
        """Store ``principal`` (which must exist) as a member of ``group``; ``group_member_exists`` if it is."""
        check_group_name(group)
        name = self.principal(principal).name
        self._stored_groups.add(group, name, created=db_time(now or utc_now()))
        self._audit.append("trust_event", {"event": "group_member_added", "group": group, "principal": name})
        return next(m for m in self.memberships() if (m.group, m.principal) == (group, name))

    def remove_group_member(self, group: str, principal: str) -> None:
        """Remove a stored membership. One listed only in the policy data is refused: edit that file instead."""
        check_group_name(group)
        if not self._stored_groups.remove(group, principal):
            listed = principal in dict(self._groups()).get(group, ())
            raise NotFoundError(
                f"{principal!r} is in group {group!r} through the policy data (data.writ.groups, "
                "policies/writ/groups.json), not the trust store: remove it from that file"
                if listed
                else f"{principal!r} is not a member of group {group!r} (see `writ groups list`)",
                code=reasons.GROUP_MEMBER_NOT_FOUND,
            )
        self._audit.append("trust_event", {"event": "group_member_removed", "group": group, "principal": principal})

    def _groups_of(self, name: str) -> tuple[str, ...]:
        return tuple(sorted(g for g, members in self.groups().items() if name in members))

    # -- keys --------------------------------------------------------------------------------

    def add_key(
        self,
        principal: str,
        public_key: PublicKey,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        now: datetime | None = None,
    ) -> KeyRecord:
        """Trust ``public_key`` for ``principal``, in the principal's role."""
        owner = self.principal(principal)
        row = TrustedKeyRow(
            key_id=public_key.key_id,
            principal=owner.name,
            role=owner.role,
            public_key=public_key.to_base64(),
            not_before=db_time(not_before) if not_before else None,
            not_after=db_time(not_after) if not_after else None,
            created_at=db_time(now or utc_now()),
        )
        record = key_record(row)
        try:
            record.trusted  # noqa: B018 - checks the window (not_after later than not_before)
        except ValidationError as e:
            raise InputError(f"key validity window: {e.errors()[0]['msg']}", code=reasons.KEY_INVALID) from None
        with self._db(f"add a key for {principal!r}"), self._store.session(write=True) as session:
            existing = session.get(TrustedKeyRow, row.key_id)
            if existing is not None:
                raise ConflictError(
                    f"key {short_key_id(row.key_id)} is already trusted for {existing.principal!r} ({existing.role})",
                    code=reasons.KEY_EXISTS,
                )
            session.add(row)
            try:
                self.bump(session)
                session.commit()
            except IntegrityError as e:
                session.rollback()
                raise ConflictError(
                    f"key {short_key_id(row.key_id)} for {principal!r} was refused: {describe_db_error(e)}",
                    code=reasons.KEY_EXISTS,
                ) from None
        self._audit.append(
            "trust_event",
            {
                "event": "key_added",
                "key_id": record.key_id,
                "principal": record.principal,
                "role": record.role,
                "not_before": db_time(not_before) if not_before else None,
                "not_after": db_time(not_after) if not_after else None,
            },
        )
        return record

    def keys(self, principal: str | None = None) -> list[KeyRecord]:
        with self._db("list keys"), self._store.session() as session:
            query = select(TrustedKeyRow).order_by(col(TrustedKeyRow.principal), col(TrustedKeyRow.created_at))
            if principal is not None:
                query = query.where(TrustedKeyRow.principal == principal)
            return [key_record(r) for r in session.exec(query)]

    def key(self, ref: str) -> KeyRecord:
        """A key by its full id (``sha256:<64 hex>``) or a unique prefix of the hex (at least 6 digits)."""
        hex_part = ref.strip().lower().removeprefix("sha256:")
        if len(hex_part) < MIN_PREFIX or not _HEX.match(hex_part):
            raise InputError(
                f"key id {ref!r} is neither sha256:<64 hex> nor a prefix of at least {MIN_PREFIX} hex digits",
                code=reasons.KEY_ID_INVALID,
            )
        with self._db("find a key"), self._store.session() as session:
            rows = list(
                session.exec(
                    select(TrustedKeyRow).where(col(TrustedKeyRow.key_id).startswith("sha256:" + hex_part)).limit(2)
                )
            )
        if not rows:
            raise NotFoundError(f"no trusted key {ref!r} (see `writ keys list`)", code=reasons.KEY_NOT_FOUND)
        if len(rows) > 1:
            raise InputError(f"key id prefix {ref!r} names more than one key; give more digits", code=reasons.KEY_AMBIGUOUS)
        return key_record(rows[0])

    def revoke_key(self, ref: str, *, at: datetime | None = None) -> KeyRecord:
        """Revoke a key from ``at`` (default now) on. Signatures checked at or after ``at`` no longer count.

        A key already revoked can only be revoked earlier (a compromise found to be older), never later.
        """
        record = self.key(ref)
        when = db_time(at or utc_now())
        with self._db(f"revoke key {short_key_id(record.key_id)}"), self._store.session(write=True) as session:
            row = session.get(TrustedKeyRow, record.key_id)
            if row is None:  # self.key found it; nothing deletes keys
                raise NotFoundError(f"no key {short_key_id(record.key_id)}", code=reasons.KEY_NOT_FOUND)
            if row.revoked_at is not None and row.revoked_at <= when:
                raise ConflictError(
                    f"key {short_key_id(row.key_id)} of {row.principal!r} is already revoked "
                    f"since {row.revoked_at}; a revocation can only move earlier",
                    code=reasons.KEY_ALREADY_REVOKED,
                )
            row.revoked_at = when
            session.add(row)
            self.bump(session)
            session.commit()
            session.refresh(row)
            revoked = key_record(row)
        self._audit.append(
            "trust_event",
            {"event": "key_revoked", "key_id": revoked.key_id, "principal": revoked.principal, "revoked_at": when},
        )
        return revoked

    # -- trust sets --------------------------------------------------------------------------

    def trust_set(self) -> TrustSet:
        """Every stored key (revoked ones included: they verify history) and the groups in force (``groups()``).

        Built again only when the trust store's revision or the policy data's groups changed
        since the last call: otherwise the same (immutable) trust set, so the verified envelopes
        cached on its keys (``writ.plans.verify_cache``) are found again.
        """
        revision = self.revision()  # read before the keys: a change in between only costs a rebuild
        policy = dict(self._groups())
        cached = self._trust_cache
        if cached is not None and cached[0] == revision and cached[1] == policy:
            return cached[2]
        keys = [k.trusted for k in self.keys()]
        try:
            trust = TrustSet.of(keys, merge_groups(policy, self._stored_groups.all()))
        except ValidationError as e:
            raise ConfigError(
                f"the trust store and data.writ.groups do not form a trust set: {e.errors()[0]['msg']}",
                code=reasons.TRUST_INVALID,
            ) from None
        self._trust_cache = (revision, policy, trust)
        return trust

    def export_trust_root(self, *, now: datetime | None = None) -> dict[str, Any]:
        """The trust set as JSON, with when it was exported and the sha256 of its RFC 8785 form."""
        trust = self.trust_set().model_dump(mode="json")
        return {
            "_type": TRUST_ROOT_TYPE,
            "exported_at": (now or utc_now()).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "digest": sha256_digest(canonical_bytes(trust)),
            "trust": trust,
        }

    # -- locks and disables (writ.plans.principal_status) --------------------------------------

    def principal_state(self, name: str) -> PrincipalState:
        """Whether ``name`` is locked or disabled now: one row read, what a gateway asks before each call."""
        return self.status.state(name)

    def unlock_principal(self, name: str, *, reason: str) -> PrincipalState:
        """Lift ``name``'s lock after an operator's review (``reason`` is audited); the lock that was lifted."""
        return self.status.unlock(self.principal(name).name, reason=reason)

    def disable_principal(self, name: str, *, reason: str,
                          now: datetime | None = None) -> tuple[PrincipalState, list[KeyRecord]]:
        """Disable ``name`` for good and revoke its keys from that time on: (its state, the keys revoked now)."""
        owner = self.principal(name)
        state = self.status.disable(owner.name, reason=reason, at=now)
        since = state.disabled_at or utc_now()
        return state, [self.revoke_key(k.key_id, at=since) for k in self.keys(owner.name)
                       if k.revoked_at is None or k.revoked_at > since]


def load_trust_root(raw: bytes) -> TrustSet:
    """The trust set of an exported trust root, after checking its digest. ``VerificationError`` if it changed."""
    doc = parse_strict(raw)
    if not isinstance(doc, dict) or doc.get("_type") != TRUST_ROOT_TYPE or not isinstance(doc.get("trust"), dict):
        raise InputError(f"not a Writ trust root: expected an object with _type {TRUST_ROOT_TYPE!r} and trust")
    got = sha256_digest(canonical_bytes(doc["trust"]))
    if got != doc.get("digest"):
        raise VerificationError(f"trust root digest is {doc.get('digest')!r}, its contents hash to {got}")
    try:
        return TrustSet.model_validate(doc["trust"])
    except ValidationError as e:
        raise InputError(f"trust root is not a valid trust set: {e.errors()[0]['msg']}") from None
