"""Keep Writ's secrets out of the agents' reach: no upstream may be rooted above the data directory.

    problems = secrets_exposed(config, [settings.home])
    if problems: raise ConfigError("; ".join(problems))

An upstream such as the filesystem server is given directories to work in as command-line
arguments. If Writ's data directory (the database, the audit log, the private keys) lies
inside one of them, an agent could read the keys through an allowed tool call. Every argument
that names an existing directory counts as a root: absolute ones, and relative ones (``.``)
taken from the upstream's ``cwd``. The ``cwd`` alone is not a root: a server serves what it
is told to, and ``writ.toml`` beside ``.writ/`` is the common layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError
from writ.engine.core.settings import Settings
from writ.engine.gateway.config import GatewayConfig, load_config


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def secrets_exposed(config: GatewayConfig, secret_dirs: Iterable[Path]) -> list[str]:
    """One sentence per (upstream, root) that contains a secret directory; empty when none does."""
    secrets = [Path(p).expanduser().resolve() for p in secret_dirs]
    problems = []
    for name, up in sorted(config.upstreams.items()):
        if up.command is None:
            continue  # a URL upstream runs elsewhere: it cannot read our files
        base = Path(up.cwd) if up.cwd is not None else Path.cwd()
        roots = [Path(a) if a.startswith("/") else base / a for a in up.args if not a.startswith("-")]
        for root in roots:
            if not root.is_dir():
                continue
            resolved = root.expanduser().resolve()
            for secret in secrets:
                if _inside(secret, resolved):
                    problems.append(
                        f"upstream {name!r} is given {root}, "
                        f"which contains Writ's data directory {secret}: agents could read private keys and "
                        f"the audit database through it; set WRIT_HOME (or --data-dir) outside {root}"
                    )
    return problems


def load_safe_config(path: Path, settings: Settings) -> GatewayConfig:
    """``writ.toml`` loaded, and refused (``secrets_exposed``) if an upstream could read the data directory."""
    config = load_config(path)
    exposed = secrets_exposed(config, [settings.home])
    if exposed:
        raise ConfigError("; ".join(exposed), code=reasons.SECRETS_EXPOSED)
    return config
