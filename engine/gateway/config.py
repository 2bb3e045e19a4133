"""``writ.toml``: the upstream MCP servers the gateway fronts, and its timeouts.

    config = load_config(Path("writ.toml"))        # GatewayConfigError naming the file and the key

A file looks like this (``examples/writ.toml`` has a complete one)::

    [gateway]
    call_timeout_s = 60          # one tools/call to an upstream, then upstream_timeout
    [upstreams.git]              # its tools are exposed as git__<tool>
    command = "python"
    args = ["-m", "mcp_server_git", "--repository", "/srv/repo"]
    trust_annotations = true     # optional: its readOnlyHint may make a tool policy data omits a read
    [upstreams.remote]
    url = "http://127.0.0.1:9000/mcp"

Upstream names are checked here (``writ.engine.gateway.names``): a name that could be read as
another server's in an exposed ``<server>__<tool>`` name is refused (``server_name_ambiguous``).
``trust_annotations`` binds trust in an upstream's annotations to this entry, the operator's
own command line or URL for it, never to the name alone (ADR 0013).

Who the gateway acts for is not configured here: ``writ mcp --principal NAME`` takes the
principal, its role and its groups from the trust store (``writ principals add``, ``writ groups
add``, merged with the policy's ``data.writ.groups``: ``writ.engine.gateway.governance.resolve_principal``).

Relative ``cwd`` values are taken from the file's directory, and a stdio upstream without a
``cwd`` runs there, so relative paths in ``args`` mean the same wherever ``writ mcp`` starts.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from writ.engine.core.errors import ConfigError
from writ.engine.gateway.names import RESERVED_SERVERS as RESERVED_SERVERS
from writ.engine.gateway.names import SEPARATOR as SEPARATOR
from writ.engine.gateway.names import server_name_problem
from writ.plans.trust import Role


class GatewayConfigError(ConfigError):
    """``writ.toml`` is unreadable or wrong; ``file`` and ``key`` (dotted, e.g. ``upstreams.git.args``) say where."""

    def __init__(self, file: Path, key: str | None, problem: str, *, code: str | None = None) -> None:
        self.file = file
        self.key = key
        where = f"{file}: {key}" if key else str(file)
        super().__init__(f"{where}: {problem}", code=code)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayOptions(_Strict):
    """Bounds on the gateway's waits on upstreams: none of them can make a call hang."""

    call_timeout_s: float = Field(60.0, gt=0, description="Time one upstream tools/call may take.")
    start_timeout_s: float = Field(20.0, gt=0, description="Time an upstream has to start and list its tools.")
    max_restarts: int = Field(1, ge=0, description="Restarts of an upstream that died, per gateway run.")
    restart_backoff_s: float = Field(0.5, ge=0, description="Wait before the first restart; doubles after.")
    session_idle_timeout_s: float = Field(1800.0, gt=0, description="An HTTP session with no request for this "
                                          "long is ended (a client deleting its session ends it at once).")


class UpstreamConfig(_Strict):
    """One upstream MCP server: a command to run over stdio, or the URL of a streamable HTTP endpoint."""

    command: str | None = Field(None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="Added to the SDK's safe default environment.")
    cwd: Path | None = None
    url: str | None = Field(None, pattern=r"^https?://")
    call_timeout_s: float | None = Field(None, gt=0, description="Overrides gateway.call_timeout_s.")
    max_restarts: int | None = Field(None, ge=0, description="Overrides gateway.max_restarts.")
    trust_annotations: bool = Field(False, strict=True, description="Let this upstream's readOnlyHint make a tool "
                                    "that policy data does not classify a read (ADR 0013); else such a tool is a write.")

    @model_validator(mode="after")
    def _one_transport(self) -> UpstreamConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        if self.url is not None and (self.args or self.env or self.cwd is not None):
            raise ValueError("args, env and cwd apply to a command, not to a url")
        return self


def _server_name(name: str) -> str:
    problem = server_name_problem(name)
    if problem is not None:
        raise ValueError(problem[1])
    return name


ServerName = Annotated[str, AfterValidator(_server_name)]


class GatewayConfig(_Strict):
    """A checked ``writ.toml``: the gateway's bounds and its upstream servers, by name.

        config = load_config(Path("writ.toml"))
        config.upstreams["git"].command, config.gateway.call_timeout_s     # 'python', 60.0
    """

    gateway: GatewayOptions = Field(default_factory=GatewayOptions)
    upstreams: dict[ServerName, UpstreamConfig] = Field(min_length=1)
    source: Path | None = Field(None, exclude=True, description="The file this came from.")

    @model_validator(mode="after")
    def _names_apart(self) -> GatewayConfig:
        names = list(self.upstreams)
        for i, name in enumerate(names):
            problem = server_name_problem(name, names[:i])
            if problem is not None:
                raise ValueError(problem[1])
        return self


@dataclass(frozen=True)
class Principal:
    """Who the gateway acts for: the identity every policy input carries."""

    name: str
    role: Role
    groups: tuple[str, ...] = ()


def load_config(path: Path) -> GatewayConfig:
    """Read and check ``writ.toml``; relative ``cwd`` values become absolute (from the file's directory)."""
    path = path.expanduser().absolute()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GatewayConfigError(path, None, "no such file (give one with --config)") from None
    except OSError as e:
        raise GatewayConfigError(path, None, f"cannot read it: {e.strerror}") from None
    except UnicodeDecodeError:
        raise GatewayConfigError(path, None, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise GatewayConfigError(path, None, f"not valid TOML: {e}") from None
    if "principals" in raw:
        raise GatewayConfigError(path, "principals", "no longer read here: principals and their roles live in the "
                                 "trust store (writ principals add NAME --role ROLE); remove this section")
    _check_server_names(path, raw.get("upstreams"))
    try:
        config = GatewayConfig.model_validate(raw)
    except pydantic.ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"] if p != "[key]") or None
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise GatewayConfigError(path, key, _message(err) + more) from None
    base = path.parent
    upstreams = {
        name: up.model_copy(update={"cwd": base / up.cwd if up.cwd else base}) if up.command else up
        for name, up in config.upstreams.items()
    }
    return config.model_copy(update={"upstreams": upstreams, "source": path})


def _check_server_names(path: Path, upstreams: Any) -> None:
    """Refuse a server name an exposed ``<server>__<tool>`` could be misread with, before anything else."""
    if not isinstance(upstreams, dict):
        return  # the model says what is wrong with it
    names = list(upstreams)
    for i, name in enumerate(names):
        problem = server_name_problem(name, names[:i])  # of two look-alikes, the later one is named
        if problem is not None:
            code, why = problem
            raise GatewayConfigError(path, f"upstreams.{name}", why, code=code)


def _message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    return msg
