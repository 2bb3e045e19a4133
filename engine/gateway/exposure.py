"""Keep Writ's secrets out of the agents' reach: no upstream may be rooted above the data directory.

    problems = secrets_exposed(config, [settings.home])
    if problems: raise ConfigError("; ".join(problems))

An upstream such as the filesystem server is given directories to work in as command-line
arguments (and runs in its ``cwd``). If Writ's data directory (the database, the audit log,
the private keys) lies inside one of them, an agent could read the keys through an allowed
tool call. The check is conservative: any absolute path argument, and the ``cwd``, count as
roots the upstream may read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from writ.engine.gateway.config import GatewayConfig


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def secrets_exposed(config: GatewayConfig, secret_dirs: Iterable[Path]) -> list[str]:
    """One sentence per (upstream, root) that contains a secret directory; empty when none does."""
    secrets = [Path(p).expanduser().resolve() for p in secret_dirs]
    problems = []
    for name, up in sorted(config.upstreams.items()):
        if up.command is None:
            continue  # a URL upstream runs elsewhere: it cannot read our files
        roots = [Path(a) for a in up.args if a.startswith("/")]
        if up.cwd is not None:
            roots.append(Path(up.cwd))
        for root in roots:
            resolved = root.expanduser().resolve()
            for secret in secrets:
                if _inside(secret, resolved):
                    problems.append(
                        f"upstream {name!r} can reach {root} (as {'cwd' if root == up.cwd else 'an argument'}), "
                        f"which contains Writ's data directory {secret}: agents could read private keys and "
                        f"the audit database through it; set WRIT_HOME (or --data-dir) outside {root}"
                    )
    return problems
