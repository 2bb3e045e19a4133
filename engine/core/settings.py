"""Writ's settings: where state lives, which engine decides, and every limit on untrusted input.

All settings come from ``WRIT_*`` environment variables (or keyword arguments),
with defaults that run on a laptop with nothing else installed:

    settings = Settings()                       # .writ/ under the cwd, embedded engine
    settings = Settings(home=Path("/srv/writ"), engine="opa", opa_url="http://127.0.0.1:8181")
    settings = shared_settings(settings)        # + what `writ init` recorded in <home>/settings.json

The limits live here, in one object, so that every parser and every engine
bounds input the same way (see ``Limits``).

The settings every process of one data directory must share (the policy directory and the
database URL) are recorded by ``writ init`` in ``<data dir>/settings.json`` (``RecordedSettings``).
They win over the defaults; a ``WRIT_POLICY_DIR`` or ``WRIT_DATABASE_URL`` that names something
else is refused (``settings_conflict``), never silently preferred, so ``writ approve`` and the
gateway cannot read different policies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError

SETTINGS_FILE = "settings.json"
"""Where ``writ init`` records the shared settings, inside the data directory."""
SETTINGS_TYPE = "https://writ.dev/settings/v1"


class PlanLimits(BaseModel):
    """Bounds on signed plans and approvals from outside. Exceeding one is an ``InputError``, never a crash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_plan_bytes: int = Field(1_048_576, gt=0, description="Largest plan payload, in canonical JSON bytes.")
    max_envelope_bytes: int = Field(2_097_152, gt=0, description="Largest envelope JSON (plan or approval).")
    max_steps: int = Field(256, gt=0, description="Most steps in one plan.")
    max_args_bytes: int = Field(
        262_144,
        gt=0,
        description="Largest arguments of one step (plan or call), in canonical JSON bytes.",
    )
    max_signatures: int = Field(16, gt=0, description="Most signatures on one envelope.")
    max_approvals: int = Field(64, gt=0, description="Most approval envelopes evaluated for one plan.")
    max_json_depth: int = Field(32, gt=0, description="Deepest nesting of arrays and objects in a signed payload.")


class Limits(BaseModel):
    """Bounds on anything that comes from outside Writ. Exceeding one is a typed error, never a crash."""

    max_input_bytes: int = Field(1_048_576, gt=0, description="Largest policy input document, in bytes of JSON.")
    max_json_depth: int = Field(64, gt=0, description="Deepest nesting of arrays and objects in any JSON input.")
    engine_timeout_s: float = Field(0.5, gt=0, description="Time an OPA sidecar has to answer one decision.")
    policy_reload_interval_s: float = Field(
        2.0, ge=0, description="How often the embedded engine looks for changed policy files (0: every decision)."
    )
    max_result_bytes: int = Field(
        4_194_304, gt=0,
        description="Largest upstream result (tool call, resource read, prompt) the gateway passes to an agent, in bytes "
        "(UTF-8 of its strings).",
    )
    api_decisions_per_minute: int = Field(600, gt=0, description="POST /v1/decisions per token a minute (then 429).")
    token_cache_s: float = Field(
        5.0, ge=0, description="How long the HTTP gateway reuses a bearer token it looked up (0: look it up on every "
        "request); a revoked token stops within this bound.",
    )
    plans: PlanLimits = Field(default_factory=PlanLimits, description="Bounds on signed plans and approvals.")


class NotifySettings(BaseModel):
    """Where the approval workflow tells approvers that a plan waits for them (``WRIT_NOTIFY__*``).

    No channel configured: nothing is sent, and the audit log says so once per plan.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook_url: str | None = Field(
        None, description="POST a signed JSON notice here (header Writ-Signature, Ed25519 instance key)."
    )
    smtp_host: str | None = Field(None, description="Send email through this SMTP server (approvers with an email).")
    smtp_port: int = Field(25, gt=0, le=65535, description="Port of the SMTP server.")
    email_from: str = Field("writ@localhost", description="From address of notification emails.")
    timeout_s: float = Field(10.0, gt=0, description="Time one webhook POST or SMTP exchange may take.")
    max_attempts: int = Field(5, ge=1, description="Tries per notice and channel, with backoff (Temporal retries).")
    first_retry_s: float = Field(2.0, gt=0, description="Wait before the second try; doubles each time.")


class CheckpointSettings(BaseModel):
    """When and where Writ signs checkpoints of the audit log's Merkle tree (``WRIT_CHECKPOINT__*``).

    A checkpoint is made after an append once ``every_entries`` entries or ``every_seconds`` passed
    since the last one, and by ``writ audit checkpoint``; it is stored in the database and appended
    to ``file``, outside it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    every_entries: int = Field(1000, ge=0, description="Checkpoint once this many entries were appended since the last "
                               "(0: never by count).")
    every_seconds: float = Field(60.0, ge=0, description="Checkpoint at an append once the last checkpoint is this old "
                                 "(0: never by time).")
    origin: str | None = Field(None, description="Origin line and note key name; unset: writ.<16 hex of the instance "
                               "key id>.")
    file: Path | None = Field(None, description="File outside the database that every checkpoint is appended to; "
                              "unset: <data dir>/checkpoints.log.")
    webhook_url: str | None = Field(None, description="POST each checkpoint's signed note here (text/plain).")
    timeout_s: float = Field(5.0, gt=0, description="Time one checkpoint webhook POST may take.")


class AuditSettings(BaseModel):
    """How the audit log's non-durable appends reach the disk (``WRIT_AUDIT__*``, SECURITY.md "Audit durability").

    ``AuditLog.append(kind, payload, durable=False)`` (the gateway's read decisions and results)
    returns once committed; its fsync follows within ``flush_s`` (SQLite) or PostgreSQL's WAL writer.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    flush_s: float = Field(1.0, gt=0, le=60, description="Longest time a non-durable audit append stays committed "
                           "but not fsynced (SQLite; PostgreSQL's wal_writer flushes within 3 x wal_writer_delay).")


class TemporalSettings(BaseModel):
    """How Writ reaches Temporal: ``settings.temporal``, from ``WRIT_TEMPORAL_ADDRESS``, ``WRIT_TEMPORAL_NAMESPACE``...

    No address: the dev server that ``writ serve`` starts on 127.0.0.1:``port``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str | None = Field(
        None, description="host:port of a Temporal frontend; unset: the embedded dev server on 127.0.0.1:port."
    )
    port: int = Field(7233, gt=0, le=65535, description="Port of the embedded dev server (no address set).")
    namespace: str = Field("default", min_length=1, description="Temporal namespace of the approval workflows.")
    task_queue: str = Field(
        "writ-approval", min_length=1,
        description="Task queue of this Writ deployment; also the prefix of its workflow ids (one per database).",
    )
    tls: bool = Field(False, description="Connect with TLS (server certificate checked against tls_ca or the system).")
    tls_ca: Path | None = Field(None, description="PEM file of the CA that signed the frontend's certificate.")
    tls_cert: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    tls_key: Path | None = Field(None, description="Client private key (PEM) for mutual TLS.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Time to reach Temporal before `workflow_unavailable`.")

    @property
    def embedded(self) -> bool:
        """True when Writ runs the dev server itself (no address configured)."""
        return self.address is None

    @property
    def target(self) -> str:
        """The host:port clients connect to."""
        return self.address or f"127.0.0.1:{self.port}"


_TEMPORAL_FIELDS = TemporalSettings.model_fields


class Settings(BaseSettings):
    """Writ's configuration. Environment variables are ``WRIT_`` + the field name in capitals."""

    model_config = SettingsConfigDict(env_prefix="WRIT_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(Path(".writ"), description="Data directory: database, keys, Temporal state.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the database; SQLite in the data directory when unset."
    )
    policy_dir: Path | None = Field(
        None, description="Directory of .rego and data files; the policies shipped with Writ when unset."
    )
    engine: Literal["embedded", "opa"] = Field("embedded", description="Which policy engine decides.")
    opa_url: str = Field("http://127.0.0.1:8181", description="Base URL of the OPA sidecar (engine=opa).")
    limits: Limits = Field(default_factory=Limits)
    temporal_address: str | None = Field(None, description=_TEMPORAL_FIELDS["address"].description)
    temporal_port: int = Field(7233, gt=0, le=65535, description=_TEMPORAL_FIELDS["port"].description)
    temporal_namespace: str = Field("default", min_length=1, description=_TEMPORAL_FIELDS["namespace"].description)
    temporal_task_queue: str = Field(
        "writ-approval", min_length=1, description=_TEMPORAL_FIELDS["task_queue"].description
    )
    temporal_tls: bool = Field(False, description=_TEMPORAL_FIELDS["tls"].description)
    temporal_tls_ca: Path | None = Field(None, description=_TEMPORAL_FIELDS["tls_ca"].description)
    temporal_tls_cert: Path | None = Field(None, description=_TEMPORAL_FIELDS["tls_cert"].description)
    temporal_tls_key: Path | None = Field(None, description=_TEMPORAL_FIELDS["tls_key"].description)
    temporal_connect_timeout_s: float = Field(
        5.0, gt=0, description=_TEMPORAL_FIELDS["connect_timeout_s"].description
    )
    notify: NotifySettings = Field(default_factory=NotifySettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    public_url: str = Field(
        "http://127.0.0.1:8420", description="Base URL of `writ serve` as approvers reach it (links in notices)."
    )

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, v: Path) -> Path:
        return v.expanduser().absolute()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'writ.sqlite'}"

    @property
    def temporal(self) -> TemporalSettings:
        """The ``temporal_*`` settings as one object."""
        return TemporalSettings(**{name: getattr(self, f"temporal_{name}") for name in _TEMPORAL_FIELDS})

    @property
    def effective_policy_dir(self) -> Path:
        if self.policy_dir is not None:
            return self.policy_dir.expanduser().absolute()
        return shipped_policy_dir()


def shipped_policy_dir() -> Path:
    """The policies that ship with Writ (the repository's ``policies/``)."""
    from importlib.util import find_spec

    spec = find_spec("writ.policies")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the writ.policies package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


class RecordedSettings(BaseModel):
    """What ``writ init`` records in ``<data dir>/settings.json``: the settings every command shares.

    ``None`` is the default: the shipped policies, SQLite ``writ.sqlite`` in the data directory.

        write_recorded(home, RecordedSettings(policy_dir=Path("/srv/policies").absolute()))
        read_recorded(home)        # RecordedSettings(policy_dir=PosixPath('/srv/policies'), database_url=None)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_dir: Path | None = None
    database_url: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> RecordedSettings:
        """The shared part of ``settings`` (the policy directory made absolute)."""
        policy_dir = settings.policy_dir.expanduser().absolute() if settings.policy_dir is not None else None
        return cls(policy_dir=policy_dir, database_url=settings.database_url)

    def differences(self, other: RecordedSettings, home: Path) -> list[str]:
        """What ``other`` would change, in words; [] when both name the same policies and database."""
        out = []
        if _policy_path(self.policy_dir) != _policy_path(other.policy_dir):
            out.append(f"policy directory {_shown(self.policy_dir)} -> {_shown(other.policy_dir)}")
        if _database(self.database_url, home) != _database(other.database_url, home):
            out.append(f"database {_database(self.database_url, home)} -> {_database(other.database_url, home)}")
        return out


def _policy_path(p: Path | None) -> Path:
    return (p if p is not None else shipped_policy_dir()).expanduser().resolve()


def _shown(p: Path | None) -> str:
    return str(p) if p is not None else "(the shipped policies)"


def _database(url: str | None, home: Path) -> str:
    return url or f"sqlite:///{home / 'writ.sqlite'}"


def read_recorded(home: Path) -> RecordedSettings | None:
    """The settings recorded in ``home`` (None if ``writ init`` recorded none); ``ConfigError`` if unreadable."""
    path = home / SETTINGS_FILE
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    fix = f"fix it, or remove it and run 'writ init --data-dir {home}'"
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{path} is not JSON: {fix}") from None
    if not isinstance(doc, dict) or doc.pop("_type", None) != SETTINGS_TYPE:
        raise ConfigError(f"{path} is not Writ's recorded settings (_type {SETTINGS_TYPE!r}): {fix}")
    try:
        return RecordedSettings.model_validate(doc)
    except ValidationError as e:
        raise ConfigError(f"{path}: {e.errors()[0]['msg']}: {fix}") from None


def write_recorded(home: Path, recorded: RecordedSettings) -> Path:
    """Record ``recorded`` in ``home`` (atomically, mode 0600); the file written."""
    path = home / SETTINGS_FILE
    doc = {"_type": SETTINGS_TYPE, **recorded.model_dump(mode="json")}
    tmp = path.with_name(f".{SETTINGS_FILE}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None
    return path


def shared_settings(settings: Settings) -> Settings:
    """``settings`` with the policy directory and database recorded in its data directory, if any.

    A ``policy_dir`` or ``database_url`` already set (from ``WRIT_*``) must name the same thing
    as the recorded one: ``ConfigError`` (``settings_conflict``) otherwise.
    """
    recorded = read_recorded(settings.home)
    if recorded is None:
        return settings
    asked = RecordedSettings.of(settings)
    env = RecordedSettings(
        policy_dir=asked.policy_dir if asked.policy_dir is not None else recorded.policy_dir,
        database_url=asked.database_url if asked.database_url is not None else recorded.database_url,
    )
    changes = recorded.differences(env, settings.home)
    if changes:
        raise ConfigError(
            f"WRIT_* settings disagree with those recorded in {settings.home / SETTINGS_FILE}: "
            f"{'; '.join(changes)}. Unset WRIT_POLICY_DIR / WRIT_DATABASE_URL, or change the record with "
            f"'writ init --data-dir {settings.home} --reconfigure ...'",
            code=reasons.SETTINGS_CONFLICT,
        )
    return settings.model_copy(update={"policy_dir": recorded.policy_dir, "database_url": recorded.database_url})
