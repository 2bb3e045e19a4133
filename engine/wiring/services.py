"""The trust store and the plan store of a data directory, wired the same way by every part of Writ.

    with open_services(settings) as w:                  # the CLI: its own database connection
        w.trust.add_principal("alice", "approver")
    stores = wire_services(settings, store, engine=pdp.engine, audit=pdp.audit)   # the gateway: shares its own
    key, path = find_signing_key(settings, stores.trust, "plan-bot")           # from <data dir>/keys/

Groups are the trust store's (``writ groups add``) merged with the policy set's
``data.writ.groups``: from the embedded engine when it decides, else from the local policy
directory beside an OPA sidecar (see ``writ.plans.trust_groups``). Approvals are evaluated by
the engine that decides (embedded or OPA). The local embedded engine is loaded on first use,
so a command that only lists plans never parses the policies.

Private keys live in ``<data dir>/keys/`` (mode 0700), one PEM file per key named
``<principal>-<12 hex of the key id>.pem`` (what ``writ keys new`` writes). A file name is
only a hint: ``find_signing_key`` loads the candidates and takes the newest key that the
trust store holds, valid now, for that principal.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from writ.attestations.audit import AuditLog, audit_log_for
from writ.engine.core import reasons
from writ.engine.core.db import Database, open_database
from writ.engine.core.errors import ConfigError, NotFoundError, WritError
from writ.engine.core.settings import Settings
from writ.engine.core.timeutil import utc_now
from writ.engine.wiring.policy_record import record_sidecar, watch_embedded
from writ.plans.assessment import PolicyEvaluator
from writ.plans.keys import PrivateKey, short_key_id
from writ.plans.store import PlanStore
from writ.plans.trust_store import TrustStore, policy_groups

if TYPE_CHECKING:
    from writ.engine.policy.base import PolicyEngine
    from writ.engine.policy.embedded import EmbeddedEngine

__all__ = [
    "LocalPolicy",
    "Services",
    "find_signing_key",
    "key_file_name",
    "keys_dir",
    "open_services",
    "wire_services",
]


@dataclass
class Services:
    """What every plan operation needs: the settings, the trust store, the plan store, the approval evaluator."""

    settings: Settings
    store: Database
    trust: TrustStore
    plans: PlanStore
    policy: PolicyEvaluator
    audit: AuditLog


class LocalPolicy:
    """The embedded engine on the settings' policy directory, loaded on first use (``data.writ.groups`` lives here).

        local = LocalPolicy(settings)
        local.evaluate("writ.approval.requirement", doc)     # loads and checks the policy set now
    """

    def __init__(self, settings: Settings, engine: EmbeddedEngine | None = None, *,
                 store: Database | None = None) -> None:
        """``store``: where each policy revision the engine loads is recorded (ADR 0022); None: nowhere."""
        self._settings = settings
        self._engine = engine
        self._store = store
        self._lock = threading.Lock()

    @property
    def engine(self) -> EmbeddedEngine:
        with self._lock:
            if self._engine is None:
                from writ.engine.policy.embedded import EmbeddedEngine

                self._engine = EmbeddedEngine(self._settings.effective_policy_dir, self._settings.limits)
                if self._store is not None:
                    watch_embedded(self._store, self._engine)
            return self._engine

    @property
    def policy_set(self) -> Any:
        return self.engine.policy_set

    @property
    def revision(self) -> str | None:
        """The revision of the set in force: the plan store caches "still backed" on it (``writ.plans.backing``)."""
        return self.engine.revision

    def reload_if_changed(self) -> bool:
        return self.engine.reload_if_changed()

    def evaluate(self, path: str, input_doc: dict[str, Any] | None = None) -> Any:
        return self.engine.evaluate(path, input_doc)


def wire_services(
    settings: Settings, store: Database, *, engine: PolicyEngine | None = None, audit: AuditLog | None = None
) -> Services:
    """The trust and plan stores on ``store``. ``engine``: the engine already deciding (reused, not reloaded)."""
    # An EmbeddedEngine exists only if its module was imported: no need to import it (and regorus) to ask.
    embedded = sys.modules.get("writ.engine.policy.embedded")
    reuse = engine if embedded is not None and isinstance(engine, embedded.EmbeddedEngine) else None
    local = LocalPolicy(settings, reuse, store=store)
    if reuse is not None:
        watch_embedded(store, reuse)  # each revision it loads is kept for attestation bundles
    policy: PolicyEvaluator
    if settings.engine == "embedded":
        policy = local
    else:
        from writ.engine.policy.pdp import make_engine

        sidecar = engine or make_engine(settings)
        record_sidecar(store, sidecar, settings.effective_policy_dir)
        policy = sidecar
    audit = audit or audit_log_for(settings, store)
    trust = TrustStore(store, policy_groups(local), audit=audit)
    plans = PlanStore(store, trust, policy, limits=settings.limits.plans, audit=audit)
    return Services(settings, store, trust, plans, policy, audit)


@contextmanager
def open_services(settings: Settings, *, create: bool = True) -> Iterator[Services]:
    """Open the database of ``settings`` and wire the stores on it; closed on exit."""
    with open_database(settings, create=create) as store:
        yield wire_services(settings, store)


def keys_dir(settings: Settings, *, create: bool = True) -> Path:
    """``<data dir>/keys``, created with mode 0700; ``ConfigError`` if others may use it."""
    path = settings.home / "keys"
    try:
        if create:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise NotFoundError(f"there is no keys directory {path}", code=reasons.SIGNING_KEY_MISSING) from None
    except OSError as e:
        raise ConfigError(f"cannot {'create' if create else 'read'} the keys directory {path}: {e.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            f"keys directory {path} has mode {mode:04o}; only its owner may use it (chmod 700 {path})",
            code=reasons.KEY_DIR_INSECURE,
        )
    return path


def key_file_name(principal: str, key_id: str) -> str:
    """``<principal>-<12 hex>.pem``: where ``writ keys new`` puts a principal's private key."""
    return f"{principal}-{short_key_id(key_id)}.pem"


def find_signing_key(
    settings: Settings, trust: TrustStore, principal: str, *, key_file: Path | None = None, now: datetime | None = None
) -> tuple[PrivateKey, Path]:
    """The private key ``principal`` signs with now, and its file.

    With ``key_file``, that file; else the newest of ``<data dir>/keys/<principal>-*.pem``
    whose public key the trust store holds for ``principal``, valid at ``now``. Errors
    (``NotFoundError`` ``signing_key_missing``) say what was tried and how to fix it.
    """
    now = now or utc_now()
    trusted = {k.key_id: k for k in trust.keys(principal) if k.status(now) == "valid"}
    fix = f"create one with `writ keys new --principal {principal} --data-dir {settings.home}`"
    if key_file is not None:
        key = PrivateKey.load(key_file)
        if key.key_id not in trusted:
            raise NotFoundError(
                f"key {short_key_id(key.key_id)} in {key_file} is not a valid trusted key of {principal!r} "
                f"(see `writ keys list --principal {principal}`)",
                code=reasons.SIGNING_KEY_UNTRUSTED,
            )
        return key, key_file
    if not trusted:
        raise NotFoundError(f"principal {principal!r} has no valid trusted key: {fix}", code=reasons.SIGNING_KEY_MISSING)
    directory = keys_dir(settings, create=False)
    found: list[tuple[datetime, PrivateKey, Path]] = []
    problems: list[str] = []
    for path in sorted(directory.glob(f"{principal}-*.pem")):
        try:
            key = PrivateKey.load(path)
        except WritError as e:
            problems.append(f"{path.name}: {e.message}")
            continue
        record = trusted.get(key.key_id)
        if record is not None:
            found.append((record.created_at, key, path))
    if not found:
        tried = f" (skipped: {'; '.join(problems)})" if problems else ""
        raise NotFoundError(
            f"no private key of {principal!r} in {directory} matches its valid trusted keys "
            f"({', '.join(short_key_id(k) for k in trusted)}){tried}: {fix}",
            code=reasons.SIGNING_KEY_MISSING,
        )
    _, key, path = max(found, key=lambda f: f[0])
    return key, path
