"""Writ's instance key: the Ed25519 key this installation signs its own statements with.

    key = load_instance_key(settings.home)                 # <data dir>/instance-key.pem, made by `writ init`
    key.key_id                                             # 'sha256:...' (the public half's id)
    signature = key.sign(b"...")                           # webhook notices; signed checkpoints and bundles later

It is kept apart from the database (a file with mode 0600 in the data directory), so whoever
can edit the database cannot sign as Writ. Agents never see the data directory: the gateway
refuses an upstream that could read it (``secrets_exposed``).
"""

from __future__ import annotations

from pathlib import Path

from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError
from writ.plans.keys import PrivateKey

__all__ = ["INSTANCE_KEY_FILE", "ensure_instance_key", "instance_key_path", "load_instance_key"]

INSTANCE_KEY_FILE = "instance-key.pem"


def instance_key_path(home: Path) -> Path:
    """Where the instance key of the data directory ``home`` lives."""
    return home / INSTANCE_KEY_FILE


def load_instance_key(home: Path) -> PrivateKey:
    """The instance key of ``home``; ``ConfigError`` (``instance_key_missing``) naming the fix if there is none."""
    path = instance_key_path(home)
    if not path.exists():
        raise ConfigError(
            f"no instance key at {path}: run 'writ init --data-dir {home}' (it creates one)",
            code=reasons.INSTANCE_KEY_MISSING,
        )
    return PrivateKey.load(path)


def ensure_instance_key(home: Path) -> tuple[PrivateKey, bool]:
    """The instance key of ``home``, created (mode 0600) if missing; and whether it was created now."""
    path = instance_key_path(home)
    if path.exists():
        return PrivateKey.load(path), False
    key = PrivateKey.generate()
    try:
        key.save(path)
    except ConfigError as e:
        if e.code != reasons.KEY_FILE_EXISTS:  # another `writ init` made it first: use theirs
            raise
        return PrivateKey.load(path), False
    return key, True
