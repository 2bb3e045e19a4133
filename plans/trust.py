"""Who may sign what: trusted public keys bound to a principal, a role and a validity window.

    trust = TrustSet(
        keys=[TrustedKey(principal="alice", role="planner", public_key=alice.public_key)],
        groups={"code-owners": ["bob", "carol"]},
    )
    trust.keys_for("planner")                  # {key_id: TrustedKey} of every planner key
    trust.key(key_id).invalid_reason(now)      # None, or "revoked at 2026-11-01T00:00:00Z"
    trust.keys_fingerprint                     # sha256 of every key and its window: what verification caches on

A key belongs to exactly one principal and one role; a principal that plans and
approves has two keys. Verification asks for the keys of the role it expects
(``keys_for``) and never trusts the key id that a signature claims.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from writ.engine.core.errors import InputError
from writ.engine.core.timeutil import iso
from writ.plans.keys import PublicKey

Role = Literal["planner", "executor", "approver", "auditor", "admin"]
PRINCIPAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$"
Principal = Annotated[str, Field(pattern=PRINCIPAL_PATTERN)]


def _to_public_key(value: Any) -> PublicKey:
    if isinstance(value, PublicKey):
        return value
    if isinstance(value, (str, bytes)):
        try:
            return PublicKey.parse(value)
        except InputError as e:
            raise ValueError(str(e)) from None
    raise ValueError(f"expected a public key (PEM, hex or base64), got {type(value).__name__}")


PublicKeyField = Annotated[
    PublicKey,
    PlainValidator(_to_public_key),
    PlainSerializer(lambda k: k.to_base64(), return_type=str),
    WithJsonSchema({"type": "string", "description": "Ed25519 public key: base64 of the 32 raw bytes"}),
]


class TrustedKey(BaseModel):
    """One trusted public key: whose it is, what it may sign, and when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    principal: Principal
    role: Role
    public_key: PublicKeyField
    not_before: AwareDatetime | None = None
    not_after: AwareDatetime | None = None
    revoked_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _window(self) -> TrustedKey:
        if self.not_before and self.not_after and self.not_after <= self.not_before:
            raise ValueError("not_after must be later than not_before")
        return self

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def invalid_reason(self, t: datetime) -> str | None:
        """Why this key may not sign at time ``t``, or ``None`` if it may."""
        if t.tzinfo is None:
            raise ValueError("naive datetime: a timezone is required")
        if self.revoked_at is not None and t >= self.revoked_at:
            return f"revoked at {iso(self.revoked_at)}"
        if self.not_before is not None and t < self.not_before:
            return f"not valid before {iso(self.not_before)}"
        if self.not_after is not None and t >= self.not_after:
            return f"expired at {iso(self.not_after)}"
        return None

    def is_valid_at(self, t: datetime) -> bool:
        return self.invalid_reason(t) is None


class TrustSet(BaseModel):
    """The trusted keys and the approver groups. Each key appears once; principal names never clash by case."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: tuple[TrustedKey, ...] = ()
    groups: Mapping[str, tuple[Principal, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> TrustSet:
        seen: dict[str, TrustedKey] = {}
        names: dict[str, str] = {}
        for k in self.keys:
            if k.key_id in seen:
                other = seen[k.key_id]
                raise ValueError(
                    f"key {k.key_id} is listed twice ({other.principal}/{other.role} and {k.principal}/{k.role})"
                )
            seen[k.key_id] = k
        for name in [k.principal for k in self.keys] + [m for ms in self.groups.values() for m in ms]:
            folded = name.casefold()
            if names.setdefault(folded, name) != name:
                raise ValueError(f"principals {names[folded]!r} and {name!r} differ only by case")
        return self

    def _index(self) -> dict[str, TrustedKey]:
        """Key id -> key, built once: the set is frozen (kept outside the fields, like a cached property)."""
        index: dict[str, TrustedKey] | None = self.__dict__.get(_INDEX)
        if index is None:
            index = self.__dict__[_INDEX] = {k.key_id: k for k in self.keys}
        return index

    def key(self, key_id: str | None) -> TrustedKey | None:
        return self._index().get(key_id) if key_id is not None else None

    def keys_for(self, role: Role, principal: str | None = None) -> dict[str, TrustedKey]:
        """The keys of ``role`` (and of ``principal`` if given), by key id, whatever their validity window."""
        return {kid: k for kid, k in self._index().items()
                if k.role == role and (principal is None or k.principal == principal)}

    @property
    def keys_fingerprint(self) -> str:
        """``sha256:`` over every key with its principal, role and window (not the groups), computed once.

        Two trust sets with the same fingerprint verify every signature alike and give every key
        the same validity at any time: what a cache of verified envelopes may key on. A key added,
        revoked, expired or moved to another principal changes it.
        """
        fp: str | None = self.__dict__.get(_FINGERPRINT)
        if fp is None:
            keys = [k.model_dump(mode="json") for k in self.keys]
            fp = self.__dict__[_FINGERPRINT] = "sha256:" + hashlib.sha256(json.dumps(keys).encode()).hexdigest()
        return fp

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> TrustSet:
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop(_INDEX, None)  # an updated copy holds other keys: index and fingerprint them again
        copied.__dict__.pop(_FINGERPRINT, None)
        return copied

    def groups_of(self, principal: str) -> frozenset[str]:
        return frozenset(g for g, members in self.groups.items() if principal in members)

    @classmethod
    def of(cls, keys: Sequence[TrustedKey], groups: Mapping[str, Sequence[str]] | None = None) -> TrustSet:
        return cls(keys=tuple(keys), groups={g: tuple(m) for g, m in (groups or {}).items()})


_INDEX = "_key_index"
_FINGERPRINT = "_keys_fingerprint"
