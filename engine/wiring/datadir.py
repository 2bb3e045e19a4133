"""A data directory's life: ``writ init`` makes it, every other command requires it.

    report = init_data_dir(Settings(home=Path("/srv/writ"), policy_dir=Path("/srv/policies")))
    report.message()          # 'initialised /srv/writ: database sqlite:////srv/writ/writ.sqlite (schema 0004), ...'
    settings = require_data_dir(Settings(home=Path("/srv/writ")))   # + the recorded policy dir and database

``init_data_dir`` creates the directory (mode 0700) and the database, migrates it, and records
the settings every command must share in ``<data dir>/settings.json`` (see
``writ.engine.core.settings.RecordedSettings``). Run again, it only migrates; changing a
recorded setting needs ``reconfigure=True``.

``require_data_dir`` is what every other command does first: it refuses a data directory or a
SQLite file that does not exist (``store_missing``, naming ``writ init``) before anything could
create them, and applies the recorded settings. A PostgreSQL database without Writ's schema is
refused the same way, when it is opened (``open_database(create=False)``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from writ.attestations.instance_key import ensure_instance_key
from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError, StoreError
from writ.engine.core.settings import (
    SETTINGS_FILE,
    RecordedSettings,
    Settings,
    read_recorded,
    shared_settings,
    write_recorded,
)

__all__ = ["InitReport", "init_data_dir", "require_data_dir", "sqlite_path"]


@dataclass(frozen=True)
class InitReport:
    """What ``init_data_dir`` found and did."""

    home: Path
    created: bool
    recorded: RecordedSettings
    database: str
    revision_before: str | None
    revision: str
    changed: list[str] = field(default_factory=list)
    instance_key: str = ""

    @property
    def settings(self) -> Path:
        return self.home / SETTINGS_FILE

    def message(self) -> str:
        """One line for a person: created or already there, the database and its schema, what changed."""
        if self.revision_before is None:
            schema = f"schema {self.revision} created"
        elif self.revision_before != self.revision:
            schema = f"schema migrated {self.revision_before} -> {self.revision}"
        else:
            schema = f"schema {self.revision}, up to date"
        policies = self.recorded.policy_dir or "the shipped policies"
        head = f"initialised {self.home}" if self.created else f"{self.home} is already initialised"
        changed = f"; changed: {'; '.join(self.changed)}" if self.changed else ""
        key = f"; instance key {self.instance_key[7:19]}" if self.instance_key else ""
        return (f"{head}: database {self.database} ({schema}), policies {policies}; settings in {self.settings}"
                f"{key}{changed}")


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file of ``settings`` (None for another database or an in-memory one)."""
    url = settings.effective_database_url
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            rest = url.removeprefix(prefix).split("?", 1)[0]
            return None if rest in ("", ":memory:") or rest.startswith("file:") else Path(rest).expanduser()
    return None


def require_data_dir(settings: Settings) -> Settings:
    """``settings`` with its data directory's recorded settings; ``StoreError`` ``store_missing`` if there is none.

    A missing directory or SQLite file is refused here (without loading a database driver),
    before any command could create it; a PostgreSQL database is opened once to see that it
    holds Writ's schema.
    """
    home = settings.home
    fix = f"run 'writ init --data-dir {home}'"
    if not home.is_dir():
        raise StoreError(f"no Writ data directory at {home}: {fix}", code=reasons.STORE_MISSING)
    settings = shared_settings(settings)
    path = sqlite_path(settings)
    if path is not None and not path.is_file():
        raise StoreError(f"no Writ database at {path}: {fix}", code=reasons.STORE_MISSING)
    if path is None:  # a server database: only a connection tells whether it holds Writ's schema
        from writ.engine.core.db import open_database

        open_database(settings, create=False).close()
    return settings


def _target(settings: Settings, previous: RecordedSettings | None, reconfigure: bool) -> tuple[RecordedSettings, list[str]]:
    asked = RecordedSettings.of(settings)
    if previous is None:
        return asked, []
    target = RecordedSettings(
        policy_dir=asked.policy_dir if asked.policy_dir is not None else previous.policy_dir,
        database_url=asked.database_url if asked.database_url is not None else previous.database_url,
    )
    changes = previous.differences(target, settings.home)
    if changes and not reconfigure:
        raise ConfigError(
            f"{settings.home} is already initialised with other settings ({'; '.join(changes)}): "
            "every command of this data directory shares them; add --reconfigure to change them",
            code=reasons.SETTINGS_CONFLICT,
        )
    return target, changes


def init_data_dir(settings: Settings, *, reconfigure: bool = False) -> InitReport:
    """Create (or migrate) the data directory of ``settings`` and record its shared settings.

    ``settings.policy_dir`` / ``database_url`` (flags or ``WRIT_*``) are what to record; unset,
    the recorded ones stay (or the defaults, for a new directory).
    """
    from writ.engine.core.db import current_revision, head_revision, migrate, open_database

    home = settings.home
    if home.exists() and not home.is_dir():
        raise ConfigError(f"data directory {home} exists and is not a directory")
    previous = read_recorded(home)
    target, changes = _target(settings, previous, reconfigure)
    if target.policy_dir is not None and not target.policy_dir.is_dir():
        raise ConfigError(f"policy directory {target.policy_dir} does not exist or is not a directory")
    effective = settings.model_copy(update={"policy_dir": target.policy_dir, "database_url": target.database_url})
    created = not home.exists()
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open_database(effective, create=True, upgrade=False) as store:
            with store.connect() as conn:
                before = current_revision(conn)
            if before != head_revision():
                migrate(store)
            database = store.url
        if previous != target:
            write_recorded(home, target)
        key, _ = ensure_instance_key(home)  # signs webhook notices (and, later, checkpoints and bundles)
    except BaseException as e:
        if created:
            shutil.rmtree(home, ignore_errors=True)  # made by this call: leave nothing half set up
        if isinstance(e, OSError):
            raise ConfigError(f"cannot create data directory {home}: {e.strerror}") from None
        raise
    return InitReport(home, created, target, database, before, head_revision(), changes, key.key_id)
