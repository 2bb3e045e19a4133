"""Keep Writ's secrets out of the agents' reach: no upstream may be given a path that holds one.

    config = load_safe_config(Path("writ.toml"), settings, key_files=[Path("plan-bot.pem")])
    problems = secrets_exposed(config, secret_paths(settings))      # one sentence each; [] when none

An upstream such as the filesystem server is given directories to work in on its command
line. If one of them holds a secret, an agent could read it through an allowed tool call. The
secrets (``secret_paths``): Writ's data directory (its keys, its database), the SQLite database
wherever it lies, every key file Writ was given (``writ mcp --key``), and the approvers' key
directory (``approver_keys_dir``: approvers' keys never live in the data directory).

Every path an upstream could be given counts, read as the upstream could read it (``given_paths``):
each argument whole, the value of ``--opt=value`` (and ``NAME=value``, ``-rVALUE``), the parts
of a ``:`` or ``,`` separated list that look like paths, and every value of its ``env`` but
``HOME``, temporary directories and search paths (``*PATH``). Each is taken as written and
expanded as the upstream would expand it: ``~`` with the upstream's own ``HOME`` (its ``env``,
else the one the SDK passes on from the gateway), ``$VAR`` and ``${VAR}`` with the upstream's
environment; relative paths from its ``cwd``; symlinks resolved. A path that contains a secret,
or lies inside a secret directory, exposes it. The ``cwd`` alone is not a root: a server serves
what it is told to, and ``writ.toml`` beside ``.writ/`` is the common layout.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError, WritError
from writ.engine.core.settings import Settings
from writ.engine.gateway.config import GatewayConfig, UpstreamConfig, load_config

log = logging.getLogger(__name__)

# What the MCP SDK passes on to a stdio upstream from the gateway's environment (POSIX).
INHERITED_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
# Environment variables that are not a place an upstream serves from: where it lives, its
# scratch space, where it finds programs and libraries.
NOT_ROOTS = frozenset({"HOME", "PWD", "OLDPWD", "TMPDIR", "TMP", "TEMP", "SHELL", "TERM", "USER", "LOGNAME"})
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")
_SHORT_OPTION = re.compile(r"^-[A-Za-z0-9](.+)$")
_SEPARATORS = re.compile(r"""[\s:,;=\[\](){}"']+""")
# Search paths for code, not places an upstream serves: their entries are not roots.
SEARCH_PATHS = frozenset({"PATH", "PYTHONPATH", "NODE_PATH", "LD_LIBRARY_PATH", "MANPATH", "CLASSPATH"})


@dataclass(frozen=True)
class Secret:
    """Something an agent must never read: ``path``, what it is (``what``), and whether everything inside is secret.

    A ``whole`` secret (a keys directory, a key file, the database) is exposed by a path inside it
    as well as by one that contains it; the data directory only by one that contains it (a demo
    workspace may live inside it).
    """

    path: Path
    what: str
    whole: bool = True


def approver_keys_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where an approver's private keys live by default: ``$XDG_CONFIG_HOME/writ/keys``, else ``~/.config/writ/keys``."""
    env = os.environ if environ is None else environ
    config_home = env.get("XDG_CONFIG_HOME", "")
    base = Path(config_home) if config_home and Path(config_home).is_absolute() else _home(env) / ".config"
    return base / "writ" / "keys"


def private_dir(path: Path) -> Path:
    """``path`` created if missing (mode 0700, parents too); ``ConfigError`` ``key_dir_insecure`` if others may use it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777
    except OSError as e:
        raise ConfigError(f"cannot create the keys directory {path}: {e.strerror}",
                          code=reasons.KEY_FILE_UNWRITABLE) from None
    if mode & 0o077:
        raise ConfigError(f"keys directory {path} has mode {mode:04o}; only its owner may use it (chmod 700 {path})",
                          code=reasons.KEY_DIR_INSECURE)
    return path


def inside(path: Path, directory: Path) -> bool:
    """Whether ``path`` is ``directory`` or lies under it, symlinks resolved."""
    real, root = _real(path), _real(directory)
    return real is not None and root is not None and _inside(real, root)


def secret_paths(settings: Settings, key_files: Iterable[Path] = (),
                 environ: Mapping[str, str] | None = None) -> list[Secret]:
    """Every secret of this Writ process (see the module docstring)."""
    home = settings.home
    secrets = [Secret(home, "Writ's data directory", whole=False), Secret(home / "keys", "Writ's private keys")]
    database = _sqlite_file(settings.effective_database_url)
    if database is not None:
        secrets += [Secret(Path(f"{database}{suffix}"), "Writ's database") for suffix in ("", "-wal", "-shm", "-journal")]
    secrets += [Secret(Path(k), f"the key file {k} (--key)") for k in key_files]
    secrets.append(Secret(approver_keys_dir(environ), "the approvers' key directory"))
    return [Secret(_real(s.path) or s.path, s.what, s.whole) for s in secrets]


def secrets_exposed(config: GatewayConfig, secrets: Iterable[Secret | Path],
                    environ: Mapping[str, str] | None = None) -> list[str]:
    """One sentence per (upstream, path it is given) that exposes a secret; empty when none does.

    A bare ``Path`` in ``secrets`` is a data directory (secret if a given path contains it).
    """
    wanted = [s if isinstance(s, Secret) else Secret(_real(Path(s)) or Path(s), "Writ's data directory", whole=False)
              for s in secrets]
    problems = []
    for name, up in sorted(config.upstreams.items()):
        if up.command is None:
            continue  # a URL upstream runs elsewhere: it cannot read our files
        reported: set[Path] = set()
        for written, path in given_paths(up, environ):
            hit = [s for s in wanted if _exposes(path, s)]
            # The outermost of the secrets it reaches says it all (the keys inside the data directory).
            hit = [s for s in hit if not any(t.path != s.path and _inside(s.path, t.path) for t in hit)]
            if not hit or path in reported:
                continue
            reported.add(path)
            how = "" if written == str(path) else f" (written {written!r})"
            by_relation: dict[str, list[str]] = {}
            for s in hit:
                by_relation.setdefault(_relation(s.path, path), []).append(f"{s.what} {s.path}")
            what = " and ".join(f"{relation} {' and '.join(items)}" for relation, items in by_relation.items())
            problems.append(f"upstream {name!r} is given {path}{how}, which {what}: agents could read private keys "
                            f"and the audit database through it; {_fix(hit[0], path)}")
    return problems


def given_paths(up: UpstreamConfig, environ: Mapping[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    """``(as written, real path)`` for every reading of every path ``up`` is given (see the module docstring)."""
    env = upstream_environment(up, environ)
    base = Path(up.cwd) if up.cwd is not None else Path.cwd()
    given = [(arg, v) for arg in up.args for v in _values(arg)]
    given += [(f"{key}={value}", v) for key, value in up.env.items()
              if key not in NOT_ROOTS | SEARCH_PATHS for v in _values(value)]
    for written, value in given:
        for reading in dict.fromkeys((value, _expand(value, env))):
            real = _real(base / reading)
            if real is not None:
                yield written, real


def upstream_environment(up: UpstreamConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a stdio upstream runs with: what the SDK passes on, and its own ``env`` over it."""
    env = os.environ if environ is None else environ
    return {**{k: env[k] for k in INHERITED_ENV if k in env}, **up.env}


def load_safe_config(path: Path, settings: Settings, *, key_files: Iterable[Path] = ()) -> GatewayConfig:
    """``writ.toml`` loaded, and refused (``secrets_exposed``, audited) if an upstream could read a secret."""
    config = load_config(path)
    keys = [Path(k).expanduser().absolute() for k in key_files]
    exposed = secrets_exposed(config, secret_paths(settings, keys))
    if exposed:
        message = "; ".join(exposed)
        _audit_refusal(settings, {"config": str(config.source or path), "code": reasons.SECRETS_EXPOSED,
                                  "message": message})
        raise ConfigError(message, code=reasons.SECRETS_EXPOSED)
    return config


def _values(arg: str) -> list[str]:
    """Every way ``arg`` could name a path: whole, an option's value, and each word of a command line or list.

    An argument may be a shell command (``sh -c "exec server ~/.writ"``), an option (``--root=DIR``,
    ``-rDIR``), or a list in any of the usual spellings (``a:b``, ``a,b``, ``a;b``, ``["a", "b"]``,
    ``type=bind,src=DIR``): each word counts, as written (relative to the upstream's ``cwd``) and expanded.
    """
    values = [arg]
    if "=" in arg:
        values.append(arg.split("=", 1)[1])
    short = _SHORT_OPTION.match(arg)
    if short and not arg.startswith("--"):
        values.append(short.group(1))
    for value in list(values):
        try:
            words = shlex.split(value)
        except ValueError:  # an unbalanced quote: plain words then
            words = value.split()
        if len(words) > 1:
            values += words
    for value in list(values):
        parts = [p for p in _SEPARATORS.split(value) if p]
        if len(parts) > 1 or (parts and parts[0] != value):
            values += parts
    return list(dict.fromkeys(v for v in values if v))


def _expand(value: str, env: Mapping[str, str]) -> str:
    """``value`` with ``$VAR``/``${VAR}`` from ``env`` (unknown ones left), then ``~`` as the upstream expands it."""
    value = _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), value)
    if value == "~" or value.startswith("~/"):
        return str(_home(env)) + value[1:]
    if value.startswith("~"):
        return os.path.expanduser(value)  # ~user: that user's home, whatever HOME says
    return value


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    if home:
        return Path(home)
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return Path("/")  # no home at all: "~" is taken as the root, which contains every secret


def _real(path: Path) -> Path | None:
    """``path`` absolute with symlinks resolved (as far as it exists); None if no file could have that name."""
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):  # a NUL byte, a name too long: no process can be given that path
        return None


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _relation(secret: Path, path: Path) -> str:
    return "is" if secret == path else "contains" if _inside(secret, path) else "is inside"


def _exposes(path: Path, secret: Secret) -> bool:
    return _inside(secret.path, path) or (secret.whole and _inside(path, secret.path))


def _fix(secret: Secret, path: Path) -> str:
    if secret.what == "Writ's database":
        return f"keep the database (WRIT_DATABASE_URL) outside {path}"
    if secret.what.startswith("Writ's"):
        return f"set WRIT_HOME (or --data-dir) outside {path}"
    if secret.what.startswith("the key file"):
        return f"keep the key file outside every directory an upstream is given (not under {path})"
    return f"give the upstream a directory that does not contain {secret.path}"


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (``sqlite:///path``); None for any other database."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    name = url[len(prefix):].split("?", 1)[0]
    return Path(name) if name and name != ":memory:" else None


def _audit_refusal(settings: Settings, payload: dict[str, str]) -> None:
    """Record a refused start in the data directory's audit log, if it has one (the refusal stands either way)."""
    from writ.attestations.audit import AuditLog
    from writ.engine.core.db import open_database

    try:
        with open_database(settings, create=False) as store:
            AuditLog(store).append("start_refused", payload)
    except WritError as e:  # no database yet, or it cannot be written: the start is refused all the same
        log.warning("could not audit the refused start: %s", e.message)
