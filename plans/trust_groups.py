"""Approver groups: the policy data's ``data.writ.groups`` merged with the trust store's memberships.

    groups = StoredGroups(db)
    groups.add("code-owners", "dave", created=db_time(utc_now()))      # what `writ groups add` stores
    merge_groups(groups_from_policy_data(policy_set.data), groups.all())
    # {"code-owners": ("alice", "bob", "dave"), "security": ("carol",)}

A group's members are the union of both sources: the policy data (``policies/writ/groups.json``,
owned by whoever owns the policies) and the rows ``writ groups add`` wrote to the trust store.
Neither source can take away a member the other one lists. ``TrustStore.groups()`` is the merged
view, and everything that decides about groups reads it: the gateway (a principal's
``input.groups``), approvals (``input.approvals[].groups``), ``writ trust export``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from writ.engine.core import reasons
from writ.engine.core.db import Database, db_errors
from writ.engine.core.errors import ConfigError, ConflictError, InputError
from writ.engine.core.tables import GroupMemberRow
from writ.plans.trust import PRINCIPAL_PATTERN
from writ.plans.trust_revision import bump_revision

__all__ = [
    "POLICY_DATA",
    "TRUST_STORE",
    "GroupMembership",
    "GroupsSource",
    "HasPolicySet",
    "StoredGroups",
    "check_group_name",
    "groups_from_policy_data",
    "memberships",
    "merge_groups",
    "policy_groups",
]

GroupsSource = Callable[[], Mapping[str, tuple[str, ...]]]
POLICY_DATA = "policy_data"
"""Source of a membership listed in ``data.writ.groups`` (``policies/writ/groups.json``)."""
TRUST_STORE = "trust_store"
"""Source of a membership added with ``writ groups add``."""


class HasPolicySet(Protocol):
    """An engine that holds its loaded policy set (``EmbeddedEngine``)."""

    @property
    def policy_set(self) -> Any: ...


@dataclass(frozen=True)
class GroupMembership:
    """One principal in one group, and where that membership comes from (``policy_data``, ``trust_store``)."""

    group: str
    principal: str
    sources: tuple[str, ...]


def check_group_name(name: str) -> str:
    """``name`` if it is a valid group name (the principal name rules), else ``InputError`` ``group_invalid``."""
    if not isinstance(name, str) or not re.fullmatch(PRINCIPAL_PATTERN, name):
        raise InputError(
            f"group name {name!r} is invalid: 1-128 of A-Z a-z 0-9 . _ @ + -, starting with a letter or digit",
            code=reasons.GROUP_INVALID,
        )
    return name


def groups_from_policy_data(data: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """``data.writ.groups`` of a policy set, checked: ``{"group": ["principal", ...]}`` ({} if absent)."""
    writ = data.get("writ") if isinstance(data, Mapping) else None
    groups = writ.get("groups", {}) if isinstance(writ, Mapping) else {}
    where = "data.writ.groups (policies/writ/groups.json)"
    if not isinstance(groups, Mapping):
        raise ConfigError(f"{where} must be an object of group name -> list of principals, got {type(groups).__name__}")
    out: dict[str, tuple[str, ...]] = {}
    for name, members in groups.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ConfigError(f"{where}: group {name!r} must be a list of principal names")
        bad = [m for m in members if not re.fullmatch(PRINCIPAL_PATTERN, m)]
        if bad:
            raise ConfigError(f"{where}: group {name!r} lists {bad[0]!r}, which is not a valid principal name")
        out[str(name)] = tuple(members)
    return out


def policy_groups(engine: HasPolicySet) -> GroupsSource:
    """Groups read from ``engine``'s policy set at each call, so a policy reload takes effect."""

    def source() -> Mapping[str, tuple[str, ...]]:
        reload = getattr(engine, "reload_if_changed", None)
        if callable(reload):
            reload()
        return groups_from_policy_data(engine.policy_set.data)

    return source


def merge_groups(
    policy: Mapping[str, tuple[str, ...]], stored: Mapping[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """Each group's members from both sources: the policy data's in their order, then the stored ones."""
    merged = {name: tuple(members) for name, members in policy.items()}
    for name, members in stored.items():
        known = merged.get(name, ())
        merged[name] = known + tuple(m for m in members if m not in known)
    return merged


def memberships(
    policy: Mapping[str, tuple[str, ...]], stored: Mapping[str, tuple[str, ...]]
) -> list[GroupMembership]:
    """Every (group, principal) pair of ``merge_groups``, with its sources, sorted."""
    out = []
    for name, members in sorted(merge_groups(policy, stored).items()):
        for member in sorted(members):
            sources = tuple(
                s for s, groups in ((POLICY_DATA, policy), (TRUST_STORE, stored)) if member in groups.get(name, ())
            )
            out.append(GroupMembership(name, member, sources))
    return out


class StoredGroups:
    """The memberships ``writ groups add`` stored (table ``principal_groups``). No audit: ``TrustStore`` does that."""

    def __init__(self, store: Database) -> None:
        self._store = store

    def all(self) -> dict[str, tuple[str, ...]]:
        """``{group: (principal, ...)}``, members sorted."""
        with db_errors(self._store, "list groups"), self._store.session() as session:
            rows = list(session.exec(
                select(GroupMemberRow).order_by(col(GroupMemberRow.group_name), col(GroupMemberRow.principal))
            ))
        out: dict[str, tuple[str, ...]] = {}
        for row in rows:
            out[row.group_name] = (*out.get(row.group_name, ()), row.principal)
        return out

    def add(self, group: str, principal: str, *, created: str) -> None:
        """Store the membership; ``ConflictError`` ``group_member_exists`` if it is already stored."""
        exists = ConflictError(f"{principal!r} is already in group {group!r}", code=reasons.GROUP_MEMBER_EXISTS)
        with db_errors(self._store, f"add {principal!r} to group {group!r}"), self._store.session(write=True) as s:
            if s.get(GroupMemberRow, (group, principal)) is not None:
                raise exists
            s.add(GroupMemberRow(group_name=group, principal=principal, created_at=created))
            try:
                bump_revision(s)
                s.commit()
            except IntegrityError:
                s.rollback()
                raise exists from None

    def remove(self, group: str, principal: str) -> bool:
        """Delete the stored membership; False if there was none."""
        with db_errors(self._store, f"remove {principal!r} from group {group!r}"), self._store.session(write=True) as s:
            row = s.get(GroupMemberRow, (group, principal))
            if row is None:
                return False
            s.delete(row)
            bump_revision(s)
            s.commit()
        return True
